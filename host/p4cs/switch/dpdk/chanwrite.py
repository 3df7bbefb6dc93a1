"""P4Runtime Writes on the channel socket (:mod:`.pktchan`), for a controller on the switch's host.

A unary Write over gRPC costs the controller and this server ~0.6 ms of CPU together
whatever it carries (HTTP/2 framing, gRPC's call objects and threads on both ends, measured
with ``bench/grpc_call.py``), and its round trip crosses both processes' gRPC machinery:
for the flow installs of new connections, coalesced into a Write every few milliseconds,
that is most of what binding a connection costs outside the CS processor itself.

A connection to the channel socket (``SOCK_SEQPACKET``, mode 0600: processes of the switch's
user only) whose first message is ``{"op": "write"}`` (JSON) becomes a Write connection. The
server answers ``{"ok": true, "max": N}``; from then on every message the controller sends is
an 8-byte request id (little-endian) followed by a serialized ``p4.v1.WriteRequest`` of at
most N bytes, and the server answers each with the same id followed by what gRPC would carry
in its status: nothing when the Write succeeded, else a serialized ``google.rpc.Status``
(the code and message of the failure; for failed updates, code UNKNOWN and one
``p4.v1.Error`` per update in its details, exactly the ``grpc-status-details-bin`` of the
gRPC answer). Writes are answered as they complete; several may be in flight.

Nothing else differs from the gRPC ``Write``: the same handler applies the request, with the
same checks (device id, the primary of the request's role and election id, atomicity) and the
same per-update results. The socket only replaces the transport; the controller sends Writes
larger than N (and every Write when it cannot open the socket) over gRPC. A malformed
message (shorter than a request id, or larger than N) is counted, logged and ends the
connection; the controller then writes over gRPC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from typing import Awaitable, Callable

from finsy.proto import rpc_status

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

#: The request that makes a channel connection a Write connection, as sent.
REQUEST = {"op": "write"}
#: Request id before every WriteRequest and every answer.
RID = struct.Struct("<Q")
#: Largest WriteRequest taken on the socket (an AF_UNIX datagram must fit in the sender's
#: socket buffer: 208 KiB by default, ``net.core.wmem_default``).
MAX_WRITE = 160 << 10
#: Largest answer sent whole; a longer Status (one p4.v1.Error per update of a request with
#: thousands of updates) goes without its details: the whole Write counts as failed.
MAX_ANSWER = 160 << 10
#: Messages read at one wake-up before the loop runs other work.
BATCH = 64

#: Applies one serialized WriteRequest; b"" when it succeeded, else a serialized Status.
WriteFn = Callable[[bytes], Awaitable[bytes]]


class WriteConn:
    """One Write connection: each message applied by ``write``, answered with its id."""

    def __init__(self, conn: socket.socket, write: WriteFn, counters: dict):
        self.conn = conn
        self._write = write
        self._counters = counters
        self._tasks: set[asyncio.Task] = set()
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        """Answer the request and take Writes until the controller closes the connection."""
        try:
            self.conn.send(json.dumps({"ok": True, "max": MAX_WRITE}).encode())
        except OSError:
            self.conn.close()
            return
        self._loop.add_reader(self.conn.fileno(), self._readable)
        LOG.info("P4Runtime Writes on the channel socket: a controller connected")

    def close(self) -> None:
        if self.conn.fileno() >= 0:
            self._loop.remove_reader(self.conn.fileno())
            self.conn.close()
        for t in self._tasks:
            t.cancel()

    def _readable(self) -> None:
        conn = self.conn
        for _ in range(BATCH):
            try:
                data, _anc, flags, _addr = conn.recvmsg(MAX_WRITE + RID.size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, flags = b"", 0
            if not data:
                self.close()
                return
            if len(data) < RID.size or flags & socket.MSG_TRUNC:
                self._counters["write_malformed"] += 1
                LOG.warning("P4Runtime Writes on the channel socket: a malformed message "
                            "(%d bytes%s): connection closed", len(data),
                            ", truncated" if flags & socket.MSG_TRUNC else "")
                self.close()
                return
            self._counters["writes"] += 1
            task = self._loop.create_task(self._one(data[:RID.size], data[RID.size:]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _one(self, rid: bytes, raw: bytes) -> None:
        status = await self._write(raw)
        if len(status) > MAX_ANSWER:
            st = rpc_status.Status.FromString(status)
            del st.details[:]
            status = st.SerializeToString()
        try:
            await self._loop.sock_sendall(self.conn, rid + status)
        except OSError:
            self.close()
