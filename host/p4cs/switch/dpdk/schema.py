"""P4Info ⇄ SWX pipeline name mapping and value codecs.

The P4Runtime server speaks P4Info ids and canonical byte strings; the data-plane daemon
speaks the names that p4c-dpdk wrote into the `.spec` and plain numbers. `Schema` joins the
two once per pipeline: every P4Info object the server can be asked about gets its daemon
counterpart, and a missing counterpart is an error at pipeline load time (never a surprise
at the first Write).

p4c-dpdk keeps most names but drops the control prefix (P4Info `MainControlImpl.flow_table`
→ spec `flow_table`), sometimes appends a uniquifying `_N` suffix and, for objects with a
global `@name("...")`, prepends an underscore (`flow_table` → `_flow_table_0`, action
`splice` → `_splice`); indexed counters become one register array per unit
(`<name>_packets` / `<name>_bytes`, the base name spelled as above). The matching below accepts exactly those variations and
refuses ambiguity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from finsy.proto import p4i

__all__ = [
    "SchemaError",
    "Schema",
    "TableInfo",
    "FieldInfo",
    "ActionInfo",
    "ParamInfo",
    "CounterInfo",
    "RegisterInfo",
    "ControllerHeader",
    "canonical_bytes",
]


class SchemaError(Exception):
    """The P4Info does not fit the pipeline the daemon runs."""


def canonical_bytes(value: int) -> bytes:
    """P4Runtime canonical byte string of a non-negative integer (shortest, at least 1 byte)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) >> 3), "big")


# --------------------------------------------------------------------------------------
# Reading the daemon's `info` JSON tolerantly: the daemon owns that format; these helpers
# accept the obvious spellings so that a renamed key does not silently empty a table.
# --------------------------------------------------------------------------------------


def _get(obj: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in obj:
            return obj[n]
    return default


def _bits(obj: dict) -> int:
    v = _get(obj, "bits", "n_bits", "bitwidth", "width")
    if v is None:
        raise SchemaError(f"daemon info: no bit width in {obj!r}")
    return int(v)


def _items(container: Any) -> list[dict]:
    """A list of named objects, given either as a list or as a {name: obj} mapping."""
    if container is None:
        return []
    if isinstance(container, dict):
        out = []
        for name, obj in container.items():
            obj = dict(obj) if isinstance(obj, dict) else {}
            obj.setdefault("name", name)
            out.append(obj)
        return out
    return list(container)


@dataclass
class _DTable:
    name: str
    key: list[tuple[str, int, str]]  # (field name, bits, match kind)
    actions: list[str]
    size: int
    learner: bool
    timeouts: list[int]
    default_action: str | None


@dataclass
class _DAction:
    name: str
    args: list[tuple[str, int]]


@dataclass
class DaemonInfo:
    """The parts of the daemon's `info` reply the server needs."""

    tables: dict[str, _DTable]
    actions: dict[str, _DAction]
    regarrays: dict[str, int]
    raw: dict

    @classmethod
    def parse(cls, info: dict) -> "DaemonInfo":
        actions: dict[str, _DAction] = {}

        def note_action(a: Any) -> str:
            if isinstance(a, str):
                actions.setdefault(a, _DAction(a, []))
                return a
            name = a["name"]
            args = [
                (_get(x, "name"), _bits(x)) for x in _items(_get(a, "args", "params", default=[]))
            ]
            if name not in actions or (args and not actions[name].args):
                actions[name] = _DAction(name, args)
            return name

        for a in _items(info.get("actions")):
            note_action(a)

        tables: dict[str, _DTable] = {}
        for learner, group in ((False, "tables"), (True, "learners")):
            for t in _items(info.get(group)):
                key = []
                for f in _items(_get(t, "key", "keys", "match_fields", "fields", default=[])):
                    key.append(
                        (
                            str(_get(f, "name", "field", default="?")),
                            _bits(f),
                            str(_get(f, "match", "match_type", "type", default="exact")).lower(),
                        )
                    )
                acts = [note_action(a) for a in _items(_get(t, "actions", default=[]))]
                da = _get(t, "default_action", "default")
                if isinstance(da, dict):
                    da = da.get("name")
                timeouts = [int(x) for x in _get(t, "timeouts", "timeout", default=[]) or []]
                tables[t["name"]] = _DTable(
                    name=t["name"],
                    key=key,
                    actions=acts,
                    size=int(_get(t, "size", "n_entries", default=0) or 0),
                    learner=learner or bool(t.get("learner")),
                    timeouts=timeouts,
                    default_action=da,
                )
        regarrays = {
            r["name"]: int(_get(r, "size", default=0)) for r in _items(info.get("regarrays"))
        }
        return cls(tables=tables, actions=actions, regarrays=regarrays, raw=info)


# --------------------------------------------------------------------------------------
# Name matching
# --------------------------------------------------------------------------------------


def _name_variants(p4name: str) -> list[str]:
    local = p4name.rsplit(".", 1)[-1]
    flat = p4name.replace(".", "_")
    # p4c-dpdk spells objects with absolute names (@name(".x")) "_x", and instances "_x_0".
    out = [p4name, local, flat, "_" + local]
    # "MainControlImpl.flow_table" may also appear as "flow_table_0" etc. (handled below)
    return list(dict.fromkeys(out))


def match_name(p4name: str, candidates: Iterable[str], what: str) -> str | None:
    """The daemon name for P4Info object `p4name`, None when there is no candidate.

    Raises SchemaError when several candidates match equally well.
    """
    cands = list(candidates)
    cset = set(cands)
    variants = _name_variants(p4name)
    for v in variants:
        if v in cset:
            return v
    # p4c-dpdk spellings: "flow_table_0", "_flow_table_0" (global @name), "_splice" (actions)
    pat = re.compile("_?(?:" + "|".join(re.escape(v) for v in variants) + r")(?:_\d+)?")
    hits = sorted(c for c in cands if pat.fullmatch(c))
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise SchemaError(f"{what} {p4name!r} is ambiguous in the pipeline: {hits}")
    return None


# --------------------------------------------------------------------------------------
# Schema objects
# --------------------------------------------------------------------------------------

_MATCH_KIND = {
    p4i.MatchField.EXACT: "exact",
    p4i.MatchField.LPM: "lpm",
    p4i.MatchField.TERNARY: "ternary",
    p4i.MatchField.RANGE: "range",
    p4i.MatchField.OPTIONAL: "optional",
}


@dataclass(slots=True)
class FieldInfo:
    id: int
    name: str
    bitwidth: int
    kind: str  # exact / lpm / ternary / optional / range
    index: int  # position in the key (P4Info order)


@dataclass(slots=True)
class ParamInfo:
    id: int
    name: str
    bitwidth: int
    index: int
    dname: str


@dataclass
class ActionInfo:
    id: int
    name: str
    dname: str
    params: list[ParamInfo]
    params_by_id: dict[int, ParamInfo]
    line_fmt: str = ""  # " action NAME arg1 %s arg2 %s" (values as 0x... text)

    def __post_init__(self) -> None:
        self.line_fmt = " action " + self.dname + "".join(
            " %s %%s" % p.dname.replace("%", "%%") for p in self.params
        )


@dataclass
class TableInfo:
    id: int
    name: str
    dname: str
    fields: list[FieldInfo]
    fields_by_id: dict[int, FieldInfo]
    all_exact: bool
    needs_priority: bool
    actions: dict[int, ActionInfo]  # actions allowed in entries
    default_actions: dict[int, ActionInfo]  # actions allowed as default
    size: int
    learner: bool
    timeouts: list[int]  # learner timeout profiles, seconds, index = profile id
    idle_notify: bool
    const_default_action_id: int
    default_dname: str | None
    # precomputed daemon line prefixes
    add_prefix: str = ""
    mod_prefix: str = ""
    del_prefix: str = ""
    keep_prefix: str = ""
    _profiles: dict[int, int] = field(default_factory=dict)

    def timeout_profile(self, idle_timeout_ns: int) -> int:
        """The learner timeout profile nearest to `idle_timeout_ns` (memoized)."""
        cache = self._profiles
        best = cache.get(idle_timeout_ns)
        if best is None:
            if len(cache) > 4096:
                cache.clear()
            best = cache[idle_timeout_ns] = self._nearest_profile(idle_timeout_ns)
        return best

    def _nearest_profile(self, idle_timeout_ns: int) -> int:
        want = idle_timeout_ns / 1e9
        best, best_d = 0, None
        for i, s in enumerate(self.timeouts):
            d = abs(s - want)
            if best_d is None or d < best_d:
                best, best_d = i, d
        return best


@dataclass
class CounterInfo:
    id: int
    name: str
    unit: int  # p4i.CounterSpec.Unit
    size: int
    packets_reg: str | None
    bytes_reg: str | None


@dataclass
class RegisterInfo:
    id: int
    name: str
    size: int
    bitwidth: int
    dname: str


@dataclass
class ControllerHeader:
    """A @controller_header header: fields in order, packed big-endian, whole bytes overall."""

    id: int
    name: str
    fields: list[tuple[int, str, int]]  # (metadata id, name, bitwidth)
    nbytes: int
    by_id: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (shift, bitwidth)
    # decode plan: (id, shift, mask)
    plan: list[tuple[int, int, int]] = field(default_factory=list)

    @classmethod
    def from_p4info(cls, cpm: p4i.ControllerPacketMetadata) -> "ControllerHeader":
        fields = [(m.id, m.name, m.bitwidth) for m in cpm.metadata]
        total = sum(f[2] for f in fields)
        if total % 8:
            raise SchemaError(
                f"controller header {cpm.preamble.name!r} is {total} bits long, not whole bytes"
            )
        hdr = cls(cpm.preamble.id, cpm.preamble.name, fields, total // 8)
        shift = total
        for mid, _name, bw in fields:
            shift -= bw
            hdr.by_id[mid] = (shift, bw)
            hdr.plan.append((mid, shift, (1 << bw) - 1))
        return hdr

    def field_id(self, name: str) -> int | None:
        for mid, n, _bw in self.fields:
            if n == name:
                return mid
        return None

    def decode(self, frame: bytes) -> list[tuple[int, int]]:
        x = int.from_bytes(frame[: self.nbytes], "big")
        return [(mid, (x >> sh) & mask) for mid, sh, mask in self.plan]

    def encode(self, values: dict[int, int]) -> bytes:
        x = 0
        for mid, (sh, _bw) in self.by_id.items():
            x |= values.get(mid, 0) << sh
        return x.to_bytes(self.nbytes, "big")


class Schema:
    """Everything the server needs to translate P4Runtime entities into daemon lines."""

    def __init__(self, p4info: p4i.P4Info, info: dict):
        self.p4info = p4info
        self.dinfo = DaemonInfo.parse(info)
        self.tables: dict[int, TableInfo] = {}
        self.tables_by_dname: dict[str, TableInfo] = {}
        self.actions: dict[int, ActionInfo] = {}
        self.counters: dict[int, CounterInfo] = {}
        self.registers: dict[int, RegisterInfo] = {}
        self.packet_in: ControllerHeader | None = None
        self.packet_out: ControllerHeader | None = None
        self._build()

    # -- construction -------------------------------------------------------------------

    def _build(self) -> None:
        errors: list[str] = []
        d = self.dinfo
        p4actions = {a.preamble.id: a for a in self.p4info.actions}

        for t in self.p4info.tables:
            name = t.preamble.name
            try:
                dname = match_name(name, d.tables, "table")
            except SchemaError as e:
                errors.append(str(e))
                continue
            if dname is None:
                errors.append(
                    f"table {name!r}: no table or learner of that name in the pipeline "
                    f"(pipeline has {sorted(d.tables)})"
                )
                continue
            dt = d.tables[dname]
            fields = []
            for i, mf in enumerate(t.match_fields):
                kind = _MATCH_KIND.get(mf.match_type)
                if kind is None:
                    errors.append(f"table {name!r} field {mf.name!r}: unsupported match type")
                    kind = "exact"
                fields.append(FieldInfo(mf.id, mf.name, mf.bitwidth, kind, i))
            if len(fields) != len(dt.key):
                errors.append(
                    f"table {name!r}: P4Info has {len(fields)} match fields, pipeline table "
                    f"{dname!r} has {len(dt.key)}"
                )
                continue
            for f, (kname, kbits, _kkind) in zip(fields, dt.key):
                if kbits < f.bitwidth:
                    errors.append(
                        f"table {name!r} field {f.name!r}: {f.bitwidth} bits in P4Info but "
                        f"pipeline key field {kname!r} has only {kbits}"
                    )
            if dt.learner and any(f.kind != "exact" for f in fields):
                errors.append(f"table {name!r} is a learner: all its match fields must be exact")
            entry_actions: dict[int, ActionInfo] = {}
            default_actions: dict[int, ActionInfo] = {}
            for ref in t.action_refs:
                pa = p4actions.get(ref.id)
                if pa is None:
                    errors.append(f"table {name!r}: action id {ref.id:#x} not in P4Info")
                    continue
                try:
                    ai = self._action(pa, dt)
                except SchemaError as e:
                    errors.append(str(e))
                    continue
                if ref.scope != p4i.ActionRef.DEFAULT_ONLY:
                    entry_actions[ai.id] = ai
                if ref.scope != p4i.ActionRef.TABLE_ONLY:
                    default_actions[ai.id] = ai
            ti = TableInfo(
                id=t.preamble.id,
                name=name,
                dname=dname,
                fields=fields,
                fields_by_id={f.id: f for f in fields},
                all_exact=all(f.kind == "exact" for f in fields),
                needs_priority=any(f.kind in ("ternary", "range", "optional") for f in fields),
                actions=entry_actions,
                default_actions=default_actions,
                size=t.size or dt.size,
                learner=dt.learner,
                timeouts=dt.timeouts,
                # A learner ages its entries out by construction, and p4c does not carry PNA's
                # `idle_timeout_with_auto_delete` into P4Info: learners always accept
                # idle_timeout_ns and notify on expiry.
                idle_notify=dt.learner or t.idle_timeout_behavior == p4i.Table.NOTIFY_CONTROL,
                const_default_action_id=t.const_default_action_id,
                default_dname=dt.default_action,
            )
            if ti.learner:
                ti.add_prefix = f"learner add {dname} match "
                ti.mod_prefix = f"learner mod {dname} match "
                ti.del_prefix = f"learner del {dname} match "
                ti.keep_prefix = f"learner keep {dname} match "
            else:
                ti.add_prefix = f"table add {dname} match "
                ti.mod_prefix = ti.add_prefix
                ti.del_prefix = f"table del {dname} match "
            self.tables[ti.id] = ti
            self.tables_by_dname[dname] = ti

        for c in self.p4info.counters:
            try:
                self.counters[c.preamble.id] = self._counter(c)
            except SchemaError as e:
                errors.append(str(e))

        for r in self.p4info.registers:
            name = r.preamble.name
            try:
                dname = match_name(name, d.regarrays, "register")
            except SchemaError as e:
                errors.append(str(e))
                continue
            if dname is None:
                errors.append(f"register {name!r}: no register array of that name in the pipeline")
                continue
            bw = r.type_spec.bitstring.bit.bitwidth or r.type_spec.bitstring.int.bitwidth or 64
            self.registers[r.preamble.id] = RegisterInfo(r.preamble.id, name, r.size, bw, dname)

        for cpm in self.p4info.controller_packet_metadata:
            try:
                hdr = ControllerHeader.from_p4info(cpm)
            except SchemaError as e:
                errors.append(str(e))
                continue
            if cpm.preamble.name == "packet_in":
                self.packet_in = hdr
            elif cpm.preamble.name == "packet_out":
                self.packet_out = hdr

        if errors:
            raise SchemaError(
                "P4Info does not match the pipeline:\n  " + "\n  ".join(errors)
            )

    def _action(self, pa: p4i.Action, dt: _DTable) -> ActionInfo:
        if pa.preamble.id in self.actions:
            return self.actions[pa.preamble.id]
        name = pa.preamble.name
        # Prefer the table's own action list, then every action of the pipeline.
        dname = match_name(name, dt.actions, "action") if dt.actions else None
        if dname is None:
            dname = match_name(name, self.dinfo.actions, "action")
        if dname is None:
            raise SchemaError(
                f"action {name!r} (table {dt.name!r}): no action of that name in the pipeline "
                f"(table actions {dt.actions})"
            )
        da = self.dinfo.actions.get(dname, _DAction(dname, []))
        params = []
        if da.args and len(da.args) != len(pa.params):
            raise SchemaError(
                f"action {name!r}: P4Info has {len(pa.params)} parameters, pipeline action "
                f"{dname!r} has {len(da.args)}"
            )
        for i, p in enumerate(pa.params):
            if da.args:
                argname, argbits = da.args[i]
                if argbits < p.bitwidth:
                    raise SchemaError(
                        f"action {name!r} parameter {p.name!r}: {p.bitwidth} bits in P4Info, "
                        f"{argbits} in the pipeline"
                    )
            else:
                argname = p.name
            params.append(ParamInfo(p.id, p.name, p.bitwidth, i, argname))
        ai = ActionInfo(pa.preamble.id, name, dname, params, {p.id: p for p in params})
        self.actions[ai.id] = ai
        return ai

    def _counter(self, c: p4i.Counter) -> CounterInfo:
        name = c.preamble.name
        unit = c.spec.unit
        regs = self.dinfo.regarrays

        def find(suffix: str) -> str | None:
            cands = {}
            for r in regs:
                if r.endswith(suffix):
                    cands[r[: -len(suffix)]] = r
            base = match_name(name, cands, "counter")
            return cands[base] if base is not None else None

        pk = by = None
        if unit in (p4i.CounterSpec.PACKETS, p4i.CounterSpec.BOTH):
            pk = find("_packets")
        if unit in (p4i.CounterSpec.BYTES, p4i.CounterSpec.BOTH):
            by = find("_bytes")
        if unit == p4i.CounterSpec.PACKETS and pk is None:
            pk = match_name(name, regs, "counter")
        if unit == p4i.CounterSpec.BYTES and by is None:
            by = match_name(name, regs, "counter")
        want_pk = unit in (p4i.CounterSpec.PACKETS, p4i.CounterSpec.BOTH)
        want_by = unit in (p4i.CounterSpec.BYTES, p4i.CounterSpec.BOTH)
        if (want_pk and pk is None) or (want_by and by is None):
            raise SchemaError(
                f"counter {name!r}: no register array(s) for it in the pipeline "
                f"(looked for <name>_packets / <name>_bytes among {sorted(regs)})"
            )
        return CounterInfo(c.preamble.id, name, unit, c.size, pk, by)
