"""The controller's end of P4Runtime Writes on the switch's channel socket
(:mod:`p4cs.switch.dpdk.chanwrite` has the protocol and why).

``switch.writes: channel`` (the default): when the switch advertises a channel socket (the
Capabilities answer, as for the direct packet channel) and this controller can open it (same
host, same user), the primary's raw Writes (:func:`p4cs.controller.p4rt.write_raw`: the
flow installs and the removals' Deletes) go over it, each a serialized
``p4.v1.WriteRequest`` as gRPC would carry it, answered with what gRPC's status would carry.
Failures come back as the same ``P4ClientError`` (per-update details included), so the callers
cannot tell the transports apart. Writes larger than the switch's limit, and every Write while
the socket is not open, go over gRPC; so do the base tables and the operator's edits (finsy's
``Switch.write``). ``switch.writes: grpc`` keeps every Write on gRPC.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket

import grpc
from finsy import Switch
from finsy.p4client import P4ClientError
from finsy.proto import rpc_status

from p4cs.controller.packetchan import ASK_TIMEOUT_S, RETRY_S, Refusals, granted
from p4cs.switch.dpdk.chanwrite import MAX_ANSWER, REQUEST, RID
from p4cs.switch.dpdk.errors import STATUS_CODES

LOG = logging.getLogger("p4cs.controller")

MODES = ("channel", "grpc")
#: Deadline of a Write, on the socket and over gRPC (finsy's own for its requests).
WRITE_TIMEOUT_S = 10.0

COUNTERS = ("channel_writes", "channel_writes_too_large")
#: The writer of each switch whose Writes go over its channel socket now.
_WRITERS: dict[int, "ChannelWriter"] = {}


def writer_of(sw: Switch) -> "ChannelWriter | None":
    """The open channel writer of ``sw``, if any (``write_raw`` asks)."""
    w = _WRITERS.get(id(sw))
    return w if w is not None and not w.closed else None


def _error(code: grpc.StatusCode, message: str, status: bytes = b"") -> P4ClientError:
    trailing = (grpc.aio.Metadata(("grpc-status-details-bin", status)) if status
                else grpc.aio.Metadata())
    return P4ClientError(grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing,
                                              details=message), "WriteRequest")


class ChannelWriter:
    """One Write connection to the switch's channel socket."""

    def __init__(self, sock: socket.socket, max_write: int, counters: dict | None = None):
        self.sock = sock
        self.max = max_write
        self.closed = False
        self.why = ""
        #: ``channel_writes`` sent on the socket, ``channel_writes_too_large`` sent by gRPC
        self.counters = counters if counters is not None else {}
        for k in COUNTERS:
            self.counters.setdefault(k, 0)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(cls, path: str, counters: dict | None = None) -> "ChannelWriter":
        """Connect to the channel socket at ``path`` and ask for Writes. OSError, or
        ValueError when the switch refuses (an older one: it takes the request for a
        channel request and refuses it)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, path)
            await loop.sock_sendall(sock, json.dumps(REQUEST).encode())
            try:
                msg = await asyncio.wait_for(loop.sock_recv(sock, 4096), ASK_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise ValueError(f"no answer within {ASK_TIMEOUT_S:.0f} s") from None
            limit = granted(msg, ValueError).get("max")
            if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
                raise ValueError("the answer has no valid max")
        except BaseException:
            sock.close()
            raise
        return cls(sock, limit, counters)

    def takes(self, n: int) -> bool:
        """Whether a WriteRequest of ``n`` bytes can go on the socket."""
        if n <= self.max:
            return True
        self.counters["channel_writes_too_large"] += 1
        return False

    async def write(self, data: bytes) -> None:
        """Send one serialized WriteRequest and wait for its answer; P4ClientError as over
        gRPC (UNAVAILABLE when the socket closes first, DEADLINE_EXCEEDED after
        ``WRITE_TIMEOUT_S``)."""
        if self.closed:
            raise _error(grpc.StatusCode.UNAVAILABLE, f"channel socket closed ({self.why})")
        rid = next(self._ids)
        fut = self._loop.create_future()
        self._pending[rid] = fut
        msg = RID.pack(rid) + data
        try:
            try:
                self.sock.send(msg)
            except BlockingIOError:
                await self._loop.sock_sendall(self.sock, msg)
        except OSError as e:
            self._pending.pop(rid, None)
            self.close(f"send failed: {e.strerror or e}")
            raise _error(grpc.StatusCode.UNAVAILABLE, f"channel socket: {e}") from None
        self.counters["channel_writes"] += 1
        timer = self._loop.call_later(WRITE_TIMEOUT_S, self._expire, rid)
        try:
            answer = await fut
        finally:
            timer.cancel()
            self._pending.pop(rid, None)
        if answer:
            self._raise(answer)

    @staticmethod
    def _raise(answer: bytes) -> None:
        try:
            st = rpc_status.Status.FromString(answer)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise _error(grpc.StatusCode.INTERNAL, "malformed answer on the channel socket") \
                from None
        code = STATUS_CODES.get(st.code, grpc.StatusCode.UNKNOWN)
        raise _error(code, st.message, answer if st.details else b"")

    def _expire(self, rid: int) -> None:
        fut = self._pending.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_exception(_error(grpc.StatusCode.DEADLINE_EXCEEDED,
                                     "Write on the channel socket: no answer"))

    def _readable(self) -> None:
        pending = self._pending
        while True:
            try:
                msg = self.sock.recv(MAX_ANSWER + RID.size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.close(f"receive failed: {e.strerror or e}")
                return
            if not msg:
                self.close("the switch closed it")
                return
            if len(msg) < RID.size:
                self.close("a malformed answer")
                return
            fut = pending.pop(RID.unpack_from(msg)[0], None)
            if fut is not None and not fut.done():
                fut.set_result(msg[RID.size:])

    def close(self, why: str = "closed") -> None:
        if self.closed:
            return
        self.closed, self.why = True, why
        if self.sock.fileno() >= 0:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(_error(grpc.StatusCode.UNAVAILABLE,
                                         f"channel socket closed ({why})"))
        self._pending.clear()
        if not self._done.done():
            self._done.set_result(None)

    async def wait_closed(self) -> None:
        await self._done


async def run(sw: Switch, advertised, counters: dict | None = None) -> None:
    """For one primary term: hold a channel writer for ``sw`` (:func:`writer_of`) whenever
    its channel socket (``await advertised(sw)``, None: none) takes Writes; its Writes go
    over gRPC otherwise. ``counters`` get the writers' counts. Cancelled when the term
    ends."""
    try:
        path = await advertised(sw)
    except Exception as exc:  # noqa: BLE001 - P4ClientError, a P4Info without a channel
        LOG.info("P4Runtime Writes over gRPC: no channel socket (%s)", exc)
        return
    if path is None:
        LOG.info("P4Runtime Writes over gRPC: the switch %s offers no channel socket",
                 sw.address)
        return
    tries = Refusals()
    while True:
        try:
            w = await ChannelWriter.open(path, counters)
        except (OSError, ValueError) as exc:
            if tries.unusable(exc, lambda why: LOG.info(
                    "P4Runtime Writes over gRPC: the channel socket %s of the switch %s cannot "
                    "be used from here (%s)", path, sw.address, why)):
                return
            if tries.first and isinstance(exc, ValueError):
                LOG.info("P4Runtime Writes over gRPC: the switch %s takes none on its channel "
                         "socket (%s)", sw.address, exc)
                return
            tries.failed(exc, lambda why: LOG.warning(
                "P4Runtime Writes on the channel socket %s: %s; over gRPC meanwhile", path, why))
            await asyncio.sleep(RETRY_S)
            continue
        tries.succeeded()
        _WRITERS[id(sw)] = w
        LOG.info("P4Runtime Writes of flows on the channel socket %s", path)
        try:
            await w.wait_closed()
        finally:
            if _WRITERS.get(id(sw)) is w:
                del _WRITERS[id(sw)]
            w.close("the primary term ended")
        LOG.warning("P4Runtime Writes on the channel socket ended (%s): over gRPC meanwhile",
                    w.why)
        await asyncio.sleep(RETRY_S)
