"""Neighbour resolution on the live switch: the controller's configuration gives no server
MACs, the controller finds them with ARP through the data plane; a server whose MAC changes
keeps serving once the refresh has found the new one."""

from __future__ import annotations

import pytest

from e2e_util import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

REFRESH_S = 2


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("n", n_servers=2, static_server_macs=False,
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


def test_moved_mac_is_followed(lab):
    srv = lab.servers[0]
    new_mac = "02:00:00:00:7e:01"
    lab.topo.exec(srv.name, ["ip", "link", "set", "dev", "eth0", "address", new_mac])
    assert wait_for(lambda: neighbour(lab, srv.ip)["mac"] == new_mac, timeout=5 * REFRESH_S), \
        lab.status()["neighbours"]
    assert lab.status()["counters"]["neighbour_changes"] >= 3
    assert serves(lab, 4) == {lab.server_name(0), lab.server_name(1)}
