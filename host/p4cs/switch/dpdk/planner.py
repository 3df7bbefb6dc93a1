"""Write planning: the updates of a WriteRequest as daemon control lines.

A WriteRequest becomes one daemon message (split at 64 KiB by the daemon client); every update
gets its own line(s), so CONTINUE_ON_ERROR batches report per-update errors. The shadow (the
entries the server wrote, which answer Read) changes only for updates the daemon accepted.

Tables the daemon reports as learners (the PNA add-on-miss flow table) are written with
`learner add/mod/del`: O(1) per entry whatever the table occupancy, and the daemon decides
existence. An idle timeout picks the nearest learner timeout profile; an entry without one is
made permanent (`learner keep`). For regular tables the server decides existence from the
shadow (the daemon's add is an upsert), as it does for clone sessions.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence

import grpc
from finsy.proto import p4r

from .errors import SC, P4RTError, daemon_error
from .keys import action_text, entry_action, entry_key, int_of, key_exact
from .packetio import mirror_line
from .pipeline import Pipeline, TargetConfig
from .schema import Schema, TableInfo
from .wire import Slow, decode_update, update_slices

_INSERT, _MODIFY, _DELETE = p4r.Update.INSERT, p4r.Update.MODIFY, p4r.Update.DELETE

# per update: None (success) or (code, message)
WriteResults = list[tuple[grpc.StatusCode, str] | None]


# One update's share of the daemon message, and the shadow change its success makes:
# (update index, shadow dict to change or None, key, value to store or None to remove,
#  first line, number of lines). A plain tuple: one is built per flow install.
Op = tuple[int, "dict | None", Any, "bytes | None", int, int]


@dataclass(slots=True)
class EntryUpdate:
    """An INSERT/MODIFY/DELETE of a (non-default) table entry whose key is decoded.

    The action is given either as (`action_id`, `params`) or already rendered (`acttext`, from
    the flow fast path); an entry without an action has neither.
    """

    index: int
    table: TableInfo
    type: int
    key: tuple
    keytext: str
    idle: int  # idle_timeout_ns
    te_bytes: bytes  # the serialized TableEntry: what the shadow stores
    action_id: int | None = None
    params: Sequence[tuple[int, bytes]] = ()
    acttext: str | None = None


class WritePlan:
    """The daemon lines of one WriteRequest and what each update changes once applied.

    `ordered` is set when an update's checks depend on the shadow (regular tables, default
    entries, clone sessions): the next WriteRequest may then only be planned once this one is
    applied.
    """

    __slots__ = ("pipe", "target", "lines", "ops", "results", "failed", "ordered", "_overlay")

    def __init__(self, pipe: Pipeline, target: TargetConfig):
        self.pipe = pipe
        self.target = target
        self.lines: list[str] = []
        self.ops: list[Op] = []
        self.results: WriteResults = []
        self.failed = False
        self.ordered = False
        # keys touched earlier in this request (regular tables, clone sessions) -> exists after
        self._overlay: dict[tuple, bool] = {}

    def errors(self) -> WriteResults | None:
        """None when every update succeeded, else the result of each."""
        return self.results if self.failed else None

    def add_updates(self, request: p4r.WriteRequest, raw: bytes | None) -> None:
        """Plan every update of `request` (`raw`: its serialized form, read by the fast paths)."""
        pipe = self.pipe
        updates = request.updates
        n = len(updates)
        results = self.results = [None] * n
        lines = self.lines
        ops = self.ops
        tables = pipe.schema.tables
        slices = None
        if raw is not None:
            try:
                slices = update_slices(raw)
            except (Slow, IndexError):
                slices = None
            if slices is not None and len(slices) != n:
                slices = None
        flow_fast = pipe.fast
        for i in range(n):
            try:
                if slices is not None:
                    s_, e_ = slices[i]
                    try:
                        utype, t, key, keytext, acttext, idle, ts, te_end = flow_fast.plan(raw, s_, e_)
                    except (Slow, IndexError):
                        pass
                    else:
                        if (
                            t.learner
                            and idle > 0
                            and acttext is not None
                            and t.idle_notify
                            and t.timeouts
                            and (utype == _INSERT or utype == _MODIFY)
                        ):
                            # the flow install itself, inlined: one `learner add` line
                            ops.append((i, pipe.shadow[t.id], key, raw[ts:te_end], len(lines), 1))
                            lines.append(
                                (t.add_prefix if utype == _INSERT else t.mod_prefix)
                                + keytext
                                + acttext
                                + " timeout %d" % t.timeout_profile(idle)
                            )
                            continue
                        te_bytes = raw[ts:te_end]
                        self._entry(EntryUpdate(i, t, utype, key, keytext, idle, te_bytes, acttext=acttext))
                        continue
                    try:
                        fast = decode_update(raw, s_, e_)
                    except (Slow, IndexError):
                        fast = None
                    if fast is not None:
                        utype, tid, matches, aid, params, prio, idle, is_default, ts, te_end = fast
                        t = tables.get(tid)
                        if t is not None and t.all_exact and not is_default:
                            if prio:
                                raise P4RTError(
                                    SC.INVALID_ARGUMENT,
                                    f"table {t.name!r} has only exact fields: priority must be 0",
                                )
                            key, keytext = key_exact(t, matches)
                            te_bytes = raw[ts:te_end]
                            u = EntryUpdate(i, t, utype, key, keytext, idle, te_bytes, action_id=aid, params=params)
                            self._entry(u)
                            continue
                self._update(i, updates[i])
            except P4RTError as e:
                results[i] = (e.code, e.message)
                self.failed = True

    def _entry(self, u: EntryUpdate) -> None:
        """Daemon line(s) of one INSERT/MODIFY/DELETE of a (non-default) table entry."""
        t = u.table
        utype = u.type
        key = u.key
        lines = self.lines
        shadow = self.pipe.shadow[t.id]
        if not t.learner:
            self.ordered = True
        if utype == _DELETE:
            if not t.learner:
                cur = self._overlay.get((t.id, key))
                if not (key in shadow if cur is None else cur):
                    raise P4RTError(SC.NOT_FOUND, f"entry not found in {t.name!r}")
                self._overlay[(t.id, key)] = False
            self.ops.append((u.index, shadow, key, None, len(lines), 1))
            lines.append(t.del_prefix + u.keytext)
            return
        if utype != _INSERT and utype != _MODIFY:
            raise P4RTError(SC.INVALID_ARGUMENT, "update type is UNSPECIFIED")
        acttext = u.acttext
        if acttext is None:
            if u.action_id is None:
                raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: entry has no action")
            acttext = action_text(t, u.action_id, u.params)
        idle = u.idle
        if t.learner:
            prefix = t.add_prefix if utype == _INSERT else t.mod_prefix
            if idle:
                if not t.idle_notify:
                    raise P4RTError(
                        SC.INVALID_ARGUMENT,
                        f"table {t.name!r} does not support idle timeouts "
                        "(idle_timeout_behavior is not NOTIFY_CONTROL)",
                    )
                if idle < 0:
                    raise P4RTError(SC.INVALID_ARGUMENT, "idle_timeout_ns is negative")
                if not t.timeouts:
                    raise P4RTError(SC.UNIMPLEMENTED, f"learner {t.dname!r} has no timeout profiles")
                self.ops.append((u.index, shadow, key, u.te_bytes, len(lines), 1))
                lines.append(f"{prefix}{u.keytext}{acttext} timeout {t.timeout_profile(idle)}")
            else:
                self.ops.append((u.index, shadow, key, u.te_bytes, len(lines), 2))
                lines.append(prefix + u.keytext + acttext)
                lines.append(t.keep_prefix + u.keytext)
            return
        # regular table: the server decides existence (the daemon's add is an upsert)
        cur = self._overlay.get((t.id, key))
        exists = (key in shadow) if cur is None else cur
        if utype == _INSERT and exists:
            raise P4RTError(SC.ALREADY_EXISTS, f"entry already exists in {t.name!r}")
        if utype == _MODIFY and not exists:
            raise P4RTError(SC.NOT_FOUND, f"entry not found in {t.name!r}")
        if idle:
            raise P4RTError(
                SC.INVALID_ARGUMENT,
                f"table {t.name!r} is not a learner table: idle timeouts unsupported",
            )
        self._overlay[(t.id, key)] = True
        self.ops.append((u.index, shadow, key, u.te_bytes, len(lines), 1))
        lines.append(t.add_prefix + u.keytext + acttext)

    def _add(self, i: int, store: dict | None, key: Any, value: bytes | None, lines: list[str]) -> None:
        self.ops.append((i, store, key, value, len(self.lines), len(lines)))
        self.lines.extend(lines)

    def _update(self, i: int, upd: p4r.Update) -> None:
        """Any update, through the protobuf API."""
        schema = self.pipe.schema
        ent = upd.entity
        kind = ent.WhichOneof("entity")
        utype = upd.type
        if utype not in (_INSERT, _MODIFY, _DELETE):
            raise P4RTError(SC.INVALID_ARGUMENT, "update type is UNSPECIFIED")
        if kind == "table_entry":
            te = ent.table_entry
            t = schema.tables.get(te.table_id)
            if t is None:
                raise P4RTError(SC.NOT_FOUND, f"unknown table id {te.table_id:#x}")
            if te.is_default_action:
                line = _default_line(t, te, utype)
                self.ordered = True
                self._add(i, self.pipe.defaults, t.id, te.SerializeToString(), [line])
                return
            key, keytext = entry_key(t, te)
            if te.HasField("action"):
                aid, params = entry_action(t, te)
            else:
                aid, params = None, []
            self._entry(
                EntryUpdate(
                    i, t, utype, key, keytext, te.idle_timeout_ns, te.SerializeToString(),
                    action_id=aid, params=params,
                )
            )  # fmt: skip
        elif kind == "register_entry":
            if utype != _MODIFY:
                raise P4RTError(SC.INVALID_ARGUMENT, "register entries only support MODIFY")
            self._add(i, None, None, None, _register_write_lines(schema, ent.register_entry))
        elif kind == "counter_entry":
            if utype != _MODIFY:
                raise P4RTError(SC.INVALID_ARGUMENT, "counter entries only support MODIFY")
            self._add(i, None, None, None, _counter_write_lines(schema, ent.counter_entry))
        elif kind == "packet_replication_engine_entry":
            self._clone_session(i, ent.packet_replication_engine_entry, utype)
            self.ordered = True
        elif kind is None:
            raise P4RTError(SC.INVALID_ARGUMENT, "update has no entity")
        else:
            raise P4RTError(SC.UNIMPLEMENTED, f"{kind} is not supported by this target")

    def _clone_session(self, i: int, pre: p4r.PacketReplicationEngineEntry, utype: int) -> None:
        """One clone-session update -> one daemon `mirror` line (see `packetio.mirror_line`)."""
        which = pre.WhichOneof("type")
        if which == "multicast_group_entry":
            raise P4RTError(
                SC.UNIMPLEMENTED,
                "multicast groups are not supported by this target (the SWX pipeline has no "
                "multicast engine); only clone sessions are",
            )
        if which != "clone_session_entry":
            raise P4RTError(SC.INVALID_ARGUMENT, "packet replication engine entry is empty")
        cs = pre.clone_session_entry
        sid = cs.session_id
        pipe = self.pipe
        n_sessions = int(pipe.daemon.info.get("mirroring_sessions", 0))
        if sid == 0 or sid >= n_sessions:
            raise P4RTError(
                SC.INVALID_ARGUMENT,
                f"clone session id {sid} out of range: this target has sessions 1..{n_sessions - 1}",
            )
        shadow = pipe.clone_sessions
        cur = self._overlay.get(("clone", sid))
        exists = (sid in shadow) if cur is None else cur
        if utype == _DELETE:
            if not exists:
                raise P4RTError(SC.NOT_FOUND, f"clone session {sid} not found")
            self._overlay[("clone", sid)] = False
            self._add(i, shadow, sid, None, [f"mirror {sid} off"])
            return
        if utype == _INSERT and exists:
            raise P4RTError(SC.ALREADY_EXISTS, f"clone session {sid} already exists")
        if utype == _MODIFY and not exists:
            raise P4RTError(SC.NOT_FOUND, f"clone session {sid} not found")
        line = mirror_line(pipe, self.target, cs)
        self._overlay[("clone", sid)] = True
        self._add(i, shadow, sid, cs.SerializeToString(), [line])

    def commit(self, replies: list[str]) -> WriteResults | None:
        """Take the daemon's replies (one per line): record each update's outcome and change
        the shadow for those it accepted. Returns `errors()`."""
        results = self.results
        for i, store, key, value, first, nlines in self.ops:
            r = replies[first]
            if r[:2] != "ok":
                results[i] = daemon_error(r)
                self.failed = True
                continue
            for extra in replies[first + 1 : first + nlines]:
                if extra[:2] != "ok":
                    results[i] = daemon_error(extra)
                    self.failed = True
                    break
            if store is None:
                continue
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        return self.errors()


class Writer:
    """Plans and applies WriteRequests one at a time.

    Planning runs under the write lock. A request that touches only learner tables (whose
    existence checks the daemon makes) releases it as soon as its message is queued, so the
    next request is planned while the daemon applies this one; an `ordered` one keeps it until
    applied.
    """

    def __init__(self, target: TargetConfig):
        self.target = target
        self._lock = asyncio.Lock()

    async def write(
        self, pipe: Pipeline, request: p4r.WriteRequest, raw: bytes | None
    ) -> WriteResults | None:
        """Apply the updates; None when all succeeded, else one (code, message) or None each."""
        lock = self._lock
        await lock.acquire()
        held = True
        try:
            plan = WritePlan(pipe, self.target)
            plan.add_updates(request, raw)
            if not plan.lines:
                return plan.errors()
            if plan.ordered:
                replies = await pipe.daemon.request(plan.lines)
            else:
                task = asyncio.ensure_future(pipe.daemon.request(plan.lines))
                await asyncio.sleep(0)  # the task has queued its message(s) by now
                lock.release()
                held = False
                replies = await task
        finally:
            if held:
                lock.release()
        return plan.commit(replies)


def _default_line(t: TableInfo, te: p4r.TableEntry, utype: int) -> str:
    if utype != _MODIFY:
        raise P4RTError(SC.INVALID_ARGUMENT, "the default entry can only be MODIFYed")
    if te.match or te.priority:
        raise P4RTError(SC.INVALID_ARGUMENT, "the default entry has no match fields or priority")
    if t.const_default_action_id:
        raise P4RTError(SC.PERMISSION_DENIED, f"table {t.name!r} has a const default action")
    if not te.HasField("action"):
        raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: default entry has no action")
    aid, params = entry_action(t, te)
    return f"table default {t.dname}" + action_text(t, aid, params, default=True)


def _register_write_lines(schema: Schema, re_: p4r.RegisterEntry) -> list[str]:
    r = schema.registers.get(re_.register_id)
    if r is None:
        raise P4RTError(SC.NOT_FOUND, f"unknown register id {re_.register_id:#x}")
    if not re_.HasField("index"):
        raise P4RTError(SC.INVALID_ARGUMENT, f"register {r.name!r}: write needs an index")
    idx = re_.index.index
    if idx < 0 or idx >= r.size:
        raise P4RTError(SC.OUT_OF_RANGE, f"register {r.name!r}: index {idx} out of range")
    d = re_.data
    if d.WhichOneof("data") != "bitstring":
        raise P4RTError(SC.INVALID_ARGUMENT, f"register {r.name!r}: data must be a bitstring")
    v = int_of(d.bitstring, r.bitwidth, f"register {r.name!r}")
    return [f"reg write {r.dname} {idx} 0x{v:x}"]


def _counter_write_lines(schema: Schema, ce: p4r.CounterEntry) -> list[str]:
    c = schema.counters.get(ce.counter_id)
    if c is None:
        raise P4RTError(SC.NOT_FOUND, f"unknown counter id {ce.counter_id:#x}")
    if not ce.HasField("index"):
        raise P4RTError(SC.INVALID_ARGUMENT, f"counter {c.name!r}: write needs an index")
    idx = ce.index.index
    if idx < 0 or idx >= c.size:
        raise P4RTError(SC.OUT_OF_RANGE, f"counter {c.name!r}: index {idx} out of range")
    out = []
    if c.packets_reg:
        out.append(f"reg write {c.packets_reg} {idx} {ce.data.packet_count}")
    if c.bytes_reg:
        out.append(f"reg write {c.bytes_reg} {idx} {ce.data.byte_count}")
    return out
