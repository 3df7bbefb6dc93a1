"""Counts in the expiry notifications of the DPDK target.

A learner table annotated ``@p4cs_end_expiry("<counter>", "<param>")`` counts every entry into
the indexed counter ``<counter>``, at the index its action parameter ``<param>`` holds (the flow
table: ``flow_counter[flow_id]``), and its entries leave the data plane by expiring (a FIN or
RST moves them to a short profile). When the pipeline starts, the server binds that counter to
the learner (the daemon's ``learner count``): the daemon then ends the ``expired`` line of such
an entry with ``count <index> <packets> <bytes>``, the final counts of its cell, and zeroes the
cell when an entry with that index is added again. The server puts those counts in the
``counter_data`` of the entry's ``TableEntry`` in the ``IdleTimeoutNotification`` (the field
P4Runtime gives direct counters; a learner has none), so the controller learns how much a
finished flow carried without a Read, and reuses its index without a counter Modify. The cell
keeps the final counts until then, so a counter Read in between (the controller's live totals,
before the notification reached them) sees them, not zero.
"""

from __future__ import annotations

import re

from finsy.proto import p4i

from p4cs.constants import REASON_VIP_MISS
from p4cs.pbwire import varint

from .schema import CounterInfo, Schema, SchemaError

ANNOTATION = "@p4cs_end_expiry"
#: The learner timeout profile a FIN or RST moves such a table's entries to: ``P4CS_END_PROFILE``
#: of p4src/include/arch.p4 (tests/unit/test_p4gen.py checks that they agree).
END_PROFILE = 0
_ANNOTATION_RE = re.compile(r'^@p4cs_end_expiry\(\s*"([^"]*)"\s*,\s*"([^"]*)"\s*\)$')


def count_lines(p4info: p4i.P4Info, schema: Schema) -> list[str]:
    """The daemon's `learner count` lines for the annotated learner tables of `p4info`.
    SchemaError: an annotation that does not name a counter and a parameter of the table."""
    lines = []
    for t in p4info.tables:
        for a in t.preamble.annotations:
            if not a.startswith(ANNOTATION + "("):
                continue
            m = _ANNOTATION_RE.match(a)
            ti = schema.tables.get(t.preamble.id)
            name = t.preamble.name
            if m is None:
                raise SchemaError(f"table {name!r}: {a} is not {ANNOTATION}(\"<counter>\", \"<param>\")")
            if ti is None or not ti.learner:
                raise SchemaError(f"table {name!r}: {ANNOTATION} needs a learner table")
            c = _counter(schema, m.group(1))
            if c is None:
                raise SchemaError(f"table {name!r}: {ANNOTATION} names no counter {m.group(1)!r}")
            params = {p.name: p.dname for ai in ti.actions.values() for p in ai.params}
            arg = params.get(m.group(2))
            if arg is None:
                raise SchemaError(f"table {name!r}: {ANNOTATION} names no action parameter "
                                  f"{m.group(2)!r} of the table")
            lines.append(f"learner count {ti.dname} {arg} {c.packets_reg or '-'} {c.bytes_reg or '-'}")
    return lines


#: The flow-table key fields a pure SYN's frame gives (`learner reuse`), by P4Info name (the
#: last part of a dotted one).
_KEY_SOURCES = {"src_addr": "sip", "dst_addr": "dip", "protocol": "proto", "src_port": "sport",
                "dst_port": "dport"}


#: The arguments of the flow table's action that rewrite the 4-tuple (splice): the entry of the
#: other direction has the key from dip:dport to sip:sport.
_REWRITE = ("sip", "dip", "sport", "dport")


def reuse_lines(p4info: p4i.P4Info, schema: Schema) -> list[str]:
    """The daemon's `learner reuse` line for the annotated learner table whose key is the
    TCP/IPv4 5-tuple (dataplane/src/reuse.c): a pure SYN punted because it met an entry of that
    table in the closing profile (``END_PROFILE``, where a FIN or RST moved it) ends the entry
    and runs through the pipeline again, where the data plane answers it with its SYN cookie.
    No line when the program has no such table or its packet_in header has no ingress port
    and reason in whole bytes."""
    hdr = schema.packet_in
    if hdr is None:
        return []
    at: dict[str, tuple[int, int]] = {}     # name -> (byte offset, bytes)
    bit = 0
    for _mid, name, bw in hdr.fields:
        if bit % 8 == 0 and bw % 8 == 0:
            at[name] = (bit // 8, bw // 8)
        bit += bw
    port, reason = at.get("ingress_port"), at.get("reason")
    if port is None or reason is None or not 1 <= port[1] <= 4 or reason[1] != 1:
        return []
    lines = []
    for t in p4info.tables:
        if not any(a.startswith(ANNOTATION + "(") for a in t.preamble.annotations):
            continue
        ti = schema.tables.get(t.preamble.id)
        if ti is None or not ti.learner or len(ti.timeouts) <= END_PROFILE:
            continue
        sources = [_KEY_SOURCES.get(f.name.rsplit(".", 1)[-1]) for f in ti.fields]
        if None in sources or len(set(sources)) != len(sources) or len(sources) != 5:
            continue
        line = (f"learner reuse {ti.dname} {END_PROFILE} {hdr.nbytes} {port[0]} {port[1]} "
                f"{reason[0]} {REASON_VIP_MISS} {' '.join(sources)}")
        for ai in ti.actions.values():      # the rewrite: the other direction's key
            params = {p.name: p for p in ai.params}
            if all(n in params for n in _REWRITE):
                line += f" reverse {ai.dname} " + " ".join(params[n].dname for n in _REWRITE)
                break
        lines.append(line)
    return lines


def _counter(schema: Schema, name: str) -> CounterInfo | None:
    """The counter called `name`, or the only one whose name ends with `.name`."""
    exact = [c for c in schema.counters.values() if c.name == name]
    ends = [c for c in schema.counters.values() if c.name.endswith("." + name)]
    found = exact or ends
    return found[0] if len(found) == 1 else None


def parse_expired(line: str) -> tuple[str, tuple[int, ...], tuple[int, int] | None]:
    """`expired LEARNER V... [count INDEX PACKETS BYTES]` -> (learner, key, (packets, bytes) or
    None). ValueError: not such a line."""
    parts = line.split()
    if len(parts) < 2 or parts[0] != "expired":
        raise ValueError("not an expired line")
    counts = None
    if len(parts) >= 6 and parts[-4] == "count":
        counts = (int(parts[-2]), int(parts[-1]))
        if not (0 <= counts[0] < 1 << 64 and 0 <= counts[1] < 1 << 64):
            raise ValueError("a count out of range")
        parts = parts[:-4]
    return parts[1], tuple(int(x, 0) for x in parts[2:]), counts


Tables = dict[str, tuple[int, dict, bool]]   # learner name -> (table id, shadow, notify)


def expired_entries(data: bytes, tables: Tables) -> tuple[dict[int, list[bytes]], list[str]]:
    """The daemon's `expired` message ``data``: every entry it names leaves its table's shadow,
    and those of tables that notify become TableEntry fields of an IdleTimeoutNotification
    (:func:`entry_field`), per table id; with the lines that start with ``expired`` but are no
    such line. The reference of ``_wirefast.expired`` (the same results, and the same shadow
    changes, for every message that one takes)."""
    out: dict[int, list[bytes]] = {}
    bad: list[str] = []
    for ln in data.decode(errors="replace").split("\n"):
        if not ln:
            continue
        try:
            dname, key, counts = parse_expired(ln)
        except ValueError:
            if ln.startswith("expired"):
                bad.append(ln)
            continue
        t = tables.get(dname)
        if t is None:
            continue
        tid, shadow, notify = t
        b = shadow.pop(key, None)
        if b is not None and notify:
            out.setdefault(tid, []).append(entry_field(b, counts))
    return out, bad


def entry_field(b: bytes, counts: tuple[int, int] | None) -> bytes:
    """IdleTimeoutNotification's ``table_entry`` field (1) of the TableEntry bytes ``b`` as
    written, with ``counts`` (packets, bytes) as its counter_data (field 7) behind them (a
    parser merges it into one already there, as MergeFrom does)."""
    if counts is not None:
        packets, nbytes = counts
        cd = b"\x08" + varint(nbytes) + b"\x10" + varint(packets)
        b = b + b"\x3a" + varint(len(cd)) + cd
    return b"\x0a" + varint(len(b)) + b
