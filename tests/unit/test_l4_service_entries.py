"""L4 virtual services (protocol tcp / udp): configuration and what the controller writes."""

from collections import Counter

import pytest
from finsy import P4Schema

from p4cs import paths
from p4cs.controller import l4
from p4cs.controller.app import ControllerApp
from p4cs.controller.config import ConfigError, parse_config
from p4cs.controller.reconcile import diff_tables
from p4cs.csproc.schedulers.maglev import build_table
from p4cs.csproc.schedulers import Server

P4INFO = paths.p4info("dpdk")

CFG = """\
switch: {target: dpdk}
ports:
  1: {mac: "02:00:00:00:01:fe", gateway: 10.0.1.254/24}
  2: {mac: "02:00:00:00:02:fe", gateway: 10.0.2.254/24}
groups:
  web:
    scheduler: maglev
    servers: [{address: 10.0.2.1, port: 80}, {address: 10.0.2.2, port: 80}, {address: 10.0.2.3, port: 80}]
  dns: {scheduler: maglev, servers: [{address: 10.0.2.1, port: 53}]}
  http: {servers: [{address: 10.0.2.9, port: 80}]}
services:
  - {name: web, vip: 10.0.0.100, port: 80, protocol: tcp, default_group: web}
  - {name: dns, vip: 10.0.0.100, port: 53, protocol: udp, default_group: dns}
  - {name: www, vip: 10.0.0.101, port: 80, default_group: http}
limits: {flow_idle_timeout_s: 300, udp_idle_timeout_s: 30}
"""


@pytest.fixture(scope="module")
def schema():
    return P4Schema(P4INFO)


def _app(text: str = CFG) -> ControllerApp:
    return ControllerApp(parse_config(text, "l4.yaml"), P4INFO)


def test_l4_entries_encode_and_stay_out_of_the_cs_processor(schema):
    app = _app()
    entries = app.base_entries()
    for e in entries:
        e.encode(schema)
    tables = Counter(e.table_id for e in entries)
    size = app.cfg.dataplane.l4_maglev_size
    assert tables["l4_service"] == 2 and tables["l4_maglev"] == 2 * size and tables["l4_reverse"] == 4
    # only the content service is punted, answered with SYN cookies, and known to the engine
    assert tables["vip_table"] == 1 and tables["syn_table"] == 1
    assert [s.name for s in app.engine.services.values()] == ["www"]
    assert set(app.engine.groups) == {"http"}
    backend = {(e.match["server_addr"], e.match["server_port"]) for e in entries
               if e.table_id == "backend_table"}
    assert backend == {("10.0.2.9", 80)}
    svc = {e.match["vip_port"]: e.action for e in entries if e.table_id == "l4_service"}
    timeouts = app.cfg.dataplane.flow_timeouts_s
    assert timeouts[svc[80].args["timeout_profile"]] == 300       # TCP: the flow idle timeout
    assert timeouts[svc[53].args["timeout_profile"]] == 30        # UDP: its own
    picks = Counter((e.match["service_id"], e.action.args["server_addr"]) for e in entries
                    if e.table_id == "l4_maglev")
    assert {n for (sid, _), n in picks.items() if sid == 1} and len(picks) == 4
    assert all(abs(n - size / 3) < size / 30 for (sid, _), n in picks.items() if sid == 1)


def test_removing_a_server_rewrites_only_its_buckets(schema):
    app = _app()
    before = [e.encode(schema).table_entry for e in l4.entries(app.cfg)]
    app = _app(CFG.replace(", {address: 10.0.2.3, port: 80}]", "]"))
    after = [e.encode(schema).table_entry for e in l4.entries(app.cfg)]
    updates = diff_tables(after, before)
    size = app.cfg.dataplane.l4_maglev_size
    # the buckets of 10.0.2.3 (about a third) change owner, and its reverse entry goes
    moved = [u for u in updates if u.type == u.MODIFY]
    assert 0.25 * size < len(moved) < 0.42 * size
    assert sum(u.type == u.DELETE for u in updates) == 1 and not any(u.type == u.INSERT for u in updates)


def test_maglev_table_of_a_power_of_two():
    servers = [Server(f"s{i}", f"10.0.2.{i}", 80) for i in range(1, 8)]
    table = build_table(servers, 1024)
    assert None not in table
    shares = Counter(s.name for s in table)
    assert max(shares.values()) - min(shares.values()) <= 1024 // 50


def test_timeout_profile_nearest():
    assert l4.timeout_profile((3, 10, 30, 60), 25) == 2
    assert l4.timeout_profile((3, 10, 30, 60), 1) == 0
    assert l4.timeout_profile((3, 10, 30, 60), 1e9) == 3


@pytest.mark.parametrize("change, message", [
    ("protocol: tcp, default_group: web}",
     "protocol: tcp, default_group: web, mode: snat, snat_address: 10.0.2.254}"),
    ("dns: {scheduler: maglev,", "dns: {scheduler: rr,"),
    ("protocol: udp, default_group: dns}", "protocol: udp}"),
    ("protocol: udp, default_group: dns}", "protocol: udp, default_group: dns, persistence: {timeout_s: 5}}"),
    ("port: 80, default_group: http}", "port: 80, default_group: web}"),
    ("http: {servers: [{address: 10.0.2.9, port: 80}]}", "http: {servers: [{address: 10.0.2.1, port: 80}]}"),
    ("dns: {scheduler: maglev,", "dns: {health: {type: tcp}, scheduler: maglev,"),
])
def test_l4_config_errors(change, message):
    old, new = change, message
    assert old in CFG
    with pytest.raises(ConfigError) as exc:
        parse_config(CFG.replace(old, new), "l4.yaml")
    text = str(exc.value)
    assert text.startswith("l4.yaml:") and "\n" not in text


def test_l4_config_error_messages():
    with pytest.raises(ConfigError, match=r"l4.yaml:12: a tcp service is balanced in the data plane, "
                                          r"in transparent mode only: SNAT"):
        parse_config(CFG.replace("protocol: tcp, default_group: web}",
                                 "protocol: tcp, default_group: web, mode: snat, snat_address: 10.0.2.254}"),
                     "l4.yaml")
    many = CFG + "dataplane: {l4_services: 1}\n"
    with pytest.raises(ConfigError, match="2 L4 services"):
        parse_config(many, "l4.yaml")


def test_removed_server_keeps_its_reverse_entry_for_the_idle_timeout():
    old = parse_config(CFG, "l4.yaml")
    new = parse_config(CFG.replace(", {address: 10.0.2.3, port: 80}]", "]"), "l4.yaml")
    retired = l4.Retired()
    retired.change(old, new, now=100.0)
    [e] = retired.entries()
    assert (e.match["server_addr"], e.match["server_port"]) == ("10.0.2.3", 80)
    assert e.action.args == {"vip_addr": "10.0.0.100", "vip_port": 80}
    assert not retired.expire(now=399.0) and retired.entries()
    assert retired.expire(now=400.0) and not retired.entries()       # flow_idle_timeout_s: 300
    # back in the service, or taken by a content service's group: not kept
    retired.change(old, new, now=100.0)
    retired.change(new, old, now=101.0)
    assert not retired.entries()
    retired.change(old, new, now=100.0)
    taken = CFG.replace(", {address: 10.0.2.3, port: 80}]", "]").replace(
        "http: {servers: [{address: 10.0.2.9, port: 80}]}",
        "http: {servers: [{address: 10.0.2.9, port: 80}, {address: 10.0.2.3, port: 80}]}")
    retired.change(new, parse_config(taken, "l4.yaml"), now=102.0)
    assert not retired.entries()


def test_set_udp_changes_the_expiry_profile_of_new_udp_flows():
    from p4cs.controller.operator import edit, to_doc, validate

    app = _app()
    cfg = validate(edit(to_doc(app.cfg), {"op": "set", "udp": 10}))
    svc = {e.match["vip_port"]: e.action.args for e in l4.entries(cfg) if e.table_id == "l4_service"}
    timeouts = cfg.dataplane.flow_timeouts_s
    assert timeouts[svc[53]["timeout_profile"]] == 10 and timeouts[svc[80]["timeout_profile"]] == 300


def test_a_rule_naming_an_l4_group_is_refused(tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text('r1: if (match(url, "/x")) { routeTo(web); }\n')
    text = CFG.replace("port: 80, default_group: http}", f"port: 80, default_group: http, rules: {rules}}}")
    with pytest.raises(ValueError, match="unknown group 'web'"):
        _app(text)


def test_status_of_the_l4_services_views_and_metrics():
    from prometheus_client.parser import text_string_to_metric_families

    from metrics_util import scrape
    from p4cs.controller import views

    old = parse_config(CFG, "l4.yaml")
    new = parse_config(CFG.replace("{address: 10.0.2.2, port: 80}",
                                   "{address: 10.0.2.2, port: 80, weight: 0}")
                       .replace(", {address: 10.0.2.3, port: 80}]", "]")
                       .replace("10.0.2.1, port: 53}", "10.0.2.4, port: 53}"),
                       "l4.yaml")
    retired = l4.Retired()
    retired.change(old, new, now=100.0)
    web, dns = l4.status(new, retired, now=160.0)
    assert (web["name"], web["service_id"], web["group"], web["protocol"]) == \
        ("web", 1, "web", "tcp")
    assert web["maglev_size"] == 1024 and web["idle_timeout_s"] == 300
    assert web["servers"] == [
        {"server": "10.0.2.1:80", "weight": 1, "buckets": 1024, "state": "active"},
        {"server": "10.0.2.2:80", "weight": 0, "buckets": 0, "state": "drained"}]
    assert web["retired"] == [{"server": "10.0.2.3:80", "left_s": 240.0}]
    assert (dns["servers"], dns["retired"], dns["idle_timeout_s"]) == \
        ([{"server": "10.0.2.4:53", "weight": 1, "buckets": 1024, "state": "active"}],
         [], 30)        # 10.0.2.1:53 left at 100 s: its 30 s (udp_idle_timeout_s) are over
    app = _app()
    st = app.status()
    assert [s["name"] for s in st["l4"]] == ["web", "dns"]
    shares = {s["server"]: s["buckets"] for s in st["l4"][0]["servers"]}
    assert sum(shares.values()) == 1024 and all(300 < n < 380 for n in shares.values()), shares

    listing = views.ipvs_listing(st).splitlines()
    i = listing.index(next(line for line in listing if line.startswith("UDP")))
    assert listing[i].split() == ["UDP", "10.0.0.100:53", "maglev", "udp"]
    assert listing[i + 1].split() == ["->", "10.0.2.1:53", "Trans", "1", "-", "-", "active"]
    assert listing[1 + listing.index("TCP  10.0.0.100:80 maglev tcp")].split() == \
        ["->", "10.0.2.1:80", "Trans", "1", "-", "-", "active"]
    stats = views.ipvs_listing(st, "stats").splitlines()
    assert next(line for line in stats if line.startswith("UDP")).split() == \
        ["UDP", "10.0.0.100:53", "-", "-", "-", "-", "-"]
    rows = views.l4_rows({"l4": [web, dns]})
    assert rows[:3] == [
        ("web", "10.0.0.100:80/tcp", "web", "10.0.2.1:80", "1", "1024/1024", "active"),
        ("web", "10.0.0.100:80/tcp", "web", "10.0.2.2:80", "0", "0/1024", "drained"),
        ("web", "10.0.0.100:80/tcp", "web", "10.0.2.3:80", "-", "0/1024",
         "retired (240 s left)")]
    assert rows[3:] == [
        ("dns", "10.0.0.100:53/udp", "dns", "10.0.2.4:53", "1", "1024/1024", "active")]

    assert views.l4_counter_rows(st) == []          # no switch: its counters are not read
    st["dataplane"] = {"available": True, "reason": None, "ports": [], "drop_pkts": 4,
                       "learners": [{"name": "l4_flows", "hit": 90, "miss": 12, "learn": 10,
                                     "learn_err": 2}],
                       "tables": [{"name": "l4_service", "hit": 102, "miss": 7},
                                  {"name": "l4_maglev", "hit": 100, "miss": 2},
                                  {"name": "l4_reverse", "hit": 95, "miss": 109}]}
    assert views.l4_counter_rows(st) == [
        ("packets to L4 services", "102"), ("packets of known connections", "90"),
        ("connections learned", "10"), ("connections not learned (table full)", "2"),
        ("packets whose bucket has no server", "2"), ("packets from servers (answers)", "95")]

    app.switch_stats.latest = st["dataplane"]
    fams = {f.name: f for f in text_string_to_metric_families(scrape(app))}
    samples = {(s.name, tuple(sorted(s.labels.values()))): s.value
               for f in fams.values() for s in f.samples}
    assert samples[("p4cs_l4_server_buckets", ("10.0.2.1:80", "web"))] == shares["10.0.2.1:80"]
    assert samples[("p4cs_l4_server_weight", ("10.0.2.1:53", "dns"))] == 1
    assert samples[("p4cs_learner_learned_total", ("l4_flows",))] == 10
    assert samples[("p4cs_learner_learn_errors_total", ("l4_flows",))] == 2
    assert samples[("p4cs_table_misses_total", ("l4_maglev",))] == 2
    assert samples[("p4cs_dataplane_dropped_packets_total", ())] == 4
    for name in ("p4cs_table_hits", "p4cs_learner_hits", "p4cs_learner_misses"):
        assert fams[name].type == "counter"
    assert fams["p4cs_l4_server_buckets"].type == "gauge"
    from rich.console import Console

    from p4cs.controller.top import render
    console = Console(record=True, width=200)
    console.print(render(st))
    text = console.export_text()
    assert "L4 services" in text and "connections learned" in text and "1024/1024" in text
