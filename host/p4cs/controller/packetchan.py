"""The controller's packet I/O with the switch: PacketIn / PacketOut on the P4Runtime stream,
or the direct packet channel of the DPDK target.

``packet_io: direct`` (the default): when the switch advertises a channel socket (the
``p4cs-packet-channel`` key in the initial metadata of its Capabilities answer,
:mod:`p4cs.switch.dpdk.pktchan`), the primary asks it for the data-plane daemon's CPU and
copy ports, presenting its election id, and from then on reads the punted frames and writes
its packet-outs there itself: no protobuf, no gRPC message, no switch-server work per packet.
The frames are read from the asyncio loop (``add_reader``), every frame available at a
wake-up in one batch (``recvmmsg``, and packet-outs written with ``sendmmsg``, where the
``_mmsg`` extension is built); their packet_in header is decoded with the P4Info's
``controller_packet_metadata``, copy-port messages (4-byte input port, then a FIN/RST copy)
become packet-ins of reason ``REASON_FLOW_END``. A switch without a channel (BMv2, a remote
switch, ``--packet-socket none``) gets one log line and the P4Runtime stream.

``switch.packet_port: IFACE`` (with ``packet_io: direct``): the CS processor is attached to a
data-plane port of the switch, the way the source documents hang it off a switch port. BMv2
run with ``p4cs switch --packet-veth IFACE`` has its CPU port on the peer of IFACE and no
``--cpu-port``: its packet-ins leave on that port with their packet_in header, and frames
arriving there are parsed as packet-outs. The controller reads and writes IFACE with a packet
socket (:func:`open_port`), frames of the same layout as the DPDK daemon's CPU port; FIN/RST
copies come with them (a packet_in of reason ``REASON_FLOW_END``, BMv2's clone session).

The stream keeps being read in both modes: while the channel is held the switch sends no
PacketIn on it, and when the channel ends (the switch closes it: pipeline change, another
primary) the packets are back on the stream at once; the channel is asked for again a moment
later. ``packet_io: p4runtime`` uses the stream only.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
from collections.abc import Awaitable, Callable

from finsy import Switch
from finsy.p4client import P4ClientError
from finsy.proto import p4r

from p4cs.constants import REASON_FLOW_END
from p4cs.switch.dpdk.packetio import COPY_PORT_BYTES
from p4cs.switch.dpdk.pktchan import MAX_MSG, METADATA_KEY, header_layout
from p4cs.switch.dpdk.schema import ControllerHeader

LOG = logging.getLogger("p4cs.controller")

MODES = ("direct", "p4runtime")
#: Frames read per port at one wake-up (then the loop runs other work before reading on).
BATCH = 256
#: Seconds to wait for the channel's answer, and before asking again after it ended.
ASK_TIMEOUT_S = 5.0
RETRY_S = 1.0
#: Seconds a packet-out may wait for room in the CPU port before it is dropped.
SEND_TIMEOUT_S = 1.0

#: Bytes read per frame: a frame, its packet_in header and a copy port's prefix fit.
RECV_BYTES = 65536

try:        # recvmmsg / sendmmsg (setup.py builds it; optional)
    from p4cs.controller import _mmsg
except ImportError:     # pragma: no cover - the package built without a compiler
    _mmsg = None


def _receive(sock: socket.socket, limit: int | None) -> list[bytes]:
    """The frames waiting on the non-blocking ``sock``, at most ``limit`` (None: all); a b""
    last means the peer closed. recvmmsg batches of up to BATCH where ``_mmsg`` is built,
    one recv each otherwise. Errors other than "nothing waiting" raise OSError."""
    if _mmsg is not None:
        fd = sock.fileno()
        out: list[bytes] = []
        while limit is None or len(out) < limit:
            n = BATCH if limit is None else min(BATCH, limit - len(out))
            got = _mmsg.recv_many(fd, n, RECV_BYTES)
            out += got
            if len(got) < n or (got and not got[-1]):
                break
        return out
    out = []
    for _ in (itertools.count() if limit is None else range(limit)):
        try:
            frame = sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            break
        out.append(frame)
        if not frame:
            break
    return out


#: (payload, ingress port, reason) of one punted packet.
PacketIn = tuple[bytes, int, int]


def read_port(sock: socket.socket, codec: "FrameCodec", copy: bool,
              limit: int | None) -> tuple[list[PacketIn], int, bool]:
    """The frames waiting on a CPU port's socket (``copy``: a copy port's) as packet-ins, at
    most ``limit`` (None: all); the number of malformed ones (dropped) and whether the peer
    closed. OSError as ``_receive``."""
    out: list[PacketIn] = []
    bad = 0
    for frame in _receive(sock, limit):
        if not frame:
            return out, bad, True
        if copy:
            pkt = None if len(frame) <= COPY_PORT_BYTES else (
                frame[COPY_PORT_BYTES:], int.from_bytes(frame[:COPY_PORT_BYTES], "big"),
                REASON_FLOW_END)
        else:
            pkt = codec.decode(frame)
        if pkt is None:
            bad += 1
            continue
        out.append(pkt)
    return out, bad, False


class ChannelRefused(Exception):
    """The switch refused the channel, or its answer is unusable."""


class FrameCodec:
    """The packet_in fields a CPU-port frame carries and the packet_out field it is sent with,
    as shifts and masks of the header read as one integer (``ControllerHeader.decode`` /
    ``encode``, unrolled); plain data, for the workers that read their own channel."""

    __slots__ = ("_n_in", "_port", "_reason", "_n_out", "_egress_shift")

    def __init__(self, n_in: int, port: tuple[int, int], reason: tuple[int, int], n_out: int,
                 egress_shift: int):
        self._n_in, self._port, self._reason = n_in, port, reason
        self._n_out, self._egress_shift = n_out, egress_shift

    def codec(self) -> "FrameCodec":
        """This codec alone (a ``Headers``' without its P4Info parts), to pass to a worker."""
        return FrameCodec(self._n_in, self._port, self._reason, self._n_out,
                          self._egress_shift)

    def decode(self, frame: bytes) -> PacketIn | None:
        """A CPU-port frame as (payload, port, reason); None when it is shorter than the header."""
        n = self._n_in
        if len(frame) < n:
            return None
        x = int.from_bytes(frame[:n], "big")
        (psh, pmask), (rsh, rmask) = self._port, self._reason
        return frame[n:], (x >> psh) & pmask, (x >> rsh) & rmask

    def encode(self, port: int, frame: bytes) -> bytes:
        """The packet-out header (egress_port set, every other field 0) and the frame."""
        return (port << self._egress_shift).to_bytes(self._n_out, "big") + frame


class Headers(FrameCodec):
    """The packet_in and packet_out headers of the P4Info (the layout the daemon's CPU port
    frames carry)."""

    __slots__ = ("pin", "pout", "reason_id", "port_id", "egress_id")

    def __init__(self, schema):
        cpm = schema.controller_packet_metadata
        self.pin = ControllerHeader.from_p4info(cpm["packet_in"].pbuf)
        self.pout = ControllerHeader.from_p4info(cpm["packet_out"].pbuf)
        self.reason_id = self.pin.field_id("reason")
        self.port_id = self.pin.field_id("ingress_port")
        self.egress_id = self.pout.field_id("egress_port")
        if None in (self.reason_id, self.port_id, self.egress_id):
            raise ValueError("the P4Info's packet_in needs reason and ingress_port fields, its "
                             "packet_out an egress_port field")
        # the two fields a packet-in needs and the one a packet-out sets
        super().__init__(self.pin.nbytes, self._shift_mask(self.pin, self.port_id),
                         self._shift_mask(self.pin, self.reason_id), self.pout.nbytes,
                         self.pout.by_id[self.egress_id][0])

    @staticmethod
    def _shift_mask(hdr, mid: int) -> tuple[int, int]:
        sh, bw = hdr.by_id[mid]
        return sh, (1 << bw) - 1


class Lease:
    """The channel while this controller holds it: the connection (its end is the lease's
    end), the two ports' sockets and the headers of their frames. A packet port
    (:func:`open_port`) has neither connection nor copy port."""

    def __init__(self, conn: socket.socket | None, cpu: socket.socket,
                 copy: socket.socket | None, headers: Headers,
                 extra: list[tuple[socket.socket, socket.socket]] | None = None):
        self.conn, self.cpu, self.copy, self.headers = conn, cpu, copy, headers
        #: the (CPU, copy) socket pairs of workers 1.. (the data plane spreads the punts)
        self.extra = extra or []
        self.ended = asyncio.Event()
        self.why = ""
        self.renew = False      # ended to be asked for again at once (``renew``)
        self.waiter: asyncio.Future | None = None   # hold()'s wait for frames (or the end)
        # the ports whose reader fired since they were last read (one receive call each then,
        # not one on each port at every wake-up)
        self.cpu_ready = self.copy_ready = False

    def wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def cpu_readable(self) -> None:
        self.cpu_ready = True
        self.wake()

    def copy_readable(self) -> None:
        self.copy_ready = True
        self.wake()

    def end(self, why: str) -> None:
        if not self.ended.is_set():
            self.why = why
            self.ended.set()
            self.wake()

    def renew_now(self, why: str) -> None:
        """End the lease to ask for the channel again at once (what the data plane was told
        when it was granted has changed)."""
        self.renew = True
        self.end(why)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for s in (self.conn, self.cpu, self.copy):
            if s is not None and s.fileno() >= 0:
                loop.remove_reader(s.fileno())
                s.close()
        for pair in self.extra:
            for s in pair:
                s.close()


async def advertised_channel(sw: Switch) -> str | None:
    """The channel socket path the switch advertises in its Capabilities answer, if any."""
    stub = sw._p4client._stub     # noqa: SLF001 (finsy keeps the call's metadata to itself)
    call = stub.Capabilities(p4r.CapabilitiesRequest(), timeout=10)
    try:
        await call
        md = await call.initial_metadata()
    except Exception as exc:  # noqa: BLE001 - grpc.aio raises AioRpcError and friends
        raise P4ClientError(exc, "Capabilities") from None
    for key, value in md or ():
        if key == METADATA_KEY:
            return value if isinstance(value, str) else value.decode()
    return None


def granted(msg: bytes, error: type[Exception]) -> dict:
    """The channel socket's JSON answer ``msg`` when it grants the request; ``error`` with
    the switch's reason (or what is wrong with the answer) otherwise."""
    try:
        answer = json.loads(msg) if msg else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise error("the answer is not a JSON object")
    if not answer.get("ok"):
        raise error(str(answer.get("error", "refused")))
    return answer


async def ask(path: str, headers: Headers, device_id: int, election_id: int,
              role: str = "", workers: int = 1, spread: dict | None = None) -> Lease:
    """Ask the switch's channel at ``path`` for the ports, as the primary of ``role`` with
    ``election_id``; for ``workers`` > 1, a pair of ports per worker, the punts spread over
    them as ``spread`` says (``Spreader.request``). ChannelRefused, OSError."""
    loop = asyncio.get_running_loop()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    conn.setblocking(False)
    try:
        await loop.sock_connect(conn, path)
        req = {"device_id": device_id, "role": role, "election_id": election_id}
        if workers > 1:
            req.update(workers=workers, spread=spread)
        await loop.sock_sendall(conn, json.dumps(req).encode())
        readable = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, ASK_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise ChannelRefused(f"no answer within {ASK_TIMEOUT_S:.0f} s") from None
        finally:
            loop.remove_reader(conn.fileno())
        msg, fds, _flags, _addr = socket.recv_fds(conn, MAX_MSG, 2 * workers)
    except BaseException:
        conn.close()
        raise
    socks = [socket.socket(fileno=fd) for fd in fds]
    try:
        answer = granted(msg, ChannelRefused)
        if len(socks) != 2 * workers:
            raise ChannelRefused(f"the answer carries {len(socks)} sockets, not {2 * workers}")
        for key, hdr in (("packet_in", headers.pin), ("packet_out", headers.pout)):
            if answer.get(key) != header_layout(hdr):
                raise ChannelRefused(f"the running pipeline's {key} header differs from the "
                                     "P4Info's")
    except BaseException:
        conn.close()
        for s in socks:
            s.close()
        raise
    for s in socks:
        s.setblocking(False)
    return Lease(conn, socks[0], socks[1], headers,
                 [(socks[i], socks[i + 1]) for i in range(2, len(socks), 2)])


#: Linux (<linux/if_packet.h>): SOL_PACKET, and the packet-socket option that keeps a socket's
#: own sends (and the kernel's) out of its receive queue; neither is in Python 3.11's socket.
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
SO_RCVBUFFORCE = 33     # SO_RCVBUF above net.core.rmem_max (CAP_NET_ADMIN)
#: Receive buffer of a packet port's socket: bursts of punted SYNs and FIN copies.
PORT_RCVBUF = 8 << 20


def open_port(iface: str, headers: Headers) -> Lease:
    """The packet port ``iface`` as a lease: a packet socket bound to it that receives only
    what arrives from the switch. OSError (no such interface, no privileges)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)   # nothing queued before bind
    try:
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, PORT_RCVBUF)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PORT_RCVBUF)
        sock.bind((iface, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Lease(None, sock, None, headers)


class Refusals:
    """The retry loop of a channel socket (packets, Writes): whether an error met at the first
    attempt means that this controller cannot use the socket at all, and one warning per
    distinct reason while it retries."""

    def __init__(self) -> None:
        self.first, self.last = True, ""

    def unusable(self, exc: BaseException, say: Callable[[str], object]) -> bool:
        """At the first attempt: ``exc`` says the socket is not for this controller (a switch
        on another host or in another mount namespace, or of another user); ``say(reason)``
        then."""
        if self.first and isinstance(exc, (FileNotFoundError, ConnectionRefusedError,
                                           PermissionError)):
            say(getattr(exc, "strerror", None) or str(exc))
            return True
        return False

    def failed(self, exc: BaseException, warn: Callable[[str], object]) -> None:
        """An attempt failed: ``warn(reason)`` unless the previous one failed the same way."""
        self.first = False
        if str(exc) != self.last:
            self.last = str(exc)
            warn(self.last)

    def succeeded(self) -> None:
        self.first, self.last = False, ""


class PacketPath:
    """Packet-ins to ``handle`` and packet-outs to the switch, in the configured mode, for
    the primary terms of one controller."""

    def __init__(self, mode: str, handle: Callable[[list[PacketIn]], Awaitable[None]],
                 port: str | None = None):
        if mode not in MODES:
            raise ValueError(f"packet I/O must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.port = port
        self._handle = handle
        self._lease: Lease | None = None
        #: with CS-processor workers (``controller.workers``): the number of workers and the
        #: data plane's spread of the punts to ask the channel for, and what the workers are
        #: told when a lease with their ports begins and ends
        self.spread: Callable[[], tuple[int, dict]] | None = None
        self.on_lease: Callable[[Lease], None] | None = None
        self.on_lease_end: Callable[[], None] | None = None
        # grpc.aio allows one write in flight per stream (a second one fails with
        # GRPC_CALL_ERROR_TOO_MANY_OPERATIONS and kills it): packet-outs on the stream queue.
        self._stream_lock = asyncio.Lock()
        self.counters = {"packet_in_malformed": 0, "packet_out_dropped": 0, "channel_grants": 0}

    @property
    def active(self) -> str:
        """How packets go right now: ``direct`` (the channel is held) or ``p4runtime``."""
        return "direct" if self._lease is not None else "p4runtime"

    async def run(self, sw: Switch) -> None:
        """The packet loops of one primary term (cancelled when it ends)."""
        stream = asyncio.ensure_future(self._stream_loop(sw))
        try:
            if self.mode == "direct":
                await self._direct(sw)
            await stream
        finally:
            stream.cancel()

    async def _stream_loop(self, sw: Switch) -> None:
        async for pkt in sw.read_packets(queue_size=65536):
            meta = pkt.metadata
            await self._handle([(pkt.payload, int(meta.get("ingress_port", 0)),
                                 int(meta.get("reason", 0)))])

    # -- the direct channel ---------------------------------------------------------------

    async def _direct(self, sw: Switch) -> None:
        """Hold the channel whenever the switch gives it; return if it offers none."""
        if self.port is not None:
            await self._on_port(Headers(sw.p4info), self.port)
            return
        try:
            headers = Headers(sw.p4info)
            path = await advertised_channel(sw)
        except (ValueError, KeyError) as exc:
            LOG.info("packet I/O over P4Runtime: no direct channel with this P4Info (%s)", exc)
            return
        except P4ClientError as exc:
            LOG.info("packet I/O over P4Runtime: Capabilities failed (%s)", exc.message or exc)
            return
        if path is None:
            LOG.info("packet I/O over P4Runtime: the switch %s offers no direct packet channel",
                     sw.address)
            return
        tries, spread_refusals = Refusals(), Refusals()
        while True:
            workers, spread = (1, None) if self.spread is None else self.spread()
            try:
                try:
                    lease = await ask(path, headers, sw.device_id, sw.election_id,
                                      sw.role_name or "", workers, spread)
                except ChannelRefused as exc:
                    if workers == 1:
                        raise
                    # a switch that cannot spread (too few channels, an older one): one
                    # channel, the controller hands the workers their frames
                    spread_refusals.failed(exc, lambda why: LOG.warning(
                        "the switch does not spread the punts over %d workers (%s): the "
                        "controller relays them", workers, why))
                    lease = await ask(path, headers, sw.device_id, sw.election_id,
                                      sw.role_name or "")
            except (ChannelRefused, OSError) as exc:
                if tries.unusable(exc, lambda why: LOG.info(
                        "packet I/O over P4Runtime: the direct packet channel %s of the switch "
                        "%s cannot be used from here (%s)", path, sw.address, why)):
                    return
                tries.failed(exc, lambda why: LOG.warning(
                    "direct packet channel %s refused (%s): packet I/O over P4Runtime "
                    "meanwhile", path, why))
                await asyncio.sleep(RETRY_S)
                continue
            tries.succeeded()
            self.counters["channel_grants"] += 1
            LOG.info("packet I/O on the direct channel %s%s", path,
                     f", punts spread over {1 + len(lease.extra)} workers" if lease.extra
                     else "")
            await self.hold(lease)
            if lease.renew:
                LOG.info("direct packet channel renewed (%s)", lease.why)
                continue
            LOG.info("direct packet channel ended (%s): packet I/O over P4Runtime meanwhile",
                     lease.why)
            await asyncio.sleep(RETRY_S)

    async def _on_port(self, headers: Headers, iface: str) -> None:
        """Packet I/O on the packet port ``iface`` for the whole term (it is opened again a
        moment after it fails: the switch makes it when it starts)."""
        failed = ""
        while True:
            try:
                lease = open_port(iface, headers)
            except OSError as exc:
                if str(exc) != failed:
                    LOG.warning("packet port %s: %s (packet-ins wait for it)", iface,
                                exc.strerror or exc)
                    failed = str(exc)
                await asyncio.sleep(RETRY_S)
                continue
            failed = ""
            self.counters["channel_grants"] += 1
            LOG.info("packet I/O on the packet port %s", iface)
            await self.hold(lease)
            LOG.warning("packet port %s ended (%s)", iface, lease.why)
            await asyncio.sleep(RETRY_S)

    async def hold(self, lease: Lease) -> None:
        """Packet I/O on the channel until the lease ends; then it is closed."""
        loop = asyncio.get_running_loop()
        if lease.conn is not None:
            loop.add_reader(lease.conn.fileno(), lease.end, "the switch closed it")
        loop.add_reader(lease.cpu.fileno(), lease.cpu_readable)
        if lease.copy is not None:
            loop.add_reader(lease.copy.fileno(), lease.copy_readable)
        self._lease = lease
        if lease.extra and self.on_lease is not None:
            self.on_lease(lease)
        try:
            while not lease.ended.is_set():
                # one future per wake-up, resolved by the ports' readers or the lease's end
                lease.waiter = loop.create_future()
                await lease.waiter
                pkts = self._read(lease)
                if pkts:
                    await self._handle(pkts)
        finally:
            lease.waiter = None
            self._lease = None
            if lease.extra and self.on_lease_end is not None:
                self.on_lease_end()
            lease.close()

    async def flush_copies(self) -> None:
        """Handle every FIN/RST copy waiting on the channel's copy port now: an expiry
        notification (on the P4Runtime stream) must not overtake the copies the data plane
        sent before it (controller.teardown)."""
        lease = self._lease
        if lease is not None and lease.copy is not None:
            pkts = self._read(lease, copies_only=True)
            if pkts:
                await self._handle(pkts)

    def _read(self, lease: Lease, copies_only: bool = False) -> list[PacketIn]:
        """Every frame waiting on the ports whose reader fired (up to ``BATCH`` each; with
        ``copies_only``, every one waiting on the copy port). A port with frames left after
        ``BATCH`` fires again (level-triggered)."""
        out: list[PacketIn] = []
        hdr = lease.headers
        if copies_only:
            ports = ((lease.copy, True),)
        else:
            ports = ((lease.cpu, False),) if lease.cpu_ready else ()
            if lease.copy_ready:
                ports += ((lease.copy, True),)
            lease.cpu_ready = lease.copy_ready = False
        for sock, copy in ports:
            if sock is None:
                continue
            try:
                pkts, bad, closed = read_port(sock, hdr, copy, None if copies_only else BATCH)
            except OSError as exc:
                lease.end(f"receive failed: {exc.strerror or exc}")
                return out
            out += pkts
            self.counters["packet_in_malformed"] += bad
            if closed:
                lease.end("the data-plane daemon closed its ports")
                return out
        return out

    # -- packet-outs ----------------------------------------------------------------------

    async def send(self, sw: Switch, enc, frames: list[tuple[int, bytes]]) -> None:
        """Send (port, frame) packet-outs: on the channel while it is held, else on the
        stream (``enc`` builds the PacketOut messages)."""
        lease = self._lease
        if lease is not None:
            frames = await self._send_direct(lease, frames)
            if not frames:
                return
        msgs = [enc.packet_out(frame, port) for port, frame in frames]
        async with self._stream_lock:
            await sw.write(msgs)

    async def _send_direct(self, lease: Lease, frames: list[tuple[int, bytes]]) -> list:
        """Write the frames to the CPU port; those left when the channel fails."""
        loop = asyncio.get_running_loop()
        hdr = lease.headers
        datas = [hdr.encode(port, frame) for port, frame in frames]
        first = 0
        if _mmsg is not None:
            try:
                first = _mmsg.send_many(lease.cpu.fileno(), datas)   # all, or until full
            except OSError as exc:
                lease.end(f"send failed: {exc.strerror or exc}")
                return frames
        for i in range(first, len(frames)):
            data = datas[i]
            try:
                try:
                    lease.cpu.send(data)
                except BlockingIOError:
                    await asyncio.wait_for(loop.sock_sendall(lease.cpu, data), SEND_TIMEOUT_S)
            except asyncio.TimeoutError:
                self.counters["packet_out_dropped"] += 1
            except OSError as exc:
                lease.end(f"send failed: {exc.strerror or exc}")
                return frames[i:]
        return []
