"""Read RPC planning: which stored or daemon state answers each requested entity.

Table entries, default entries and clone sessions are answered from the server's shadow,
where they are kept as the serialized messages the controller wrote, so a wildcard Read of a
million entries is a byte-string concatenation, not a million protobuf builds. Counters and
registers are read from the daemon's register arrays in chunks.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

from finsy.proto import p4r

from p4cs.pbwire import ld

from .errors import SC, P4RTError, daemon_error
from .keys import entry_key
from .pipeline import Pipeline
from .schema import CounterInfo, RegisterInfo, TableInfo, canonical_bytes

# Read responses are cut at about this many bytes (clients default to a 4 MiB receive limit).
READ_CHUNK_BYTES = 512 * 1024
# Register/counter cells fetched per daemon `reg read` line.
REG_CHUNK = 1024
# Single cells of a ReadRequest closer than this are fetched as one range (a line costs more
# than the cells between them).
CELL_GAP = 32

# ReadResponse.entities = 1 (tag 0x0a); Entity.table_entry = 2 (0x12), counter_entry = 7
# (0x3a), register_entry = 11 (0x5a), packet_replication_engine_entry = 9 (0x4a).
_T_ENTITIES, _T_TABLE, _T_COUNTER, _T_REGISTER, _T_PRE = 0x0A, 0x12, 0x3A, 0x5A, 0x4A

# An entity plan yields lists of serialized Entity messages.
EntityPlan = AsyncIterator[list[bytes]]


def _indexed(objs: dict, obj_id: int, entry, what: str) -> tuple[list, int | None]:
    """The counters / registers a read names (id 0: all of them) and the index it asks for
    (None: every index); NOT_FOUND / OUT_OF_RANGE otherwise."""
    if obj_id == 0:
        chosen = list(objs.values())
    else:
        o = objs.get(obj_id)
        if o is None:
            raise P4RTError(SC.NOT_FOUND, f"unknown {what} id {obj_id:#x}")
        chosen = [o]
    index = entry.index.index if entry.HasField("index") else None
    if index is not None and (index < 0 or (chosen and index >= chosen[0].size)):
        raise P4RTError(SC.OUT_OF_RANGE, f"{what} index {index} out of range")
    return chosen, index


def plan_reads(pipe: Pipeline, entities) -> list[EntityPlan]:
    """The plans answering a ReadRequest's entities, in their order; raises P4RTError for a
    bad one. A run of counter entries that each name one cell of the same counter (a
    controller reading its live flows' counters) is one plan: their cells come in a few
    daemon lines, not two round trips per entity."""
    plans: list[EntityPlan] = []
    run: list[int] = []
    run_counter: CounterInfo | None = None
    for ent in entities:
        if ent.WhichOneof("entity") == "counter_entry" and ent.counter_entry.counter_id \
                and ent.counter_entry.HasField("index"):
            cs, index = _indexed(pipe.schema.counters, ent.counter_entry.counter_id,
                                 ent.counter_entry, "counter")
            if run and cs[0] is not run_counter:
                plans.append(_read_counter_cells(pipe, run_counter, run))
                run = []
            run_counter = cs[0]
            run.append(index)
            continue
        if run:
            plans.append(_read_counter_cells(pipe, run_counter, run))
            run = []
        plans.append(plan_read(pipe, ent))
    if run:
        plans.append(_read_counter_cells(pipe, run_counter, run))
    return plans


def plan_read(pipe: Pipeline, ent: p4r.Entity) -> EntityPlan:
    """The plan answering one entity of a ReadRequest; raises P4RTError for a bad one."""
    kind = ent.WhichOneof("entity")
    schema = pipe.schema
    if kind == "table_entry":
        te = ent.table_entry
        if te.table_id == 0:
            if te.match or te.is_default_action:
                raise P4RTError(SC.INVALID_ARGUMENT, "wildcard table read cannot have match fields")
            return _read_tables(pipe, list(schema.tables.values()), None)
        t = schema.tables.get(te.table_id)
        if t is None:
            raise P4RTError(SC.NOT_FOUND, f"unknown table id {te.table_id:#x}")
        if te.is_default_action:
            return _read_default(pipe, t)
        if te.match:
            key, _text = entry_key(t, te)
            return _read_tables(pipe, [t], key)
        return _read_tables(pipe, [t], None)
    if kind == "counter_entry":
        ce = ent.counter_entry
        cs, index = _indexed(schema.counters, ce.counter_id, ce, "counter")
        return _read_counters(pipe, cs, index)
    if kind == "register_entry":
        re_ = ent.register_entry
        rs, index = _indexed(schema.registers, re_.register_id, re_, "register")
        return _read_registers(pipe, rs, index)
    if kind == "packet_replication_engine_entry":
        pre = ent.packet_replication_engine_entry
        which = pre.WhichOneof("type")
        if which == "clone_session_entry":
            return _read_clone_sessions(pipe, pre.clone_session_entry.session_id)
        if which == "multicast_group_entry":
            # No multicast groups can exist here (writes are UNIMPLEMENTED): an empty answer
            # lets wildcard clean-ups (finsy's Switch.delete_all) succeed.
            return _read_nothing()
        raise P4RTError(SC.INVALID_ARGUMENT, "packet replication engine entry is empty")
    if kind is None:
        raise P4RTError(SC.INVALID_ARGUMENT, "read entity is empty")
    raise P4RTError(SC.UNIMPLEMENTED, f"reading {kind} is not supported by this target")


async def read_responses(plans: list[EntityPlan]) -> AsyncIterator[bytes]:
    """Serialized ReadResponses of about READ_CHUNK_BYTES each (one, possibly empty, at least)."""
    buf: list[bytes] = []
    size = 0
    for plan in plans:
        async for chunk in plan:
            for ent_bytes in chunk:
                b = ld(_T_ENTITIES, ent_bytes)
                buf.append(b)
                size += len(b)
            if size >= READ_CHUNK_BYTES:
                yield b"".join(buf)
                buf, size = [], 0
    if buf or not plans:
        yield b"".join(buf)


async def _read_nothing() -> EntityPlan:
    return
    yield  # an async generator without items


async def _read_clone_sessions(pipe: Pipeline, session_id: int) -> EntityPlan:
    """All clone sessions (session_id 0) or one; an absent one reads as nothing."""
    shadow = pipe.clone_sessions
    ids = sorted(shadow) if session_id == 0 else [session_id]
    out = []
    for sid in ids:
        b = shadow.get(sid)
        if b is not None:
            # Entity{packet_replication_engine_entry: {clone_session_entry(2): b}}
            out.append(ld(_T_PRE, ld(0x12, b)))
    if out:
        yield out


async def _read_tables(pipe: Pipeline, tables: list[TableInfo], key: tuple | None) -> EntityPlan:
    for t in tables:
        shadow = pipe.shadow.get(t.id, {})
        if key is not None:
            b = shadow.get(key)
            if b is not None:
                yield [ld(_T_TABLE, b)]
            continue
        values = list(shadow.values())  # snapshot: writes may run while we stream
        step = 2048
        for i in range(0, len(values), step):
            yield [ld(_T_TABLE, b) for b in values[i : i + step]]
            await asyncio.sleep(0)


async def _read_default(pipe: Pipeline, t: TableInfo) -> EntityPlan:
    b = pipe.defaults.get(t.id)
    if b is None:
        te = p4r.TableEntry(table_id=t.id, is_default_action=True)
        aid = t.const_default_action_id
        if not aid and t.default_dname:
            for ai in t.default_actions.values():
                if ai.dname == t.default_dname:
                    aid = ai.id
                    break
        if aid:
            te.action.action.action_id = aid
        b = te.SerializeToString()
    yield [ld(_T_TABLE, b)]


async def _read_counters(pipe: Pipeline, counters: list[CounterInfo], index: int | None) -> EntityPlan:
    for c in counters:
        if index is not None:
            start, count = index, 1
        else:
            start, count = 0, c.size
        pos = start
        end = start + count
        while pos < end:
            n = min(REG_CHUNK * 8, end - pos)
            pk = await _reg_read(pipe, c.packets_reg, pos, n) if c.packets_reg else None
            by = await _reg_read(pipe, c.bytes_reg, pos, n) if c.bytes_reg else None
            yield [_counter_entity(c, pos + j, None if pk is None else pk[j],
                                   None if by is None else by[j]) for j in range(n)]
            pos += n


def _counter_entity(c: CounterInfo, index: int, packets: int | None, nbytes: int | None) -> bytes:
    """The serialized Entity of counter ``c``'s cell ``index`` (None: a count it keeps not)."""
    ce = p4r.CounterEntry(counter_id=c.id)
    ce.index.index = index
    if packets is not None:
        ce.data.packet_count = packets
    if nbytes is not None:
        ce.data.byte_count = nbytes
    return ld(_T_COUNTER, ce.SerializeToString())


async def _read_counter_cells(pipe: Pipeline, c: CounterInfo, indexes: list[int]) -> EntityPlan:
    """Counter ``c``'s cells at ``indexes`` (each valid), one entity each in that order."""
    pk = await _reg_cells(pipe, c.packets_reg, indexes) if c.packets_reg else None
    by = await _reg_cells(pipe, c.bytes_reg, indexes) if c.bytes_reg else None
    out = []
    for i in indexes:
        out.append(_counter_entity(c, i, None if pk is None else pk[i],
                                   None if by is None else by[i]))
        if len(out) >= REG_CHUNK * 8:
            yield out
            out = []
    if out:
        yield out


async def _reg_cells(pipe: Pipeline, reg: str, indexes: list[int]) -> dict[int, int]:
    """index -> value of the cells of register array ``reg`` at ``indexes``, in one daemon
    request: sorted, cells closer than CELL_GAP read as one range of at most REG_CHUNK."""
    ranges: list[list[int]] = []        # [start, end) each
    for i in sorted(set(indexes)):
        if ranges and i - ranges[-1][1] < CELL_GAP and i + 1 - ranges[-1][0] <= REG_CHUNK:
            ranges[-1][1] = i + 1
        else:
            ranges.append([i, i + 1])
    want = set(indexes)
    return {a + j: v for (a, _b), vals in zip(ranges, await _reg_ranges(pipe, reg, ranges))
            for j, v in enumerate(vals) if a + j in want}


async def _read_registers(pipe: Pipeline, regs: list[RegisterInfo], index: int | None) -> EntityPlan:
    for r in regs:
        start, count = (index, 1) if index is not None else (0, r.size)
        pos, end = start, start + count
        while pos < end:
            n = min(REG_CHUNK * 8, end - pos)
            vals = await _reg_read(pipe, r.dname, pos, n)
            out = []
            for j, v in enumerate(vals):
                re_ = p4r.RegisterEntry(register_id=r.id)
                re_.index.index = pos + j
                re_.data.bitstring = canonical_bytes(v)
                out.append(ld(_T_REGISTER, re_.SerializeToString()))
            yield out
            pos += n


async def _reg_read(pipe: Pipeline, reg: str, start: int, count: int) -> list[int]:
    """`count` cells of register array `reg` from `start`, REG_CHUNK per daemon line."""
    end = start + count
    ranges = [(i, min(i + REG_CHUNK, end)) for i in range(start, end, REG_CHUNK)]
    return [v for vals in await _reg_ranges(pipe, reg, ranges) for v in vals]


async def _reg_ranges(pipe: Pipeline, reg: str, ranges) -> list[list[int]]:
    """The cells of register array ``reg`` in each [start, end) of ``ranges``: one daemon
    line per range, all in one request."""
    replies = await pipe.daemon.request([f"reg read {reg} {a} {b - a}" for a, b in ranges])
    if len(replies) != len(ranges):
        raise P4RTError(SC.INTERNAL, f"reading {reg}: {len(ranges)} lines, {len(replies)} replies")
    out: list[list[int]] = []
    for (a, b), r in zip(ranges, replies):
        if r[:2] != "ok":
            code, msg = daemon_error(r)
            raise P4RTError(code, f"reading {reg}: {msg}")
        vals = [int(x, 0) for x in r[3:].split()]
        if len(vals) != b - a:
            raise P4RTError(SC.INTERNAL, f"reading {reg}: expected {b - a} values, got {len(vals)}")
        out.append(vals)
    return out
