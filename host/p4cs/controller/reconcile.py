"""Reconciliation: what the controller writes when it becomes primary for a switch.

A switch that already forwards traffic must not be disturbed by a restarted (or reconnected,
or newly primary) controller: spliced connections live in the flow table, and wiping it
would stall every running download. So the controller reads what the switch holds and writes
only the difference from its intent:

* base tables (every table of the program but the flow table): intended entries that are
  missing are inserted, entries whose action differs are modified, and entries that nothing
  intends are deleted;
* the FIN/RST clone session: inserted, modified or left alone;
* the flow table is never wiped (:class:`FlowScan`): entries of flows the controller knows
  continue, the others are left to expire by their idle timeout and their flow ids (counter
  slots) stay reserved until then;
* the connections of L4 services the data plane learned itself (``l4_flows``) are neither
  read nor written.

Every table of the P4 program but syn_cookie_params (whose default action
:mod:`p4cs.controller.syncookies` writes) has a const default action, so no default entry
belongs to the intent and none is read. The functions on protobufs here are pure: the diff can be tested
without a switch; :class:`BaseTables` does the reads and the writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from finsy import P4CloneSessionEntry, P4TableEntry, Switch
from finsy.grpcutil import GRPCStatusCode
from finsy.p4client import P4ClientError
from finsy.proto import p4r

from p4cs.controller.l4 import LEARNED_TABLES
from p4cs.controller.p4rt import read_entities

LOG = logging.getLogger("p4cs.controller")

_INSERT, _MODIFY, _DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE


def _int(b: bytes) -> int:
    """A P4Runtime bytestring as an integer: canonical or padded encodings compare equal."""
    return int.from_bytes(b, "big")


def _field(f: p4r.FieldMatch) -> tuple:
    kind = f.WhichOneof("field_match_type")
    if kind == "exact":
        return (f.field_id, kind, _int(f.exact.value))
    if kind == "lpm":
        return (f.field_id, kind, _int(f.lpm.value), f.lpm.prefix_len)
    if kind == "ternary":
        return (f.field_id, kind, _int(f.ternary.value), _int(f.ternary.mask))
    if kind == "range":
        return (f.field_id, kind, _int(f.range.low), _int(f.range.high))
    if kind == "optional":
        return (f.field_id, kind, _int(f.optional.value))
    return (f.field_id, kind, f.SerializeToString(deterministic=True))


def entry_key(te: p4r.TableEntry) -> tuple:
    """What identifies a table entry: table, priority and match (field order ignored)."""
    return (te.table_id, te.priority, tuple(sorted(_field(f) for f in te.match)))


def entry_action(te: p4r.TableEntry) -> tuple:
    """What an entry does: its action and parameter values (parameter order ignored)."""
    which = te.action.WhichOneof("type")
    if which == "action":
        a = te.action.action
        return (a.action_id, tuple(sorted((p.param_id, _int(p.value)) for p in a.params)))
    if which is None:
        return ()
    return (which, te.action.SerializeToString(deterministic=True))


def _update(utype: int, te: p4r.TableEntry) -> p4r.Update:
    return p4r.Update(type=utype, entity=p4r.Entity(table_entry=te))


def diff_tables(intent: Iterable[p4r.TableEntry], current: Iterable[p4r.TableEntry]) -> list[p4r.Update]:
    """The writes that turn ``current`` (the entries read from the tables the intent owns)
    into ``intent``: deletes of unintended entries first, then modifies, then inserts."""
    want = {entry_key(te): te for te in intent}
    deletes, modifies, seen = [], [], set()
    for te in current:
        k = entry_key(te)
        w = want.get(k)
        if w is None:
            deletes.append(_update(_DELETE, p4r.TableEntry(table_id=te.table_id, match=te.match,
                                                           priority=te.priority)))
            continue
        seen.add(k)
        if entry_action(w) != entry_action(te):
            modifies.append(_update(_MODIFY, w))
    inserts = [_update(_INSERT, w) for k, w in want.items() if k not in seen]
    return deletes + modifies + inserts


def _replicas(cs: p4r.CloneSessionEntry) -> tuple:
    return tuple(sorted((_int(r.port) if r.port else r.egress_port, r.instance) for r in cs.replicas))


def _clone_update(utype: int, cs: p4r.CloneSessionEntry) -> p4r.Update:
    pre = p4r.PacketReplicationEngineEntry(clone_session_entry=cs)
    return p4r.Update(type=utype, entity=p4r.Entity(packet_replication_engine_entry=pre))


def diff_clone_session(intent: p4r.CloneSessionEntry,
                       current: p4r.CloneSessionEntry | None) -> list[p4r.Update]:
    """Insert the session if it is absent, modify it if it differs, else nothing."""
    if current is None:
        return [_clone_update(_INSERT, intent)]
    same = (_replicas(current) == _replicas(intent)
            and current.class_of_service == intent.class_of_service
            and current.packet_length_bytes == intent.packet_length_bytes)
    return [] if same else [_clone_update(_MODIFY, intent)]


class FlowScan:
    """Sorts the flow-table entries read (one at a time, as they stream in) into the flows a
    controller knows, which continue, and the others, whose flow ids it adopts.

    Keys are decoded only when the controller knows flows: a freshly started controller only
    needs the flow ids of what it finds."""

    def __init__(self, known: Mapping[tuple, int], key_of: Callable[[p4r.TableEntry], tuple],
                 flow_id_of: Callable[[p4r.TableEntry], int | None]):
        self.known = known
        self.key_of = key_of
        self.flow_id_of = flow_id_of
        #: known flows whose entry is there with the same flow id
        self.kept: dict[tuple, int] = {}
        #: flow ids of the entries the controller does not know
        self.adopted: list[int] = []

    def add(self, te: p4r.TableEntry) -> None:
        fid = self.flow_id_of(te)
        if self.known:
            key = self.key_of(te)
            if self.known.get(key) == fid:
                self.kept[key] = fid
                return
        if fid:
            self.adopted.append(fid)

    def gone(self) -> dict[tuple, int]:
        """Known flows whose entry is not there (expired or deleted while nobody listened)."""
        return {k: f for k, f in self.known.items() if k not in self.kept}


class BaseTables:
    """The static part of the data plane: base tables and the FIN/RST clone session."""

    def __init__(self, entries: list[P4TableEntry], clone: P4CloneSessionEntry, flow_table: str):
        self.entries = entries
        self.clone = clone
        self.flow_table = flow_table

    async def reconcile(self, sw: Switch) -> list[p4r.Update]:
        """Read the base tables, write the difference; returns the writes (empty: in sync)."""
        schema = sw.p4info
        intent = [e.encode(schema).table_entry for e in self.entries]
        tables = [t.id for t in schema.tables
                  if t.alias != self.flow_table and t.alias not in LEARNED_TABLES and not t.is_const]
        current = [ent.table_entry async for ent in read_entities(
            sw, [p4r.Entity(table_entry=p4r.TableEntry(table_id=t)) for t in tables])]
        updates = diff_tables(intent, current)
        if updates:
            await sw.write(updates)
        await self._clone_session(sw)
        return updates

    async def _clone_session(self, sw: Switch) -> None:
        want = self.clone.encode(sw.p4info).packet_replication_engine_entry.clone_session_entry
        probe = p4r.PacketReplicationEngineEntry(
            clone_session_entry=p4r.CloneSessionEntry(session_id=want.session_id))
        try:
            found = [ent.packet_replication_engine_entry.clone_session_entry async for ent in
                     read_entities(sw, [p4r.Entity(packet_replication_engine_entry=probe)])]
            updates = diff_clone_session(want, found[0] if found else None)
        except P4ClientError as exc:
            # A target without PRE reads: insert, and modify if it is there already.
            LOG.info("cannot read clone session %d (%s): writing it", want.session_id, exc.message)
            updates = diff_clone_session(want, None)
        try:
            try:
                await sw.write(updates)
            except P4ClientError as exc:
                exists = any(e.canonical_code == GRPCStatusCode.ALREADY_EXISTS
                             for e in exc.details.values())
                if not (updates and updates[0].type == _INSERT and exists):
                    raise
                await sw.write([_clone_update(_MODIFY, want)])
        except P4ClientError as exc:
            LOG.warning("the switch refused the FIN/RST clone session (%s): spliced flows will be "
                        "removed on idle timeout only", exc.message)
