"""Namespace star topologies: structure, hygiene (offloads, IPv6), kernel forwarding, teardown."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p4cs.lab import netns as N
from p4cs.lab.netns import (HostSpec, Topology, TopologyError, cleanup_prefix,
                              content_switch_topology, derive_mac, direct_topology,
                              prefix_namespaces)

REPO = Path(N.__file__).resolve().parents[2]  # the directory holding the p4cs package

# ---- no privileges needed -------------------------------------------------------------------


def test_derived_macs_are_local_unicast_unique_and_deterministic() -> None:
    topo = content_switch_topology("abc", n_clients=2, n_servers=3)
    macs = [h.mac for h in topo.hosts.values()]
    macs += [topo.switch_port_mac(p) for p in topo.switch_ifaces]
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 0x02 and not first & 0x01, mac  # locally administered, unicast
    assert derive_mac("abc", 1, 7) == content_switch_topology("abc").switch_port_mac(7)
    assert derive_mac("abc", 0, 1) != derive_mac("abd", 0, 1)


def test_preset_layout_and_description_is_json() -> None:
    topo = content_switch_topology("lab", n_clients=2, n_servers=3)
    d = json.loads(json.dumps(topo.describe()))
    assert d["vip"] == "10.0.0.100" and d["kind"] == "p4" and d["mode"] == "transparent"
    hosts = {h["name"]: h for h in d["hosts"]}
    assert [h["switch_port"] for h in d["hosts"]] == [1, 2, 3, 4, 5]  # 0: CPU port
    assert hosts["c2"]["ip"] == "10.0.1.2" and hosts["c2"]["gateway"] == "10.0.1.254"
    assert hosts["s3"]["ip"] == "10.0.2.3" and hosts["s3"]["gateway"] == "10.0.2.254"
    assert hosts["s1"]["netns"] == "lab-s1" and d["switch"]["netns"] == "lab-sw"
    ports = {p["port"]: p for p in d["switch"]["ports"]}
    assert ports[3]["ifname"] == "lab-p3" and ports[3]["host"] == "s1"
    # with the P4 switch each port answers ARP for its gateway with its own MAC
    assert ports[3]["gateway_mac"] == ports[3]["mac"] == hosts["s1"]["gateway_mac"]
    gws = {g["ip"]: g for g in d["gateways"]}
    assert gws["10.0.1.254"]["ports"] == [1, 2] and gws["10.0.2.254"]["ports"] == [3, 4, 5]
    assert all(len(n) <= 15 for n in topo.switch_ifaces.values())


def test_p4cs_switch_argv() -> None:
    topo = content_switch_topology("lab", n_servers=2)
    assert topo.p4cs_switch_argv("bmv2", "127.0.0.1:9600", extra=["--no-pipeline"]) == [
        "p4cs", "switch", "--target", "bmv2", "--netns", "lab-sw",
        "--iface", "1=lab-p1", "--iface", "2=lab-p2", "--iface", "3=lab-p3",
        "--grpc-addr", "127.0.0.1:9600", "--no-pipeline"]


def test_modes() -> None:
    snat = content_switch_topology("m", mode="snat")
    assert all(s.gateway is None for s in snat.servers())
    assert all(c.gateway == "10.0.1.254" for c in snat.clients())
    dsr = content_switch_topology("m", mode="dsr")
    assert all(s.loopback_ips == ("10.0.0.100",) for s in dsr.servers())
    with pytest.raises(ValueError):
        content_switch_topology("m", mode="bogus")  # type: ignore[arg-type]


def test_bridge_description_uses_bridge_macs() -> None:
    d = direct_topology("lab").describe()
    gws = {g["ip"]: g for g in d["gateways"]}
    assert gws["10.0.2.254"]["bridge"] == "lab-b1"
    assert gws["10.0.2.254"]["mac"] == derive_mac("lab", 2, 1)
    assert d["vip"] is None


@pytest.mark.parametrize("bad", ["", "A", "1ab", "a-b", "abcdefghijk"])
def test_prefix_validation(bad: str) -> None:
    with pytest.raises(ValueError):
        content_switch_topology(bad)


def test_host_validation() -> None:
    h = HostSpec("c1", "client", "10.0.1.1", 24, 0, gateway="10.0.1.254")
    with pytest.raises(ValueError, match="switch_port"):
        Topology("x", [h, HostSpec("c2", "client", "10.0.1.2", 24, 0)])
    with pytest.raises(ValueError, match="duplicate"):
        Topology("x", [h, HostSpec("c1", "client", "10.0.1.2", 24, 1)])
    with pytest.raises(ValueError, match="gateway"):
        Topology("x", [HostSpec("c1", "client", "10.0.1.1", 24, 0, gateway="10.0.9.1")])
    with pytest.raises(ValueError, match="host name"):
        Topology("x", [HostSpec("sw", "client", "10.0.1.1", 24, 0)])
    with pytest.raises(ValueError, match="switch_port"):
        Topology("x", [HostSpec("c1", "client", "10.0.1.1", 24, 1000)])


# ---- root: real namespaces ------------------------------------------------------------------


def _ip_json(ns: str, *args: str) -> list[dict]:
    out = subprocess.run(["ip", "-n", ns, "-j", *args], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out or "[]")


def _features(topo: Topology, host: str, ifname: str) -> dict[str, str]:
    out = topo.exec(host, ["ethtool", "-k", ifname]).stdout
    feats = {}
    for line in out.splitlines()[1:]:
        if ":" in line and not line.startswith("\t"):
            k, v = line.split(":", 1)
            feats[k.strip()] = v.split()[0] if v.split() else ""
    return feats


def _sysctl(topo: Topology, host: str, key: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    return topo.exec(host, ["cat", path]).stdout.strip()


@pytest.mark.root
def test_content_switch_topology_structure(prefix: str) -> None:
    topo = content_switch_topology(prefix, n_clients=1, n_servers=3, mtu=1400)
    with topo:
        d = topo.describe()
        names = {topo.switch_netns} | {h["netns"] for h in d["hosts"]}
        assert set(prefix_namespaces(prefix)) == names
        # switch side: bare veths, up, no addresses, deterministic MACs, right MTU
        sw_links = {ln["ifname"]: ln for ln in _ip_json(topo.switch_netns, "addr", "show")}
        assert set(sw_links) == {"lo", *topo.switch_ifaces.values()}
        for port, ifname in topo.switch_ifaces.items():
            ln = sw_links[ifname]
            assert ln["address"] == topo.switch_port_mac(port)
            assert ln["mtu"] == 1400 and ln["operstate"] == "UP"
            assert ln.get("addr_info", []) == []
            assert _sysctl(topo, N.SWITCH, f"net.ipv6.conf.{ifname}.disable_ipv6") == "1"
            f = _features(topo, N.SWITCH, ifname)
            for feat in ("rx-checksumming", "tx-checksumming", "tcp-segmentation-offload",
                         "generic-segmentation-offload", "generic-receive-offload"):
                assert f[feat] == "off", (ifname, feat, f[feat])
        # hosts: one eth0 each, address, MAC, default route, the peer is the right switch port
        for h in d["hosts"]:
            links = {ln["ifname"]: ln for ln in _ip_json(h["netns"], "addr", "show")}
            assert set(links) == {"lo", "eth0"}
            eth = links["eth0"]
            assert eth["address"] == h["mac"] and eth["mtu"] == 1400
            v4 = [a for a in eth["addr_info"] if a["family"] == "inet"]
            assert [(a["local"], a["prefixlen"]) for a in v4] == [(h["ip"], 24)]
            assert not [a for a in eth["addr_info"] if a["family"] == "inet6"]
            assert _sysctl(topo, h["name"], "net.ipv6.conf.eth0.disable_ipv6") == "1"
            assert _sysctl(topo, h["name"], "net.ipv6.conf.default.disable_ipv6") == "1"
            assert _features(topo, h["name"], "eth0")["generic-receive-offload"] == "off"
            assert _features(topo, h["name"], "eth0")["tx-checksumming"] == "off"
            routes = _ip_json(h["netns"], "route", "show", "default")
            assert [(r["gateway"], r["dev"]) for r in routes] == [(h["gateway"], "eth0")]
            peer_index = eth["link_index"]
            sw_if = topo.switch_ifaces[h["switch_port"]]
            assert sw_links[sw_if]["ifindex"] == peer_index
        # nothing of ours in the caller's namespace
        root = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        assert f"{prefix}-" not in root
    assert prefix_namespaces(prefix) == []


@pytest.mark.root
def test_static_arp_and_dsr(prefix: str) -> None:
    with content_switch_topology(prefix, n_servers=1, mode="dsr", static_arp=True) as topo:
        s1 = topo.hosts["s1"]
        neigh = _ip_json(topo.netns("s1"), "neigh", "show", "dev", "eth0")
        assert [(n["dst"], n["lladdr"], n["state"]) for n in neigh] == \
            [("10.0.2.254", topo.gateway_mac(s1.switch_port), ["PERMANENT"])]
        lo = _ip_json(topo.netns("s1"), "addr", "show", "dev", "lo")[0]
        assert "10.0.0.100" in [a["local"] for a in lo["addr_info"]]
        assert _sysctl(topo, "s1", "net.ipv4.conf.all.arp_ignore") == "1"


@pytest.mark.root
def test_direct_topology_forwards_http_through_the_kernel(prefix: str, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_text("hello through the kernel router\n")
    log = (tmp_path / "server.log").open("w")
    with direct_topology(prefix, n_clients=1, n_servers=2) as topo:
        assert _sysctl(topo, N.SWITCH, "net.ipv4.ip_forward") == "1"
        topo.exec("c1", ["ping", "-c", "1", "-W", "2", "10.0.1.254"])
        topo.exec("c1", ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.0.2.2"])
        srv = topo.popen("s1", [sys.executable, "-m", "http.server", "8080", "--bind", "10.0.2.1",
                                "--directory", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=log)
        body = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = topo.exec("c1", ["curl", "-sS", "--max-time", "2", "http://10.0.2.1:8080/hello.txt"],
                          check=False)
            if r.returncode == 0:
                body = r.stdout
                break
            time.sleep(0.1)
        assert body == "hello through the kernel router\n"
        assert srv.poll() is None
        ttl_probe = topo.exec("c1", ["ping", "-c", "1", "-W", "2", "10.0.2.1"]).stdout
        assert "ttl=63" in ttl_probe
    assert srv.poll() is not None  # destroy() stopped it
    log.close()
    # routed, not NATed: the server saw the client's own address
    assert "10.0.1.1 - - " in (tmp_path / "server.log").read_text()
    assert prefix_namespaces(prefix) == []


@pytest.mark.root
def test_destroy_after_partial_failure_and_idempotent(prefix: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    topo = content_switch_topology(prefix, n_servers=2)
    calls = []

    def boom(self: Topology, h: HostSpec) -> None:
        calls.append(h.name)
        if len(calls) == 2:
            raise TopologyError("injected failure")

    monkeypatch.setattr(Topology, "_configure_host", boom)
    with pytest.raises(TopologyError, match="injected"):
        topo.create()
    assert prefix_namespaces(prefix) == []
    topo.destroy()
    topo.destroy()


@pytest.mark.root
def test_create_refuses_leftovers_and_leaves_them(prefix: str) -> None:
    subprocess.run(["ip", "netns", "add", f"{prefix}-sw"], check=True)
    topo = content_switch_topology(prefix)
    with pytest.raises(TopologyError, match="already exist"):
        topo.create()
    assert prefix_namespaces(prefix) == [f"{prefix}-sw"]  # not ours to delete


@pytest.mark.root
def test_cleanup_prefix_removes_only_its_prefix(prefix: str) -> None:
    other = prefix + "z"  # shares the leading characters, but is another prefix
    try:
        for ns in (f"{prefix}-sw", f"{prefix}-c1", f"{other}-sw"):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        sleeper = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-c1", "sleep", "60"])
        time.sleep(0.1)
        assert sorted(cleanup_prefix(prefix)) == [f"{prefix}-c1", f"{prefix}-sw"]
        assert sleeper.wait(timeout=5) != 0
        assert prefix_namespaces(other) == [f"{other}-sw"]
    finally:
        cleanup_prefix(other)


@pytest.mark.root
def test_cli_up_show_down(prefix: str) -> None:
    run = [sys.executable, "-m", "p4cs.lab.netns"]
    up = subprocess.run(run + ["up", "--prefix", prefix, "--servers", "2", "--kind", "bridge"],
                        capture_output=True, text=True, check=True, cwd=REPO)
    d = json.loads(up.stdout)
    assert d["kind"] == "bridge" and len(d["hosts"]) == 3
    show = subprocess.run(run + ["show", "--prefix", prefix], capture_output=True, text=True,
                          check=True, cwd=REPO)
    live = json.loads(show.stdout)
    assert set(live) == {f"{prefix}-sw", f"{prefix}-c1", f"{prefix}-s1", f"{prefix}-s2"}
    assert {ln["ifname"] for ln in live[f"{prefix}-sw"]["links"]} >= {f"{prefix}-b0", f"{prefix}-p1"}
    again = subprocess.run(run + ["up", "--prefix", prefix], capture_output=True, text=True,
                           cwd=REPO)
    assert again.returncode == 1 and "already exist" in again.stderr
    down = subprocess.run(run + ["down", "--prefix", prefix], capture_output=True, text=True,
                          check=True, cwd=REPO)
    assert len(json.loads(down.stdout)["deleted"]) == 4
    assert prefix_namespaces(prefix) == []
