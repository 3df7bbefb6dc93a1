"""L4 virtual services balanced in the data plane (protocol tcp / udp) through the live
switch: connections spread over nginx servers by the Maglev table, UDP datagrams over UDP
echo servers with the answers coming from the VIP, none of their packets reaches the CS
processor, and a server removed while connections are established: on DPDK (connections
learned in the data plane) none of them breaks; on BMv2 (no learning) only those of the
removed server and about the share of buckets Maglev moves."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from e2e_util import p4cs, wait_for
from l4clients import held_across

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

L4CLIENTS = Path(__file__).resolve().parent / "l4clients.py"
UDP_PORT, SERVER_UDP_PORT = 53, 5353


@pytest.fixture(scope="module")
def lab(make_lab):
    from p4cs.lab.netns import content_switch_topology

    ips = [h.ip for h in content_switch_topology("e2eaddr").servers()]
    groups = {"web4": {"scheduler": "maglev", "servers": [{"address": ip, "port": 80} for ip in ips]},
              "dns4": {"scheduler": "maglev",
                       "servers": [{"address": ip, "port": SERVER_UDP_PORT} for ip in ips]}}
    services = [{"name": "web4", "port": 80, "protocol": "tcp", "default_group": "web4"},
                {"name": "dns4", "port": UDP_PORT, "protocol": "udp", "default_group": "dns4"}]
    lab = make_lab("q", groups=groups, services=services)
    for i, h in enumerate(lab.servers):
        lab._spawn(f"udp-{lab.server_name(i)}",
                   [sys.executable, str(L4CLIENTS), "udpserver", "--bind", h.ip,
                    "--port", str(SERVER_UDP_PORT), "--name", lab.server_name(i)], host=h.name)
    lab.ips = ips
    return lab


def ok(lab, req: dict) -> None:
    resp = lab.control(req)
    assert resp == {"ok": True}, resp


def csproc_packets(lab) -> int:
    return lab.status()["csproc"]["packets"]


def test_tcp_connections_spread_over_servers(lab):
    seen = csproc_packets(lab)      # what reached it before (the lab's start)
    servers = []
    for _ in range(24):
        r = lab.curl("/", args=["-D", "/dev/stderr", "-o", "/dev/null"], timeout=10)
        assert r.returncode == 0, r.stderr
        servers.append(next(ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
                            if ln.lower().startswith("x-server:")))
    assert len(set(servers)) >= 2, servers
    assert csproc_packets(lab) == seen


def test_udp_balanced_and_answered_from_the_vip(lab):
    seen = csproc_packets(lab)
    r = lab.client_exec([sys.executable, str(L4CLIENTS), "udp", "--vip", lab.vip,
                         "--port", str(UDP_PORT), "--n", "30"], timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["answered"] == 60 and not out["foreign"] and out["same"], out
    assert len(out["servers"]) >= 2, out
    assert csproc_packets(lab) == seen


def test_status_shows_the_l4_services_and_the_data_plane_counts(lab, target):
    """After the connections above: each L4 service with its Maglev table's servers, and on
    DPDK what the data plane counted (learned connections, packets both ways)."""
    st = lab.status()
    assert [s["name"] for s in st["l4"]] == ["web4", "dns4"]
    for svc in st["l4"]:
        assert sorted(s["server"].split(":")[0] for s in svc["servers"]) == sorted(lab.ips)
        assert all(s["state"] == "active" and s["buckets"] > 0 for s in svc["servers"]), svc
        assert sum(s["buckets"] for s in svc["servers"]) == svc["maglev_size"]
    r = p4cs(lab, "status")
    assert r.returncode == 0 and "L4 services" in r.stdout, r.stdout + r.stderr
    assert f"UDP  {lab.vip}:{UDP_PORT} maglev udp" in r.stdout, r.stdout
    from p4cs.controller import views
    if target == "bmv2":
        assert views.l4_counter_rows(st) == [] and \
            views.dataplane_unavailable(st) == "not available on this target"
        return

    def counted():      # a sample taken after the traffic of the tests above
        counts = dict(views.l4_counter_rows(lab.status()))
        return counts if int(counts.get("connections learned", 0)) >= 24 else None
    counts = wait_for(counted, timeout=15, interval=0.5)
    assert counts, dict(views.l4_counter_rows(lab.status()))
    for label in ("packets to L4 services", "packets of known connections",
                  "packets from servers (answers)"):
        assert int(counts[label]) > 0, counts
    assert counts["connections not learned (table full)"] == "0", counts


def test_server_removed_under_established_connections(lab, target):
    seen = csproc_packets(lab)

    def remove(before: list[str]) -> str:
        assert len(before) == 45
        on = {name: before.count(name) for name in set(before)}
        gone = max(on, key=on.get)
        ip = lab.ips[[lab.server_name(i) for i in range(len(lab.ips))].index(gone)]
        ok(lab, {"op": "server.del", "group": "web4", "address": f"{ip}:80"})
        return gone

    before, result, gone = held_across(lab, 45, remove)
    if target == "dpdk":
        assert result["broken"] == 0, result
    else:
        kept = [i for i, s in enumerate(before) if s != gone]
        moved = [i for i in kept if result["servers"][i] != before[i]]
        assert len(moved) <= len(kept) // 10 + 1, result
    # new connections avoid the removed server
    for _ in range(12):
        r = lab.curl("/", args=["-D", "/dev/stderr", "-o", "/dev/null"], timeout=10)
        assert r.returncode == 0, r.stderr
        assert f"x-server: {gone}" not in r.stderr.lower()
    assert csproc_packets(lab) == seen, {k: v for k, v in lab.status()["csproc"].items() if v}
