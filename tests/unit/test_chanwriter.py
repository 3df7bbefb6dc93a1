"""The controller's Writes on the switch's channel socket (p4cs.controller.chanwriter) as
``write_raw`` uses them: which Writes take the socket and which gRPC, answers and failures
read back as the same P4ClientError, the writer's end. The switch's side runs on the real
daemon in tests/switch/test_p4rt_chanwrite.py; here a socket pair plays it."""

from __future__ import annotations

import asyncio
import socket

import pytest
from finsy.p4client import P4ClientError
from finsy.proto import p4r, rpc_code, rpc_status
from google.protobuf import any_pb2

from p4cs.controller import chanwriter
from p4cs.controller.chanwriter import ChannelWriter, writer_of
from p4cs.controller.p4rt import write_raw
from p4cs.switch.dpdk.chanwrite import RID


class _Grpc:
    """The gRPC channel of a fake switch: records the raw Writes sent over it."""

    def __init__(self):
        self.sent: list[bytes] = []

    def unary_unary(self, method, response_deserializer=None):
        async def call(data, timeout=None):
            self.sent.append(data)
            return p4r.WriteResponse()
        return call


class _Client:
    def __init__(self):
        self._channel = _Grpc()
        self._complete_request = None


class _Switch:
    device_id = 1

    def __init__(self):
        self._p4client = _Client()


def _failure(codes: list[int]) -> bytes:
    st = rpc_status.Status(code=rpc_code.UNKNOWN, message=f"{sum(map(bool, codes))} failed")
    for c in codes:
        a = any_pb2.Any()
        a.Pack(p4r.Error(canonical_code=c, message="no" if c else ""))
        st.details.append(a)
    return st.SerializeToString()


async def _serve(sock: socket.socket, answers: dict[int, bytes], got: list[bytes]) -> None:
    """Answer each request on ``sock``: by the number of its updates, ``answers`` (b"": OK)."""
    loop = asyncio.get_running_loop()
    while True:
        msg = await loop.sock_recv(sock, 1 << 20)
        if not msg:
            return
        req = p4r.WriteRequest.FromString(msg[RID.size:])
        got.append(msg[RID.size:])
        await loop.sock_sendall(sock, msg[:RID.size] + answers.get(len(req.updates), b""))


def _updates(n: int) -> list[bytes]:
    u = p4r.Update(type=p4r.Update.INSERT)
    u.entity.table_entry.table_id = 7
    return [u.SerializeToString()] * n


def test_write_raw_takes_the_socket_gRPC_for_what_it_cannot_take():
    async def run():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)
        b.setblocking(False)
        sw, got, counters = _Switch(), [], {}
        server = asyncio.ensure_future(_serve(b, {3: _failure([0, rpc_code.NOT_FOUND, 0])}, got))
        w = ChannelWriter(a, 200, counters)
        chanwriter._WRITERS[id(sw)] = w
        try:
            assert writer_of(sw) is w
            await write_raw(sw, _updates(2))                # on the socket, written
            with pytest.raises(P4ClientError) as ei:        # on the socket, one update failed
                await write_raw(sw, _updates(3))
            assert ei.value.code.name == "UNKNOWN"
            assert {i: e.canonical_code.name for i, e in ei.value.details.items()} == {
                1: "NOT_FOUND"}
            await write_raw(sw, _updates(40))               # too large: over gRPC
            assert [len(p4r.WriteRequest.FromString(x).updates) for x in got] == [2, 3]
            assert [len(p4r.WriteRequest.FromString(x).updates)
                    for x in sw._p4client._channel.sent] == [40]
            assert counters == {"channel_writes": 2, "channel_writes_too_large": 1}
            # Writes in flight together get their own answers
            results = await asyncio.gather(*(write_raw(sw, _updates(n)) for n in (1, 3, 2)),
                                           return_exceptions=True)
            assert [type(r).__name__ for r in results] == ["NoneType", "P4ClientError",
                                                          "NoneType"]
            # the switch closes the socket: the writer ends, write_raw goes over gRPC
            b.close()
            await asyncio.wait_for(w.wait_closed(), 5)
            assert w.closed and w.why == "the switch closed it"
            assert writer_of(sw) is None
            await write_raw(sw, _updates(1))
            assert len(sw._p4client._channel.sent) == 2
            with pytest.raises(P4ClientError) as ei:
                await w.write(b"x")
            assert ei.value.code.name == "UNAVAILABLE"
        finally:
            chanwriter._WRITERS.pop(id(sw), None)
            server.cancel()
            w.close()
            b.close()

    asyncio.run(run())


def test_pending_writes_fail_when_the_socket_ends_or_no_answer_comes(monkeypatch):
    async def run():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)
        w = ChannelWriter(a, 1000)
        pending = asyncio.ensure_future(w.write(b"\x08\x01"))
        await asyncio.sleep(0.05)
        assert not pending.done()
        w.close("the primary term ended")
        with pytest.raises(P4ClientError) as ei:
            await pending
        assert ei.value.code.name == "UNAVAILABLE" and "primary term" in ei.value.message
        b.close()

        monkeypatch.setattr(chanwriter, "WRITE_TIMEOUT_S", 0.1)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)
        w = ChannelWriter(a, 1000)
        with pytest.raises(P4ClientError) as ei:
            await w.write(b"\x08\x01")
        assert ei.value.code.name == "DEADLINE_EXCEEDED"
        # a late answer to it is dropped; a malformed answer ends the writer
        b.send(RID.pack(1) + b"")
        b.send(b"\x01")
        await asyncio.wait_for(w.wait_closed(), 5)
        assert w.why == "a malformed answer"
        b.close()

    asyncio.run(run())


def test_an_answer_that_is_not_a_status_is_an_internal_error():
    async def run():
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        a.setblocking(False)
        b.setblocking(False)
        w = ChannelWriter(a, 1000)
        loop = asyncio.get_running_loop()

        async def answer():
            msg = await loop.sock_recv(b, 4096)
            await loop.sock_sendall(b, msg[:RID.size] + b"\xff\xff\xff")

        server = asyncio.ensure_future(answer())
        with pytest.raises(P4ClientError) as ei:
            await w.write(b"\x08\x01")
        assert ei.value.code.name == "INTERNAL"
        await server
        w.close()
        b.close()

    asyncio.run(run())


class _Sw:
    address = "127.0.0.1:9559"


def test_run_holds_a_writer_per_term_and_says_why_not(tmp_path, caplog, monkeypatch):
    """``chanwriter.run``: no socket, a socket of no use from here, a switch that takes no
    Writes: gRPC, said once; a socket that takes them: the writer is held (``write_raw``
    finds it) until the switch closes it, then asked for again while the term lasts."""
    monkeypatch.setattr(chanwriter, "RETRY_S", 0.05)

    async def advertised_none(sw):
        return None

    async def run():
        sw = _Sw()
        await chanwriter.run(sw, advertised_none)
        path = str(tmp_path / "chan.sock")

        async def advertised(sw):
            return path

        await chanwriter.run(sw, advertised)                     # nothing listens there
        loop = asyncio.get_running_loop()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        listener.bind(path)
        listener.listen(4)
        listener.setblocking(False)
        conns: list[socket.socket] = []

        async def serve(answer: bytes):
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            conns.append(conn)
            await loop.sock_recv(conn, 4096)
            await loop.sock_sendall(conn, answer)

        server = asyncio.ensure_future(serve(b'{"ok": false, "error": "malformed request"}'))
        await chanwriter.run(sw, advertised)                     # an older switch
        await server
        server = asyncio.ensure_future(serve(b'{"ok": true, "max": 1000}'))
        task = asyncio.ensure_future(chanwriter.run(sw, advertised))
        await server
        for _ in range(100):
            if writer_of(sw) is not None:
                break
            await asyncio.sleep(0.01)
        w = writer_of(sw)
        assert isinstance(w, ChannelWriter) and w.max == 1000
        conns[-1].close()                                         # the switch closes it
        await asyncio.wait_for(w.wait_closed(), 5)
        await asyncio.sleep(0.2)                                  # asks again, retries
        assert writer_of(sw) is None and not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        listener.close()
        for c in conns:
            c.close()

    with caplog.at_level("INFO", logger="p4cs.controller"):
        asyncio.run(run())
    text = caplog.text
    assert "offers no channel socket" in text
    assert "cannot be used from here" in text
    assert "takes none on its channel socket (malformed request)" in text
    assert "P4Runtime Writes of flows on the channel socket" in text
    assert "ended (the switch closed it): over gRPC meanwhile" in text
