"""A controller that (re)connects reconciles instead of wiping: a download spliced in the fast
path survives a controller restart byte-exact; a backup controller writes nothing, and takes
over without disturbing the switch when the primary goes."""

from __future__ import annotations

import subprocess

import grpc
import pytest
import yaml
from finsy.proto import p4r, p4r_grpc

from e2e_util import (hold_for_reuse, proc, reuse_report, start_download, status_at, terminate,
                      wait_for)
from p4cs.lab.server import file_sha256
from p4cs.lab.stack import P4CS

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]
#: also run with the controller's packet I/O on the P4Runtime stream (conftest.py)
P4RUNTIME_PACKET_IO = True

BIG = 50 * 2**20
RATE = "5M"             # curl --limit-rate: the download lasts about 10 s


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("k", big_files={"50M": BIG})


def switch_state(lab) -> set[bytes]:
    """Every table entry and clone session the switch holds (a read needs no arbitration)."""
    pre = p4r.PacketReplicationEngineEntry(clone_session_entry=p4r.CloneSessionEntry())
    req = p4r.ReadRequest(device_id=1, entities=[p4r.Entity(table_entry=p4r.TableEntry()),
                                                 p4r.Entity(packet_replication_engine_entry=pre)])
    with grpc.insecure_channel(f"127.0.0.1:{lab.grpc_port}") as ch:
        stub = p4r_grpc.P4RuntimeStub(ch)
        return {e.SerializeToString() for resp in stub.Read(req, timeout=30) for e in resp.entities}


def start_big_download(lab) -> subprocess.Popen:
    return start_download(lab, "/big/50M", RATE)


def check_download(p: subprocess.Popen) -> None:
    out, err = p.communicate(timeout=150)
    assert p.returncode == 0, err
    assert err.strip() == f"size={BIG}", err
    assert out.split()[0] == file_sha256(BIG)


@pytest.mark.root
def test_restart_keeps_spliced_flows(lab):
    """The controller is restarted with the same configuration in the middle of a download:
    the new one reads the switch, writes nothing to its base tables, keeps the flow entries
    (it does not know them: they stay until they expire, their flow ids reserved), and the
    download completes byte-exact."""
    p = start_big_download(lab)
    assert wait_for(lambda: lab.status()["flows"] >= 2, timeout=15), lab.status()
    before = switch_state(lab)
    terminate(lab, "controller")
    lab._start_controller()
    lab.wait_ready()
    assert p.poll() is None, "the download ended before the new controller was ready"
    st = lab.status()
    assert st["flows"] == 0 and st["adopted_flows"] >= 2, st
    assert "(0 writes to reconcile the switch)" in lab.log_of("controller")
    assert switch_state(lab) == before
    check_download(p)
    # A new connection gets a flow id none of the adopted entries uses, and works.
    r = lab.curl("/~lcs1/")
    assert r.returncode == 0 and r.stdout == "ace: /~lcs1/\n", r


@pytest.mark.root
def test_backup_writes_nothing_then_takes_over(lab):
    """A second controller with the same configuration (but its own control socket) is a
    backup: it writes nothing and the switch is unchanged. When the primary goes, the backup
    becomes primary and keeps the flows of a running download."""
    sock = str(lab.workdir / "backup.sock")
    cfg = lab.config()
    cfg["control"]["socket"] = sock
    path = lab.workdir / "backup.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    before = switch_state(lab)
    lab._spawn("backup", [*P4CS, "controller", "--config", str(path), "--log-level", "info"])
    assert wait_for(lambda: "backup controller" in lab.log_of("backup"), timeout=30), lab.log_of("backup")
    st = status_at(lab, sock)
    assert not st["primary"] and st["flows"] == 0, st
    assert not any(st["counters"].values()), st["counters"]
    assert proc(lab, "backup").poll() is None, lab.log_of("backup")
    assert switch_state(lab) == before
    assert lab.status()["primary"]

    p = start_big_download(lab)
    assert wait_for(lambda: lab.status()["flows"] >= 2, timeout=15), lab.status()
    terminate(lab, "controller")
    assert wait_for(lambda: "controller ready" in lab.log_of("backup"), timeout=30), lab.log_of("backup")
    st = status_at(lab, sock)
    assert st["primary"] and st["adopted_flows"] >= 2, st
    assert "(0 writes to reconcile the switch)" in lab.log_of("backup")
    check_download(p)

    # Back to the lab's own controller for whatever runs next.
    terminate(lab, "backup")
    lab._start_controller()
    lab.wait_ready()


@pytest.mark.root
def test_port_reused_after_restart(lab, tmp_path):
    """Keep-alive connections held open while the controller restarts; then each client
    resets its connection and opens a new one on the same 4-tuple at once, while the old
    entries still live: the data plane punts the SYN, the new controller finds the adopted
    entries of that 4-tuple (both directions), deletes them and only then hands the SYN to
    the CS processor: every new connection is answered, none meets an old entry."""
    ports = list(range(23000, 23008))
    go = tmp_path / "go"
    p = hold_for_reuse(lab, 80, ports, go)
    try:
        terminate(lab, "controller")
        lab._start_controller()
        lab.wait_ready()
        assert lab.status()["adopted_flows"] >= 2 * len(ports)
    except BaseException:
        p.kill()
        raise
    go.touch()
    reuse_report(p, len(ports))
    assert lab.status()["counters"]["adopted_flows_removed"] == 2 * len(ports)
