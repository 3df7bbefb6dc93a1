"""Direct protobuf wire decoding of the Write hot path.

A flow install is a WriteRequest of a few hundred `Update{INSERT, TableEntry{exact matches,
direct action}}`. Walking such updates through the Python protobuf API costs one wrapper
object per sub-message access (about 1 µs each with upb, ~25 µs per update in total), which
caps a Python server far below 50k installs/s. This module reads exactly that shape straight
from the wire bytes; anything else (other entities, other match kinds, unknown or repeated
singular fields, multi-byte tags) raises `Slow`, and the caller falls back to the regular
protobuf path for that update. The request as a whole has already been parsed (and so
validated) by protobuf before any of this runs.

The serialized `TableEntry` is kept as a slice of the request: it is what the shadow store
stores and what Read returns.
"""

from __future__ import annotations

from p4cs.pbwire import varint

try:        # FlowFastPath.plan in C (setup.py builds it; optional)
    from p4cs.switch.dpdk import _wirefast
except ImportError:     # pragma: no cover - the package built without a compiler
    _wirefast = None

__all__ = ["Slow", "update_slices", "decode_update", "FlowFastPath"]


class Slow(Exception):
    """Not the simple shape: use the generic protobuf path for this update."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    b = buf[i]
    if b < 0x80:
        return b, i + 1
    result = b & 0x7F
    shift = 7
    i += 1
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise Slow("varint too long")


def update_slices(buf: bytes) -> list[tuple[int, int]]:
    """(start, end) of every `updates` (field 4) element of a serialized WriteRequest."""
    out = []
    i, n = 0, len(buf)
    while i < n:
        tag, i = _varint(buf, i)
        wt = tag & 7
        if wt == 0:
            _, i = _varint(buf, i)
        elif wt == 2:
            ln, i = _varint(buf, i)
            if tag == 0x22:
                out.append((i, i + ln))
            i += ln
        elif wt == 1:
            i += 8
        elif wt == 5:
            i += 4
        else:
            raise Slow("group wire type")
    return out


def _update_header(buf: bytes, s: int, e: int) -> tuple[int, int, int]:
    """(TableEntry start, end, update type) of an Update in any field order/encoding."""
    utype = 0
    ent_s = ent_e = -1
    i = s
    while i < e:
        tag = buf[i]
        i += 1
        if tag == 0x08:
            utype, i = _varint(buf, i)
        elif tag == 0x12 and ent_s < 0:
            ln, i = _varint(buf, i)
            ent_s, ent_e = i, i + ln
            i += ln
        else:
            raise Slow
    if ent_s < 0:
        raise Slow
    # Entity: only table_entry (field 2)
    i = ent_s
    if i >= ent_e or buf[i] != 0x12:
        raise Slow
    ln, i = _varint(buf, i + 1)
    if i + ln != ent_e:
        raise Slow
    return i, i + ln, utype


def decode_update(buf: bytes, s: int, e: int):
    """Decode Update{type, entity{table_entry{...}}} with exact matches and a direct action.

    Returns (type, table_id, matches [(field_id, value)], action_id, params [(param_id,
    value)], priority, idle_timeout_ns, is_default, te_start, te_end); raises Slow otherwise.
    """
    # common layout: 08 type 12 L1 12 L2 <TableEntry>, one-byte varints, L1 == L2 + 2
    if (
        e - s >= 6
        and buf[s] == 0x08
        and buf[s + 2] == 0x12
        and buf[s + 4] == 0x12
        and buf[s + 1] < 0x80
        and buf[s + 3] == e - s - 4
        and buf[s + 5] == e - s - 6
    ):
        utype = buf[s + 1]
        te_s, te_e = s + 6, e
    else:
        te_s, te_e, utype = _update_header(buf, s, e)
    table_id = 0
    matches: list[tuple[int, bytes]] = []
    act_s = -1
    act_e = -1
    priority = 0
    idle = 0
    is_default = False
    i = te_s
    while i < te_e:
        tag = buf[i]
        i += 1
        if tag == 0x12:
            ln = buf[i]
            if ln < 0x80:
                i += 1
            else:
                ln, i = _varint(buf, i)
            end = i + ln
            # common layout: 08 fid 12 L 0a vl value (one-byte varints, L == vl + 2)
            if (
                ln >= 6
                and buf[i] == 0x08
                and buf[i + 2] == 0x12
                and buf[i + 4] == 0x0A
                and buf[i + 1] < 0x80
                and buf[i + 3] == ln - 4
                and buf[i + 5] == ln - 6
            ):
                matches.append((buf[i + 1], buf[i + 6 : end]))
                i = end
                continue
            fid = 0
            val = None
            while i < end:
                t2 = buf[i]
                i += 1
                if t2 == 0x08:
                    fid = buf[i]
                    if fid < 0x80:
                        i += 1
                    else:
                        fid, i = _varint(buf, i)
                elif t2 == 0x12 and val is None:
                    ln2 = buf[i]
                    if ln2 < 0x80:
                        i += 1
                    else:
                        ln2, i = _varint(buf, i)
                    end2 = i + ln2
                    val = b""
                    while i < end2:
                        if buf[i] != 0x0A:
                            raise Slow
                        ln3 = buf[i + 1]
                        if ln3 < 0x80:
                            i += 2
                        else:
                            ln3, i = _varint(buf, i + 1)
                        val = buf[i : i + ln3]
                        i += ln3
                else:
                    raise Slow
            if val is None:
                raise Slow
            matches.append((fid, val))
        elif tag == 0x08:
            table_id = buf[i]
            if table_id < 0x80:
                i += 1
            elif buf[i + 1] >= 0x80 and buf[i + 2] >= 0x80 and buf[i + 3] < 0x80:
                # P4Info ids (8-bit prefix, 24-bit index) are 4-byte varints
                table_id = (
                    (table_id & 0x7F)
                    | (buf[i + 1] & 0x7F) << 7
                    | (buf[i + 2] & 0x7F) << 14
                    | buf[i + 3] << 21
                )
                i += 4
            else:
                table_id, i = _varint(buf, i)
        elif tag == 0x1A and act_s < 0:
            ln = buf[i]
            if ln < 0x80:
                i += 1
            else:
                ln, i = _varint(buf, i)
            act_s, act_e = i, i + ln
            i += ln
        elif tag == 0x20:
            priority = buf[i]
            if priority < 0x80:
                i += 1
            else:
                priority, i = _varint(buf, i)
            if priority >> 31:
                raise Slow
        elif tag == 0x40:
            v = buf[i]
            if v < 0x80:
                i += 1
            else:
                v, i = _varint(buf, i)
            is_default = bool(v)
        elif tag == 0x48:
            idle = buf[i]
            if idle < 0x80:
                i += 1
            else:
                idle, i = _varint(buf, i)
            if idle >> 63:
                raise Slow
        elif tag == 0x5A:  # metadata: opaque to the target, kept in the stored bytes
            ln = buf[i]
            if ln < 0x80:
                i += 1
            else:
                ln, i = _varint(buf, i)
            i += ln
        else:
            raise Slow
    if act_s < 0:  # no action (a DELETE needs none)
        return utype, table_id, matches, None, [], priority, idle, is_default, te_s, te_e
    # TableAction: only action (field 1)
    i = act_s
    if i >= act_e or buf[i] != 0x0A:
        raise Slow
    ln = buf[i + 1]
    if ln < 0x80:
        i += 2
    else:
        ln, i = _varint(buf, i + 1)
    a_s, a_e = i, i + ln
    if a_e != act_e:
        raise Slow
    action_id = 0
    params: list[tuple[int, bytes]] = []
    i = a_s
    while i < a_e:
        tag = buf[i]
        i += 1
        if tag == 0x08:
            action_id = buf[i]
            if action_id < 0x80:
                i += 1
            elif buf[i + 1] >= 0x80 and buf[i + 2] >= 0x80 and buf[i + 3] < 0x80:
                # P4Info ids (8-bit prefix, 24-bit index) are 4-byte varints
                action_id = (
                    (action_id & 0x7F)
                    | (buf[i + 1] & 0x7F) << 7
                    | (buf[i + 2] & 0x7F) << 14
                    | buf[i + 3] << 21
                )
                i += 4
            else:
                action_id, i = _varint(buf, i)
        elif tag == 0x22:
            ln = buf[i]
            if ln < 0x80:
                i += 1
            else:
                ln, i = _varint(buf, i)
            end = i + ln
            # common layout: 10 pid 1a vl value (one-byte varints)
            if (
                ln >= 4
                and buf[i] == 0x10
                and buf[i + 2] == 0x1A
                and buf[i + 1] < 0x80
                and buf[i + 3] == ln - 4
            ):
                params.append((buf[i + 1], buf[i + 4 : end]))
                i = end
                continue
            pid = 0
            val = b""
            while i < end:
                t2 = buf[i]
                i += 1
                if t2 == 0x10:
                    pid = buf[i]
                    if pid < 0x80:
                        i += 1
                    else:
                        pid, i = _varint(buf, i)
                elif t2 == 0x1A:
                    ln2 = buf[i]
                    if ln2 < 0x80:
                        i += 1
                    else:
                        ln2, i = _varint(buf, i)
                    val = buf[i : i + ln2]
                    i += ln2
                else:
                    raise Slow
            params.append((pid, val))
        else:
            raise Slow
    return utype, table_id, matches, action_id, params, priority, idle, is_default, te_s, te_e


class FlowFastPath:
    """Schema-specific decoder for flow installs: one dictionary lookup per field.

    For every all-exact table of the pipeline the byte headers that precede a match value
    (`12 L 08 fid 12 L' 0a vlen`) and an action parameter value (`22 L 10 pid 1a vlen`) are
    enumerated for every legal value length, so a field costs a slice and a dict lookup
    instead of a walk over tags and varints. Value lengths up to the field's byte width are
    the only ones enumerated, so a value that is too long is not recognised (and the generic
    path reports it). Anything not recognised raises `Slow`.

    `plan()` returns (update type, TableInfo, key tuple, key text, action text or None,
    idle_timeout_ns, TableEntry start, TableEntry end). It is `plan_c` (the same in C,
    `_wirefast.c`, ~1 µs instead of ~12) where the extension is built, `plan_py` otherwise.
    """

    def __init__(self, tables: dict) -> None:
        self.tables_by_hdr: dict[bytes, tuple] = {}
        for t in tables.values():
            if not t.all_exact or not t.fields:
                continue
            mf: dict[bytes, tuple[int, int, int]] = {}
            for f in t.fields:
                if f.id >= 0x80:
                    continue
                nbytes = (f.bitwidth + 7) >> 3
                for vlen in range(1, nbytes + 1):
                    if vlen + 6 >= 0x80:
                        break
                    hdr = bytes((0x12, vlen + 6, 0x08, f.id, 0x12, vlen + 2, 0x0A, vlen))
                    top = f.bitwidth if (vlen == nbytes and f.bitwidth & 7) else 0
                    mf[hdr] = (f.index, vlen, top)
            actions: dict[bytes, tuple] = {}
            for ai in t.actions.values():
                ph: dict[bytes, tuple[int, int, int]] = {}
                for p in ai.params:
                    if p.id >= 0x80:
                        continue
                    nbytes = (p.bitwidth + 7) >> 3
                    for vlen in range(1, nbytes + 1):
                        if vlen + 4 >= 0x80:
                            break
                        hdr = bytes((0x22, vlen + 4, 0x10, p.id, 0x1A, vlen))
                        top = p.bitwidth if (vlen == nbytes and p.bitwidth & 7) else 0
                        ph[hdr] = (p.index, vlen, top)
                actions[b"\x08" + varint(ai.id)] = (ai, ph, len(ai.params))
            self.tables_by_hdr[b"\x08" + varint(t.id)] = (t, mf, len(t.fields), actions)
        self._idle: dict[bytes, int] = {}
        self.plan = self.plan_py if _wirefast is None else self.plan_c

    def plan_c(self, buf: bytes, s: int, e: int):
        r = _wirefast.plan(self.tables_by_hdr, self._idle, buf, s, e)
        if r is None:
            raise Slow
        return r

    def plan_py(self, buf: bytes, s: int, e: int):
        # Update{08 type 12 L1 {12 L2 TableEntry}}, L1 and L2 of one or two bytes (a splice
        # entry of the flow table is ~185 bytes: two)
        if e - s < 6 or buf[s] != 0x08 or buf[s + 2] != 0x12:
            raise Slow
        utype = buf[s + 1]
        b = buf[s + 3]
        if b < 0x80:
            i = s + 4
            l1 = b
        else:
            b2 = buf[s + 4]
            if b2 >= 0x80:
                raise Slow
            i = s + 5
            l1 = (b & 0x7F) | (b2 << 7)
        if l1 != e - i or buf[i] != 0x12:
            raise Slow
        b = buf[i + 1]
        if b < 0x80:
            i += 2
            l2 = b
        else:
            b2 = buf[i + 2]
            if b2 >= 0x80:
                raise Slow
            i += 3
            l2 = (b & 0x7F) | (b2 << 7)
        if l2 != e - i:
            raise Slow
        te_s = i
        # table id: 08 + 4-byte varint (P4Info ids)
        ent = self.tables_by_hdr.get(buf[i : i + 5])
        if ent is None:
            raise Slow
        t, mf, nf, actions = ent
        i += 5
        vals = [None] * nf
        get = mf.get
        for _ in range(nf):
            m = get(buf[i : i + 8])
            if m is None:
                raise Slow
            idx, vlen, top = m
            i += 8
            x = int.from_bytes(buf[i : i + vlen], "big")
            if top and x >> top:
                raise Slow
            vals[idx] = x
            i += vlen
        if None in vals:
            raise Slow
        acttext = None
        if i < e and buf[i] == 0x1A:
            # TableAction{0a L Action{08 aid(4) params...}}
            la = buf[i + 1]
            if la >= 0x80 or buf[i + 2] != 0x0A or buf[i + 3] != la - 2:
                raise Slow
            a_end = i + 2 + la
            act = actions.get(buf[i + 4 : i + 9])
            if act is None:
                raise Slow
            ai, ph, np_ = act
            i += 9
            if np_:
                pvals = [None] * np_
                pget = ph.get
                while i < a_end:
                    p = pget(buf[i : i + 6])
                    if p is None:
                        raise Slow
                    pidx, vlen, top = p
                    i += 6
                    x = int.from_bytes(buf[i : i + vlen], "big")
                    if (top and x >> top) or pvals[pidx] is not None:
                        raise Slow
                    pvals[pidx] = hex(x)
                    i += vlen
                if None in pvals:
                    raise Slow
                acttext = ai.line_fmt % tuple(pvals)
            else:
                acttext = ai.line_fmt
            if i != a_end:
                raise Slow
        idle = 0
        if i < e:
            if buf[i] != 0x48:
                raise Slow
            raw = buf[i + 1 : e]
            idle = self._idle.get(raw, -1)
            if idle < 0:
                idle, j = _varint(buf, i + 1)
                if j != e or idle >> 63:
                    raise Slow
                if len(self._idle) < 1024:
                    self._idle[raw] = idle
        key = tuple(vals)
        return utype, t, key, " ".join(map(hex, key)), acttext, idle, te_s, e
