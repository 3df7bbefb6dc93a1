"""Prometheus metrics of the controller (prometheus-client), read at scrape time.

Totals are counters; levels that go down as well as up (half-bound connections, buffered
bytes, active spliced connections, flows, connections bound to a server) are gauges.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from p4cs.controller.app import STATES
from p4cs.csproc.stats import GAUGES

#: Traffic totals (counters) and rates (gauges) per server and per service:
#: status key -> (metric suffix, help).
TRAFFIC_COUNTERS = {
    "conns": ("connections", "connections spliced"),
    "in_packets": ("in_packets", "fast-path packets client to server"),
    "out_packets": ("out_packets", "fast-path packets server to client"),
    "in_bytes": ("in_bytes", "fast-path bytes client to server"),
    "out_bytes": ("out_bytes", "fast-path bytes server to client"),
}
TRAFFIC_RATES = {
    "cps": ("connections_per_second", "connections spliced per second"),
    "in_pps": ("in_packets_per_second", "fast-path packets per second client to server"),
    "out_pps": ("out_packets_per_second", "fast-path packets per second server to client"),
    "in_bps": ("in_bytes_per_second", "fast-path bytes per second client to server"),
    "out_bps": ("out_bytes_per_second", "fast-path bytes per second server to client"),
}


def _traffic(st: dict):
    """Per-server and per-service totals and rates of the latest traffic sample."""
    traffic = st.get("traffic") or {}
    for kind, label in (("servers", "server"), ("services", "service")):
        entries = traffic.get(kind) or {}
        for key, (suffix, text) in TRAFFIC_COUNTERS.items():
            c = CounterMetricFamily(f"p4cs_{label}_traffic_{suffix}", f"{text}, per {label}",
                                    labels=[label])
            for name, t in entries.items():
                c.add_metric([name], t[key])
            yield c
        for key, (suffix, text) in TRAFFIC_RATES.items():
            g = GaugeMetricFamily(f"p4cs_{label}_{suffix}",
                                  f"{text}, per {label}, between the latest two samples",
                                  labels=[label])
            for name, t in entries.items():
                g.add_metric([name], t[key])
            yield g
    fast = traffic.get("fastpath")
    if fast:
        for key in ("packets", "bytes"):
            c = CounterMetricFamily(f"p4cs_fastpath_{key}", f"{key} carried by spliced flows "
                                    "in the switch (ended and installed flows)")
            c.add_metric([], fast[key])
            yield c


#: Per-port counters of the switch: status key -> (metric suffix, help).
PORT_COUNTERS = {
    "rx_pkts": ("rx_packets", "packets received on a switch port"),
    "rx_bytes": ("rx_bytes", "bytes received on a switch port"),
    "tx_pkts": ("tx_packets", "packets sent on a switch port"),
    "tx_bytes": ("tx_bytes", "bytes sent on a switch port"),
    "rx_drops": ("rx_drops", "packets dropped on a switch port's receive side (ring full, "
                             "kernel drops)"),
    "rx_errors": ("rx_errors", "receive errors of a switch port"),
    "tx_drops": ("tx_drops", "packets a switch port could not send"),
}


def _ports(st: dict):
    """The switch's per-port counters (none when the target has none: BMv2)."""
    dp = st.get("dataplane") or {}
    if not dp.get("available"):
        return
    for key, (suffix, text) in PORT_COUNTERS.items():
        c = CounterMetricFamily(f"p4cs_port_{suffix}", text, labels=["port", "type", "name"])
        for p in dp["ports"]:
            c.add_metric([str(p["port"]), str(p["type"]), str(p["name"])], p.get(key) or 0)
        yield c


#: Per table and per learner (add-on-miss table) of the switch's pipeline: status key ->
#: (metric, help).
TABLE_COUNTERS = {
    "tables": {"hit": ("p4cs_table_hits", "packets that hit an entry of a table"),
               "miss": ("p4cs_table_misses", "packets that missed every entry of a table")},
    "learners": {"hit": ("p4cs_learner_hits", "packets that hit an entry of an add-on-miss "
                                              "table"),
                 "miss": ("p4cs_learner_misses", "packets that missed an add-on-miss table"),
                 "learn": ("p4cs_learner_learned", "entries an add-on-miss table learned"),
                 "learn_err": ("p4cs_learner_learn_errors", "entries an add-on-miss table "
                                                            "could not learn (full)")},
}


def _tables(st: dict):
    """The switch's per-table counters (none when the target has none: BMv2)."""
    dp = st.get("dataplane") or {}
    if not dp.get("available"):
        return
    for kind, keys in TABLE_COUNTERS.items():
        for key, (name, text) in keys.items():
            c = CounterMetricFamily(name, text, labels=["table"])
            for t in dp.get(kind) or ():
                c.add_metric([t["name"]], t.get(key) or 0)
            yield c
    c = CounterMetricFamily("p4cs_dataplane_dropped_packets", "packets the pipeline dropped")
    c.add_metric([], dp.get("drop_pkts") or 0)
    yield c


def _l4(st: dict):
    """The L4 services as the switch runs them: Maglev buckets and weight per server."""
    buckets = GaugeMetricFamily("p4cs_l4_server_buckets", "Maglev buckets of a server of an "
                                "L4 service", labels=["service", "server"])
    weight = GaugeMetricFamily("p4cs_l4_server_weight", "weight of a server of an L4 service",
                               labels=["service", "server"])
    for svc in st.get("l4") or ():
        for s in svc["servers"]:
            buckets.add_metric([svc["name"], s["server"]], s["buckets"])
            weight.add_metric([svc["name"], s["server"]], s["weight"])
    yield buckets
    yield weight


def _rules(st: dict):
    hits = CounterMetricFamily("p4cs_rule_hits", "requests a rule decided (rule=\"\": no rule "
                               "matched)", labels=["service", "rule"])
    ago = GaugeMetricFamily("p4cs_rule_last_hit_age_seconds", "seconds since a rule last "
                            "decided", labels=["service", "rule"])
    for r in st.get("rules") or []:
        labels = [r["service"], r["rule"] or ""]
        hits.add_metric(labels, r["hits"])
        ago.add_metric(labels, r["last_hit_ago_s"])
    yield hits
    yield ago


class _Collector:
    def __init__(self, app: Any):
        self.app = app

    def collect(self):
        st = self.app.status()
        for name, value in st["counters"].items():
            c = CounterMetricFamily(f"p4cs_controller_{name}", f"controller {name.replace('_', ' ')}")
            c.add_metric([], value)
            yield c
        for name, value in (st.get("csproc") or {}).items():
            if isinstance(value, (int, float)):
                family = GaugeMetricFamily if name in GAUGES else CounterMetricFamily
                c = family(f"p4cs_csproc_{name}", f"CS processor {name.replace('_', ' ')}")
                c.add_metric([], value)
                yield c
        g = GaugeMetricFamily("p4cs_controller_state",
                              "1 for the state of the session with the switch", labels=["state"])
        for state in STATES:
            g.add_metric([state], int(st["state"] == state))
        yield g
        g = GaugeMetricFamily("p4cs_flows", "flow entries installed by this controller")
        g.add_metric([], st["flows"])
        yield g
        g = GaugeMetricFamily("p4cs_adopted_flows",
                              "flow entries of a previous controller left to expire")
        g.add_metric([], st["adopted_flows"])
        yield g
        active = GaugeMetricFamily("p4cs_server_active_connections", "connections bound to a server",
                                   labels=["group", "server"])
        total = CounterMetricFamily("p4cs_server_connections", "connections ever bound to a server",
                                    labels=["group", "server"])
        inactive = GaugeMetricFamily("p4cs_server_inactive_connections", "connections of a "
                                     "server that are closing or torn down (InActConn)",
                                     labels=["group", "server"])
        weight = GaugeMetricFamily("p4cs_server_weight", "weight of a server",
                                   labels=["group", "server"])
        up = GaugeMetricFamily("p4cs_server_up", "1 if the server takes new connections "
                               "(health), else 0", labels=["group", "server"])
        last = GaugeMetricFamily("p4cs_server_last_check_ok", "result of the latest health "
                                 "check (1 passed, 0 failed)", labels=["group", "server"])
        for group, servers in st["groups"].items():
            for s in servers:
                active.add_metric([group, s["server"]], s["active"])
                total.add_metric([group, s["server"]], s["total"])
                up.add_metric([group, s["server"]], int(s["up"]))
                inactive.add_metric([group, s["server"]], s.get("inactive", 0))
                weight.add_metric([group, s["server"]], s["weight"])
                h = s.get("health") or {}
                if "last_ok" in h:
                    last.add_metric([group, s["server"]], int(h["last_ok"]))
        yield active
        yield total
        yield up
        yield last
        yield inactive
        yield weight
        yield from _traffic(st)
        yield from _rules(st)
        yield from _ports(st)
        yield from _tables(st)
        yield from _l4(st)


def start_metrics(app: Any, port: int, addr: str = "127.0.0.1",
                  registry: CollectorRegistry = REGISTRY):
    """Serve the metrics of ``app`` on http://addr:port/metrics; returns (server, thread)."""
    registry.register(_Collector(app))
    return start_http_server(port, addr=addr, registry=registry)
