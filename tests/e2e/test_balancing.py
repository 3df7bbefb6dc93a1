"""Balancing policy on the live switch: a server drained with weight 0 keeps its download
and gets no new connections; a server whose host dies is taken down by the HTTP health
check, the clients of its spliced connections are reset within a second, and new
connections go to the other servers."""

from __future__ import annotations

import subprocess
import time

import pytest

from e2e_util import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

BIG = 50 * 2**20
HEALTH = {"type": "http", "path": "/", "interval_s": 0.5, "timeout_s": 0.4, "rise": 2, "fall": 2}


@pytest.fixture(scope="module")
def lab(make_lab):
    from p4cs.lab.netns import content_switch_topology

    ips = [h.ip for h in content_switch_topology("e2eaddr").servers()]
    groups = {"all": {"scheduler": "rr", "health": HEALTH,
                      "servers": [{"address": ip, "port": 80} for ip in ips]}}
    services = [{"name": "web", "port": 80, "default_group": "all"}]
    return make_lab("b", big_files={"50M": BIG}, groups=groups, services=services)


def servers_of(lab) -> dict[str, dict]:
    return {s["server"]: s for s in lab.status()["groups"]["all"]}


def served_by(lab, n: int) -> list[str]:
    out = []
    for _ in range(n):
        r = lab.curl("/", args=["-D", "/dev/stderr", "-o", "/dev/null"], timeout=30)
        assert r.returncode == 0, r.stderr
        out.append(next(ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
                        if ln.lower().startswith("x-server:")))
    return out


def download(lab, rate: str = "8M") -> subprocess.Popen:
    return lab.topo.popen(lab.clients[0].name,
                          ["curl", "-sS", "--limit-rate", rate, "-o", "/dev/null",
                           "-w", "%{http_code}", f"http://{lab.vip}/big/50M"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def spliced_server(lab) -> str:
    """The server address of the one spliced connection of service web."""
    def one():
        cs = [c for c in lab.control({"op": "connections"})["connections"]
              if c["service"] == "web" and c["state"] == "spliced"]
        return cs[0]["server"] if len(cs) == 1 else None
    srv = wait_for(one, timeout=10)
    assert srv, lab.control({"op": "connections"})
    return srv


def test_health_checks_see_every_server_up(lab):
    assert wait_for(lambda: all(s["health"] and s["health"].get("last_ok")
                                for s in servers_of(lab).values()), timeout=10), servers_of(lab)
    assert len(set(served_by(lab, 6))) == 3


def test_weight_zero_drains(lab):
    p = download(lab)
    addr = spliced_server(lab)
    name = next(n for n in servers_of(lab) if n.endswith(addr))
    try:
        r = lab.control({"op": "server.weight", "group": "all", "server": name, "weight": 0})
        assert r["ok"], r
        host = addr.split(":")[0]
        names = {h.ip: lab.server_name(i) for i, h in enumerate(lab.servers)}
        assert names[host] not in served_by(lab, 6)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0 and out == "200", err      # the drained download finished
    finally:
        if p.poll() is None:
            p.kill()
        lab.control({"op": "server.weight", "group": "all", "server": name, "weight": 1})


def test_dead_server_taken_down_and_its_clients_reset(lab):
    p = download(lab, "2M")     # 25 s: still running however slowly the steps below go
    addr = spliced_server(lab)
    host = addr.split(":")[0]
    idx = next(i for i, h in enumerate(lab.servers) if h.ip == host)
    name = next(n for n in servers_of(lab) if n.endswith(addr))
    try:
        # the server's host dies: its link goes down, nothing answers any more
        lab.topo.exec(lab.servers[idx].name, ["ip", "link", "set", "dev", "eth0", "down"])
        assert wait_for(lambda: not servers_of(lab)[name]["up"], timeout=10), servers_of(lab)
        t_down = time.monotonic()
        # The client's socket, not curl's exit: with --limit-rate curl sleeps between reads
        # and may notice the reset only at its next one (curl's exit came 1.37 and 1.82 s
        # after the server went down in two loaded suite runs, under 1 s alone).
        def reset():
            ss = lab.topo.exec(lab.clients[0].name, ["ss", "-Htn", "state", "established",
                                                     "dst", f"{lab.vip}:80"])
            return not ss.stdout.strip()
        assert wait_for(reset, timeout=5, interval=0.02), "the client's connection was not reset"
        dt = time.monotonic() - t_down
        p.wait(timeout=10)
        assert p.returncode != 0, "the download of the dead server's client was not reset"
        assert "reset" in p.stderr.read().lower()
        assert dt < 1.0, f"client reset {dt:.2f} s after the server went down"
        assert servers_of(lab)[name]["health"]["last_ok"] is False
        assert lab.server_name(idx) not in served_by(lab, 6)
        assert not [c for c in lab.control({"op": "connections"})["connections"]
                    if c["server"] == addr and c["state"] == "spliced"]
    finally:
        if p.poll() is None:
            p.kill()
        lab.topo.exec(lab.servers[idx].name, ["ip", "link", "set", "dev", "eth0", "up"],
                      check=False)
