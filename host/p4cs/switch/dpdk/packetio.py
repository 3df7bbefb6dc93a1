"""Packet I/O and notifications of the DPDK target's P4Runtime server.

* PacketOut from the primary → the packet_out header (encoded from P4Info) + payload on the
  daemon's CPU port;
* frames from the CPU port → PacketIn to every primary;
* messages from the copy port (mirror copies of FIN/RST of spliced flows, the destination of
  a clone session whose replica is the CPU port: the input port, then the frame) → PacketIn
  with reason REASON_FLOW_END and that ingress port;
* learner entries the daemon aged out → IdleTimeoutNotification, many entries per message
  (after removing them from the shadow: this target deletes an expired entry itself), with the
  final counts of the entry's counter cell in counter_data (:mod:`.expiry`); the entries of
  the daemon's messages within ``EXPIRY_GATHER_S`` go out together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from finsy.proto import p4r, rpc_code

from p4cs.constants import REASON_FLOW_END
from p4cs.pbwire import ld, varint

from .arbitration import Arbiter, StreamConn
from .errors import SC, P4RTError
from .expiry import expired_entries
from .pipeline import NO_PIPELINE, Pipeline, TargetConfig
from .schema import canonical_bytes

try:
    from p4cs.switch.dpdk import _wirefast
except ImportError:  # the extension is optional (setup.py builds it where a C compiler is)
    _wirefast = None

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

#: A copy-port message starts with the input port of the copied packet (p4cs-swxd, fastio.c).
COPY_PORT_BYTES = 4


#: How long the entries of the daemon's `expired` messages wait for more before they go to the
#: primaries in one IdleTimeoutNotification. The sweeper sends a batch every 100 ms or so; the
#: entries a new connection's SYN ends (dataplane/src/reuse.c) come one or two at a time, one
#: message per pipeline pass, and a notification costs the server and the controller far more
#: than its entries (a gRPC stream message; the controller's ordering with the packet-ins).
#: The shadow drops them at once: a new entry with the key may be inserted meanwhile.
EXPIRY_GATHER_S = 0.05
EXPIRY_GATHER_MAX = 1000


class PacketIO:
    """Both directions of the StreamChannel's packets, for the device's primaries."""

    def __init__(self, target: TargetConfig, arbiter: Arbiter, running: Callable[[], Pipeline | None]):
        self.target = target
        self.arbiter = arbiter
        self._running = running  # the running pipeline, if any
        self.counters = {"packet_in": 0, "packet_in_dropped": 0, "packet_out": 0}
        self._gathered: list[bytes] = []     # table_entry fields waiting for _send_expired
        self._gather: asyncio.TimerHandle | None = None

    # -- controller -> data plane ---------------------------------------------------------

    @staticmethod
    def _stream_error(conn: StreamConn, code: int, msg: str, po: p4r.PacketOut) -> None:
        err = p4r.StreamError(canonical_code=code, message=msg)
        err.packet_out.packet_out.CopyFrom(po)
        conn.put(p4r.StreamMessageResponse(error=err))

    def packet_out(self, conn: StreamConn, po: p4r.PacketOut) -> None:
        """Send a PacketOut of `conn`, or answer it with a StreamError carrying the packet."""
        if not self.arbiter.is_primary(conn):
            self._stream_error(conn, rpc_code.PERMISSION_DENIED, "packet-out from a non-primary client", po)
            return
        pipe = self._running()
        if pipe is None or pipe.daemon.dead is not None:
            why = NO_PIPELINE if pipe is None else f"data plane unavailable: {pipe.daemon.dead}"
            self._stream_error(conn, rpc_code.UNAVAILABLE, why, po)
            return
        hdr = pipe.schema.packet_out
        if hdr is None:
            frame = po.payload
        else:
            vals: dict[int, int] = {}
            for md in po.metadata:
                f = hdr.by_id.get(md.metadata_id)
                if f is None:
                    msg = f"unknown packet_out metadata id {md.metadata_id}"
                    self._stream_error(conn, rpc_code.INVALID_ARGUMENT, msg, po)
                    return
                x = int.from_bytes(md.value, "big")
                if not md.value or x >> f[1]:
                    self._stream_error(
                        conn,
                        rpc_code.INVALID_ARGUMENT,
                        f"packet_out metadata {md.metadata_id}: value 0x{md.value.hex()} "
                        f"does not fit in {f[1]} bits",
                        po,
                    )
                    return
                vals[md.metadata_id] = x
            port_id = hdr.field_id("egress_port")
            if port_id is not None:
                port = vals.get(port_id, 0)
                if port not in self.target.ports:
                    self._stream_error(
                        conn,
                        rpc_code.INVALID_ARGUMENT,
                        f"packet_out egress_port {port} is not a data-plane port "
                        f"(ports: {sorted(self.target.ports)})",
                        po,
                    )
                    return
            frame = hdr.encode(vals) + po.payload
        if pipe.daemon.send_packet(frame):
            self.counters["packet_out"] += 1
        else:
            self._stream_error(conn, rpc_code.RESOURCE_EXHAUSTED, "CPU port is congested", po)

    # -- data plane -> controller ---------------------------------------------------------

    def on_copy(self, msg: bytes) -> None:
        """A message from the daemon's copy port: the input port of the copied packet (4 bytes,
        network byte order), then the mirror copy (FIN/RST of a spliced flow) as the pipeline
        emitted it, without a packet_in header. It becomes a PacketIn with reason
        REASON_FLOW_END and that ingress port, built by prepending the packet_in header the
        punt path decodes."""
        pipe = self._running()
        if pipe is None or len(msg) < COPY_PORT_BYTES:
            return
        in_port, frame = int.from_bytes(msg[:COPY_PORT_BYTES], "big"), msg[COPY_PORT_BYTES:]
        hdr = pipe.schema.packet_in
        if hdr is None:
            self.on_packet(frame)
            return
        vals = {}
        rid, pid = hdr.field_id("reason"), hdr.field_id("ingress_port")
        if rid is not None:
            vals[rid] = REASON_FLOW_END
        if pid is not None:
            vals[pid] = in_port
        self.counters["packet_in_copy"] = self.counters.get("packet_in_copy", 0) + 1
        self.on_packet(hdr.encode(vals) + frame)

    def on_packet(self, frame: bytes) -> None:
        """A frame from the daemon's CPU port: a PacketIn to every primary."""
        pipe = self._running()
        if pipe is None:
            return
        prims = list(self.arbiter.primaries())
        if not prims:
            self.counters["packet_in_dropped"] += 1
            return
        hdr = pipe.schema.packet_in
        if hdr is None:
            pin = ld(0x0A, frame)
        else:
            if len(frame) < hdr.nbytes:
                self.counters["packet_in_dropped"] += 1
                return
            # StreamMessageResponse{packet: PacketIn{payload, metadata: [{metadata_id, value}]}}
            # encoded directly: this runs for every punted packet.
            parts = [ld(0x0A, frame[hdr.nbytes :])]
            for mid, v in hdr.decode(frame):
                parts.append(ld(0x12, b"\x08" + varint(mid) + ld(0x12, canonical_bytes(v))))
            pin = b"".join(parts)
        data = ld(0x12, pin)
        self.counters["packet_in"] += 1
        for c in prims:
            c.put(data)

    def on_expired(self, data: bytes) -> None:
        """An `expired TABLE KEY... [count INDEX PACKETS BYTES]` message of the daemon: drop
        the entries from the shadow and notify the primaries of those of tables with
        idle-timeout notification, with the counts as the entry's counter_data (in C where
        ``_wirefast`` is built: ~0.4 µs an entry instead of ~3.5)."""
        pipe = self._running()
        if pipe is None:
            return
        tables = {dname: (t.id, pipe.shadow[t.id], t.idle_notify)
                  for dname, t in pipe.schema.tables_by_dname.items()}
        found = None if _wirefast is None else _wirefast.expired(data, tables)
        by_table, bad = expired_entries(data, tables) if found is None else found
        for ln in bad:
            LOG.warning("bad expiry notification from the daemon: %.200s", ln)
        if not by_table:
            return
        for fields in by_table.values():
            self._gathered += fields
        if len(self._gathered) >= EXPIRY_GATHER_MAX:
            self._send_expired()
        elif self._gather is None:
            self._gather = asyncio.get_running_loop().call_later(EXPIRY_GATHER_S,
                                                                 self._send_expired)

    def _send_expired(self) -> None:
        """The entries gathered since the last notification, to every primary (those of
        a pipeline replaced meanwhile included: its primaries learn that they are gone)."""
        if self._gather is not None:
            self._gather.cancel()
            self._gather = None
        fields, self._gathered = self._gathered, []
        prims = list(self.arbiter.primaries())
        if not fields or not prims:
            return
        stamp = b"\x10" + varint(time.time_ns())
        for i in range(0, len(fields), EXPIRY_GATHER_MAX):
            msg = idle_notification(fields[i : i + EXPIRY_GATHER_MAX], stamp)
            for c in prims:
                c.put(msg)


def idle_notification(fields: list[bytes], stamp: bytes) -> bytes:
    """StreamMessageResponse{idle_timeout_notification: {table_entry: [...], timestamp}} in
    wire format: ``fields``, the table_entry fields (:func:`.expiry.entry_field`); ``stamp``,
    the encoded timestamp field. No protobuf objects."""
    return ld(0x22, b"".join(fields) + stamp)


def mirror_line(pipe: Pipeline, target: TargetConfig, cs: p4r.CloneSessionEntry) -> str:
    """The daemon's `mirror` line that makes clone session `cs` (INSERT or MODIFY) happen.

    The P4 program mirrors FIN/RST of spliced flows through a session; the daemon copies the
    emitted frame to the session's port. A replica on the CPU port maps to the daemon's copy
    port (copies come back behind their input port, without a packet_in header, and
    `PacketIO.on_copy` turns them into PacketIns), a replica on a data port to that port.
    """
    sid = cs.session_id
    if cs.class_of_service:
        raise P4RTError(SC.UNIMPLEMENTED, "clone session class_of_service is not supported")
    if cs.packet_length_bytes < 0 or cs.packet_length_bytes > 65535:
        raise P4RTError(SC.INVALID_ARGUMENT, "clone session packet_length_bytes must be 0..65535")
    if len(cs.replicas) > 1:
        raise P4RTError(
            SC.UNIMPLEMENTED,
            f"clone session {sid} has {len(cs.replicas)} replicas: this target copies to one "
            "port per session (SWX mirroring)",
        )
    if not cs.replicas:
        return f"mirror {sid} off"
    rep = cs.replicas[0]
    if len(rep.backup_replicas):
        raise P4RTError(SC.UNIMPLEMENTED, "backup replicas are not supported by this target")
    if rep.port:
        port = int.from_bytes(rep.port, "big")
        if len(rep.port) > 4:
            raise P4RTError(SC.INVALID_ARGUMENT, f"replica port 0x{rep.port.hex()} is too wide")
    else:
        port = rep.egress_port
    if port == target.cpu_port:
        copy_port = pipe.daemon.info.get("copy_port", -1)
        if copy_port is None or copy_port < 0:
            raise P4RTError(SC.UNIMPLEMENTED, "the data-plane daemon has no copy port")
        dport = copy_port
    elif port in target.ports:
        dport = port
    else:
        raise P4RTError(
            SC.INVALID_ARGUMENT,
            f"clone session {sid}: replica port {port} is neither the CPU port "
            f"({target.cpu_port}) nor a data-plane port (ports: {sorted(target.ports)})",
        )
    line = f"mirror {sid} {dport}"
    if cs.packet_length_bytes:
        line += f" truncate {cs.packet_length_bytes}"
    return line
