"""The controller with two CS-processor workers (``p4cs controller --workers 2``): many
concurrent fetches through a transparent and a SNAT service, both workers take connections,
and a worker killed by its PID mid-run is started again while the fetches go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_util import CLIENTS, hold_for_reuse, reuse_report, run_client, wait_for

HOST = Path(__file__).resolve().parents[2] / "host"

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]
#: also run with the controller's packet I/O on the P4Runtime stream (conftest.py)
P4RUNTIME_PACKET_IO = True

N = 300


RULES_ALL = 'R1: if (prefix(url, "/")) { routeTo(echo); }\n'
RULES_ACE = 'R2: if (prefix(url, "/")) { routeTo(echo_ace); }\n'
SERVERS = ("10.0.2.1", "10.0.2.2", "10.0.2.3")      # the lab's servers


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    (d / "all.rules").write_text(RULES_ALL)
    (d / "ace.rules").write_text(RULES_ACE)
    groups = {"echo": {"scheduler": "rr",
                       "servers": [{"address": ip, "port": 8080} for ip in SERVERS]},
              "echo_ace": {"scheduler": "rr", "servers": [{"address": SERVERS[0], "port": 8080}]}}
    # the servers route through the switch (transparent lab): the SNAT address is reached
    services = [
        {"name": "echo", "port": 8080, "default_group": "echo"},
        {"name": "echo-snat", "port": 8081, "default_group": "echo", "mode": "snat"},
        # SNAT: all of a batch's connections to one server, from ports the client used a
        # moment before (in transparent mode the server may still hold them in TIME_WAIT)
        {"name": "echo-rules", "port": 8082, "rules": str(d / "all.rules"),
         "default_group": "echo", "mode": "snat"},
    ]
    lab = make_lab("w", workers=2, groups=groups, services=services)
    lab.rules_dir = d
    return lab


def workers(lab) -> list[dict]:
    return lab.status()["workers"]


def concurrent(lab, port: int, n: int = N) -> subprocess.Popen:
    return lab.topo.popen(
        lab.clients[0].name, [sys.executable, str(CLIENTS), "concurrent", "--vip", lab.vip,
                              "--port", str(port), "--n", str(n), "--timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def report(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def test_two_workers_share_connections(lab):
    """Concurrent fetches on both services: every answer right, both workers bind
    connections, nothing left half-bound, no install error."""
    ws = workers(lab)
    assert [w["worker"] for w in ws] == [0, 1] and all(w["pid"] for w in ws), ws
    procs = [concurrent(lab, 8080), concurrent(lab, 8081)]
    for p in procs:
        out = report(p)
        assert out["n_bad"] == 0 and out["ok"] == N, out["bad"]
    st = wait_for(lambda: (s := lab.status())["csproc"]["half_bound"] == 0 and s, 30) \
        or lab.status()
    assert st["csproc"]["half_bound"] == 0, st["csproc"]
    assert st["csproc"]["spliced"] >= 2 * N
    assert st["counters"]["install_errors"] == 0
    per = {w["worker"]: w["accepted"] for w in st["workers"]}
    assert min(per.values()) > 0, per       # the spread reaches both
    assert sum(per.values()) == st["csproc"]["accepted"]
    channel = st["workers"][1]["channel"]
    # the DPDK target's direct packet channel spreads the punts over the workers' own pairs;
    # BMv2's packet port and the P4Runtime stream take one channel, the controller relays
    assert channel == ("own" if lab.target == "dpdk" and st["packet_io"] == "direct"
                       else "relayed"), st["workers"]
    if channel == "own":
        # the data plane spread the punts and the FIN/RST copies: the controller handed the
        # worker none of them, and the connections ended at their copies, not when their
        # entries expired
        assert st["counters"]["worker_frames_relayed"] == 0, st["counters"]
        assert st["csproc"]["teardowns"] >= 2 * N and st["csproc"]["flows_expired"] == 0, \
            st["csproc"]
    # the connections of both services, over both workers, in the per-server counts
    assert sum(s["total"] for s in st["groups"]["echo"]) >= 2 * N
    conns = lab.control({"op": "connections"})["connections"]
    assert all("worker" in c for c in conns)
    r = subprocess.run([sys.executable, "-m", "p4cs.cli", "status", "--socket",
                        lab.control_socket], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(HOST)})
    assert r.returncode == 0 and "workers 0: pid" in r.stdout, r.stdout + r.stderr


def test_rules_reload_reaches_every_worker(lab):
    """A rule file loaded at run time decides in both workers: every connection of many
    concurrent fetches goes to the server the new rule names, and the rule hits of both
    workers add up in the status."""
    out = run_client(lab, "concurrent", "--port", "8082", "--n", str(N), "--timeout", "120",
                     timeout=240)
    assert out["n_bad"] == 0 and len(out["servers"]) == 3, out
    resp = lab.control({"op": "rules.load", "path": str(lab.rules_dir / "ace.rules")})
    assert resp["ok"], resp
    out = run_client(lab, "concurrent", "--port", "8082", "--n", str(N), "--timeout", "120",
                     timeout=240)
    assert out["n_bad"] == 0 and out["ok"] == N and len(out["servers"]) == 1, out
    st = lab.status()
    hits = {r["rule"]: r["hits"] for r in st["rules"] if r["service"] == "echo-rules"}
    assert hits.get("R1", 0) >= N and hits.get("R2", 0) >= N, hits
    per = {w["worker"]: w["accepted"] for w in st["workers"]}
    assert min(per.values()) > 0, per


def test_killed_worker_restarts(lab):
    """A worker killed by its PID while fetches run: it is started again (new PID, one
    restart), the fetches that were not on it finish, later fetches all succeed, and no
    connection stays half-bound."""
    pid = workers(lab)[1]["pid"]
    procs = [concurrent(lab, 8080), concurrent(lab, 8081)]
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    for p in procs:
        out = report(p)
        # The killed worker's connections may fail; the others are served.
        assert out["ok"] >= N // 4, out
    ws = wait_for(lambda: (w := workers(lab))[1]["pid"] not in (None, pid) and w, 15)
    assert ws and ws[1]["restarts"] == 1, ws
    assert lab.status()["counters"]["worker_restarts"] == 1
    for port in (8080, 8081):
        out = run_client(lab, "concurrent", "--port", str(port), "--n", str(N),
                         "--timeout", "120", timeout=240)
        assert out["n_bad"] == 0 and out["ok"] == N, out["bad"]
    st = wait_for(lambda: (s := lab.status())["csproc"]["half_bound"] == 0 and s, 60) \
        or lab.status()
    assert st["csproc"]["half_bound"] == 0, st["csproc"]


def test_port_reused_after_worker_death(lab, tmp_path):
    """Keep-alive connections of worker 1 held open while it is killed; once it is back,
    each client resets its connection and opens a new one on the same 4-tuple at once,
    while the old entries still live (a few seconds after the RST): the data plane punts
    the SYN, the controller deletes the dead worker's entries before the new worker takes
    it, and every new connection is answered (none meets the old entries)."""
    from p4cs.controller.config import load_config
    from p4cs.controller.workers import client_mask, spreader_for
    from p4cs.csproc.packet import ip_int

    cfg = load_config(lab.config_path)
    sp = spreader_for(cfg, 2, client_mask(cfg))
    cip, vip = ip_int(lab.clients[0].ip), ip_int(lab.vip)
    ports = [p for p in range(21000, 22000) if sp.key_worker(cip, vip, p, 8080) == 1][:8]
    go = tmp_path / "go"
    proc = hold_for_reuse(lab, 8080, ports, go)
    try:
        before = lab.status()["counters"]["worker_orphan_flows_removed"]
        pid = workers(lab)[1]["pid"]
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: workers(lab)[1]["pid"] not in (None, pid), 15)
    except BaseException:
        proc.kill()
        raise
    go.touch()
    reuse_report(proc, len(ports))
    removed = lab.status()["counters"]["worker_orphan_flows_removed"] - before
    assert removed == 2 * len(ports), removed     # both entries of each old connection
