"""P4Runtime clone sessions on the DPDK target: the shadow, the daemon's mirroring sessions,
PRE wildcard reads, and what is UNIMPLEMENTED."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r, rpc_code

from .conftest import write_error_details

pytestmark = [pytest.mark.dpdk]


def clone(sid: int, ports: list[int], instance: int = 1, **kw) -> p4r.Entity:
    cs = p4r.CloneSessionEntry(session_id=sid, **kw)
    for p in ports:
        cs.replicas.add(egress_port=p, instance=instance)
    return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(clone_session_entry=cs))


def upd(kind: str, ent: p4r.Entity) -> p4r.Update:
    u = p4r.Update(type=getattr(p4r.Update, kind))
    u.entity.CopyFrom(ent)
    return u


def mcast(gid: int, ports: list[int]) -> p4r.Entity:
    mg = p4r.MulticastGroupEntry(multicast_group_id=gid)
    for p in ports:
        mg.replicas.add(egress_port=p, instance=1)
    return p4r.Entity(packet_replication_engine_entry=p4r.PacketReplicationEngineEntry(multicast_group_entry=mg))


def _code(c, updates) -> tuple[int, str]:
    with pytest.raises(grpc.RpcError) as ei:
        c.write(updates)
    (err,) = write_error_details(ei.value)
    return err.canonical_code, err.message


def test_clone_session_lifecycle(make_switch, client_factory):
    sw = make_switch(ports={1: "sink", 2: "sink"})
    copy_port = sw.server.pipe.daemon.info["copy_port"]
    assert copy_port == 3
    mirror = lambda sid: sw.call(sw.server.pipe.daemon.request([f"mirror {sid}"]))[0]  # noqa: E731
    c = client_factory(sw.addr)
    c.arbitrate(1)
    wild = [clone(0, []), mcast(0, [])]
    assert c.read(wild) == []
    # CPU port replica -> the daemon's copy port
    c.write([upd("INSERT", clone(1, [0]))])
    assert mirror(1) == f"ok {copy_port}"
    (r,) = c.read([clone(0, [])])
    assert r == clone(1, [0])
    code, _ = _code(c, [upd("INSERT", clone(1, [0]))])
    assert code == rpc_code.ALREADY_EXISTS
    # a data-port replica, truncated
    c.write([upd("MODIFY", clone(1, [2], packet_length_bytes=128))])
    assert mirror(1) == "ok 2 truncate 128"
    c.write([upd("INSERT", clone(5, [0]))])
    assert [e.packet_replication_engine_entry.clone_session_entry.session_id for e in c.read(wild)] == [1, 5]
    (r,) = c.read([clone(5, [])])
    assert r == clone(5, [0])
    c.write([upd("DELETE", clone(1, [])), upd("DELETE", clone(5, []))])
    assert mirror(1) == "ok off" and mirror(5) == "ok off"
    assert c.read(wild) == [] and c.read([clone(1, [])]) == []
    code, _ = _code(c, [upd("DELETE", clone(1, []))])
    assert code == rpc_code.NOT_FOUND
    code, _ = _code(c, [upd("MODIFY", clone(1, [0]))])
    assert code == rpc_code.NOT_FOUND
    # INSERT + DELETE in one batch
    c.write([upd("INSERT", clone(7, [0])), upd("DELETE", clone(7, []))])
    assert c.read(wild) == [] and mirror(7) == "ok off"


def test_clone_session_errors(make_switch, client_factory):
    sw = make_switch(ports={1: "sink"})
    c = client_factory(sw.addr)
    c.arbitrate(1)
    n = sw.server.pipe.daemon.info["mirroring_sessions"]
    cases = [
        (clone(1, [0, 1]), rpc_code.UNIMPLEMENTED, "replicas"),
        (mcast(1, [1]), rpc_code.UNIMPLEMENTED, "multicast"),
        (clone(0, [0]), rpc_code.INVALID_ARGUMENT, "out of range"),
        (clone(n, [0]), rpc_code.INVALID_ARGUMENT, "out of range"),
        (clone(1, [9]), rpc_code.INVALID_ARGUMENT, "replica port 9"),
        (clone(1, [0], class_of_service=3), rpc_code.UNIMPLEMENTED, "class_of_service"),
    ]
    backup = clone(1, [0])
    backup.packet_replication_engine_entry.clone_session_entry.replicas[0].backup_replicas.add(
        port=b"\x01", instance=1)
    cases.append((backup, rpc_code.UNIMPLEMENTED, "backup"))
    for ent, code, text in cases:
        got, msg = _code(c, [upd("INSERT", ent)])
        assert (got, text in msg) == (code, True), (ent, got, msg)
    assert c.read([clone(0, []), mcast(0, [])]) == []
    assert sw.call(sw.server.pipe.daemon.request(["mirror 1"]))[0] == "ok off"


def test_finsy_delete_all_wildcards(make_switch):
    """finsy's Switch.delete_all starts with delete_many over the table, multicast and clone
    wildcards: one Read of the three, then DELETEs of what came back. (Its next step, resetting
    default entries with an action-less MODIFY, is not supported by this target.)"""
    import asyncio
    from finsy import P4CloneSessionEntry, P4MulticastGroupEntry, P4TableEntry, Switch, SwitchOptions

    from .conftest import MINI_P4INFO, MINI_SPEC

    sw = make_switch(ports={1: "sink"})

    async def main():
        opts = SwitchOptions(device_id=1, p4info=MINI_P4INFO, p4blob=MINI_SPEC)
        async with Switch("t", sw.addr, opts) as s:
            await s.insert([P4CloneSessionEntry(1, replicas=[0])])
            got = [e async for e in s.read([P4CloneSessionEntry()])]
            assert [e.session_id for e in got] == [1]
            await s.delete_many([P4TableEntry(), P4MulticastGroupEntry(), P4CloneSessionEntry()])
            assert [e async for e in s.read([P4CloneSessionEntry()])] == []

    asyncio.run(asyncio.wait_for(main(), 120))
