"""Faults: the switch restarted under load, the controller killed, another client taking
primary, a primary controller killed with a backup elected through Redis, and a second
controller or switch started on resources that are taken.

Every test prints what it measured (``[faults] ...``, shown with ``pytest -s``); docs/faults.md
quotes these numbers.
"""

from __future__ import annotations

import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
import yaml
from finsy.proto import U128, p4r, p4r_grpc

from e2e_util import proc, start_download, status_at, terminate, wait_for
from p4cs import paths
from p4cs.lab.server import file_sha256
from p4cs.lab.stack import P4CS, free_port

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

BIG = 50 * 2**20
#: A download ends (completes or is reset) at most this long after the restarted switch
#: listens again: reconnect backoff (up to 5 s) + reconciliation + the probes (3 s).
RESET_BOUND_S = 15.0
#: New connections work again at most this long after the restarted switch listens.
NEW_CONN_BOUND_S = 10.0
#: A backup elected through the store is primary at most this long after the primary died.
TAKEOVER_BOUND_S = 2.0


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("x", big_files={"50M": BIG})


def measured(what: str, value: float) -> None:
    print(f"\n[faults] {what}: {value:.2f} s", flush=True)


def downloads(lab, n: int, rate: str) -> list[subprocess.Popen]:
    """``n`` downloads, once their flows (and no others) are in the switch."""
    assert wait_for(lambda: lab.status()["flows"] == 0, timeout=15), lab.status()
    ps = [start_download(lab, "/big/50M", rate) for _ in range(n)]
    assert wait_for(lambda: lab.status()["flows"] >= 2 * n, timeout=20), lab.status()
    return ps


def outcome(p: subprocess.Popen) -> str:
    """'complete' (byte-exact) or 'reset'; anything else fails the test."""
    out, err = p.communicate(timeout=150)
    if p.returncode == 0:
        assert err.strip() == f"size={BIG}", err
        assert out.split()[0] == file_sha256(BIG)
        return "complete"
    assert "Operation timed out" not in err, f"the download hung: {err}"
    assert "reset" in err.lower() or "recv failure" in err.lower(), err
    return "reset"


def new_connection_ok(lab) -> bool:
    r = lab.curl("/~lcs1/", timeout=2)
    return r.returncode == 0 and r.stdout == "ace: /~lcs1/\n"


class NewConnections(threading.Thread):
    """New connections, one after another, until stopped; when each one worked or not."""

    def __init__(self, lab):
        super().__init__(daemon=True)
        self.lab = lab
        self.results: list[tuple[float, bool]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            ok = new_connection_ok(self.lab)
            self.results.append((time.monotonic(), ok))     # when it ended
            time.sleep(0.1)

    def first_ok_after(self, t: float) -> float | None:
        return next((at for at, ok in self.results if at >= t and ok), None)


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def state_at(lab, sock: str) -> str | None:
    """The state of the controller serving ``sock`` (None: none answers there yet)."""
    try:
        return status_at(lab, sock)["state"]
    except OSError:
        return None


def run_p4cs(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*P4CS, *args], capture_output=True, text=True, timeout=timeout,
                          env=paths.subprocess_env(), stdin=subprocess.DEVNULL)


# ---------------------------------------------------------------------- single instance
def test_second_controller_on_the_same_socket_is_refused(lab):
    r = run_p4cs(["controller", "--config", str(lab.config_path)])
    assert r.returncode == 2, r
    assert r.stderr.strip().splitlines() == [
        f"p4cs controller: error: control socket {lab.control_socket} belongs to a running "
        "controller"], r.stderr
    assert lab.status()["primary"] and Path(lab.control_socket).is_socket()


def test_second_switch_on_a_taken_address_or_interface_is_refused(lab):
    argv = ["switch", "--netns", lab.topo.switch_netns, "--workdir", str(lab.workdir / "swxd2")]
    for port, ifname in sorted(lab.topo.switch_ifaces.items()):
        argv += ["--iface", f"{port}={ifname}"]
    r = run_p4cs([*argv, "--grpc-addr", f"127.0.0.1:{lab.grpc_port}"])
    assert r.returncode == 2, r
    assert r.stderr.strip() == (f"p4cs switch: error: P4Runtime address 127.0.0.1:{lab.grpc_port} "
                                "is in use by another process"), r.stderr
    r = run_p4cs([*argv, "--grpc-addr", f"127.0.0.1:{free_port()}"])
    assert r.returncode == 2, r
    first = sorted(lab.topo.switch_ifaces.items())[0][1]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"p4cs switch: error: interface {first} in namespace "
                               f"{lab.topo.switch_netns} is attached to another switch (pid "), r.stderr
    assert new_connection_ok(lab)


# ---------------------------------------------------------------------- switch restart
@pytest.mark.parametrize("how", ["stop", "kill"])
def test_switch_restart_under_downloads_and_new_connections(lab, how):
    """The switch is stopped (SIGTERM) or killed (SIGKILL) and started again (empty tables)
    during three downloads and a stream of new connections: the controller notices, says so,
    reconnects, programs the base tables again; the downloads are reset (or complete), none
    hangs; new connections work again."""
    ps = downloads(lab, 3, "2M")
    load = NewConnections(lab)
    load.start()
    try:
        sw = proc(lab, "switch")
        daemons = children(sw.pid)
        sw.send_signal(signal.SIGTERM if how == "stop" else signal.SIGKILL)
        sw.wait(timeout=15)
        # A killed switch's daemon exits when it sees its control socket close; a switch
        # started before that would attach a second daemon to the interfaces.
        t0 = time.monotonic()
        assert wait_for(lambda: not any(Path(f"/proc/{d}").exists() for d in daemons),
                        timeout=10, interval=0.05), daemons
        measured(f"switch {how}: its daemon gone after", time.monotonic() - t0)
        assert wait_for(lambda: lab.status()["state"] in ("lost", "reconnecting"), timeout=10), \
            lab.status()
        assert not lab.status()["primary"]
        lab._start_switch()
        up = time.monotonic()
        assert wait_for(lambda: lab.status()["state"] == "primary", timeout=NEW_CONN_BOUND_S,
                        interval=0.05), lab.log_of("controller")[-3000:]
        measured(f"switch {how} + start: controller primary again after the switch listens",
                 time.monotonic() - up)
        results = []
        for p in ps:
            results.append(outcome(p))
            assert time.monotonic() - up < RESET_BOUND_S, results
        measured(f"switch {how} + start: downloads ({', '.join(results)}) ended after the switch "
                 "listens", time.monotonic() - up)
        assert wait_for(lambda: load.first_ok_after(up), timeout=NEW_CONN_BOUND_S)
        measured(f"switch {how} + start: first new connection after the switch listens",
                 load.first_ok_after(up) - up)
    finally:
        load.halt.set()
        load.join(timeout=10)
    log = lab.log_of("controller")
    for state in ("lost", "reconnecting", "connected", "primary"):
        assert f": {state}" in log, state
    st = lab.status()
    assert st["counters"]["reconnects"] >= 1 and st["csproc"]["flows_lost"] >= 3, st
    assert new_connection_ok(lab)


# ---------------------------------------------------------------------- controller kill -9
def test_controller_killed_and_restarted_during_downloads(lab):
    ps = downloads(lab, 3, "5M")
    p = proc(lab, "controller")
    p.kill()
    p.wait(timeout=10)
    t0 = time.monotonic()
    lab._start_controller()         # the stale control socket is replaced
    lab.wait_ready()
    measured("controller kill -9: a new controller ready after", time.monotonic() - t0)
    assert [outcome(p) for p in ps] == ["complete"] * 3
    assert new_connection_ok(lab)


# ---------------------------------------------------------------------- losing primary
def test_preempted_controller_becomes_backup_not_exit(lab):
    """Another client takes primary with a higher election id: the controller becomes a
    backup and stays; when that client goes, the controller is primary again."""
    requests: queue.Queue = queue.Queue()
    arb = p4r.MasterArbitrationUpdate(device_id=1, election_id=U128.encode(1 << 40))
    requests.put(p4r.StreamMessageRequest(arbitration=arb))
    with grpc.insecure_channel(f"127.0.0.1:{lab.grpc_port}") as ch:
        stream = p4r_grpc.P4RuntimeStub(ch).StreamChannel(iter(requests.get, None))
        assert next(stream).arbitration.status.code == 0
        assert wait_for(lambda: lab.status()["state"] == "backup", timeout=10), lab.status()
        time.sleep(1)
        assert proc(lab, "controller").poll() is None, lab.log_of("controller")[-2000:]
        requests.put(None)
        stream.cancel()
    assert wait_for(lambda: lab.status()["state"] == "primary", timeout=15), lab.status()
    assert new_connection_ok(lab)


# ---------------------------------------------------------------------- Redis HA
def ha_config(lab, name: str, store: str) -> Path:
    cfg = lab.config()
    if name != "controller":
        cfg["control"]["socket"] = str(lab.workdir / f"{name}.sock")
    cfg["ha"] = {"store": store, "prefix": f"p4cs-test:{lab.prefix}", "lease_ms": 1000}
    path = lab.workdir / f"{name}-ha.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_backup_on_redis_takes_over_a_killed_primary(lab):
    store = str(lab.workdir / "redis.sock")
    lab._spawn("redis", ["redis-server", "--port", "0", "--unixsocket", store,
                         "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                         "--dir", str(lab.workdir)])
    assert wait_for(lambda: Path(store).is_socket(), timeout=10), lab.log_of("redis")
    terminate(lab, "controller")
    primary, backup = ha_config(lab, "controller", store), ha_config(lab, "hab", store)
    lab._spawn("controller", [*P4CS, "controller", "--config", str(primary)])
    lab.wait_ready()
    bsock = str(lab.workdir / "hab.sock")
    lab._spawn("hab", [*P4CS, "controller", "--config", str(backup)])
    assert wait_for(lambda: state_at(lab, bsock) == "backup", timeout=30), lab.log_of("hab")
    first_id = lab.status()["election_id"]

    ps = downloads(lab, 3, "5M")
    p = proc(lab, "controller")
    p.kill()
    t0 = time.monotonic()
    p.wait(timeout=10)
    assert wait_for(lambda: state_at(lab, bsock) == "primary", timeout=10, interval=0.02), \
        lab.log_of("hab")[-3000:]
    takeover = time.monotonic() - t0
    measured("HA: backup primary after kill -9 of the primary", takeover)
    assert wait_for(lambda: new_connection_ok(lab), timeout=10)
    measured("HA: new connections after kill -9 of the primary", time.monotonic() - t0)
    assert takeover < TAKEOVER_BOUND_S
    st = status_at(lab, bsock)
    assert st["election_id"] > first_id and st["adopted_flows"] >= 6, st
    assert [outcome(p) for p in ps] == ["complete"] * 3

    # The old primary comes back: a backup now. When the new primary stops, it takes over.
    lab._spawn("controller", [*P4CS, "controller", "--config", str(primary)])
    assert wait_for(lambda: state_at(lab, lab.control_socket) == "backup", timeout=30), \
        lab.log_of("controller")
    terminate(lab, "hab")
    lab.wait_ready(timeout=10)
    assert new_connection_ok(lab)

    # Back to the lab's own controller (no store) for whatever runs next.
    terminate(lab, "controller")
    lab._start_controller()
    lab.wait_ready()
