"""Neighbour resolution on the live switch: the controller's configuration gives no server
MACs, the controller finds them with ARP through the data plane; a server whose MAC changes
keeps serving once the refresh has found the new one."""

from __future__ import annotations

import subprocess

import pytest

from e2e_util import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

REFRESH_S = 2
BIG = 20 * 2**20


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("n", n_servers=2, static_server_macs=False, big_files={"20M": BIG},
                    neighbours={"refresh_s": REFRESH_S, "retrans_s": 0.5, "probes": 2})


def neighbour(lab, ip: str) -> dict:
    return next(n for n in lab.status()["neighbours"] if n["ip"] == ip)


def mac_of(lab, host: str) -> str:
    return lab.topo.exec(host, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()


def serves(lab, n: int) -> set[str]:
    seen = set()
    for _ in range(n):
        r = lab.curl("/", args=["-D", "/dev/stderr", "-o", "/dev/null"], timeout=10)
        assert r.returncode == 0, r.stderr
        seen |= {ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
                 if ln.lower().startswith("x-server:")}
    return seen


def test_servers_resolved_with_arp(lab):
    for srv in lab.servers:
        assert srv.ip not in {h["ip"] for h in lab.config()["hosts"]}
        assert wait_for(lambda: neighbour(lab, srv.ip)["state"] == "reachable", timeout=10), \
            neighbour(lab, srv.ip)
        assert neighbour(lab, srv.ip)["mac"] == mac_of(lab, srv.name)
    assert serves(lab, 4) == {lab.server_name(0), lab.server_name(1)}


def spliced_server(lab) -> str | None:
    cs = [c for c in lab.control({"op": "connections"})["connections"]
          if c["service"] == "web" and c["state"] == "spliced"]
    return cs[0]["server"].split(":")[0] if len(cs) == 1 else None


def test_moved_mac_is_followed_by_routes_and_live_flows(lab):
    """The server of a running download changes its MAC: the refresh finds the new one, the
    spliced flows are rewritten and the download ends; new connections reach it too."""
    p = lab.topo.popen(lab.clients[0].name,
                       ["curl", "-sS", "--limit-rate", "3M", "-o", "/dev/null",
                        "-w", "%{http_code}", f"http://{lab.vip}/big/20M"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ip = wait_for(lambda: spliced_server(lab), timeout=10)
    assert ip, lab.control({"op": "connections"})
    srv = next(h for h in lab.servers if h.ip == ip)
    new_mac = "02:00:00:00:7e:01"
    lab.topo.exec(srv.name, ["ip", "link", "set", "dev", "eth0", "address", new_mac])
    assert wait_for(lambda: neighbour(lab, ip)["mac"] == new_mac, timeout=5 * REFRESH_S), \
        lab.status()["neighbours"]
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out == "200", err
    counters = lab.status()["counters"]
    assert counters["flows_moved"] >= 1, counters
    assert serves(lab, 4) == {lab.server_name(0), lab.server_name(1)}
