"""P4Runtime encoding for the controller's hot paths.

finsy is the controller's P4Runtime client (connection, arbitration, pipeline push, reads,
stream). Flow installs and packet-outs happen for every connection, so their protobufs are
built here directly from the P4Info ids, once per message, without per-field reflection; the
flow table, up to millions of entries, is read back the same way (:func:`read_entities`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from finsy import P4Schema, Switch
from finsy.p4client import P4ClientError
from finsy.proto import p4r

from p4cs.controller.chanwriter import WRITE_TIMEOUT_S, writer_of
from p4cs.csproc.effects import FlowKey, FlowSpec  # shared with the CS processor
from p4cs.csproc.packet import splice_csum_deltas
from p4cs.pbwire import ld, varint as _varint

try:        # the flow updates' encoder in C (setup.py builds it; optional)
    from p4cs.controller import _p4wire
except ImportError:     # pragma: no cover - the package built without a compiler
    _p4wire = None


def enc(value: int, bitwidth: int) -> bytes:
    """P4Runtime canonical bytestring: big-endian, shortest form (at least one byte)."""
    if value < 0 or value >> bitwidth:
        raise ValueError(f"value {value} does not fit in {bitwidth} bits")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


async def write_raw(sw: Switch, updates: list[bytes]) -> None:
    """One WriteRequest of serialized p4.v1.Updates, as ``Switch.write`` sends it (device id,
    role and election id of the switch's client), on the switch's channel socket where the
    controller holds a writer for it (:mod:`.chanwriter`), else over gRPC. Errors are finsy's
    ``P4ClientError`` with the per-update details either way."""
    client = sw._p4client                                # noqa: SLF001
    data = _write_head(sw.device_id, client._complete_request) + b"".join(  # noqa: SLF001
        ld(0x22, u) for u in updates)  # updates = 4
    w = writer_of(sw)
    if w is not None and w.takes(len(data)):
        await w.write(data)
        return
    try:
        await _raw_write_call(client._channel)(data, timeout=WRITE_TIMEOUT_S)  # noqa: SLF001
    except grpc.RpcError as exc:
        raise P4ClientError(exc, "WriteRequest") from None


#: (device id, arbitrator, election id, role) -> the serialized WriteRequest without updates
_HEAD: tuple | None = None


def _write_head(device_id: int, complete: Any) -> bytes:
    """A WriteRequest's device id, role and election id, serialized as finsy's client completes
    them (``complete``: its arbitrator's ``complete_request``); kept while they stay the same
    (completing one cost ~60 µs of the controller's CPU per Write)."""
    global _HEAD
    arb = getattr(complete, "__self__", None)
    if arb is None:                                      # not finsy's bound method: every time
        head = p4r.WriteRequest(device_id=device_id)
        if complete:
            complete(head)
        return head.SerializeToString()
    role = arb.role
    key = (device_id, arb, arb.election_id, None if role is None else role.name)
    if _HEAD is None or _HEAD[0] != key:
        head = p4r.WriteRequest(device_id=device_id)
        complete(head)
        _HEAD = (key, head.SerializeToString())
    return _HEAD[1]


#: (channel, its Write call taking serialized requests): the last channel written to
_RAW_WRITE: tuple | None = None


def _raw_write_call(channel):
    global _RAW_WRITE
    if _RAW_WRITE is None or _RAW_WRITE[0] is not channel:
        _RAW_WRITE = (channel, channel.unary_unary(
            "/p4.v1.P4Runtime/Write", response_deserializer=p4r.WriteResponse.FromString))
    return _RAW_WRITE[1]


@dataclass(slots=True)      # not frozen: two per connection, a frozen init costs 2.5x
class Splice:
    port: int
    dmac: int
    smac: int
    sip: int
    dip: int
    sport: int
    dport: int
    seq_delta: int
    ack_delta: int
    flow_id: int


def _splice_values(key: FlowKey, s: Splice) -> tuple[int, ...]:
    """The `splice` action's parameters of the entry of ``key``, in P4Info order."""
    return (s.port, s.dmac, s.smac, s.sip, s.dip, s.sport, s.dport,
            s.seq_delta & 0xFFFFFFFF, s.ack_delta & 0xFFFFFFFF,
            *splice_csum_deltas(key, s.sip, s.dip, s.sport, s.dport), s.flow_id)


class TableIds:
    """Ids and widths of one table's key fields and one action's parameters."""

    def __init__(self, schema: P4Schema, table: str, action: str):
        t = schema.tables[table]
        self.table_id = t.id
        self.fields = [(f.id, f.bitwidth) for f in t.match_fields]
        a = schema.actions[action]
        self.action_id = a.id
        self.params = [(p.id, p.bitwidth) for p in a.params]
        self.param_names = [p.name for p in a.params]


class FlowEncoder:
    """Builds flow-table updates (`splice`) and packet-outs from plain integers."""

    def __init__(self, schema: P4Schema):
        self.splice = TableIds(schema, "flow_table", "splice")
        if self.splice.param_names != ["port", "dmac", "smac", "sip", "dip", "sport", "dport",
                                       "seq_delta", "ack_delta", "ip_csum_delta",
                                       "tcp_csum_delta", "flow_id"]:
            raise ValueError(f"unexpected splice parameters in P4Info: {self.splice.param_names}")
        # The flow id (counter index) of an entry, whichever flow action it has.
        self._flow_id_param = {a.id: p.id for a in schema.tables["flow_table"].actions
                               for p in a.params if p.name == "flow_id"}
        sp = self.splice
        self._splice_pid = dict(zip(sp.param_names, (pid for pid, _ in sp.params)))
        self._te_head = b"\x08" + _varint(sp.table_id)                 # TableEntry.table_id = 1
        self._fm_heads = [(b"\x08" + _varint(fid), bw) for fid, bw in sp.fields]
        self._action_head = b"\x08" + _varint(sp.action_id)            # Action.action_id = 1
        self._param_heads = [(b"\x10" + _varint(pid) + b"\x1a", bw) for pid, bw in sp.params]
        # the same, as the C encoder (_p4wire) takes them (values of at most 64 bits)
        self._c_args: tuple | None = None
        if _p4wire is not None and max(bw for _, bw in self._fm_heads + self._param_heads) <= 64:
            self._c_args = (tuple(h for h, _ in self._fm_heads),
                            tuple(bw for _, bw in self._fm_heads),
                            tuple(h for h, _ in self._param_heads),
                            tuple(bw for _, bw in self._param_heads))
        self.flow_counter_id = schema.counters["flow_counter"].id
        cpm = schema.controller_packet_metadata["packet_out"]
        self._po_meta = [(m.id, m.bitwidth, m.name) for m in cpm.metadata]

    # The updates are written in protobuf wire format directly (a flow install is two of them
    # per connection; building them as protobuf objects cost ~30 message objects each, 13 % of
    # the controller's CPU under load). tests/unit/test_controller_entries.py parses them back.
    def _match_raw(self, key: FlowKey) -> bytes:
        out = []
        for (head, bw), v in zip(self._fm_heads, key):
            val = enc(v, bw)
            fm = head + ld(0x12, ld(0x0A, val))    # FieldMatch.exact = 2 { Exact.value = 1 }
            out.append(ld(0x12, fm))               # TableEntry.match = 2
        return b"".join(out)

    @staticmethod
    def _update(utype: int, te: bytes) -> bytes:
        # Update.type = 1, entity = 2 { Entity.table_entry = 2 }
        return b"\x08" + _varint(utype) + ld(0x12, ld(0x12, te))

    def insert_raw(self, key: FlowKey, s: Splice, idle_timeout_s: float = 0.0,
                   update_type: int = p4r.Update.INSERT) -> bytes:
        """A `splice` entry's p4.v1.Update, serialized (in C where ``_p4wire`` is built,
        the same bytes as ``insert_raw_py``)."""
        if self._c_args is None:
            return self.insert_raw_py(key, s, idle_timeout_s, update_type)
        fm_heads, key_bws, p_heads, p_bws = self._c_args
        return _p4wire.update(update_type, self._te_head, fm_heads, key_bws, tuple(key),
                              self._action_head, p_heads, p_bws, _splice_values(key, s),
                              int(idle_timeout_s * 1e9))

    def splice_update(self, f: FlowSpec, fid: int, update_type: int = p4r.Update.INSERT
                      ) -> bytes:
        """``insert_raw`` of the flow ``f`` (the CS processor's FlowSpec) with flow id ``fid``:
        in one C call where ``_p4wire`` is built (the same bytes)."""
        if self._c_args is not None:
            fm_heads, key_bws, p_heads, p_bws = self._c_args
            return _p4wire.splice_update(update_type, self._te_head, fm_heads, key_bws,
                                         self._action_head, p_heads, p_bws, f, fid)
        return self.insert_raw(
            f.key, Splice(f.port, int.from_bytes(f.dmac, "big"), int.from_bytes(f.smac, "big"),
                          f.sip, f.dip, f.sport, f.dport, f.seq_delta, f.ack_delta, fid),
            f.idle_timeout_s, update_type)

    def insert_raw_py(self, key: FlowKey, s: Splice, idle_timeout_s: float = 0.0,
                      update_type: int = p4r.Update.INSERT) -> bytes:
        """``insert_raw`` in Python."""
        vals = _splice_values(key, s)
        params = []
        for (head, bw), v in zip(self._param_heads, vals):
            val = enc(v, bw)
            # Action.params = 4 { Param.param_id = 2, value = 3 }
            params.append(ld(0x22, head + _varint(len(val)) + val))
        act = self._action_head + b"".join(params)
        # TableEntry.action = 3 { TableAction.action = 1 }
        te = self._te_head + self._match_raw(key) + ld(0x1A, ld(0x0A, act))
        ns = int(idle_timeout_s * 1e9)
        if ns:
            te += b"\x48" + _varint(ns)                            # TableEntry.idle_timeout_ns = 9
        return self._update(update_type, te)

    def match_entry_raw(self, key: FlowKey) -> bytes:
        """A flow-table TableEntry with the match of ``key`` alone (a Read of that entry),
        serialized."""
        return self._te_head + self._match_raw(key)

    def reverse_key(self, entry: p4r.TableEntry) -> FlowKey | None:
        """The key of the reverse direction of a ``splice`` entry: the 5-tuple of an answer to
        the segment as rewritten (None: another action, or a parameter missing)."""
        a = entry.action.action
        if a.action_id != self.splice.action_id:
            return None
        params = {p.param_id: int.from_bytes(p.value, "big") for p in a.params}
        try:
            sip, dip, sport, dport = (params[self._splice_pid[n]]
                                      for n in ("sip", "dip", "sport", "dport"))
        except KeyError:
            return None
        return FlowKey(dip, sip, 6, dport, sport)

    def delete_raw(self, key: FlowKey) -> bytes:
        """The DELETE of the flow entry of `key`, serialized."""
        return self._update(p4r.Update.DELETE, self._te_head + self._match_raw(key))

    def insert(self, key: FlowKey, s: Splice, idle_timeout_s: float = 0.0,
               update_type: int = p4r.Update.INSERT) -> p4r.Update:
        return p4r.Update.FromString(self.insert_raw(key, s, idle_timeout_s, update_type))

    def delete(self, key: FlowKey) -> p4r.Update:
        return p4r.Update.FromString(self.delete_raw(key))

    def flow_id(self, entry: p4r.TableEntry) -> int | None:
        """The flow id in a flow-table entry's action data (None: an action without one)."""
        a = entry.action.action
        pid = self._flow_id_param.get(a.action_id)
        for p in a.params:
            if p.param_id == pid:
                return int.from_bytes(p.value, "big")
        return None

    def key_flow_id(self, entry: p4r.TableEntry) -> tuple[tuple[int, ...], int | None]:
        """``decode_match_key(entry)`` and ``flow_id(entry)`` at once: in C from the entry's
        bytes where the package's extension is built (~1 µs instead of ~12 per expired
        entry), from the object otherwise or where the entry is not the simple shape."""
        if _p4wire is not None:
            r = _p4wire.key_flow_id(entry.SerializeToString(), self._flow_id_param)
            if r is not None:
                return r
        return decode_match_key(entry), self.flow_id(entry)

    def expired_entries(self, note: p4r.IdleTimeoutNotification
                        ) -> list[tuple[tuple[int, ...], int | None, tuple[int, int] | None]]:
        """Every entry of an idle-timeout notification as (key values, flow id or None,
        (packets, bytes) of its counter_data or None): in one C call from the notification's
        bytes where the package's extension is built, entry by entry from the object
        otherwise or where an entry is not the simple shape."""
        if _p4wire is not None:
            r = _p4wire.expired_entries(note.SerializeToString(), self._flow_id_param)
            if r is not None:
                return r
        out = []
        for entry in note.table_entry:
            vals, fid = self.key_flow_id(entry)
            c = entry.counter_data
            out.append((vals, fid, (c.packet_count, c.byte_count)
                        if entry.HasField("counter_data") else None))
        return out

    def packet_out(self, frame: bytes, port: int) -> p4r.StreamMessageRequest:
        meta = []
        for mid, bw, name in self._po_meta:
            meta.append(p4r.PacketMetadata(metadata_id=mid, value=enc(port if name == "egress_port" else 0, bw)))
        return p4r.StreamMessageRequest(packet=p4r.PacketOut(payload=frame, metadata=meta))


def decode_match_key(entry: p4r.TableEntry) -> tuple[int, ...]:
    """The integer values of an exact-match table entry's key, in field-id order."""
    fields = sorted(entry.match, key=lambda f: f.field_id)
    return tuple(int.from_bytes(f.exact.value, "big") for f in fields)


#: Deadline of a Read: reading a million flow entries takes seconds, not milliseconds.
READ_TIMEOUT_S = 600.0


async def read_entities(sw: Switch, entities: list[p4r.Entity],
                        timeout: float = READ_TIMEOUT_S) -> AsyncIterator[p4r.Entity]:
    """Stream the entities a ReadRequest answers, as protobufs, as the responses arrive.

    finsy's ``Switch.read`` builds Python objects for every entity (about 60 µs each: a minute
    for a million flow entries) under a 10-second deadline; the reconciliation needs neither,
    so the request goes to the P4Runtime stub of the switch's client (finsy has no raw read).
    Errors are finsy's ``P4ClientError``, as for its own calls."""
    stub = sw._p4client._stub     # noqa: SLF001
    req = p4r.ReadRequest(device_id=sw.device_id, entities=entities)
    try:
        async for resp in stub.Read(req, timeout=timeout):
            for ent in resp.entities:
                yield ent
    except grpc.RpcError as exc:
        raise P4ClientError(exc, "Read") from None


#: Counter cells per ReadRequest of :func:`read_counter_cells`: each request is built and its
#: answer decoded in one go on the event loop (about 4 ms per thousand cells), so a sample of
#: every live flow never holds the loop long.
COUNTER_READ_CHUNK = 2048


async def read_counter_cells(sw: Switch, counter_id: int, indexes: list[int],
                             chunk: int = COUNTER_READ_CHUNK) -> dict[int, tuple[int, int]]:
    """index -> (packets, bytes) of the cells ``indexes`` of counter ``counter_id``, read in
    ReadRequests of ``chunk`` cells as protobufs (finsy's ``Switch.read`` builds Python objects
    at ~60 µs per entity: a 20,000-flow sample held the controller's loop for a second and
    stalled every connection being bound). Errors are finsy's ``P4ClientError``."""
    out: dict[int, tuple[int, int]] = {}
    for start in range(0, len(indexes), chunk):
        ents = []
        for i in indexes[start:start + chunk]:
            ce = p4r.CounterEntry(counter_id=counter_id)
            ce.index.index = i
            ents.append(p4r.Entity(counter_entry=ce))
        async for ent in read_entities(sw, ents, timeout=60.0):
            c = ent.counter_entry
            out[c.index.index] = (c.data.packet_count, c.data.byte_count)
    return out
