"""Fixtures of the target tests: a P4Runtime server (in a background thread with its own
event loop) driving the real `p4cs-swxd`, plain gRPC clients, and network namespaces."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest
from finsy.proto import p4i, p4r, p4r_grpc

from p4cs import paths
from p4cs.switch.dpdk.pipeline import TargetConfig, cookie_of, load_p4info
from p4cs.switch.dpdk.server import P4RuntimeServer

DATA = Path(__file__).parent / "data"
MINI_SPEC = DATA / "mini.spec"
MINI_P4INFO = DATA / "mini.p4info.txtpb"

MINI_DAEMON_INFO = {  # what p4cs-swxd's `info` says about tests/switch/data/mini.spec
    "tables": [{"name": "l2_fwd", "size": 1024, "key": [{"bits": 48, "match": "exact"}],
                "actions": [{"name": "fwd", "args": [{"name": "port", "bits": 32}]},
                            {"name": "NoAction", "args": []}]}],
    "learners": [{"name": "flow_table", "size": 65536,
                  "key": [{"bits": 32, "match": "exact"}, {"bits": 32, "match": "exact"}],
                  "actions": [{"name": "flow_fwd_0", "args": [{"name": "port", "bits": 32},
                                                               {"name": "flow_id", "bits": 32}]},
                              {"name": "flow_miss", "args": [], "default_only": True}],
                  "timeouts": [1, 10, 60]}],
    "regarrays": [{"name": "flow_pkts_0_packets", "size": 1024},
                  {"name": "flow_pkts_0_bytes", "size": 1024}, {"name": "scratch_0", "size": 16}],
}

# P4Info ids of the mini pipeline
T_L2 = 33554433
T_FLOW = 33554434
A_NOACTION = 16777217
A_FWD = 16777218
A_FLOW_FWD = 16777219
A_FLOW_MISS = 16777220
C_FLOW = 301989889
R_SCRATCH = 369098753
CPM_IN = 67108865
CPM_OUT = 67108866


def swxd_or_skip() -> str:
    b = paths.daemon_binary()
    if not os.path.isfile(b):
        pytest.skip(f"data-plane daemon not built ({b}): run `make -C dataplane`")
    return b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SwitchHandle:
    """A P4RuntimeServer running on a private event loop in a thread."""

    def __init__(self, target: TargetConfig, device_id: int = 1):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.call(self._make(target, device_id))
        self.port = 0
        self.addr = ""

    @staticmethod
    async def _make(target: TargetConfig, device_id: int) -> P4RuntimeServer:
        return P4RuntimeServer(target, device_id=device_id)

    def call(self, coro, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def load(self, spec: Path = MINI_SPEC, p4info: Path = MINI_P4INFO) -> None:
        info = load_p4info(p4info)
        dev = spec.read_bytes()
        self.call(self.server.load_pipeline(info, dev, cookie_of(info, dev), spec_path=str(spec)))

    def listen(self) -> str:
        self.port = self.call(self.server.start(f"127.0.0.1:{free_port()}"))
        self.addr = f"127.0.0.1:{self.port}"
        return self.addr

    def close(self) -> None:
        try:
            self.call(self.server.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    @property
    def daemon_pid(self) -> int:
        return self.server.pipe.daemon.proc.pid


@pytest.fixture
def make_switch():
    """make_switch(ports={}, netns=None, load=True) -> SwitchHandle (closed at teardown)."""
    swxd_or_skip()
    handles: list[SwitchHandle] = []

    def make(ports: dict[int, str] | None = None, netns: str | None = None, load: bool = True,
             device_id: int = 1, **kw) -> SwitchHandle:
        target = TargetConfig(ports=dict(ports or {}), cpu_port=0, netns=netns, **kw)
        h = SwitchHandle(target, device_id)
        handles.append(h)
        if load:
            h.load()
        h.listen()
        return h

    yield make
    for h in handles:
        h.close()


@pytest.fixture
def switch(make_switch) -> SwitchHandle:
    return make_switch()


# --------------------------------------------------------------------------------------
# A plain synchronous P4Runtime client (precise control over every message)
# --------------------------------------------------------------------------------------


def u128(x: int) -> p4r.Uint128:
    return p4r.Uint128(high=x >> 64, low=x & ((1 << 64) - 1))


class Client:
    def __init__(self, addr: str, device_id: int = 1):
        self.channel = grpc.insecure_channel(addr)
        self.stub = p4r_grpc.P4RuntimeStub(self.channel)
        self.device_id = device_id
        self.election_id: int | None = None
        self._out: queue.Queue = queue.Queue()
        self.inbox: queue.Queue = queue.Queue()
        self._stream = None
        self._thread: threading.Thread | None = None
        self.stream_error: grpc.RpcError | None = None

    def open_stream(self) -> None:
        self._stream = self.stub.StreamChannel(iter(self._out.get, None))

        def pump():
            try:
                for msg in self._stream:
                    self.inbox.put(msg)
            except grpc.RpcError as e:
                self.stream_error = e
                self.inbox.put(e)

        self._thread = threading.Thread(target=pump, daemon=True)
        self._thread.start()

    def send(self, msg: p4r.StreamMessageRequest) -> None:
        if self._stream is None:
            self.open_stream()
        self._out.put(msg)

    def arbitrate(self, election_id: int | None, role: str = "", device_id: int | None = None):
        m = p4r.StreamMessageRequest()
        m.arbitration.device_id = self.device_id if device_id is None else device_id
        if election_id is not None:
            m.arbitration.election_id.CopyFrom(u128(election_id))
            self.election_id = election_id
        if role:
            m.arbitration.role.name = role
        self.send(m)
        return self.recv("arbitration")

    def recv(self, kind: str, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} message within {timeout} s")
            try:
                m = self.inbox.get(timeout=left)
            except queue.Empty:
                continue
            if isinstance(m, grpc.RpcError):
                raise m
            if m.WhichOneof("update") == kind:
                return getattr(m, kind)

    def write(self, updates, election_id: int | None = None, **kw):
        req = p4r.WriteRequest(device_id=self.device_id, updates=updates, **kw)
        eid = self.election_id if election_id is None else election_id
        if eid is not None:
            req.election_id.CopyFrom(u128(eid))
        return self.stub.Write(req, timeout=60)

    def read(self, entities, device_id: int | None = None) -> list[p4r.Entity]:
        req = p4r.ReadRequest(
            device_id=self.device_id if device_id is None else device_id, entities=entities
        )
        out = []
        for resp in self.stub.Read(req, timeout=120):
            out.extend(resp.entities)
        return out

    def close(self) -> None:
        self._out.put(None)
        self.channel.close()


@pytest.fixture
def client_factory():
    clients: list[Client] = []

    def make(addr: str, device_id: int = 1) -> Client:
        c = Client(addr, device_id)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


# --------------------------------------------------------------------------------------
# Entity builders for the mini pipeline
# --------------------------------------------------------------------------------------


def be(x: int, nbytes: int | None = None) -> bytes:
    if nbytes is None:
        nbytes = max(1, (x.bit_length() + 7) // 8)
    return x.to_bytes(nbytes, "big")


def flow_entry(src: int, dst: int, port: int = 1, flow_id: int = 0, idle_ns: int = 0) -> p4r.TableEntry:
    te = p4r.TableEntry(table_id=T_FLOW, idle_timeout_ns=idle_ns)
    te.match.add(field_id=1).exact.value = be(src)
    te.match.add(field_id=2).exact.value = be(dst)
    a = te.action.action
    a.action_id = A_FLOW_FWD
    a.params.add(param_id=1, value=be(port))
    a.params.add(param_id=2, value=be(flow_id))
    return te


def l2_entry(mac: int, port: int) -> p4r.TableEntry:
    te = p4r.TableEntry(table_id=T_L2)
    te.match.add(field_id=1).exact.value = be(mac)
    te.action.action.action_id = A_FWD
    te.action.action.params.add(param_id=1, value=be(port))
    return te


def upd(kind: str, te: p4r.TableEntry) -> p4r.Update:
    u = p4r.Update(type=getattr(p4r.Update, kind))
    u.entity.table_entry.CopyFrom(te)
    return u


def write_error_details(e: grpc.RpcError) -> list[p4r.Error]:
    """The per-update p4.v1.Error list of a failed batch Write."""
    from finsy.proto import rpc_status

    for k, v in e.trailing_metadata() or ():
        if k == "grpc-status-details-bin":
            st = rpc_status.Status.FromString(v)
            out = []
            for d in st.details:
                pe = p4r.Error()
                d.Unpack(pe)
                out.append(pe)
            return out
    return []


# --------------------------------------------------------------------------------------
# Network namespaces
# --------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def in_netns(ns: str, fn):
    """Run fn() in a thread that joined network namespace `ns` (sockets keep their ns)."""
    result: dict = {}

    def run():
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
        finally:
            os.close(fd)
        try:
            result["v"] = fn()
        except BaseException as e:  # noqa: BLE001
            result["e"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in result:
        raise result["e"]
    return result["v"]


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def raw_socket(ns: str, ifname: str) -> socket.socket:
    def mk():
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        s.bind((ifname, 0))
        s.setsockopt(263, 23, 1)  # SOL_PACKET, PACKET_IGNORE_OUTGOING
        s.settimeout(5)
        return s

    return in_netns(ns, mk)


@pytest.fixture
def netns_ports():
    """A namespace with veth pairs: P4 port N is `<p>-pN` (daemon side), peer `<p>-hN`."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 for network namespaces")
    prefix = "t" + uuid.uuid4().hex[:6]
    ns = f"{prefix}-sw"
    created = False

    def make(ports=(1, 2)):
        nonlocal created
        _sh("ip", "netns", "add", ns)
        created = True
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        for p in ports:
            a, b = f"{prefix}-p{p}", f"{prefix}-h{p}"
            _sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
            for ifn in (a, b):
                _sh("ip", "-n", ns, "link", "set", ifn, "up")
                subprocess.run(
                    ["ip", "netns", "exec", ns, "ethtool", "-K", ifn, "tx", "off", "tso", "off",
                     "gso", "off", "gro", "off"], capture_output=True,
                )
                subprocess.run(
                    ["ip", "netns", "exec", ns, "sysctl", "-qw",
                     f"net.ipv6.conf.{ifn}.disable_ipv6=1"], capture_output=True,
                )
        return ns, {p: f"afpacket:{prefix}-p{p}" for p in ports}, {p: f"{prefix}-h{p}" for p in ports}

    yield make
    if created:
        with contextlib.suppress(Exception):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
