"""P4Runtime server on the real data-plane daemon: arbitration, writes, reads, pipeline."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r, rpc_code

from .conftest import (
    A_FLOW_FWD, A_FWD, A_NOACTION, C_FLOW, MINI_P4INFO, R_SCRATCH, T_FLOW, T_L2,
    be, flow_entry, l2_entry, upd, write_error_details,
)

pytestmark = [pytest.mark.dpdk]


def test_capabilities(switch, client_factory):
    c = client_factory(switch.addr)
    r = c.stub.Capabilities(p4r.CapabilitiesRequest())
    assert r.p4runtime_api_version.startswith("1.")


def test_arbitration_primary_backup(switch, client_factory):
    a, b = client_factory(switch.addr), client_factory(switch.addr)
    ua = a.arbitrate(10)
    assert ua.status.code == rpc_code.OK
    assert (ua.election_id.high, ua.election_id.low) == (0, 10)
    ub = b.arbitrate(5)
    assert ub.status.code == rpc_code.ALREADY_EXISTS
    assert ub.election_id.low == 10
    # the backup may read but not write
    with pytest.raises(grpc.RpcError) as ei:
        b.write([upd("INSERT", l2_entry(0x020000000001, 1))])
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert b.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=T_L2))]) == []
    # a write with a made-up election id is refused too
    with pytest.raises(grpc.RpcError) as ei:
        a.write([upd("INSERT", l2_entry(0x020000000001, 1))], election_id=11)
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    a.write([upd("INSERT", l2_entry(0x020000000001, 1))])
    # the backup takes over with a higher id: both are told
    ub2 = b.arbitrate(20)
    assert ub2.status.code == rpc_code.OK
    ua2 = a.recv("arbitration")
    assert ua2.status.code == rpc_code.ALREADY_EXISTS and ua2.election_id.low == 20
    with pytest.raises(grpc.RpcError) as ei:
        a.write([upd("DELETE", l2_entry(0x020000000001, 1))])
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # the primary leaves: no primary until someone presents an id >= 20
    b.close()
    ua3 = a.recv("arbitration")
    assert ua3.status.code == rpc_code.NOT_FOUND
    ua4 = a.arbitrate(21)
    assert ua4.status.code == rpc_code.OK


def test_duplicate_election_id_and_bad_device(switch, client_factory):
    a, b = client_factory(switch.addr), client_factory(switch.addr)
    a.arbitrate(7)
    with pytest.raises(grpc.RpcError) as ei:
        b.arbitrate(7)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    c = client_factory(switch.addr)
    with pytest.raises(grpc.RpcError) as ei:
        c.arbitrate(8, device_id=99)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as ei:
        a.read([p4r.Entity(table_entry=p4r.TableEntry())], device_id=99)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND


def _tables(c, table_id=0):
    return [e.table_entry for e in c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=table_id))])]


def test_regular_table_insert_modify_delete_read(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    e1, e2 = l2_entry(0x020000000001, 1), l2_entry(0x020000000002, 2)
    c.write([upd("INSERT", e1), upd("INSERT", e2)])
    got = {bytes(t.match[0].exact.value): t for t in _tables(c, T_L2)}
    assert set(got) == {be(0x020000000001), be(0x020000000002)}
    assert got[be(0x020000000002)] == e2
    # duplicate insert
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("INSERT", e1)])
    assert ei.value.code() == grpc.StatusCode.UNKNOWN
    (err,) = write_error_details(ei.value)
    assert err.canonical_code == rpc_code.ALREADY_EXISTS
    # modify, then single-entry read
    m1 = l2_entry(0x020000000001, 3)
    c.write([upd("MODIFY", m1)])
    key_only = p4r.TableEntry(table_id=T_L2)
    key_only.match.add(field_id=1).exact.value = be(0x020000000001)
    (r,) = c.read([p4r.Entity(table_entry=key_only)])
    assert r.table_entry == m1
    # the data plane really has it
    assert switch.call(switch.server.pipe.daemon.request(["stats"]))[0].startswith("ok")
    c.write([upd("DELETE", e1), upd("DELETE", e2)])
    assert _tables(c, T_L2) == []
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("DELETE", e1)])
    (err,) = write_error_details(ei.value)
    assert err.canonical_code == rpc_code.NOT_FOUND


def test_learner_insert_modify_delete_read(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    entries = [flow_entry(0x0A000001, 0x0A000100 + i, port=1, flow_id=i) for i in range(100)]
    c.write([upd("INSERT", e) for e in entries])
    got = _tables(c, T_FLOW)
    assert len(got) == 100 and sorted(got, key=lambda t: t.action.action.params[1].value) == entries
    d = switch.server.pipe.daemon
    assert switch.call(d.request(["learner get flow_table match 0xa000001 0xa000105"])) == [
        "ok hit flow_fwd_0 port=1 flow_id=5"
    ]
    c.write([upd("MODIFY", flow_entry(0x0A000001, 0x0A000105, port=2, flow_id=77))])
    assert switch.call(d.request(["learner get flow_table match 0xa000001 0xa000105"])) == [
        "ok hit flow_fwd_0 port=2 flow_id=77"
    ]
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("INSERT", entries[0])])
    assert write_error_details(ei.value)[0].canonical_code == rpc_code.ALREADY_EXISTS
    c.write([upd("DELETE", e) for e in entries])
    assert _tables(c, T_FLOW) == []
    assert switch.call(d.request(["learner get flow_table match 0xa000001 0xa000105"])) == ["ok miss"]
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("MODIFY", entries[0])])
    assert write_error_details(ei.value)[0].canonical_code == rpc_code.NOT_FOUND


def test_batch_with_one_bad_update(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    bad = flow_entry(1, 2)
    bad.action.action.params[0].value = be(1 << 40)  # does not fit 32 bits
    unknown_table = p4r.TableEntry(table_id=0x02FFFFFF)
    batch = [
        upd("INSERT", flow_entry(1, 1)),
        upd("INSERT", bad),
        upd("INSERT", flow_entry(1, 3)),
        upd("INSERT", unknown_table),
        upd("INSERT", l2_entry(0x0200000000AA, 2)),
        upd("INSERT", flow_entry(1, 1)),  # duplicate of the first, within the batch
    ]
    with pytest.raises(grpc.RpcError) as ei:
        c.write(batch)
    assert ei.value.code() == grpc.StatusCode.UNKNOWN
    errs = write_error_details(ei.value)
    assert [e.canonical_code for e in errs] == [
        rpc_code.OK, rpc_code.INVALID_ARGUMENT, rpc_code.OK, rpc_code.NOT_FOUND, rpc_code.OK,
        rpc_code.ALREADY_EXISTS,
    ]
    assert "does not fit in 32 bits" in errs[1].message
    assert len(_tables(c, T_FLOW)) == 2 and len(_tables(c, T_L2)) == 1
    assert len(_tables(c)) == 3


def test_bad_requests(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)

    def one(te, kind="INSERT"):
        with pytest.raises(grpc.RpcError) as ei:
            c.write([upd(kind, te)])
        (err,) = write_error_details(ei.value)
        return err

    te = flow_entry(1, 2)
    del te.match[1]
    assert "missing exact match field" in one(te).message
    te = flow_entry(1, 2)
    te.match[0].field_id = 9
    assert one(te).canonical_code == rpc_code.INVALID_ARGUMENT
    te = flow_entry(1, 2)
    te.match[0].exact.value = b""
    assert one(te).canonical_code == rpc_code.INVALID_ARGUMENT
    te = flow_entry(1, 2)
    te.action.action.action_id = A_FWD  # not an action of the flow table
    assert one(te).canonical_code == rpc_code.INVALID_ARGUMENT
    te = flow_entry(1, 2)
    del te.action.action.params[1]
    assert "missing parameter" in one(te).message
    te = l2_entry(1, 1)
    te.idle_timeout_ns = 10**9  # l2_fwd has no idle timeout support
    assert one(te).canonical_code == rpc_code.INVALID_ARGUMENT
    te = l2_entry(1, 1)
    te.priority = 5
    assert one(te).canonical_code == rpc_code.INVALID_ARGUMENT
    te = l2_entry(1 << 48, 1)  # 49-bit MAC
    assert one(te).canonical_code == rpc_code.INVALID_ARGUMENT
    assert one(p4r.TableEntry(table_id=T_L2, is_default_action=True), "INSERT").canonical_code == (
        rpc_code.INVALID_ARGUMENT
    )
    # whole-request errors
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("INSERT", flow_entry(5, 5))], atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as ei:
        c.stub.Write(p4r.WriteRequest(device_id=42, updates=[upd("INSERT", flow_entry(5, 5))]))
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as ei:
        c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=12345))])
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as ei:
        c.read([p4r.Entity(meter_entry=p4r.MeterEntry())])
    assert ei.value.code() == grpc.StatusCode.UNIMPLEMENTED
    # the server is still fine
    c.write([upd("INSERT", flow_entry(5, 5))])
    assert len(_tables(c, T_FLOW)) == 1


def test_default_entry(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    (d,) = c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=T_L2, is_default_action=True))])
    assert d.table_entry.is_default_action
    te = p4r.TableEntry(table_id=T_L2, is_default_action=True)
    te.action.action.action_id = A_FWD
    te.action.action.params.add(param_id=1, value=be(2))
    c.write([upd("MODIFY", te)])
    (d,) = c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=T_L2, is_default_action=True))])
    assert d.table_entry == te
    te.action.action.action_id = A_NOACTION
    del te.action.action.params[:]
    c.write([upd("MODIFY", te)])


def test_counters_and_registers(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    d = switch.server.pipe.daemon
    switch.call(d.request(["reg write flow_pkts_0_packets 5 7", "reg write flow_pkts_0_bytes 5 700"]))
    ce = p4r.CounterEntry(counter_id=C_FLOW)
    ce.index.index = 5
    (r,) = c.read([p4r.Entity(counter_entry=ce)])
    assert (r.counter_entry.data.packet_count, r.counter_entry.data.byte_count) == (7, 700)
    allc = c.read([p4r.Entity(counter_entry=p4r.CounterEntry(counter_id=C_FLOW))])
    assert len(allc) == 1024
    assert [e.counter_entry.index.index for e in allc] == list(range(1024))
    assert allc[5].counter_entry.data.byte_count == 700
    # wildcard over all counters
    assert len(c.read([p4r.Entity(counter_entry=p4r.CounterEntry())])) == 1024
    # reset through a counter write
    w = p4r.Update(type=p4r.Update.MODIFY)
    w.entity.counter_entry.counter_id = C_FLOW
    w.entity.counter_entry.index.index = 5
    c.write([w])
    (r,) = c.read([p4r.Entity(counter_entry=ce)])
    assert r.counter_entry.data.packet_count == 0
    bad = p4r.CounterEntry(counter_id=C_FLOW)
    bad.index.index = 5000
    with pytest.raises(grpc.RpcError) as ei:
        c.read([p4r.Entity(counter_entry=bad)])
    assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
    # registers
    w = p4r.Update(type=p4r.Update.MODIFY)
    w.entity.register_entry.register_id = R_SCRATCH
    w.entity.register_entry.index.index = 3
    w.entity.register_entry.data.bitstring = be(0xBEEF)
    c.write([w])
    re_ = p4r.RegisterEntry(register_id=R_SCRATCH)
    re_.index.index = 3
    (r,) = c.read([p4r.Entity(register_entry=re_)])
    assert r.register_entry.data.bitstring == be(0xBEEF)


def test_many_single_counter_cells_in_one_read(switch, client_factory):
    """A controller reading its live flows' counters: single cells, unsorted, repeated, near
    and far apart, mixed with other entities; each answered in the order asked, with the
    value of its own cell (they are fetched in a few daemon lines)."""
    c = client_factory(switch.addr)
    c.arbitrate(1)
    d = switch.server.pipe.daemon
    cells = [0, 1, 2, 40, 41, 100, 1023, 500, 3, 999, 3, 64, 31]
    lines = []
    for i in sorted(set(cells)):
        lines += [f"reg write flow_pkts_0_packets {i} {i + 1}",
                  f"reg write flow_pkts_0_bytes {i} {1000 + i}"]
    switch.call(d.request(lines))
    ents = []
    for i in cells:
        ce = p4r.CounterEntry(counter_id=C_FLOW)
        ce.index.index = i
        ents.append(p4r.Entity(counter_entry=ce))
    re_ = p4r.RegisterEntry(register_id=R_SCRATCH)
    re_.index.index = 0
    mixed = ents[:5] + [p4r.Entity(register_entry=re_)] + ents[5:]
    got = c.read(mixed)
    assert len(got) == len(mixed)
    assert got[5].WhichOneof("entity") == "register_entry"
    got = got[:5] + got[6:]
    assert [e.counter_entry.index.index for e in got] == cells
    assert [(e.counter_entry.data.packet_count, e.counter_entry.data.byte_count)
            for e in got] == [(i + 1, 1000 + i) for i in cells]
    # the untouched cells between them read as zero, one by one as in a batch
    ce = p4r.CounterEntry(counter_id=C_FLOW)
    ce.index.index = 20
    (r,) = c.read([p4r.Entity(counter_entry=ce)])
    assert r.counter_entry.data.packet_count == 0
    # one bad index in a batch: the whole Read fails, as for a single entity
    bad = p4r.CounterEntry(counter_id=C_FLOW)
    bad.index.index = 1024
    with pytest.raises(grpc.RpcError) as ei:
        c.read(ents + [p4r.Entity(counter_entry=bad)])
    assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_pipeline_get_set_roundtrip(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    R = p4r.GetForwardingPipelineConfigRequest
    got = c.stub.GetForwardingPipelineConfig(R(device_id=1, response_type=R.ALL))
    assert got.config.p4info.tables[0].preamble.id == T_L2
    assert got.config.p4_device_config.startswith(b"; Test pipeline")
    old_cookie = got.config.cookie.cookie
    assert old_cookie != 0
    c.write([upd("INSERT", flow_entry(1, 2))])
    cfg = p4r.ForwardingPipelineConfig()
    cfg.CopyFrom(got.config)
    cfg.cookie.cookie = 0xC0FFEE
    S = p4r.SetForwardingPipelineConfigRequest
    req = S(device_id=1, action=S.VERIFY_AND_COMMIT, config=cfg)
    req.election_id.low = 1
    c.stub.SetForwardingPipelineConfig(req, timeout=300)
    got2 = c.stub.GetForwardingPipelineConfig(R(device_id=1, response_type=R.COOKIE_ONLY))
    assert got2.config.cookie.cookie == 0xC0FFEE and not got2.config.HasField("p4info")
    # a new pipeline starts empty
    assert _tables(c, T_FLOW) == []
    c.write([upd("INSERT", flow_entry(1, 2))])
    # a P4Info that does not fit the spec is refused, and the running pipeline survives
    bad = p4r.ForwardingPipelineConfig()
    bad.CopyFrom(got.config)
    bad.p4info.tables[1].preamble.name = "MainControlImpl.no_such_table"
    req = S(device_id=1, action=S.VERIFY_AND_COMMIT, config=bad)
    req.election_id.low = 1
    with pytest.raises(grpc.RpcError) as ei:
        c.stub.SetForwardingPipelineConfig(req, timeout=300)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no_such_table" in ei.value.details()
    c.write([upd("INSERT", flow_entry(1, 3))])
    # backups cannot set the pipeline
    b = client_factory(switch.addr)
    b.arbitrate(0)
    req = S(device_id=1, action=S.VERIFY_AND_COMMIT, config=cfg)
    with pytest.raises(grpc.RpcError) as ei:
        b.stub.SetForwardingPipelineConfig(req)
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_no_pipeline(make_switch, client_factory):
    sw = make_switch(load=False)
    c = client_factory(sw.addr)
    c.arbitrate(1)
    R = p4r.GetForwardingPipelineConfigRequest
    with pytest.raises(grpc.RpcError) as ei:
        c.stub.GetForwardingPipelineConfig(R(device_id=1))
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("INSERT", flow_entry(1, 2))])
    assert ei.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    from p4cs.switch.dpdk.pipeline import load_p4info
    from .conftest import MINI_SPEC

    S = p4r.SetForwardingPipelineConfigRequest
    cfg = p4r.ForwardingPipelineConfig(p4info=load_p4info(MINI_P4INFO), p4_device_config=MINI_SPEC.read_bytes())
    req = S(device_id=1, action=S.VERIFY_AND_SAVE, config=cfg)
    req.election_id.low = 1
    c.stub.SetForwardingPipelineConfig(req)
    req = S(device_id=1, action=S.COMMIT)
    req.election_id.low = 1
    c.stub.SetForwardingPipelineConfig(req, timeout=300)
    c.write([upd("INSERT", flow_entry(1, 2))])


def test_daemon_death_gives_unavailable(switch, client_factory):
    import os
    import signal
    import time

    c = client_factory(switch.addr)
    c.arbitrate(1)
    c.write([upd("INSERT", flow_entry(1, 2))])
    os.kill(switch.daemon_pid, signal.SIGKILL)
    deadline = time.time() + 10
    while switch.server.pipe.daemon.dead is None and time.time() < deadline:
        time.sleep(0.05)
    with pytest.raises(grpc.RpcError) as ei:
        c.write([upd("INSERT", flow_entry(1, 3))])
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as ei:
        c.read([p4r.Entity(table_entry=p4r.TableEntry())])
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    # the server itself is alive
    assert c.stub.Capabilities(p4r.CapabilitiesRequest()).p4runtime_api_version
