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
        up = GaugeMetricFamily("p4cs_server_up", "1 if the server takes new connections "
                               "(health), else 0", labels=["group", "server"])
        last = GaugeMetricFamily("p4cs_server_last_check_ok", "result of the latest health "
                                 "check (1 passed, 0 failed)", labels=["group", "server"])
        for group, servers in st["groups"].items():
            for s in servers:
                active.add_metric([group, s["server"]], s["active"])
                total.add_metric([group, s["server"]], s["total"])
                up.add_metric([group, s["server"]], int(s["up"]))
                h = s.get("health") or {}
                if "last_ok" in h:
                    last.add_metric([group, s["server"]], int(h["last_ok"]))
        yield active
        yield total
        yield up
        yield last


def start_metrics(app: Any, port: int, addr: str = "127.0.0.1",
                  registry: CollectorRegistry = REGISTRY):
    """Serve the metrics of ``app`` on http://addr:port/metrics; returns (server, thread)."""
    registry.register(_Collector(app))
    return start_http_server(port, addr=addr, registry=registry)
