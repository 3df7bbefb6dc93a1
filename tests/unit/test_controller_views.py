"""Operator views of a controller: ipvsadm-style listings from a status dict, traffic totals
and rates from flow counters, and the types of the metrics that export them."""

import asyncio
import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from p4cs.controller import views
from p4cs.controller.app import ControllerApp
from p4cs.controller.config import load_config
from p4cs.controller.switchstats import SwitchStats
from p4cs.controller.traffic import RATES, TOTALS, FlowBook, FlowMeta, Rates

from metrics_util import scrape

REPO = Path(__file__).resolve().parents[2]
P4INFO = REPO / "p4src" / "build" / "dpdk" / "p4cs.p4info.txtpb"
EXAMPLE = REPO / "examples" / "lcs.yaml"


def totals(conns=0, ip=0, op=0, ib=0, ob=0):
    return dict(zip(TOTALS, (conns, ip, op, ib, ob)))


def status():
    srv = {"server": "web/10.0.1.1:8080", "address": "10.0.1.1:8080", "scheduler": "wrr",
           "active": 3, "inactive": 1, "total": 9, "up": True, "weight": 2, "overloaded": False}
    down = dict(srv, server="web/10.0.1.2:8080", address="10.0.1.2:8080", up=False, active=0,
                inactive=0, weight=1)
    t = {**totals(9, 120, 340, 9_000, 250_000_000), "cps": 1.5, "in_pps": 10.0, "out_pps": 20.0,
         "in_bps": 800.0, "out_bps": 123_456.0}
    return {"switch": "127.0.0.1:9559", "state": "primary", "state_for_s": 12.0, "primary": True,
            "flows": 6, "adopted_flows": 0,
            "services": [{"name": "www", "vip": "10.0.0.100", "port": 80, "mode": "snat",
                          "protocol": "http", "rules": None, "groups": ["web"]}],
            "groups": {"web": [srv, down]},
            "counters": {"packet_in": 50, "packet_out": 40, "fastpath_packets": 7,
                         "fastpath_bytes": 700},
            "rules": [{"service": "www", "rule": None, "hits": 2, "last_hit_ago_s": 3.0},
                      {"service": "www", "rule": "api", "hits": 5, "last_hit_ago_s": 0.25}],
            "traffic": {"servers": {"web/10.0.1.1:8080": t}, "services": {"www": t},
                        "fastpath": {"packets": 460, "bytes": 250_009_000}}}


def test_listing_has_ipvsadm_columns():
    lines = views.ipvs_listing(status()).splitlines()
    assert lines[0] == "Prot LocalAddress:Port Scheduler Flags"
    assert lines[1].split() == ["->", "RemoteAddress:Port", "Forward", "Weight", "ActiveConn",
                                "InActConn", "State"]
    assert lines[2].split() == ["TCP", "10.0.0.100:80", "wrr"]
    assert lines[3].split() == ["->", "10.0.1.1:8080", "SNAT", "2", "3", "1", "up"]
    assert lines[4].split() == ["->", "10.0.1.2:8080", "SNAT", "1", "0", "0", "down"]


def test_stats_and_rate_listings():
    lines = views.ipvs_listing(status(), "stats").splitlines()
    assert lines[0].split() == ["Prot", "LocalAddress:Port", "Conns", "InPkts", "OutPkts",
                                "InBytes", "OutBytes"]
    assert lines[2].split() == ["TCP", "10.0.0.100:80", "9", "120", "340", "9000", "250M"]
    assert lines[3].split() == ["->", "10.0.1.1:8080", "9", "120", "340", "9000", "250M"]
    assert lines[4].split() == ["->", "10.0.1.2:8080", "0", "0", "0", "0", "0"]
    lines = views.ipvs_listing(status(), "rate").splitlines()
    assert lines[0].split()[2:] == ["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]
    assert lines[2].split()[2:] == ["2", "10", "20", "800", "123K"]


def test_top_rows():
    st = status()
    assert views.server_rows(st)[1][3] == "down"
    assert views.server_rows(st)[0] == ("www", "web", "10.0.1.1:8080", "up", "2", "3", "1",
                                        "2", "800", "123K")
    assert views.rule_rows(st) == [("www", "(no rule)", "2", "3.0 s ago"),
                                   ("www", "api", "5", "0.2 s ago")]
    assert dict(views.path_rows(st))["fast path packets"] == "460"
    assert dict(views.path_rows(st))["slow path packets in"] == "50"


def test_flow_book_totals_ended_and_live_flows():
    book = FlowBook()
    book.add(1, FlowMeta("www", "web/a", "c2s", "1.1.1.1:5", 7))
    book.add(2, FlowMeta("www", "web/a", "s2c", "1.1.1.1:5", 7))
    book.add(3, FlowMeta("www", "web/b", "c2s", "1.1.1.1:6", 8))
    book.done(1, 10, 1000)
    t = book.totals({2: (20, 30_000), 3: (1, 60)})
    assert t["servers"]["web/a"] == totals(1, 10, 20, 1000, 30_000)
    assert t["servers"]["web/b"] == totals(1, 1, 0, 60, 0)
    assert t["services"]["www"] == totals(2, 11, 20, 1060, 30_000)
    assert [fid for fid, _ in book.flows_of("1.1.1.1:5")] == [2]
    assert [fid for fid, _ in book.flows_of("1.1.1.1:6")] == [3]
    book.done(9, 5, 5)              # a flow of a previous controller: no meta, no totals
    assert book.totals({})["servers"]["web/a"] == totals(1, 10, 0, 1000, 0)


def test_rates_between_successive_samples():
    r = Rates()
    first = r.update({"servers": {"a": totals(1, 10, 10, 100, 1000)}}, 100.0)
    assert all(first["servers"]["a"][k] == 0.0 for k in RATES)
    second = r.update({"servers": {"a": totals(5, 30, 50, 300, 5000)}}, 102.0)["servers"]["a"]
    assert {k: second[k] for k in RATES} == {"cps": 2.0, "in_pps": 10.0, "out_pps": 20.0,
                                             "in_bps": 100.0, "out_bps": 2000.0}
    assert second["conns"] == 5


def test_status_json_is_stable():
    """What `p4cs status --json` prints: every key of the listing, JSON-serialisable."""
    app = ControllerApp(load_config(EXAMPLE), P4INFO)
    st = json.loads(json.dumps(app.status()))
    for key in ("switch", "state", "services", "groups", "flows", "counters", "csproc", "rules",
                "traffic", "dataplane"):
        assert key in st, key
    for s in st["services"]:
        assert set(s) >= {"name", "vip", "port", "mode", "groups"}
    for servers in st["groups"].values():
        for s in servers:
            assert set(s) >= {"server", "address", "scheduler", "weight", "active", "inactive",
                              "total", "up", "pooled"}
    views.ipvs_listing(st)


def test_new_metrics_types():
    app = ControllerApp(load_config(EXAMPLE), P4INFO)
    app.engine.rule_hits.hit("web", "api", 0.0)
    app.engine.rule_hits.hit("web", None, 0.0)
    server = next(iter(app.engine.groups.values())).servers[0]
    app.book.add(1, FlowMeta("web", server.name, "c2s", "1.1.1.1:5", 1))
    app.traffic = app.rates.update(app.book.totals({1: (3, 300)}), 1.0)
    app.traffic["fastpath"] = {"packets": 3, "bytes": 300}
    app.switch_stats.latest = with_ports({})["dataplane"]
    text = scrape(app)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    types = {n: f.type for n, f in fams.items()}
    assert types["p4cs_rule_hits"] == "counter"
    assert types["p4cs_rule_last_hit_age_seconds"] == "gauge"
    assert {s.labels["rule"] for s in fams["p4cs_rule_hits"].samples} == {"api", ""}
    for label in ("server", "service"):
        for suffix in ("connections", "in_packets", "out_packets", "in_bytes", "out_bytes"):
            assert types[f"p4cs_{label}_traffic_{suffix}"] == "counter", (label, suffix)
        for suffix in ("connections_per_second", "in_packets_per_second",
                       "out_packets_per_second", "in_bytes_per_second", "out_bytes_per_second"):
            assert types[f"p4cs_{label}_{suffix}"] == "gauge", (label, suffix)
    for name in ("p4cs_server_inactive_connections", "p4cs_server_weight"):
        assert types[name] == "gauge", name
    for name in ("p4cs_fastpath_packets", "p4cs_fastpath_bytes"):
        assert types[name] == "counter", name
    sample = next(s for s in fams["p4cs_server_traffic_in_bytes"].samples
                  if s.name.endswith("_total"))
    assert sample.labels == {"server": server.name} and sample.value == 300
    names = {s.name for f in fams.values() for s in f.samples}
    dashboard = json.loads((REPO / "docs" / "grafana-p4cs.json").read_text())
    used = {m for p in dashboard["panels"] for t in p["targets"]
            for m in re.findall(r"p4cs_[a-z_]+", t["expr"])}
    assert used and used <= names, used - names


def test_top_renders_a_status_and_fails_in_one_line_without_a_controller(tmp_path, capsys):
    from rich.console import Console

    from p4cs.cli import main
    from p4cs.controller.top import render
    console = Console(record=True, width=160)
    console.print(render(status()))
    text = console.export_text()
    for word in ("services", "servers", "rules", "fast path packets", "10.0.1.2:8080", "down",
                 "api", "123K"):
        assert word in text, word
    for args in (["top"], ["status", "--json"], ["status", "--flow", "1.2.3.4:5"]):
        with pytest.raises(SystemExit) as exit_:
            main([*args, "--socket", str(tmp_path / "none.sock")])
        err = capsys.readouterr().err
        assert exit_.value.code == 1, (args, err)
        assert f"p4cs {args[0]}: error: cannot reach the controller" in err and \
            err.count("\n") == 1, (args, err)


def test_sample_age():
    r = Rates()
    assert r.age(5.0) == float("inf")
    r.update({"servers": {}}, 5.0)
    assert r.age(6.5) == 1.5


PORTS = [{"port": 1, "type": "afpacket", "name": "sw-c1", "rx_pkts": 120, "rx_bytes": 9_000,
          "tx_pkts": 340, "tx_bytes": 250_000_000, "rx_drops": 0, "rx_errors": 0,
          "tx_drops": 2},
         {"port": 3, "type": "cpu", "name": "cpu", "rx_pkts": 5, "rx_bytes": 300, "tx_pkts": 7,
          "tx_bytes": 700, "rx_drops": 0, "rx_errors": 0, "tx_drops": 0}]


def with_ports(st: dict) -> dict:
    return {**st, "dataplane": {"available": True, "reason": None, "ports": PORTS,
                                "drop_pkts": 3, "learners": [], "tables": []}}


def test_port_rows_or_why_there_are_none():
    st = with_ports(status())
    assert views.dataplane_unavailable(st) is None
    assert views.port_rows(st) == [
        ("1", "afpacket", "sw-c1", "120", "9000", "340", "250M", "0", "0", "2"),
        ("3", "cpu", "cpu", "5", "300", "7", "700", "0", "0", "0")]
    lines = views.ports_listing(st).splitlines()
    assert lines[0].split() == ["Port", "Type", "Name", "RxPkts", "RxBytes", "TxPkts", "TxBytes",
                                "RxDrop", "RxErr", "TxDrop"]
    assert lines[1].split() == ["1", "afpacket", "sw-c1", "120", "9000", "340", "250M", "0",
                                "0", "2"]
    bmv2 = ControllerApp(load_config(EXAMPLE), P4INFO)
    bmv2.switch_stats = SwitchStats("bmv2")
    asyncio.run(bmv2.switch_stats.sample(None))
    st = bmv2.status()
    assert views.dataplane_unavailable(st) == "not available on this target"
    assert views.port_rows(st) == []
    assert views.ports_listing(st) == "Ports: not available on this target"
    assert views.dataplane_unavailable(status()) == "not reported by this controller"
    dpdk = SwitchStats("dpdk")
    assert asyncio.run(dpdk.sample(None)) == {"available": False,
                                              "reason": "no session with the switch"}
    from rich.console import Console

    from p4cs.controller.top import render
    console = Console(record=True, width=200)
    console.print(render(st))
    assert "ports: not available on this target" in console.export_text()


def test_port_metrics():
    app = ControllerApp(load_config(EXAMPLE), P4INFO)
    fams = {f.name: f for f in text_string_to_metric_families(scrape(app))}
    assert not any(n.startswith("p4cs_port_") for n in fams)     # none read: none exported
    app.switch_stats.latest = with_ports({})["dataplane"]
    fams = {f.name: f for f in text_string_to_metric_families(scrape(app))}
    for name in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_drops", "rx_errors",
                 "tx_drops"):
        assert fams[f"p4cs_port_{name}"].type == "counter", name
    tx = {s.labels["port"]: (s.labels, s.value) for s in fams["p4cs_port_tx_bytes"].samples
          if s.name.endswith("_total")}
    assert tx["1"] == ({"port": "1", "type": "afpacket", "name": "sw-c1"}, 250_000_000)
    assert tx["3"][1] == 700
