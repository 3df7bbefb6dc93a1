"""The controller configuration: valid files load, bad ones fail with file:line and apply nothing."""

from pathlib import Path

import pytest

from p4cs import paths
from p4cs.controller.app import ControllerApp
from p4cs.controller.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "lcs.yaml"

BASE = """\
switch: {address: 127.0.0.1:9559}
ports:
  1: {mac: "02:00:00:00:01:fe", gateway: 10.0.1.254/24}
  2: {mac: "02:00:00:00:02:fe", gateway: 10.0.2.254/24}
hosts:
  - {ip: 10.0.1.1, mac: "02:00:00:00:01:01", port: 1}
  - {ip: 10.0.2.1, mac: "02:00:00:00:02:01", port: 2}
groups:
  g: {servers: [{address: 10.0.2.1, port: 80}]}
services:
  - {vip: 10.0.0.100, port: 80, default_group: g}
"""


def test_example_loads():
    cfg = load_config(EXAMPLE)
    assert [s.name for s in cfg.services] == ["web"]
    assert cfg.groups["all"].scheduler == "wrr"
    assert [s.weight for s in cfg.groups["all"].servers] == [2, 1, 1]
    assert cfg.port_for_ip("10.0.2.3") == 2    # first port whose gateway subnet holds it
    assert cfg.control.metrics_port == 9100


def test_minimal_defaults():
    cfg = parse_config(BASE, "x.yaml")
    svc = cfg.services[0]
    assert (svc.vip, svc.port, svc.mode, svc.default_group) == ("10.0.0.100", 80, "transparent", "g")
    assert svc.protocol == "http"
    assert cfg.limits.max_header_bytes == 16384
    assert cfg.switch.device_id == 1 and cfg.switch.target == "dpdk"
    assert cfg.switch.packet_io == "direct"
    cfg = parse_config(BASE.replace("switch: {address: 127.0.0.1:9559}",
                                    "switch: {address: 127.0.0.1:9559, packet_io: p4runtime}"))
    assert cfg.switch.packet_io == "p4runtime"
    assert cfg.switch.packet_port is None
    cfg = parse_config(BASE.replace("switch: {address: 127.0.0.1:9559}",
                                    "switch: {address: 127.0.0.1:9559, packet_port: p4cs-cpu0}"))
    assert (cfg.switch.packet_io, cfg.switch.packet_port) == ("direct", "p4cs-cpu0")
    assert cfg.switch.writes == "channel"
    cfg = parse_config(BASE.replace("switch: {address: 127.0.0.1:9559}",
                                    "switch: {address: 127.0.0.1:9559, writes: grpc}"))
    assert cfg.switch.writes == "grpc"


@pytest.mark.parametrize("old,new,line,words", [
    ("port: 2}\ngroups", "port: 7}\ngroups", 7, "port 7 is not in 'ports'"),
    ("address: 10.0.2.1, port: 80", "address: 10.0.2.300, port: 80", 9, "not an IPv4 address"),
    ("address: 10.0.2.1, port: 80", "address: 10.0.2.1, port: 70000", 9, "[1, 65535]"),
    ("default_group: g}", "default_group: nope}", 11, "unknown group 'nope'"),
    ("gateway: 10.0.1.254/24", "gateway: banana", 3, "not an IPv4 interface"),
    ("mac: \"02:00:00:00:01:01\"", "mac: \"02:00:00\"", 6, "not a MAC address"),
    ("switch: {address", "switchh: {address", 1, "unknown key 'switchh'"),
    ("port: 80, default_group", "port: 80, protocol: ftp, default_group", 11,
     "protocol must be one of http, tls, smtp, pop3, imap, tcp, udp, got 'ftp'"),
    ("port: 80, default_group", "port: 25, protocol: smtp, routes: [{prefix: /, group: g}], default_group",
     11, "a smtp service decides with 'rules'"),
    # accepted before, but wrong
    ("switch: {address: 127.0.0.1:9559}", "switch: {address: banana}", 1, "is not an address"),
    ("switch: {address: 127.0.0.1:9559}", "switch: {address: 10.0.0.300:1}", 1, "is not an IPv4 address"),
    ("switch: {address: 127.0.0.1:9559}", "switch: {address: 127.0.0.1:9559, device_id: -3}", 1, "device_id"),
    ("switch: {address: 127.0.0.1:9559}", "switch: {address: 127.0.0.1:9559, packet_io: grpc}", 1,
     "switch.packet_io must be direct or p4runtime, got 'grpc'"),
    ("switch: {address: 127.0.0.1:9559}", "switch: {address: 127.0.0.1:9559, writes: socket}", 1,
     "switch.writes must be channel or grpc, got 'socket'"),
    ("switch: {address: 127.0.0.1:9559}",
     "switch: {address: 127.0.0.1:9559, packet_io: p4runtime, packet_port: cpu0}", 1,
     "switch.packet_port needs switch.packet_io: direct"),
    ("switch: {address: 127.0.0.1:9559}", "switch: {address: 127.0.0.1:9559, packet_port: a b}", 1,
     "'a b' is not an interface name"),
    ("2: {mac: \"02:00:00:00:02:fe\"", "2: {mac: \"02:00:00:00:01:FE\"", 4, "MAC address 02:00:00:00:01:fe of port 1"),
    ("{vip: 10.0.0.100,", "{vip: 10.0.2.254,", 11, "is the gateway address of port 2"),
    ("{vip: 10.0.0.100,", "{vip: 10.0.2.1,", 11, "is the address of a server of group g"),
    ("{vip: 10.0.0.100,", "{vip: 10.0.1.1,", 11, "is the address of host 10.0.1.1"),
    ("port: 80}]}", "port: 80, weight: 0}]}", 11, "every server of group g has weight 0"),
    ("default_group: g}", "default_group: g, routes: [{prefix: x, group: g}]}", 11, "must start with '/'"),
])
def test_errors_point_at_the_line(old, new, line, words):
    text = BASE.replace(old, new, 1)
    assert text != BASE
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "cfg.yaml")
    msg = str(ei.value)
    assert msg.startswith(f"cfg.yaml:{line}: "), msg
    assert words in msg


def test_snat_needs_an_address():
    text = BASE.replace("default_group: g}", "default_group: g, mode: snat}")
    with pytest.raises(ConfigError, match="snat_address"):
        parse_config(text, "c.yaml")
    cfg = parse_config(text.replace("mode: snat}", "mode: snat, snat_address: 10.0.2.253}"), "c.yaml")
    assert cfg.services[0].snat_address == "10.0.2.253"


def test_duplicates_and_syntax():
    with pytest.raises(ConfigError, match="defined twice"):
        parse_config(BASE + "  - {vip: 10.0.0.100, port: 80, default_group: g}\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: YAML syntax error"):
        parse_config(BASE + "  - {vip: [\n", "c.yaml")
    with pytest.raises(ConfigError, match="duplicate key 'switch'"):
        parse_config("switch: {}\n" + BASE, "c.yaml")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "none.yaml")


def test_rule_file_must_exist(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(BASE.replace("default_group: g}", "default_group: g, rules: r.conf}"))
    with pytest.raises(ConfigError, match="r.conf does not exist"):
        load_config(p)
    (tmp_path / "r.conf").write_text("")
    assert load_config(p).services[0].rules == tmp_path / "r.conf"


@pytest.mark.parametrize("text,want", [
    ("", "auto"),
    ("limits: {window_scale: auto}\n", "auto"),
    ("limits: {window_scale: 0}\n", 0),
    ("limits: {window_scale: 14}\n", 14),
    ("limits: {window_scale: null}\n", None),
])
def test_window_scale(text, want):
    assert parse_config(BASE + text, "x.yaml").limits.window_scale == want


@pytest.mark.parametrize("bad", ["15", "-1", "true", "seven", "Auto", "[7]"])
def test_window_scale_out_of_range(bad):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + f"limits: {{window_scale: {bad}}}\n", "cfg.yaml")
    assert "window_scale" in str(ei.value) and "[0, 14]" in str(ei.value)


def _mtus(m1, m2):
    return BASE.replace("10.0.1.254/24}", f"10.0.1.254/24, mtu: {m1}}}").replace(
        "10.0.2.254/24}", f"10.0.2.254/24, mtu: {m2}}}")


@pytest.mark.parametrize("text,want", [
    (BASE, 1460),                                       # MTU 1500 on every port
    (_mtus(9000, 9000), 8960),                          # jumbo frames on every port
    (_mtus(9000, 1500), 1460),                          # the smallest port MTU
    (_mtus(9000, 9000) + "limits: {mss: auto}\n", 8960),
    (_mtus(9000, 9000) + "limits: {mss: 1400}\n", 1400),
])
def test_mss_follows_the_port_mtu(text, want):
    cfg = parse_config(text, "x.yaml")
    assert cfg.limits.mss == want
    assert ControllerApp(cfg, paths.p4info("dpdk")).engine.cfg.mss == want


@pytest.mark.parametrize("text,words", [
    (BASE + "limits: {mss: 87}\n", "'mss' must be \"auto\" or an integer in [88, 65495]"),
    (BASE + "limits: {mss: big}\n", "'mss' must be \"auto\" or an integer in [88, 65495]"),
    (_mtus(100, 1500), "'mtu' must be an integer in [576, 65535]"),
])
def test_mss_and_mtu_errors(text, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "cfg.yaml")
    assert words in str(ei.value) and "cfg.yaml:" in str(ei.value)


@pytest.mark.parametrize("section,line,words", [
    ("dataplane:\n  flow_table_size: 4096\n  flow_tabel_size: 1\n", 14, "unknown key 'flow_tabel_size'"),
    ("dataplane:\n  flow_table_size: 0\n", 13, "[1, 4294967295]"),
    ("dataplane:\n  target: bmv2\n", 13, "unknown key 'target'"),
    ("dataplane:\n  flow_timeouts_s: [10, -1]\n", 13, "positive integers"),
    ("dataplane:\n  cpu_port: 20\n", 13, "cpu_port must be below max_ports"),
    ("dataplane: [1]\n", 12, "'dataplane' must be a mapping"),
])
def test_dataplane_errors_point_at_the_line(section, line, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + section, "cfg.yaml")
    msg = str(ei.value)
    assert msg.startswith(f"cfg.yaml:{line}: "), msg
    assert words in msg


def test_dataplane_overrides_the_target_defaults():
    assert parse_config(BASE, "x.yaml").dataplane.flow_table_size == 2 * 1024 * 1024
    cfg = parse_config(BASE + "dataplane: {flow_table_size: 4096, flow_timeouts_s: [5, 60]}\n", "x.yaml")
    assert (cfg.dataplane.flow_table_size, cfg.dataplane.flow_timeouts_s) == (4096, (5, 60))
    bmv2 = parse_config(BASE.replace("{address: 127.0.0.1:9559}", "{address: 127.0.0.1:9559, target: bmv2}")
                        + "dataplane: {max_ports: 64}\n", "x.yaml")
    assert (bmv2.dataplane.target, bmv2.dataplane.cpu_port, bmv2.dataplane.max_ports) == ("bmv2", 255, 64)



@pytest.mark.parametrize("key", ["request_timeout_s", "server_connect_timeout_s", "teardown_delay_s"])
@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf", "-1", "1e9", "true", "[1]"])
def test_every_float_is_finite_and_in_range(key, bad):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + f"limits: {{{key}: {bad}}}\n", "cfg.yaml")
    assert str(ei.value).startswith("cfg.yaml:12: ") and key in str(ei.value)


def test_routes_and_rules_exclude_each_other(tmp_path):
    (tmp_path / "r.rules").write_text("a: routeTo(g);\n")
    p = tmp_path / "c.yaml"
    p.write_text(BASE.replace("default_group: g}",
                              "default_group: g, rules: r.rules, routes: [{prefix: /, group: g}]}"))
    with pytest.raises(ConfigError, match=r"c.yaml:11: a service has either 'routes' or 'rules'"):
        load_config(p)


def test_rules_naming_an_unknown_group(tmp_path):
    (tmp_path / "r.rules").write_text('ok: if (prefix(url, "/a")) { routeTo(g); }\n'
                                      'bad: if (prefix(url, "/b")) {\n  routeTo(nosuch);\n}\n')
    p = tmp_path / "c.yaml"
    p.write_text(BASE.replace("default_group: g}", "default_group: g,\n     rules: r.rules}"))
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == (f"{p}:12: {tmp_path / 'r.rules'}:3: rule bad: routeTo names unknown "
                             "group 'nosuch'")
    (tmp_path / "r.rules").write_text("a: forward(g/10.0.2.1:80);\nb: forward(g);\nc: loadBalance(g, roundRobin);\n")
    assert load_config(p).services[0].rules == tmp_path / "r.rules"
    (tmp_path / "r.rules").write_text("a: forward(g/10.0.2.9:80);\n")
    with pytest.raises(ConfigError, match="r.rules:1: rule a: forward names unknown server or group"):
        load_config(p)


def test_rule_reload_naming_an_unknown_group_keeps_the_rules(tmp_path):
    """The controller's rule store runs the same check on every reload."""
    from p4cs.controller.config import rule_target_errors
    from p4cs.rules.store import RuleStore

    cfg = parse_config(BASE, "c.yaml")
    good, bad = tmp_path / "good.rules", tmp_path / "bad.rules"
    good.write_text("a: routeTo(g);\n")
    bad.write_text("a: routeTo(h);\n")
    store = RuleStore(check=lambda rs: rule_target_errors(rs, cfg.groups))
    assert store.reload(good) == []
    assert store.reload(bad) == [f"{bad}:1: rule a: routeTo names unknown group 'h'"]
    assert store.current.source == str(good)


@pytest.mark.parametrize("text,words", [
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ("a: " + "9" * 5000 + "\n", "unreadable value"),
    ("? [1, 2]\n: x\n", "a key must be a plain value"),
    ("ports: {true: {mac: '02:00:00:00:01:fe', gateway: 10.0.1.254/24}}\n", "port number must be"),
])
def test_hostile_yaml(text, words):
    with pytest.raises(ConfigError, match=words):
        parse_config(text, "c.yaml")


@pytest.mark.parametrize("proto", ["smtp", "pop3", "imap", "http"])
def test_protocol(proto):
    cfg = parse_config(BASE.replace("port: 80,", f"port: 25, protocol: {proto},"), "x.yaml")
    assert cfg.services[0].protocol == proto


def test_hosts_without_mac_and_neighbour_timers():
    text = BASE.replace('{ip: 10.0.2.1, mac: "02:00:00:00:02:01", port: 2}',
                        "{ip: 10.0.2.1, port: 2}")
    cfg = parse_config(text + "neighbours: {refresh_s: 30, probes: 5}\n", "x.yaml")
    assert cfg.hosts[1].mac is None and cfg.hosts[1].port == 2
    nb = cfg.neighbours
    assert (nb.refresh_s, nb.retrans_s, nb.probes, nb.retry_s) == (30.0, 1.0, 5, 10.0)
    assert parse_config(BASE, "x.yaml").neighbours.refresh_s == 60.0


@pytest.mark.parametrize("bad, words", [("{refresh_s: 0}", "'refresh_s' must be a number in \\[1, 86400\\]"),
                                        ("{probes: 0}", "probes"), ("{ttl: 3}", "ttl")])
def test_bad_neighbour_timers(bad, words):
    with pytest.raises(ConfigError, match=words):
        parse_config(BASE + f"neighbours: {bad}\n", "cfg.yaml")
