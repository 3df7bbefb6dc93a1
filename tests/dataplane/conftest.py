"""Fixtures for the p4cs-swxd data-plane daemon tests.

Everything here runs as root: the daemon needs AF_PACKET / TAP, and the traffic tests build
veth pairs in network namespaces with a per-test unique prefix, removed on teardown.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAEMON = REPO / "dataplane" / "build" / "p4cs-swxd"
DATA = Path(__file__).resolve().parent / "data"
FLOW_SPEC = DATA / "flow.spec"
CPU_PORT = 2

pytestmark = [pytest.mark.root, pytest.mark.dpdk]


def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture(scope="session")
def swxd_binary() -> Path:
    _need_root()
    if not (REPO / "build" / "dpdk-headers" / "rte_swx_pipeline_internal.h").exists():
        pytest.skip("DPDK SWX headers missing (scripts/dpdk-headers.sh)")
    subprocess.run(["make", "-s", "-C", str(REPO / "dataplane")], check=True)
    return DAEMON


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    # Shared across tests so the compiled pipeline (.so) is cached after the first start.
    return tmp_path_factory.mktemp("swxd")


class Ctl:
    """Client side of the control protocol (docs/interfaces.md section 1)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.expired: list[str] = []

    def recv_msg(self, timeout: float = 10.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(8 << 20).decode()

    def req(self, *lines: str, timeout: float = 30.0) -> list[str]:
        self.sock.send("\n".join(lines).encode())
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv_msg(max(0.1, deadline - time.monotonic()))
            if msg.startswith("expired"):
                self.expired.extend(msg.split("\n"))
                continue
            out = msg.split("\n")
            assert len(out) == len(lines), (lines, out)
            return out

    def one(self, line: str) -> str:
        return self.req(line)[0]

    def poll_expired(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = self.recv_msg(max(0.05, deadline - time.monotonic()))
            except (socket.timeout, TimeoutError):
                break
            assert msg.startswith("expired"), msg
            self.expired.extend(msg.split("\n"))
        return self.expired


class Daemon:
    def __init__(self, proc: subprocess.Popen, ctl: Ctl, cpu: socket.socket, log: Path,
                 copy: socket.socket | None = None):
        self.proc, self.ctl, self.cpu, self.log = proc, ctl, cpu, log
        self.copy = copy

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.ctl.sock.close()
        self.cpu.close()
        if self.copy is not None:
            self.copy.close()
        return self.proc.returncode


def start_daemon(binary: Path, workdir: Path, ports: list[str], netns: str | None = None,
                 spec: Path = FLOW_SPEC, extra: list[str] | None = None,
                 copy: bool = False, env: dict[str, str] | None = None,
                 pass_fds: list[int] | None = None) -> Daemon:
    ctl_a, ctl_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cpu_a, cpu_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cmd = [str(binary), "--spec", str(spec), "--workdir", str(workdir),
           "--ctl-fd", str(ctl_b.fileno()), "--cpu-fd", str(cpu_b.fileno()),
           "--cpu-port", str(CPU_PORT), "--log-level", "2"]
    fds = [ctl_b.fileno(), cpu_b.fileno()] + list(pass_fds or [])
    copy_a = copy_b = None
    if copy:
        copy_a, copy_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd += ["--copy-fd", str(copy_b.fileno())]
        fds.append(copy_b.fileno())
    for p in ports:
        cmd += ["--port", p]
    cmd += extra or []
    if netns:
        cmd = ["ip", "netns", "exec", netns] + cmd
    log = workdir / f"swxd-{uuid.uuid4().hex[:8]}.log"
    with open(log, "w") as lf:
        proc = subprocess.Popen(cmd, pass_fds=fds, stdout=lf, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    ctl_b.close()
    cpu_b.close()
    if copy_b is not None:
        copy_b.close()
    d = Daemon(proc, Ctl(ctl_a), cpu_a, log, copy_a)
    try:
        assert d.ctl.req("ping", timeout=120) == ["ok pong"], log.read_text()
    except BaseException:
        d.stop()
        raise RuntimeError("daemon did not start:\n" + log.read_text())
    return d


@pytest.fixture
def sink_daemon(swxd_binary, workdir):
    """Daemon with sink ports only (control-protocol tests)."""
    d = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"])
    yield d
    assert d.proc.poll() is None, "daemon died:\n" + d.log.read_text()
    d.stop()


# ---------------------------------------------------------------------------------------------
# Network namespaces

def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class Topo:
    """Three namespaces: <p>sw holds the daemon's ports s0/s1; <p>h0 and <p>h1 each hold the
    other end (h0, h1) of one veth pair. offloads=True leaves the veths as they come (tx
    checksumming, TSO, GSO on); else they are turned off."""

    def __init__(self, offloads: bool = False):
        self.offloads = offloads
        self.prefix = f"dp{os.getpid()}x{uuid.uuid4().hex[:4]}"
        self.sw, self.h0, self.h1 = (self.prefix + s for s in ("sw", "h0", "h1"))
        self.namespaces: list[str] = []

    def up(self):
        for ns in (self.sw, self.h0, self.h1):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
        for i, hns in enumerate((self.h0, self.h1)):
            sh("ip", "link", "add", f"s{i}", "netns", self.sw, "type", "veth",
               "peer", "name", f"h{i}", "netns", hns)
            for ns, ifn in ((self.sw, f"s{i}"), (hns, f"h{i}")):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw",
                   f"net.ipv6.conf.{ifn}.disable_ipv6=1")
                if not self.offloads:
                    sh("ip", "netns", "exec", ns, "ethtool", "-K", ifn, "tx", "off", "tso", "off",
                       "gso", "off", "gro", "off", check=False)
                sh("ip", "-n", ns, "link", "set", ifn, "up")
        return self

    def down(self):
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


@pytest.fixture
def topo():
    _need_root()
    t = Topo()
    try:
        yield t.up()
    finally:
        t.down()


@pytest.fixture
def topo_offloads():
    """Topo with the veths' offloads as a fresh veth has them."""
    _need_root()
    t = Topo(offloads=True)
    try:
        yield t.up()
    finally:
        t.down()


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def netns_packet_socket(ns: str, ifname: str) -> socket.socket:
    """An AF_PACKET socket bound to ifname inside namespace ns (setns around socket+bind)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            s.bind((ifname, 0))
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
    return s


def recv_frames(s: socket.socket, timeout: float, want: int = 1, match=None) -> list[bytes]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            f = s.recv(65536)
        except (socket.timeout, TimeoutError):
            break
        if match is None or match(f):
            out.append(f)
    return out


def have_tools() -> bool:
    return all(shutil.which(t) for t in ("ip", "ethtool"))
