"""P4Runtime match keys and actions as the server stores and the daemon reads them.

A table entry's key becomes a shadow key (a tuple of ints, canonical whatever the field order
or value padding of the request) and the daemon's key text; an action becomes the daemon's
` action NAME ARG VALUE ...` text. Every value is checked against its bit width.
"""

from __future__ import annotations

from finsy.proto import p4r

from .errors import SC, P4RTError
from .schema import TableInfo


def int_of(value: bytes, bitwidth: int, what: str) -> int:
    """A P4Runtime bytestring as an int that fits in `bitwidth` bits."""
    if not value:
        raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: empty byte string")
    x = int.from_bytes(value, "big")
    if x >> bitwidth:
        raise P4RTError(
            SC.INVALID_ARGUMENT,
            f"{what}: value 0x{value.hex()} does not fit in {bitwidth} bits",
        )
    return x


def key_exact(t: TableInfo, matches: list[tuple[int, bytes]]) -> tuple[tuple, str]:
    """(shadow key, daemon key text) of an all-exact key given as (field id, value)."""
    fields = t.fields
    if len(matches) == len(fields):  # fast path: fields given in P4Info order
        out = []
        for (fid, v), f in zip(matches, fields):
            x = int.from_bytes(v, "big")
            if fid != f.id or not v or x >> f.bitwidth:
                break
            out.append(x)
        else:
            return tuple(out), " ".join(map(hex, out))
    vals: list = [None] * len(t.fields)
    fbid = t.fields_by_id
    for fid, v in matches:
        f = fbid.get(fid)
        if f is None:
            raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: unknown match field id {fid}")
        x = int.from_bytes(v, "big")
        if not v or x >> f.bitwidth:
            int_of(v, f.bitwidth, f"table {t.name!r} field {f.name!r}")
        if vals[f.index] is not None:
            raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: field {f.name!r} given twice")
        vals[f.index] = x
    if None in vals:
        missing = [f.name for f in t.fields if vals[f.index] is None]
        raise P4RTError(
            SC.INVALID_ARGUMENT, f"table {t.name!r}: missing exact match field(s) {missing}"
        )
    return tuple(vals), " ".join(["0x%x" % x for x in vals])


def entry_key(t: TableInfo, te: p4r.TableEntry) -> tuple[tuple, str]:
    """(shadow key, daemon key text) of a table entry's match (protobuf path)."""
    if t.all_exact:
        pairs = []
        for fm in te.match:
            if not fm.HasField("exact"):
                f = t.fields_by_id.get(fm.field_id)
                name = f.name if f else fm.field_id
                raise P4RTError(
                    SC.INVALID_ARGUMENT, f"table {t.name!r} field {name!r}: expected an exact match"
                )
            pairs.append((fm.field_id, fm.exact.value))
        if te.priority:
            raise P4RTError(
                SC.INVALID_ARGUMENT, f"table {t.name!r} has only exact fields: priority must be 0"
            )
        return key_exact(t, pairs)
    return _key_general(t, te)


def _key_general(t: TableInfo, te: p4r.TableEntry) -> tuple[tuple, str]:
    vals: list = [None] * len(t.fields)
    for fm in te.match:
        f = t.fields_by_id.get(fm.field_id)
        if f is None:
            raise P4RTError(
                SC.INVALID_ARGUMENT, f"table {t.name!r}: unknown match field id {fm.field_id}"
            )
        what = f"table {t.name!r} field {f.name!r}"
        if vals[f.index] is not None:
            raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: given twice")
        which = fm.WhichOneof("field_match_type")
        full = (1 << f.bitwidth) - 1
        if f.kind == "exact" and which == "exact":
            vals[f.index] = (int_of(fm.exact.value, f.bitwidth, what), full)
        elif f.kind == "lpm" and which == "lpm":
            plen = fm.lpm.prefix_len
            if plen <= 0 or plen > f.bitwidth:
                raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: prefix length {plen} out of range")
            mask = full ^ ((1 << (f.bitwidth - plen)) - 1)
            v = int_of(fm.lpm.value, f.bitwidth, what)
            if v & ~mask:
                raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: bits set beyond the prefix length")
            vals[f.index] = (v, mask)
        elif f.kind == "ternary" and which == "ternary":
            v = int_of(fm.ternary.value, f.bitwidth, what)
            m = int_of(fm.ternary.mask, f.bitwidth, what)
            if m == 0:
                raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: all-zero mask (omit the field instead)")
            if v & ~m:
                raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: value has bits outside the mask")
            vals[f.index] = (v, m)
        elif f.kind == "optional" and which == "optional":
            vals[f.index] = (int_of(fm.optional.value, f.bitwidth, what), full)
        elif f.kind == "range":
            raise P4RTError(SC.UNIMPLEMENTED, f"{what}: range matches are not supported by SWX")
        else:
            raise P4RTError(SC.INVALID_ARGUMENT, f"{what}: {which} match given, field is {f.kind}")
    parts = []
    for f in t.fields:
        v = vals[f.index]
        if v is None:
            if f.kind == "exact":
                raise P4RTError(
                    SC.INVALID_ARGUMENT, f"table {t.name!r}: missing exact match field {f.name!r}"
                )
            v = vals[f.index] = (0, 0)
        parts.append("0x%x" % v[0] if f.kind == "exact" else "0x%x/0x%x" % v)
    prio = te.priority
    if t.needs_priority:
        if prio <= 0:
            raise P4RTError(
                SC.INVALID_ARGUMENT, f"table {t.name!r} needs a priority > 0 (ternary/optional key)"
            )
        # P4Runtime: larger is preferred; SWX: smaller is preferred.
        parts.append("priority %d" % (0x7FFFFFFF - prio))
    elif prio:
        raise P4RTError(SC.INVALID_ARGUMENT, f"table {t.name!r}: priority must be 0")
    return tuple(vals) + ((prio,) if t.needs_priority else ()), " ".join(parts)


def entry_action(t: TableInfo, te: p4r.TableEntry) -> tuple[int, list[tuple[int, bytes]]]:
    """(action id, [(param id, value)]) of a table entry's direct action."""
    ta = te.action
    if ta.WhichOneof("type") != "action":
        raise P4RTError(
            SC.UNIMPLEMENTED,
            f"table {t.name!r}: only direct actions are supported (no action profiles)",
        )
    a = ta.action
    return a.action_id, [(p.param_id, p.value) for p in a.params]


def action_text(
    t: TableInfo, action_id: int, params: list[tuple[int, bytes]], default: bool = False
) -> str:
    """The daemon's ` action NAME [ARG 0xVALUE ...]` text of an entry (or default) action."""
    allowed = t.default_actions if default else t.actions
    ai = allowed.get(action_id)
    if ai is None:
        scope = "default" if default else "entry"
        raise P4RTError(
            SC.INVALID_ARGUMENT,
            f"table {t.name!r}: action id {action_id:#x} is not a valid {scope} action",
        )
    np = len(ai.params)
    if not np:
        if params:
            raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r} takes no parameters")
        return " action " + ai.dname
    if len(params) == np:  # fast path: parameters given in P4Info order
        out = []
        for (pid, v), p in zip(params, ai.params):
            x = int.from_bytes(v, "big")
            if pid != p.id or not v or x >> p.bitwidth:
                break
            out.append(hex(x))
        else:
            return ai.line_fmt % tuple(out)
    vals: list = [None] * np
    pbid = ai.params_by_id
    for pid, v in params:
        pi = pbid.get(pid)
        if pi is None:
            raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r}: unknown parameter id {pid}")
        x = int.from_bytes(v, "big")
        if not v or x >> pi.bitwidth:
            int_of(v, pi.bitwidth, f"action {ai.name!r} parameter {pi.name!r}")
        if vals[pi.index] is not None:
            raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r}: parameter {pi.name!r} given twice")
        vals[pi.index] = x
    if None in vals:
        missing = [p.name for p in ai.params if vals[p.index] is None]
        raise P4RTError(SC.INVALID_ARGUMENT, f"action {ai.name!r}: missing parameter(s) {missing}")
    return " action " + ai.dname + "".join(
        [" %s 0x%x" % (p.dname, x) for p, x in zip(ai.params, vals)]
    )
