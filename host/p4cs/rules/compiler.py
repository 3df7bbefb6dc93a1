"""Compiled matcher: indexes the rules by field so a request evaluates only the clauses whose
necessary terms it satisfies, in priority order, and stops at the first decision.

* every reachable action of every rule is a *clause* (model.flatten_rule) whose guard holds
  iff control reaches the action; clause order is priority order;
* for each clause a set of *anchors* is chosen: terms on one field such that the guard implies
  at least one of them (an equality, a CIDR, a prefix / suffix / substring, a numeric or string
  bound). Clauses without anchors are always candidates;
* per field: hash tables for equalities, prefix / suffix tables by length, an Aho-Corasick
  automaton for substrings, a per-prefix-length table for CIDRs, and sorted thresholds with
  cumulative bitsets for bounds (interval search);
* candidate sets are bitsets (Python ints) over clause numbers; the lowest candidate is
  verified with its full compiled guard; a field's index is consulted only when the next
  candidate lies beyond the first clause that field can contribute, so fields (and body
  parsing) that earlier rules make irrelevant are never extracted.
"""

from __future__ import annotations

import ipaddress
import operator
from bisect import bisect_right

from .engine import Decision, _regex, render_log
from .model import And, Atom, Clause, Const, Cond, Not, Or, as_number, field_kind

_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)


def _num(s: str):
    if len(s) < 20 and s.isascii() and s.isdigit():
        return int(s)
    return as_number(s)


# ---------------------------------------------------------------------------------------------
# guards


def compile_atom(a: Atom):
    """A predicate over a present value with exactly engine.atom_holds' semantics."""
    op = a.op
    if field_kind(a.field) == "ip":
        nets = [lit.net for lit in a.values if lit.net is not None]
        if op == "!=":
            return lambda v: not any(v.version == n.version and v in n for n in nets)
        return lambda v: any(v.version == n.version and v in n for n in nets)
    if op in ("match", "prefix", "suffix", "regex"):
        t = a.value.text
        if op == "match":
            return lambda v: t in (v if isinstance(v, str) else str(v))
        if op == "prefix":
            return lambda v: (v if isinstance(v, str) else str(v)).startswith(t)
        if op == "suffix":
            return lambda v: (v if isinstance(v, str) else str(v)).endswith(t)
        rx = _regex(t).search
        return lambda v: rx(v if isinstance(v, str) else str(v)) is not None
    if op == "in":
        strs = frozenset(l.text for l in a.values if l.num is None)
        nums = frozenset(l.num for l in a.values if l.num is not None)
        ntexts = frozenset(l.text for l in a.values if l.num is not None)

        def t_in(v):
            if isinstance(v, int):
                n, s = v, str(v)
            else:
                s, n = v, _num(v)
            if s in strs:
                return True
            if n is not None:
                return n in nums
            return s in ntexts

        return t_in
    f = _OPS[op]
    lit = a.value
    text = lit.text
    if lit.num is not None:
        c = lit.num

        def t_num(v):
            n = v if isinstance(v, int) else _num(v)
            if n is not None:
                return f(n, c)
            return f(v if isinstance(v, str) else str(v), text)

        return t_num
    return lambda v: f(v if isinstance(v, str) else str(v), text)


def compile_cond(c: Cond):
    """A function of `get` (field -> value or None)."""
    if isinstance(c, Atom):
        fname = c.field
        t = compile_atom(c)

        def g_atom(get):
            v = get(fname)
            return v is not None and t(v)

        return g_atom
    if isinstance(c, And):
        parts = [compile_cond(i) for i in c.items]
        if len(parts) == 2:
            p0, p1 = parts
            return lambda get: p0(get) and p1(get)
        return lambda get: all(p(get) for p in parts)
    if isinstance(c, Or):
        parts = [compile_cond(i) for i in c.items]
        return lambda get: any(p(get) for p in parts)
    if isinstance(c, Not):
        inner = compile_cond(c.item)
        return lambda get: not inner(get)
    if isinstance(c, Const):
        val = c.value
        return lambda get: val
    raise TypeError(c)


# ---------------------------------------------------------------------------------------------
# anchors

_SCORE = {"eq": 1, "net": 1, "prefix": 2, "suffix": 2, "match": 3, "lo": 4, "hi": 4}


def _akey(fname, anchor):
    a = anchor
    if a[0] == "eq":
        return (fname, "eq", a[1].text)
    if a[0] in ("lo", "hi"):
        return (fname, a[0], a[1].text, a[2])
    return (fname, a[0], str(a[1]))


def anchor_counts(guards) -> dict:
    """How many atoms of the rule set share each anchor key (selectivity estimate)."""
    counts: dict = {}

    def walk(c):
        if isinstance(c, Atom):
            for fname, anchor in anchors(c) or ():
                k = _akey(fname, anchor)
                counts[k] = counts.get(k, 0) + 1
        elif isinstance(c, (And, Or)):
            for i in c.items:
                walk(i)
        elif isinstance(c, Not):
            walk(c.item)

    for g in guards:
        walk(g)
    return counts


def anchors(c: Cond, counts: dict | None = None):
    """A list of (field, anchor) such that c implies one of them, or None. With `counts`, a
    conjunction is anchored on its most selective term (fewest clauses sharing the key)."""
    if isinstance(c, Atom):
        kind = field_kind(c.field)
        op = c.op
        if op in ("==", "in"):
            if kind == "ip":
                return [(c.field, ("net", l.net)) for l in c.values]
            return [(c.field, ("eq", l)) for l in c.values]
        if op in ("prefix", "suffix", "match") and kind == "str":
            return [(c.field, (op, c.value.text))]
        if op in (">", ">=") and kind != "ip":
            return [(c.field, ("lo", c.value, op == ">"))]
        if op in ("<", "<=") and kind != "ip":
            return [(c.field, ("hi", c.value, op == "<"))]
        return None
    if isinstance(c, And):
        best, best_score = None, None
        for i in c.items:
            a = anchors(i, counts)
            if a is None:
                continue
            if counts is not None:
                score = (sum(counts.get(_akey(*x), 1) for x in a), max(_SCORE[x[1][0]] for x in a))
            else:
                score = (max(_SCORE[x[1][0]] for x in a), len(a))
            if best is None or score < best_score:
                best, best_score = a, score
        return best
    if isinstance(c, Or):
        out = []
        for i in c.items:
            a = anchors(i, counts)
            if a is None:
                return None
            out.extend(a)
        return out
    if isinstance(c, Const) and not c.value:
        return []
    return None


class _AhoCorasick:
    """Substring automaton; `search(text)` ORs the masks of every pattern occurring in text."""

    def __init__(self) -> None:
        self.goto: list[dict[str, int]] = [{}]
        self.out: list[int] = [0]
        self.fail: list[int] = [0]
        self.built = False

    def add(self, pattern: str, mask: int) -> None:
        s = 0
        for ch in pattern:
            nxt = self.goto[s].get(ch)
            if nxt is None:
                nxt = len(self.goto)
                self.goto.append({})
                self.out.append(0)
                self.fail.append(0)
                self.goto[s][ch] = nxt
            s = nxt
        self.out[s] |= mask

    def build(self) -> None:
        from collections import deque

        q = deque()
        for ch, s in self.goto[0].items():
            self.fail[s] = 0
            q.append(s)
        while q:
            r = q.popleft()
            for ch, s in self.goto[r].items():
                q.append(s)
                f = self.fail[r]
                while f and ch not in self.goto[f]:
                    f = self.fail[f]
                nf = self.goto[f].get(ch, 0)
                self.fail[s] = nf if nf != s else 0
                self.out[s] |= self.out[self.fail[s]]
        # delta: goto completed lazily with failure transitions (memoised per state)
        self.delta = [dict(g) for g in self.goto]
        self.built = True

    def _step(self, s: int, ch: str) -> int:
        orig = s
        while s and ch not in self.goto[s]:
            s = self.fail[s]
        nxt = self.goto[s].get(ch, 0)
        if len(self.delta[orig]) < 256:
            self.delta[orig][ch] = nxt
        return nxt

    def search(self, text: str) -> int:
        delta, out, step = self.delta, self.out, self._step
        s = 0
        m = 0
        for ch in text:
            nxt = delta[s].get(ch)
            s = step(s, ch) if nxt is None else nxt
            o = out[s]
            if o:
                m |= o
        return m


class _Bounds:
    """Thresholds `x > k` / `x >= k` (lower) or `x < k` / `x <= k` (upper): which are satisfied
    by a value, as a bitset, by binary search over sorted thresholds + cumulative masks."""

    def __init__(self, lower: bool) -> None:
        self.lower = lower
        self.items: list[tuple] = []

    def add(self, key, strict: bool, bit: int) -> None:
        # lower: satisfied = prefix up to (x, 0) inclusive where non-strict sorts first.
        # upper: satisfied = suffix after (x, 0) where strict sorts first.
        flag = (1 if strict else 0) if self.lower else (0 if strict else 1)
        self.items.append(((key, flag), bit))

    def build(self) -> None:
        self.items.sort(key=lambda t: t[0])
        self.keys = [k for k, _ in self.items]
        n = len(self.items)
        cum = [0] * (n + 1)
        if self.lower:
            for i, (_, bit) in enumerate(self.items):
                cum[i + 1] = cum[i] | bit
        else:
            for i in range(n - 1, -1, -1):
                cum[i] = cum[i + 1] | self.items[i][1]
        self.cum = cum

    def lookup(self, x) -> int:
        i = bisect_right(self.keys, (x, 0))
        return self.cum[i]


def _affix_lookup(tables, suffix: bool):
    """Probe the prefix (or suffix) tables, shortest length first."""

    def part(s, n):
        m = 0
        ls = len(s)
        for L, d in tables:
            if L > ls:
                break
            m |= d.get(s[ls - L:] if suffix else s[:L], 0)
        return m

    return part


class FieldIndex:
    def __init__(self, fname: str) -> None:
        self.field = fname
        self.eq_str: dict[str, int] = {}
        self.eq_num: dict = {}
        self.eq_ntext: dict[str, int] = {}
        self.nets: dict[tuple[int, int], dict[int, int]] = {}
        self.pfx: dict[int, dict[str, int]] = {}
        self.sfx: dict[int, dict[str, int]] = {}
        self.sub: dict[str, int] = {}
        self.bounds = {k: _Bounds(k.endswith("lo")) for k in
                       ("num_lo", "num_hi", "ntext_lo", "ntext_hi", "str_lo", "str_hi")}
        self.min_clause = None

    def add(self, anchor, clause: int) -> None:
        bit = 1 << clause
        if self.min_clause is None or clause < self.min_clause:
            self.min_clause = clause
        kind = anchor[0]
        if kind == "eq":
            lit = anchor[1]
            if lit.num is None:
                self.eq_str[lit.text] = self.eq_str.get(lit.text, 0) | bit
            else:
                self.eq_num[lit.num] = self.eq_num.get(lit.num, 0) | bit
                self.eq_ntext[lit.text] = self.eq_ntext.get(lit.text, 0) | bit
        elif kind == "net":
            net = anchor[1]
            d = self.nets.setdefault((net.version, net.prefixlen), {})
            key = int(net.network_address) >> (net.max_prefixlen - net.prefixlen)
            d[key] = d.get(key, 0) | bit
        elif kind in ("prefix", "suffix"):
            t = anchor[1]
            d = (self.pfx if kind == "prefix" else self.sfx).setdefault(len(t), {})
            d[t] = d.get(t, 0) | bit
        elif kind == "match":
            self.sub[anchor[1]] = self.sub.get(anchor[1], 0) | bit
        else:
            lit, strict = anchor[1], anchor[2]
            side = "lo" if kind == "lo" else "hi"
            if lit.num is not None:
                self.bounds["num_" + side].add(lit.num, strict, bit)
                self.bounds["ntext_" + side].add(lit.text, strict, bit)
            else:
                self.bounds["str_" + side].add(lit.text, strict, bit)

    def build(self) -> None:
        self.pfx_lens = sorted(self.pfx)
        self.sfx_lens = sorted(self.sfx)
        self.sub_small = None
        self.ac = None
        if len(self.sub) <= 8:
            self.sub_small = list(self.sub.items())
        else:
            self.ac = _AhoCorasick()
            empty = self.sub.pop("", 0)
            for t, m in self.sub.items():
                self.ac.add(t, m)
            self.ac.build()
            self.sub_empty = empty
        for b in self.bounds.values():
            b.build()
        self.active_bounds = [(k, b) for k, b in self.bounds.items() if b.items]
        self.net_groups = [(ver, plen, d) for (ver, plen), d in self.nets.items()]

    def compile_lookup(self):
        """`lookup(value) -> bitset` with only the parts this field's anchors need."""
        parts = []
        eq_str, eq_num, eq_ntext, groups = self.eq_str, self.eq_num, self.eq_ntext, self.net_groups
        numeric = bool(eq_num or eq_ntext or any(not k.startswith("str_") for k, _ in self.active_bounds))
        if self.pfx_lens:
            parts.append(_affix_lookup([(L, self.pfx[L]) for L in self.pfx_lens], False))
        if self.sfx_lens:
            parts.append(_affix_lookup([(L, self.sfx[L]) for L in self.sfx_lens], True))
        if self.sub_small:
            small = self.sub_small

            def p_sub(s, n):
                m = 0
                for t, mm in small:
                    if t in s:
                        m |= mm
                return m

            parts.append(p_sub)
        elif self.ac is not None:
            search, empty = self.ac.search, self.sub_empty
            parts.append(lambda s, n: search(s) | empty)
        for k, b in self.active_bounds:
            look = b.lookup
            if k.startswith("num_"):
                parts.append(lambda s, n, look=look: look(n) if n is not None else 0)
            elif k.startswith("ntext_"):
                parts.append(lambda s, n, look=look: look(s) if n is None else 0)
            else:
                parts.append(lambda s, n, look=look: look(s))
        if eq_num:
            parts.append(lambda s, n: eq_num.get(n, 0) if n is not None else 0)
        if eq_ntext:
            parts.append(lambda s, n: eq_ntext.get(s, 0) if n is None else 0)

        def lookup(v) -> int:
            if isinstance(v, _IP):
                m = 0
                iv = int(v)
                bits = 32 if v.version == 4 else 128
                for ver, plen, d in groups:
                    if ver == v.version:
                        m |= d.get(iv >> (bits - plen), 0)
                return m
            if isinstance(v, str):
                s = v
                n = _num(v) if numeric else None
            else:
                s, n = str(v), v
            m = eq_str.get(s, 0)
            for part in parts:
                m |= part(s, n)
            return m

        if not parts and not groups:
            def lookup_eq(v) -> int:  # the common case: equalities on a text field
                if isinstance(v, str):
                    return eq_str.get(v, 0)
                return lookup(v)

            return lookup_eq
        return lookup


class Matcher:
    def __init__(self, clauses: list[Clause], rule_names: list[str]) -> None:
        self.clauses = clauses
        self.rule_names = rule_names
        self.guards = [compile_cond(c.guard) for c in clauses]
        self.actions = [c.action for c in clauses]
        # the decision of each clause when no log ran before it (shared, immutable)
        self.decisions = [Decision.of(rule_names[c.rule], c.action, ()) for c in clauses]
        self.no_match = Decision.of(None, None, ())
        self.always = 0
        idx: dict[str, FieldIndex] = {}
        counts = anchor_counts([c.guard for c in clauses])
        for i, c in enumerate(clauses):
            a = anchors(c.guard, counts)
            if a is None:
                self.always |= 1 << i
                continue
            for fname, anchor in a:
                fi = idx.get(fname)
                if fi is None:
                    fi = idx[fname] = FieldIndex(fname)
                fi.add(anchor, i)
        for fi in idx.values():
            fi.build()
        self.indexes = sorted(idx.values(), key=lambda f: f.min_clause)
        self.order = [(f.min_clause, f.field, f.compile_lookup()) for f in self.indexes]

    def decide(self, view) -> Decision:
        get = view.get
        cand = self.always
        order = self.order
        n_idx = len(order)
        fi = 0
        logs: list[str] = []
        guards, actions, clauses = self.guards, self.actions, self.clauses
        while True:
            low = cand & -cand
            nxt = low.bit_length() - 1 if cand else 1 << 62
            while fi < n_idx and order[fi][0] <= nxt:
                _, fname, lookup = order[fi]
                fi += 1
                v = get(fname)
                if v is not None:
                    add = lookup(v)
                    if add:
                        cand |= add
                        low = cand & -cand
                        nxt = low.bit_length() - 1
            if not cand:
                break
            cand ^= low
            if guards[nxt](get):
                act = actions[nxt]
                if act.kind == "log":
                    logs.append(render_log(act, get))
                    continue
                if not logs:
                    return self.decisions[nxt]
                return Decision.of(self.rule_names[clauses[nxt].rule], act, logs)
        return Decision.of(None, None, logs) if logs else self.no_match

    def stats(self) -> dict:
        return {"clauses": len(self.clauses), "always": bin(self.always).count("1"),
                "indexed_fields": [f.field for f in self.indexes]}
