"""The direct packet channel: the daemon's CPU and copy ports handed to the primary controller.

A controller on the same host as the switch need not take its packets through this server
(PacketIn / PacketOut on the StreamChannel cost a protobuf and a gRPC message each way, per
packet). The server listens on a Unix socket (``SOCK_SEQPACKET``, mode 0600) and advertises
its path in the initial metadata of every Capabilities answer (key :data:`METADATA_KEY`).
The protocol, one message each way:

* the controller sends ``{"device_id": D, "role": R, "election_id": E}`` (JSON), and, when
  it runs N > 1 CS-processor workers, ``"workers": N`` and ``"spread"``: ``{"vips": [[IP,
  PORT]...], "snat": [IP...], "local": [IP...], "ports": [LO, HI], "mask": IP or null}``
  (dotted quads; :class:`p4cs.controller.spread.Spreader`'s parameters);
* the server checks that (R, E) is the primary of a connected StreamChannel and that no other
  role has a primary (PacketIns go to every primary: with another one, the channel would take
  them away from it), then answers ``{"ok": true, "packet_in": [...], "packet_out": [...]}``
  (the controller headers of the running pipeline, ``[id, name, bits]`` each: the controller
  checks that its P4Info agrees) with the CPU port's and the copy port's sockets attached
  (SCM_RIGHTS), N pairs of them with N workers: the daemon then sends each punt and copy to
  the pair of the worker that owns its connection (``spread``, dataplane/src/spread.c);
  otherwise ``{"ok": false, "error": "..."}``, and it closes the connection.

The connection then stays open: it is the lease. While it lasts the server does not read the
two ports (the controller does; PacketOuts of the StreamChannel are still sent, and the
controller writes its packet-outs to the CPU port itself). The lease ends when the controller
closes the connection (or dies: the kernel closes it), when its stream stops being the
primary or disconnects, when another role gets a primary, when another request of the primary
replaces it, and when the daemon stops (pipeline change, death). The server then closes the
connection (the controller must drop its copies of the sockets when it reads the end) and
reads the ports again: PacketIns flow over the StreamChannel until a primary asks again.

The socket answers two other requests: ``{"op": "stats"}``, the data plane's counters
(:mod:`.statsreq`), and ``{"op": "write"}``, which makes the connection one that carries
P4Runtime Writes (:mod:`.chanwrite`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path
from typing import Callable

from finsy.proto import p4r

from . import chanwrite, statsreq
from .arbitration import Arbiter, StreamConn
from .daemon import DaemonError
from .errors import P4RTError
from .pipeline import Pipeline
from .schema import ControllerHeader

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

#: gRPC metadata key of the Capabilities answer that carries the channel's socket path.
METADATA_KEY = "p4cs-packet-channel"
#: Largest request or answer (JSON) on the channel socket.
MAX_MSG = 4096
#: Virtual services, SNAT and switch addresses a ``spread`` line carries at most (the
#: daemon's MAX_SPREAD_TOKENS less the line's five numbers).
MAX_SPREAD_ADDRESSES = 245
#: Seconds a client may take between connecting and sending its request.
REQUEST_TIMEOUT_S = 5.0


def default_path(run_dir: Path, grpc_addr: str) -> Path:
    """The channel socket of a switch serving P4Runtime on ``grpc_addr`` (HOST:PORT, the port
    it actually listens on): ``<run_dir>/p4rt-<host>-<port>.packets``."""
    host, _, port = grpc_addr.rpartition(":")
    return run_dir / f"p4rt-{host.strip('[]') or '0.0.0.0'}-{port}.packets"


def header_layout(hdr: ControllerHeader | None) -> list[list]:
    """A controller header as the channel's answer describes it: ``[id, name, bits]`` each."""
    return [] if hdr is None else [[mid, name, bw] for mid, name, bw in hdr.fields]


class Lease:
    """The channel handed to one primary: the connection that holds it and the stream it is
    bound to."""

    __slots__ = ("conn", "stream", "daemon")

    def __init__(self, conn: socket.socket, stream: StreamConn, daemon):
        self.conn, self.stream, self.daemon = conn, stream, daemon


def spread_line(spec, workers: int, packet_in: ControllerHeader | None) -> str:
    """The daemon's ``spread`` line for ``workers`` workers and the request's ``spread``
    object; ValueError when it is malformed."""
    if not isinstance(spec, dict):
        raise ValueError("malformed request: spread (an object) is expected with workers > 1")

    def ip(x) -> str:
        if not isinstance(x, str):
            raise ValueError(f"malformed request: {x!r} is not an IPv4 address")
        try:
            return str(ipaddress.IPv4Address(x))
        except ValueError:
            raise ValueError(f"malformed request: {x!r} is not an IPv4 address") from None

    def port(x) -> int:
        if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x <= 65535:
            raise ValueError(f"malformed request: {x!r} is not a port")
        return x

    try:
        vips = [f"v={ip(a)}:{port(p)}" for a, p in spec.get("vips", [])]
        snat = [f"s={ip(a)}" for a in spec.get("snat", [])]
        local = [f"l={ip(a)}" for a in spec.get("local", [])]
        lo, hi = (port(p) for p in spec.get("ports", [1024, 65535]))
    except (TypeError, ValueError) as e:
        raise ValueError(str(e) if isinstance(e, ValueError) and "malformed" in str(e)
                         else "malformed request: spread") from None
    mask = spec.get("mask")
    words = vips + snat + local
    if len(words) > MAX_SPREAD_ADDRESSES:
        raise ValueError(f"{len(words)} addresses to spread by: the data plane takes at most "
                         f"{MAX_SPREAD_ADDRESSES}")
    hdr = 0 if packet_in is None else packet_in.nbytes
    return " ".join(["spread", str(workers), str(hdr), str(lo), str(hi),
                     "-" if mask is None else ip(mask)] + words)


class PacketChannel:
    """The Unix socket of the channel and its lease (at most one)."""

    def __init__(self, path: str | Path, arbiter: Arbiter, running: Callable[[], Pipeline | None],
                 write: chanwrite.WriteFn | None = None):
        self.path = str(path)
        self._write = write
        self._writers: set[chanwrite.WriteConn] = set()
        self.arbiter = arbiter
        self._running = running
        self.lease: Lease | None = None
        self.counters = {"granted": 0, "refused": 0, "ended": 0, "writes": 0,
                         "write_malformed": 0}
        self._sock: socket.socket | None = None
        self._inode = 0

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on the channel socket (a stale one left by a dead switch is replaced).
        OSError: the path is unusable or a live process serves it."""
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as probe:
                if probe.connect_ex(self.path) == 0:
                    raise OSError("another process serves it")
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            sock.listen(8)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._inode = path.stat().st_ino
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_accept)
        LOG.info("direct packet channel on %s", self.path)

    def stop(self) -> None:
        self.end("the switch stops")
        for w in self._writers:
            w.close()
        self._writers.clear()
        if self._sock is None:
            return
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        try:
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass

    # -- requests -------------------------------------------------------------------------

    def _on_accept(self) -> None:
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            LOG.warning("packet channel: accept failed: %s", e)
            return
        conn.setblocking(False)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(REQUEST_TIMEOUT_S, self._drop, conn)
        loop.add_reader(conn.fileno(), self._on_request, conn, timer)

    @staticmethod
    def _drop(conn: socket.socket) -> None:
        if conn.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(conn.fileno())
            conn.close()

    def _on_request(self, conn: socket.socket, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        asyncio.get_running_loop().remove_reader(conn.fileno())
        try:
            data = conn.recv(MAX_MSG)
        except OSError:
            data = b""
        if not data:        # closed without asking (e.g. a switch checking the path is free)
            conn.close()
            return
        try:
            req = json.loads(data)
        except ValueError:
            req = None
        if req == statsreq.REQUEST:
            statsreq.answer(conn, self._running())
            return
        if self._write is not None and req == chanwrite.REQUEST:
            w = chanwrite.WriteConn(conn, self._write, self.counters)
            self._writers = {x for x in self._writers if x.conn.fileno() >= 0}
            self._writers.add(w)
            w.start()
            return
        asyncio.ensure_future(self._answer(conn, req))

    async def _answer(self, conn: socket.socket, req) -> None:
        try:
            stream, pipe, workers, line = self._check(req)
            await self._grant(conn, stream, pipe, workers, line)
        except (ValueError, P4RTError, OSError, DaemonError) as e:
            why = e.message if isinstance(e, P4RTError) else str(e)
            self.counters["refused"] += 1
            LOG.info("packet channel refused: %s", why)
            try:
                conn.send(json.dumps({"ok": False, "error": why}).encode())
            except OSError:
                pass
            conn.close()

    def _check(self, req) -> tuple[StreamConn, Pipeline, int, str | None]:
        """The primary stream a request (its JSON, None if it is none) names, the running
        pipeline, the number of workers and the daemon's ``spread`` line for them (None: one
        worker); ValueError or P4RTError (not primary) otherwise."""
        if not isinstance(req, dict):
            raise ValueError("malformed request: a JSON object is expected")
        dev, role, eid = req.get("device_id"), req.get("role", ""), req.get("election_id")
        ints = all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (dev, eid))
        if not isinstance(role, str) or not ints:
            raise ValueError("malformed request: device_id, election_id (integers) and role "
                             "(a string) are expected")
        if dev != self.arbiter.device_id:
            raise ValueError(f"device id {dev} is not this switch's ({self.arbiter.device_id})")
        if eid >> 128:
            raise ValueError("election_id does not fit in 128 bits")
        election = p4r.Uint128(high=eid >> 64, low=eid & 0xFFFFFFFFFFFFFFFF)
        self.arbiter.check_primary(role, election, True)
        stream = self.arbiter.roles[role].primary
        others = [c for c in self.arbiter.primaries() if c is not stream]
        if others:
            raise ValueError("another role has a primary: packet-ins go to every primary, "
                             "over the StreamChannel")
        pipe = self._running()
        if pipe is None or pipe.daemon.dead is not None:
            raise ValueError("no running pipeline")
        workers = req.get("workers", 1)
        if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
            raise ValueError("malformed request: workers must be an integer 1..64")
        line = None
        if workers > 1:
            if workers > pipe.daemon.channels:
                raise ValueError(f"{workers} workers: this switch offers "
                                 f"{pipe.daemon.channels} packet channels "
                                 "(p4cs switch --packet-channels)")
            line = spread_line(req.get("spread"), workers, pipe.schema.packet_in)
        return stream, pipe, workers, line

    async def _grant(self, conn: socket.socket, stream: StreamConn, pipe: Pipeline,
                     workers: int, line: str | None) -> None:
        self.end("replaced by a new request of the primary")
        if line is not None:
            # after the `spread off` of the lease just ended, and before the sockets are
            # handed out: no punt of a worker's reaches another's
            await pipe.daemon.unspread_sent()
            reply = await pipe.daemon.request([line])
            if reply != ["ok"]:
                raise ValueError(f"the data plane refused to spread its punts: {reply[0]}")
            if self._running() is not pipe or self.lease is not None:
                raise ValueError("the pipeline changed meanwhile")
        pairs = pipe.daemon.hand_out(lambda: self.end("the data-plane daemon stopped"), workers)
        lease = Lease(conn, stream, pipe.daemon)
        self.lease = lease
        answer = {"ok": True, "packet_in": header_layout(pipe.schema.packet_in),
                  "packet_out": header_layout(pipe.schema.packet_out)}
        try:
            socket.send_fds(conn, [json.dumps(answer).encode()],
                            [s.fileno() for pair in pairs for s in pair])
        except OSError:
            self.end("the answer could not be sent")
            raise
        self.counters["granted"] += 1
        asyncio.get_running_loop().add_reader(conn.fileno(), self._on_lease_readable)
        LOG.info("packet channel handed to the primary %s (election id %s): the CPU port is "
                 "read by the controller", stream.peer, stream.election_id)

    # -- the lease ------------------------------------------------------------------------

    def _on_lease_readable(self) -> None:
        lease = self.lease
        if lease is None:
            return
        try:
            data = lease.conn.recv(MAX_MSG)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self.end("the controller closed it" if not data else "the controller sent a message")

    def check(self) -> None:
        """End the lease if its stream is no longer the one primary (called after every
        arbitration change)."""
        lease = self.lease
        if lease is None:
            return
        if not self.arbiter.is_primary(lease.stream):
            self.end("its stream is no longer primary")
        elif any(c is not lease.stream for c in self.arbiter.primaries()):
            self.end("another role has a primary")

    def end(self, why: str) -> None:
        """End the lease, if any: close its connection, read the ports again."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        self.counters["ended"] += 1
        if lease.conn.fileno() >= 0:
            asyncio.get_running_loop().remove_reader(lease.conn.fileno())
            lease.conn.close()
        lease.daemon.take_back()
        LOG.info("packet channel ended (%s): packet-ins go over the StreamChannel", why)

