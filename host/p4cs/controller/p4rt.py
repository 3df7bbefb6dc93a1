"""P4Runtime encoding for the controller's hot paths.

finsy is the controller's P4Runtime client (connection, arbitration, pipeline push, reads,
stream). Flow installs and packet-outs happen for every connection, so their protobufs are
built here directly from the P4Info ids, once per message, without per-field reflection; the
flow table, up to millions of entries, is read back the same way (:func:`read_entities`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
from finsy import P4Schema, Switch
from finsy.p4client import P4ClientError
from finsy.proto import p4r

from p4cs.csproc.effects import FlowKey  # the flow table's key, shared with the CS processor
from p4cs.csproc.packet import splice_csum_deltas


def enc(value: int, bitwidth: int) -> bytes:
    """P4Runtime canonical bytestring: big-endian, shortest form (at least one byte)."""
    if value < 0 or value >> bitwidth:
        raise ValueError(f"value {value} does not fit in {bitwidth} bits")
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


@dataclass(frozen=True, slots=True)
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
        cpm = schema.controller_packet_metadata["packet_out"]
        self._po_meta = [(m.id, m.bitwidth, m.name) for m in cpm.metadata]

    def _match(self, key: FlowKey) -> list[p4r.FieldMatch]:
        return [p4r.FieldMatch(field_id=fid, exact=p4r.FieldMatch.Exact(value=enc(v, bw)))
                for (fid, bw), v in zip(self.splice.fields, key)]

    def insert(self, key: FlowKey, s: Splice, idle_timeout_s: float = 0.0,
               update_type: int = p4r.Update.INSERT) -> p4r.Update:
        vals = (s.port, s.dmac, s.smac, s.sip, s.dip, s.sport, s.dport,
                s.seq_delta & 0xFFFFFFFF, s.ack_delta & 0xFFFFFFFF,
                *splice_csum_deltas(key, s.sip, s.dip, s.sport, s.dport), s.flow_id)
        action = p4r.Action(action_id=self.splice.action_id,
                            params=[p4r.Action.Param(param_id=pid, value=enc(v, bw))
                                    for (pid, bw), v in zip(self.splice.params, vals)])
        entry = p4r.TableEntry(table_id=self.splice.table_id, match=self._match(key),
                               action=p4r.TableAction(action=action),
                               idle_timeout_ns=int(idle_timeout_s * 1e9))
        return p4r.Update(type=update_type, entity=p4r.Entity(table_entry=entry))

    def delete(self, key: FlowKey) -> p4r.Update:
        entry = p4r.TableEntry(table_id=self.splice.table_id, match=self._match(key))
        return p4r.Update(type=p4r.Update.DELETE, entity=p4r.Entity(table_entry=entry))

    def flow_id(self, entry: p4r.TableEntry) -> int | None:
        """The flow id in a flow-table entry's action data (None: an action without one)."""
        a = entry.action.action
        pid = self._flow_id_param.get(a.action_id)
        for p in a.params:
            if p.param_id == pid:
                return int.from_bytes(p.value, "big")
        return None

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
