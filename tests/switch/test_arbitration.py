"""The arbitration state machine on its own: streams, roles, election ids, primaries."""

from __future__ import annotations

import grpc
import pytest
from finsy.proto import p4r, rpc_code

from p4cs.switch.dpdk.arbitration import STREAM_QUEUE_MAX, Arbiter, StreamConn
from p4cs.switch.dpdk.errors import P4RTError


def arb(eid: int | None, role: str | None = None, device_id: int = 1) -> p4r.MasterArbitrationUpdate:
    u = p4r.MasterArbitrationUpdate(device_id=device_id)
    if eid is not None:
        u.election_id.high, u.election_id.low = eid >> 64, eid & (2**64 - 1)
    if role is not None:
        u.role.name = role
    return u


def drain(conn: StreamConn) -> list[tuple[int, int]]:
    """(status code, election id) of the arbitration updates queued for `conn`."""
    out = []
    while not conn.queue.empty():
        u = conn.queue.get_nowait().arbitration
        out.append((u.status.code, (u.election_id.high << 64) | u.election_id.low))
    return out


def test_primary_backup_takeover_and_leave():
    a, b, c = StreamConn("a"), StreamConn("b"), StreamConn("c")
    ar = Arbiter(1)
    assert ar.arbitrate(a, arb(10)) is None
    assert drain(a) == [(rpc_code.OK, 10)]
    # a backup: only it is told
    assert ar.arbitrate(b, arb(5)) is None
    assert (drain(a), drain(b)) == ([], [(rpc_code.ALREADY_EXISTS, 10)])
    assert ar.is_primary(a) and not ar.is_primary(b)
    # a higher id takes over: every stream of the role is told
    assert ar.arbitrate(c, arb(2**64 + 1)) is None
    assert drain(a) == drain(b) == [(rpc_code.ALREADY_EXISTS, 2**64 + 1)]
    assert drain(c) == [(rpc_code.OK, 2**64 + 1)]
    assert list(ar.primaries()) == [c]
    # the primary leaves: no primary until an id >= the highest ever seen
    ar.disconnect(c)
    assert drain(a) == drain(b) == [(rpc_code.NOT_FOUND, 2**64 + 1)]
    assert list(ar.primaries()) == []
    assert ar.arbitrate(a, arb(11)) is None
    assert drain(a) == [(rpc_code.NOT_FOUND, 2**64 + 1)] and drain(b) == []
    assert ar.arbitrate(b, arb(2**64 + 1)) is None
    assert drain(a) == [(rpc_code.ALREADY_EXISTS, 2**64 + 1)]
    assert drain(b) == [(rpc_code.OK, 2**64 + 1)]
    # a backup leaving changes nothing for the others
    ar.disconnect(a)
    assert drain(b) == [] and ar.is_primary(b)


def test_primary_lowering_its_id_becomes_backup():
    a, b = StreamConn("a"), StreamConn("b")
    ar = Arbiter(1)
    ar.arbitrate(a, arb(10))
    ar.arbitrate(b, arb(3))
    drain(a), drain(b)
    assert ar.arbitrate(a, arb(4)) is None
    assert drain(a) == drain(b) == [(rpc_code.NOT_FOUND, 10)]
    assert not ar.is_primary(a)


def test_roles_are_independent():
    a, b = StreamConn("a"), StreamConn("b")
    ar = Arbiter(1)
    ar.arbitrate(a, arb(10))
    ar.arbitrate(b, arb(1, role="reader"))
    assert ar.is_primary(a) and ar.is_primary(b)
    assert drain(b) == [(rpc_code.OK, 1)]
    ar.check_primary("reader", arb(1).election_id, True)
    with pytest.raises(P4RTError) as ei:
        ar.check_primary("reader", arb(10).election_id, True)
    assert ei.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert ei.value.message == "not primary: election id 10 is not the primary's for role 'reader'"
    with pytest.raises(P4RTError) as ei:
        ar.check_primary("", None, False)
    assert ei.value.message == "not primary: election id unset is not the primary's for role '<default>'"
    with pytest.raises(P4RTError) as ei:
        ar.check_primary("other", arb(10).election_id, True)
    assert ei.value.message == "not primary: role 'other' has no primary client"


def test_refusals():
    a, b = StreamConn("a"), StreamConn("b")
    ar = Arbiter(7)
    e = ar.arbitrate(a, arb(1))
    assert (e.code, e.message) == (grpc.StatusCode.NOT_FOUND, "unknown device id 1 (this server is device 7)")
    assert not a.arbitrated and a.queue.empty()
    assert ar.arbitrate(a, arb(5, device_id=7)) is None
    e = ar.arbitrate(b, arb(5, device_id=7))
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT and not b.arbitrated
    # the same stream may present its own id again
    assert ar.arbitrate(a, arb(5, device_id=7)) is None
    e = ar.arbitrate(a, arb(6, role="other", device_id=7))
    assert (e.code, e.message) == (grpc.StatusCode.FAILED_PRECONDITION, "a stream cannot change its role")
    u = arb(1, device_id=7)
    u.role.name = "r"
    u.role.config.Pack(p4r.Uint128())
    assert ar.arbitrate(b, u).code == grpc.StatusCode.UNIMPLEMENTED
    # a stream that never arbitrated is unknown to its role
    ar.disconnect(b)
    assert ar.is_primary(a) and not ar.is_primary(b)


def test_no_election_id_is_a_backup():
    a = StreamConn("a")
    ar = Arbiter(1)
    assert ar.arbitrate(a, arb(None)) is None
    assert drain(a) == [(rpc_code.NOT_FOUND, 0)]
    assert a.arbitrated and not ar.is_primary(a)


def test_stream_queue_is_bounded():
    a = StreamConn("a")
    for i in range(STREAM_QUEUE_MAX + 3):
        a.put(i)
    assert a.queue.qsize() == STREAM_QUEUE_MAX and a.dropped == 3
