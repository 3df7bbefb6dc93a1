"""The committed p4cs pipeline (p4c-dpdk output) behind the P4Runtime server, daemon CPU use
while idle, malformed wire input, and the BMv2 launcher's command line."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import grpc
import pytest
from finsy.proto import p4r

from p4cs import paths
from p4cs.switch import bmv2
from p4cs.switch.cli import parse_ifaces
from p4cs.switch.dpdk.expiry import END_PROFILE, reuse_lines
from p4cs.switch.dpdk.pipeline import load_p4info
from p4cs.switch.dpdk.schema import match_name

from .conftest import be, flow_entry, upd

SPEC = paths.spec()
P4INFO = paths.p4info("dpdk")


def test_name_matching():
    cands = ["_flow_table_0", "egress_table", "_splice", "send", "fwd_1", "fwd_2", "x_0"]
    assert match_name("flow_table", cands, "table") == "_flow_table_0"
    assert match_name("MainControlImpl.egress_table", cands, "table") == "egress_table"
    assert match_name("splice", cands, "action") == "_splice"
    assert match_name("MainControlImpl.send", cands, "action") == "send"
    assert match_name("nothing", cands, "table") is None
    with pytest.raises(Exception, match="ambiguous"):
        match_name("fwd", cands, "action")


def test_parse_ifaces():
    assert parse_ifaces(["1=veth0", "2=tap:t0"], dpdk=True) == {1: "afpacket:veth0", 2: "tap:t0"}
    assert parse_ifaces(["1=veth0", "2=afpacket:v2"], dpdk=False) == {1: "veth0", 2: "v2"}
    with pytest.raises(Exception):
        parse_ifaces(["veth0"], dpdk=True)


def test_bmv2_command_line():
    argv = bmv2.simple_switch_argv({2: "veth2", 1: "veth0"}, device_id=1, grpc_addr="127.0.0.1:9559")
    assert argv == [
        "simple_switch_grpc", "--device-id", "1", "-i", "1@veth0", "-i", "2@veth2", "--no-p4",
        "--", "--grpc-server-addr", "127.0.0.1:9559", "--cpu-port", "255",
    ]
    # a packet port: the CPU port is an interface, and BMv2 has no --cpu-port
    argv = bmv2.simple_switch_argv({1: "veth0", 255: "cpu0s"}, device_id=1,
                                   grpc_addr="127.0.0.1:9559", cpu_port=None)
    assert argv[-3:] == ["--", "--grpc-server-addr", "127.0.0.1:9559"]
    assert "255@cpu0s" in argv
    assert bmv2.packet_veth_peer("cpu0") == "cpu0s"
    for bad in ("", "a-name-far-too-long", "a b", "-x"):
        with pytest.raises(ValueError):
            bmv2.packet_veth_peer(bad)
    if shutil.which("simple_switch_grpc") is None:
        with pytest.raises(bmv2.Bmv2Error, match="simple_switch_grpc is not installed"):
            bmv2.start_simple_switch({1: "veth0"}, device_id=1, grpc_addr="127.0.0.1:1")


@pytest.mark.dpdk
def test_p4cs_pipeline_maps_and_installs_flows(make_switch, client_factory):
    if not (SPEC.exists() and P4INFO.exists()):
        pytest.skip("p4src/build/dpdk/p4cs.spec / p4cs.p4info.txtpb not generated")
    sw = make_switch(load=False)
    sw.load(SPEC, P4INFO)
    info = load_p4info(P4INFO)
    schema = sw.server.pipe.schema
    assert {t.preamble.id for t in info.tables} == set(schema.tables)
    assert {c.preamble.id for c in info.counters} == set(schema.counters)
    flow = next(t for t in schema.tables.values() if t.name.endswith("flow_table"))
    assert flow.learner and flow.timeouts
    assert schema.packet_in is not None and schema.packet_out is not None
    # the flow learner (5-tuple key, @p4cs_end_expiry) ends its closing entries on a pure SYN,
    # both directions (dataplane/src/reuse.c); the line is the one the daemon took
    lines = reuse_lines(info, schema)
    assert len(lines) == 1 and lines[0].startswith(f"learner reuse {flow.dname} {END_PROFILE} 4 0 2 2 1 ")
    words = lines[0].split()
    assert words[9:15] == ["sip", "dip", "proto", "sport", "dport", "reverse"] and len(words) == 20
    st = sw.call(sw.server.pipe.daemon.stats())
    assert st["reuse"] == {"learner": flow.dname, "ended": 0, "ended_reverse": 0, "punted": 0}

    c = client_factory(sw.addr)
    c.arbitrate(1)
    ptable = next(t for t in info.tables if t.preamble.id == flow.id)
    action = next(a for a in info.actions if a.preamble.id == ptable.action_refs[0].id)
    updates = []
    for i in range(50):
        te = p4r.TableEntry(table_id=flow.id, idle_timeout_ns=60 * 10**9)
        for f in ptable.match_fields:
            te.match.add(field_id=f.id).exact.value = be(i + 1)
        te.action.action.action_id = action.preamble.id
        for p in action.params:
            te.action.action.params.add(param_id=p.id, value=be(1))
        updates.append(upd("INSERT", te))
    try:
        c.write(updates)
    except grpc.RpcError as e:
        from .conftest import write_error_details

        raise AssertionError(write_error_details(e)[0].message) from None
    got = c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=flow.id))])
    assert len(got) == 50
    c.write([upd("DELETE", u.entity.table_entry) for u in updates])
    assert c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=flow.id))]) == []


@pytest.mark.dpdk
def test_controller_flow_installs_take_the_fast_path(make_switch):
    """The controller's `splice` updates (~190 bytes: two-byte lengths) are planned by the
    server's FlowFastPath, which agrees with the generic decoder."""
    if not (SPEC.exists() and P4INFO.exists()):
        pytest.skip("p4src/build/dpdk/p4cs.spec / p4cs.p4info.txtpb not generated")
    from finsy import P4Schema

    from p4cs.controller.p4rt import FlowEncoder, Splice
    from p4cs.csproc.effects import FlowKey
    from p4cs.switch.dpdk.keys import action_text, key_exact
    from p4cs.switch.dpdk.wire import decode_update, update_slices

    sw = make_switch(load=False)
    sw.load(SPEC, P4INFO)
    pipe = sw.server.pipe
    enc = FlowEncoder(P4Schema(P4INFO))
    key = FlowKey(0x0A000001, 0x0A000064, 6, 40000, 80)
    for utype in (p4r.Update.INSERT, p4r.Update.MODIFY):
        for idle in (0.0, 3.0, 3600.0):
            raw = enc.insert_raw(key, Splice(2, 0x020000000001, 0x020000000002, 0x0A000101,
                                             0x0A000002, 33000, 8080, 0x12345678, 0xFFFFFFF0,
                                             70000), idle, utype)
            assert len(raw) > 0x80
            req = p4r.WriteRequest(updates=[p4r.Update.FromString(raw)]).SerializeToString()
            (s, e), = update_slices(req)
            ut, t, k, ktext, atext, ns, ts, te_end = pipe.fast.plan(req, s, e)
            g = decode_update(req, s, e)
            gkey, gtext = key_exact(t, g[2])
            assert (ut, t.id, k, ktext, ns) == (g[0], g[1], gkey, gtext, g[6]) == \
                (utype, enc.splice.table_id, gkey, gtext, int(idle * 1e9))
            assert atext == action_text(t, g[3], g[4])
            assert (ts, te_end) == (g[8], g[9])
            # the C plan (where built) and the Python one give the same
            assert pipe.fast.plan_py(req, s, e) == (ut, t, k, ktext, atext, ns, ts, te_end)


@pytest.mark.dpdk
def test_prefault_reaches_the_daemon(make_switch):
    """`p4cs switch --prefault` (TargetConfig.prefault) starts the daemon with --prefault
    (what the daemon does with it: tests/dataplane/test_swxd.py)."""
    sw = make_switch(prefault=True)
    argv = Path(f"/proc/{sw.daemon_pid}/cmdline").read_bytes().split(b"\0")
    assert b"--prefault" in argv, argv
    plain = make_switch()
    assert b"--prefault" not in Path(f"/proc/{plain.daemon_pid}/cmdline").read_bytes().split(b"\0")


def _cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.dpdk
def test_idle_daemon_does_not_spin(switch):
    pid = switch.daemon_pid
    time.sleep(0.5)
    c0, t0 = _cpu(pid), time.monotonic()
    time.sleep(2.0)
    share = (_cpu(pid) - c0) / (time.monotonic() - t0)
    assert share < 0.15, f"idle data-plane daemon used {share:.0%} of a core"


@pytest.mark.dpdk
def test_malformed_write_bytes(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    raw_write = c.channel.unary_unary("/p4.v1.P4Runtime/Write")
    with pytest.raises(grpc.RpcError) as ei:
        raw_write(b"\x22\xff\xff\xff\x0f garbage", timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a valid request whose update uses an unusual (but legal) encoding takes the slow path
    te = flow_entry(1, 2)
    req = p4r.WriteRequest(device_id=1, updates=[upd("INSERT", te)])
    req.election_id.low = 1
    data = req.SerializeToString() + b"\x22\x00"  # plus one empty Update
    with pytest.raises(grpc.RpcError) as ei:
        raw_write(data, timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNKNOWN  # per-update errors: second is empty
    assert len(c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=te.table_id))])) == 1
