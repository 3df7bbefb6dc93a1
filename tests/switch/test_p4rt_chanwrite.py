"""P4Runtime Writes on the channel socket (p4cs.switch.dpdk.chanwrite, the controller's
p4cs.controller.chanwriter): the same answers as the gRPC Write, request by request, on the
real data-plane daemon; Writes in flight together; malformed messages; the socket's end."""

from __future__ import annotations

import asyncio
import json
import socket

import grpc
import pytest
from finsy.p4client import P4ClientError
from finsy.proto import p4r, rpc_status

from p4cs.controller.chanwriter import ChannelWriter
from p4cs.switch.dpdk.chanwrite import MAX_WRITE, RID

from .conftest import T_FLOW, T_L2, be, flow_entry, l2_entry, u128, upd, write_error_details
from .test_p4rt_pktchan import serve_channel, wait_until

pytestmark = [pytest.mark.dpdk]


def _request(updates, election_id: int | None = 1, device_id: int = 1, **kw) -> bytes:
    req = p4r.WriteRequest(device_id=device_id, updates=updates, **kw)
    if election_id is not None:
        req.election_id.CopyFrom(u128(election_id))
    return req.SerializeToString()


def _requests() -> list[tuple[str, bytes]]:
    """Writes that succeed and fail every way: (what, serialized WriteRequest)."""
    bad = flow_entry(1, 2)
    bad.action.action.params[0].value = be(1 << 40)          # does not fit 32 bits
    mixed = [upd("INSERT", flow_entry(1, 1)), upd("INSERT", bad),
             upd("INSERT", flow_entry(1, 3)), upd("INSERT", p4r.TableEntry(table_id=0x02FFFFFF)),
             upd("INSERT", l2_entry(0x0200000000AA, 2)), upd("INSERT", flow_entry(1, 1))]
    return [
        ("a batch with failed updates", _request(mixed)),
        ("inserts", _request([upd("INSERT", l2_entry(0x020000000001, 1)),
                              upd("INSERT", flow_entry(7, 7, idle_ns=10**9))])),
        ("a duplicate", _request([upd("INSERT", l2_entry(0x020000000001, 1))])),
        ("a modify", _request([upd("MODIFY", l2_entry(0x020000000001, 3))])),
        ("a backup's election id", _request([upd("INSERT", flow_entry(9, 9))], election_id=0)),
        ("no election id", _request([upd("INSERT", flow_entry(9, 9))], election_id=None)),
        ("another device", _request([upd("INSERT", flow_entry(9, 9))], device_id=42)),
        ("rollback atomicity", _request([upd("INSERT", flow_entry(9, 9))],
                                        atomicity=p4r.WriteRequest.ROLLBACK_ON_ERROR)),
        ("not a WriteRequest", b"\xff\xff\xff"),
        ("a delete of nothing", _request([upd("DELETE", l2_entry(0x02000000BEEF, 1))])),
        ("deletes", _request([upd("DELETE", l2_entry(0x020000000001, 1)),
                              upd("DELETE", flow_entry(1, 3))])),
    ]


def _grpc_outcome(channel: grpc.Channel, raw: bytes):
    call = channel.unary_unary("/p4.v1.P4Runtime/Write")      # raw bytes both ways
    try:
        call(raw, timeout=30)
    except grpc.RpcError as e:
        return (e.code().value[0], e.details(),
                {i: (err.canonical_code, err.message)
                 for i, err in enumerate(write_error_details(e)) if err.canonical_code})
    return "ok"


async def _channel_outcome(w: ChannelWriter, raw: bytes):
    try:
        await w.write(raw)
    except P4ClientError as e:
        return (e.code.value, e.message,
                {i: (err.canonical_code.value, err.message) for i, err in e.details.items()})
    return "ok"


def _tables(c) -> list[bytes]:
    ents = c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=0))])
    return sorted(e.table_entry.SerializeToString() for e in ents)


def test_same_answers_as_grpc_request_by_request(make_switch, client_factory, tmp_path):
    """The same Writes on two switches, one over gRPC and one over the channel socket: the
    same status code, message and per-update errors each time, and the same tables."""
    over_grpc, over_chan = make_switch(), make_switch()
    path = serve_channel(over_chan, tmp_path)
    clients = []
    for sw in (over_grpc, over_chan):
        c = client_factory(sw.addr)
        c.arbitrate(1)
        clients.append(c)

    async def run() -> list:
        w = await ChannelWriter.open(path)
        try:
            return [await _channel_outcome(w, raw) for _what, raw in _requests()]
        finally:
            w.close()

    on_chan = asyncio.run(run())
    on_grpc = [_grpc_outcome(clients[0].channel, raw) for _what, raw in _requests()]
    for (what, _raw), g, ch in zip(_requests(), on_grpc, on_chan):
        assert ch == g, what
    # every way of failing was met, and the successes did write
    assert [w for (w, _r), o in zip(_requests(), on_grpc) if o == "ok"] == [
        "inserts", "a modify", "deletes"]
    assert {o[0] for o in on_grpc if o != "ok"} == {
        grpc.StatusCode.UNKNOWN.value[0], grpc.StatusCode.PERMISSION_DENIED.value[0],
        grpc.StatusCode.NOT_FOUND.value[0], grpc.StatusCode.UNIMPLEMENTED.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0]}
    # the batch's three good updates and the two inserts, less the two deleted
    assert _tables(clients[1]) == _tables(clients[0]) and len(_tables(clients[0])) == 3
    assert over_chan.server.channel.counters["writes"] == len(_requests())


def test_writes_in_flight_together_get_their_own_answers(switch, client_factory, tmp_path):
    path = serve_channel(switch, tmp_path)
    c = client_factory(switch.addr)
    c.arbitrate(1)
    # every third one fails: a duplicate of an entry written before
    c.write([upd("INSERT", l2_entry(0x020000000000 + i, 1)) for i in range(0, 60, 3)])

    async def run():
        w = await ChannelWriter.open(path)
        try:
            return await asyncio.gather(*(
                _channel_outcome(w, _request([upd("INSERT", l2_entry(0x020000000000 + i, 2))]))
                for i in range(60)))
        finally:
            w.close()

    outcomes = asyncio.run(run())
    assert [o == "ok" for o in outcomes] == [i % 3 != 0 for i in range(60)]
    assert all(o[2] == {0: (6, o[2][0][1])} for o in outcomes if o != "ok")   # ALREADY_EXISTS
    ents = c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=T_L2))])
    assert len(ents) == 60


def _raw_conn(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    s.connect(path)
    s.send(json.dumps({"op": "write"}).encode())
    answer = json.loads(s.recv(4096))
    assert answer == {"ok": True, "max": MAX_WRITE}
    return s


def test_malformed_messages_end_the_connection_not_the_switch(switch, client_factory, tmp_path):
    path = serve_channel(switch, tmp_path)
    c = client_factory(switch.addr)
    c.arbitrate(1)
    for bad in (b"\x01\x02\x03", RID.pack(6) + b"x" * MAX_WRITE + b"y"):
        s = _raw_conn(path)
        try:
            s.send(bad)
        except OSError:             # larger than the socket buffer: refused by the kernel
            s.close()
            continue
        assert s.recv(4096) == b""          # closed by the switch
        s.close()
    assert switch.server.channel.counters["write_malformed"] >= 1
    # a good connection still works, and so does gRPC
    s = _raw_conn(path)
    s.send(RID.pack(5))         # an empty WriteRequest: device id 0, as gRPC answers it
    answer = s.recv(4096)
    assert answer[:RID.size] == RID.pack(5)
    assert rpc_status.Status.FromString(answer[RID.size:]).code == grpc.StatusCode.NOT_FOUND.value[0]
    s.send(RID.pack(77) + _request([upd("INSERT", flow_entry(3, 3))]))
    assert s.recv(4096) == RID.pack(77)                              # written: no status
    s.send(RID.pack(78) + _request([upd("INSERT", flow_entry(3, 3))]))
    answer = s.recv(4096)
    assert answer[:RID.size] == RID.pack(78) and len(answer) > RID.size   # ALREADY_EXISTS
    s.close()
    c.write([upd("INSERT", flow_entry(4, 4))])
    assert len(c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=T_FLOW))])) == 2


def test_the_writer_fails_unavailable_when_the_switch_closes_it(switch, client_factory,
                                                                tmp_path):
    path = serve_channel(switch, tmp_path)
    c = client_factory(switch.addr)
    c.arbitrate(1)

    async def run():
        w = await ChannelWriter.open(path)
        await w.write(_request([upd("INSERT", flow_entry(5, 5))]))
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: switch.call(_stop_channel(switch)))
        await asyncio.wait_for(w.wait_closed(), 5)
        with pytest.raises(P4ClientError) as ei:
            await w.write(_request([upd("INSERT", flow_entry(6, 6))]))
        return w, ei.value

    w, err = asyncio.run(run())
    assert w.closed and w.why == "the switch closed it"
    assert err.code.name == "UNAVAILABLE"
    assert wait_until(lambda: len(c.read([p4r.Entity(table_entry=p4r.TableEntry(
        table_id=T_FLOW))])) == 1)
    assert w.counters == {"channel_writes": 1, "channel_writes_too_large": 0}


async def _stop_channel(sw) -> None:
    sw.server.channel.stop()


def test_an_older_switch_refuses_and_the_writer_says_so(switch, tmp_path):
    """A switch without channel Writes answers the request as a malformed channel request."""
    path = serve_channel(switch, tmp_path)
    switch.server.channel._write = None          # noqa: SLF001 - as a switch without them

    async def run():
        with pytest.raises(ValueError, match="malformed request"):
            await ChannelWriter.open(path)

    asyncio.run(run())
