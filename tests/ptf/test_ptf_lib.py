"""Fast checks of the PTF suite's own machinery (no data plane needed): the P4Runtime client
against an in-process fake server, entry encoding, the checksum check, result parsing, and the
runner's namespaces (root only)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DPDK_P4INFO = REPO / "p4src" / "build" / "dpdk" / "p4cs.p4info.txtpb"


def _load(name: str, path: Path, package: bool = False):
    kw = {"submodule_search_locations": [str(path.parent)]} if package else {}
    spec = importlib.util.spec_from_file_location(name, path, **kw)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


lib = _load("p4cs_ptf_lib", HERE / "lib" / "__init__.py", package=True)
p4rt = importlib.import_module("p4cs_ptf_lib.p4rt")
packets = importlib.import_module("p4cs_ptf_lib.packets")
run = sys.modules.get("p4cs_ptf_run") or _load("p4cs_ptf_run", HERE / "run.py")

from finsy.proto import p4i, p4r, rpc_code, rpc_status  # noqa: E402
from finsy.proto.p4.v1 import p4runtime_pb2_grpc  # noqa: E402
from google.protobuf import any_pb2  # noqa: E402


def _mini_p4info() -> p4i.P4Info:
    info = p4i.P4Info()
    t = info.tables.add()
    t.preamble.id, t.preamble.name = 1, "Ingress.flow"
    mf = t.match_fields.add(id=1, name="addr", bitwidth=32, match_type=p4i.MatchField.EXACT)
    mf = t.match_fields.add(id=2, name="net", bitwidth=32, match_type=p4i.MatchField.LPM)
    del mf
    a = info.actions.add()
    a.preamble.id, a.preamble.name = 10, "Ingress.fwd"
    a.params.add(id=1, name="port", bitwidth=9)
    a.params.add(id=2, name="mac", bitwidth=48)
    c = info.counters.add()
    c.preamble.id, c.preamble.name, c.size = 20, "ctr", 16
    for name, fields in (("packet_in", (("ingress_port", 16), ("reason", 8))), ("packet_out", (("egress_port", 16),))):
        m = info.controller_packet_metadata.add()
        m.preamble.id, m.preamble.name = 30 + len(name), name
        for i, (fn, bw) in enumerate(fields, 1):
            m.metadata.add(id=i, name=fn, bitwidth=bw)
    return info


class FakeP4Runtime(p4runtime_pb2_grpc.P4RuntimeServicer):
    """Enough of a P4Runtime server to exercise the client: arbitration (highest election id
    is primary; like BMv2's server, an update that repeats the stream's election id is not
    answered), Write with per-update errors (table id 1, addr 0 -> ALREADY_EXISTS), a
    non-primary Write -> PERMISSION_DENIED, counters, packet-out echoed back as packet-in."""

    def __init__(self):
        self.primary = None
        self.lock = threading.Lock()

    def StreamChannel(self, request_iterator, context):
        import queue

        out: queue.Queue = queue.Queue()

        def reader():
            try:
                self._serve(request_iterator, out)
            except grpc.RpcError:
                pass
            out.put(None)

        threading.Thread(target=reader, daemon=True).start()
        while (item := out.get()) is not None:
            yield item

    def _serve(self, request_iterator, out):
        last_eid = None
        for req in request_iterator:
            kind = req.WhichOneof("update")
            if kind == "arbitration":
                eid = req.arbitration.election_id.low
                if eid == last_eid:
                    continue
                last_eid = eid
                with self.lock:
                    if self.primary is None or eid >= self.primary:
                        self.primary = eid
                    ok = self.primary == eid
                arb = p4r.MasterArbitrationUpdate(device_id=req.arbitration.device_id)
                arb.election_id.low = self.primary
                arb.status.code = rpc_code.OK if ok else rpc_code.ALREADY_EXISTS
                out.put(p4r.StreamMessageResponse(arbitration=arb))
            elif kind == "packet":
                po = req.packet
                port = next(m.value for m in po.metadata if m.metadata_id == 1)
                pi = p4r.PacketIn(payload=po.payload)
                pi.metadata.add(metadata_id=1, value=port)
                pi.metadata.add(metadata_id=2, value=b"\x07")
                out.put(p4r.StreamMessageResponse(packet=pi))

    def Write(self, request, context):
        if request.election_id.low != self.primary:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "not primary")
        errs = []
        for u in request.updates:
            e = p4r.Error(canonical_code=rpc_code.OK)
            te = u.entity.table_entry
            if te.match and te.match[0].exact.value == b"\x00":
                e = p4r.Error(canonical_code=rpc_code.ALREADY_EXISTS, message="dup")
            errs.append(e)
        if any(e.canonical_code for e in errs):
            st = rpc_status.Status(code=rpc_code.UNKNOWN, message="batch")
            for e in errs:
                a = any_pb2.Any()
                a.Pack(e)
                st.details.append(a)
            context.set_trailing_metadata((("grpc-status-details-bin", st.SerializeToString()),))
            context.set_code(grpc.StatusCode.UNKNOWN)
            context.set_details("batch")
            return p4r.WriteResponse()
        return p4r.WriteResponse()

    def Read(self, request, context):
        ce = request.entities[0].counter_entry
        out = p4r.CounterEntry(counter_id=ce.counter_id)
        out.index.index = ce.index.index
        out.data.packet_count, out.data.byte_count = 3, 300
        yield p4r.ReadResponse(entities=[p4r.Entity(counter_entry=out)])


@pytest.fixture
def fake_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    p4runtime_pb2_grpc.add_P4RuntimeServicer_to_server(FakeP4Runtime(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_client_against_fake_server(fake_server):
    info = p4rt.P4Info(_mini_p4info())
    c = p4rt.Client(fake_server, 1, info, connect_timeout=5)
    backup = p4rt.Client(fake_server, 1, info, connect_timeout=5)
    try:
        assert c.arbitrate(10) == p4rt.SC.OK
        assert backup.arbitrate(5) == p4rt.SC.ALREADY_EXISTS
        # an unchanged election id: no answer from this server
        c.send_arbitration(10)
        assert c.arbitration_answer(0.3) is None
        with pytest.raises(TimeoutError):
            c.arbitrate(10, timeout=0.3)
        # a notice naming a lower primary id than the one sent predates the update: skipped
        for eid, code in ((5, p4rt.SC.ALREADY_EXISTS), (10, p4rt.SC.OK)):
            arb = p4r.MasterArbitrationUpdate(device_id=1)
            arb.election_id.low = eid
            arb.status.code = code.value[0]
            c.arbitrations.put(arb)
        assert c.arbitration_answer(0.3) == p4rt.SC.OK
        good = info.table_entry("flow", {"addr": "10.0.0.1"}, "fwd", {"port": 1, "mac": "02:00:00:00:00:01"})
        dup = info.table_entry("flow", {"addr": 0}, "fwd", {"port": 2, "mac": 1})
        c.insert(good)
        ups = [p4rt.Client.table_update("insert", te) for te in (good, dup, good)]
        assert c.write_codes(ups) == [p4rt.SC.OK, p4rt.SC.ALREADY_EXISTS, p4rt.SC.OK]
        with pytest.raises(p4rt.P4RuntimeError) as ei:
            backup.insert(good)
        assert ei.value.first_code == p4rt.SC.PERMISSION_DENIED
        assert c.read_counter("ctr", 4) == (3, 300)
        c.packet_out(b"\x01\x02\x03", 513)
        pi = c.get_packet_in(5)
        assert pi is not None and pi.payload == b"\x01\x02\x03"
        assert pi.metadata == {"ingress_port": 513, "reason": 7}
    finally:
        c.close()
        backup.close()


def test_entry_encoding_canonical():
    info = p4rt.P4Info(_mini_p4info())
    te = info.table_entry("flow", {"addr": "0.0.1.2", "net": ("10.1.2.3", 16)}, "fwd", {"port": 0, "mac": "00:00:00:00:01:00"})
    assert te.match[0].exact.value == b"\x01\x02"
    assert te.match[1].lpm.value == bytes([10, 1, 0, 0]) and te.match[1].lpm.prefix_len == 16
    assert [p.value for p in te.action.action.params] == [b"\x00", b"\x01\x00"]
    with pytest.raises(ValueError):
        info.table_entry("flow", {"addr": 1 << 32}, "fwd", {"port": 0, "mac": 0})
    with pytest.raises(KeyError):
        info.table_entry("flow", {"addr": 1}, "fwd", {"port": 0})
    d = info.describe_entry(te)
    assert d["match"] == {"addr": 0x102, "net": (0x0A010000, 16)} and d["params"] == {"port": 0, "mac": 0x100}


@pytest.mark.skipif(not DPDK_P4INFO.exists(), reason="DPDK P4Info not compiled")
def test_program_names_resolve():
    """Every table/action/counter name the PTF tests use exists in the committed P4Info."""
    info = p4rt.P4Info.load(DPDK_P4INFO)
    for t in ("flow_table", "vip_table", "backend_table", "local_table", "arp_table", "ipv4_route"):
        info.table(t)
    for a in ("splice", "flow_forward", "punt_vip", "punt_backend", "punt_local", "arp_reply", "route"):
        info.action(a)
    info.counter("flow_counter")
    assert set(info.packet_metadata("packet_in")) >= {"ingress_port", "reason"}
    assert "egress_port" in info.packet_metadata("packet_out")


def test_checksum_problems():
    f = packets.tcp_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "10.0.0.1", "10.0.0.2", 1, 2, payload=b"abc")
    assert packets.checksum_problems(bytes(f)) == []
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    bad = Ether(bytes(f))
    bad[TCP].chksum ^= 1
    assert any(p.startswith("TCP") for p in packets.checksum_problems(bytes(bad)))


def test_parse_results():
    out = (
        "splice.A ... ok\n"
        "tables.B ... some print\nmore print ok\nFAIL\n"
        "tables.C ... skipped 'no'\n"
        "tables.D ... ERROR\n"
        "======================================================================\n"
        "FAIL: tables.B\n----------------------------------------------------------------------\n"
        "Traceback...\nAssertionError: x\n\n"
        "----------------------------------------------------------------------\nRan 4 tests in 1s\n"
    )
    res, details = run.parse_results(out)
    assert res == {"splice.A": "ok", "tables.B": "FAIL", "tables.C": "skipped", "tables.D": "ERROR"}
    assert "AssertionError: x" in details["tables.B"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2")
def test_netns_created_and_removed():
    ns = run.Netns(f"pl{os.getpid() % 100000:05d}", (1, 2))
    try:
        ns.create()
        links_sw = subprocess.run(["ip", "-n", ns.sw, "-o", "link"], capture_output=True, text=True).stdout
        links_tg = subprocess.run(["ip", "-n", ns.tg, "-o", "link"], capture_output=True, text=True).stdout
        assert ns.sw_if(1) in links_sw and ns.sw_if(2) in links_sw and ns.tg_if(1) not in links_sw
        assert ns.tg_if(1) in links_tg and ns.tg_if(2) in links_tg
        v6 = subprocess.run(["ip", "netns", "exec", ns.tg, "sysctl", "-n", f"net.ipv6.conf.{ns.tg_if(1)}.disable_ipv6"],
                            capture_output=True, text=True).stdout.strip()
        assert v6 == "1"
        # a process left inside is ended by destroy()
        subprocess.Popen(["ip", "netns", "exec", ns.sw, "sleep", "60"])
    finally:
        ns.destroy()
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert ns.sw not in names and ns.tg not in names
