"""A field-wise decision procedure for conjunctions of terms, used before z3.

Handles rules whose decision is one terminal clause guarded by a conjunction of terms (or their
negations) over the common shapes: CIDRs on addresses, intervals / constants on ports, string
equality / `in` / prefix / suffix / substring, and numeric comparisons on text fields (with the
string fallback of docs/rules.md). Questions are conjunctions of rules and negated rules
(F(j) and not F(i) ...); negated rules are handled by a bounded case split.

Answers are SAT (with a constructed field assignment), UNSAT, or UNKNOWN. UNSAT is only claimed
when the terms alone (over all strings / numbers / addresses, without the solver's field
domains and links, which only remove requests) are contradictory, so it is exact. A SAT
assignment is a candidate: the caller renders it to a request, parses it back through the real
extractors and checks it; anything not verified, and every UNKNOWN, goes to z3.
"""

from __future__ import annotations

import ipaddress
import math

from . import automata
from .engine import atom_holds
from .model import And, Atom, Const, Lit, Not, as_number, field_kind, field_protocol

SAT, UNSAT, UNKNOWN = "sat", "unsat", "unknown"
ABSENT = None
_V6_BASE = 1 << 32
_IP_TOP = _V6_BASE + (1 << 128) - 1
ALWAYS = frozenset(("client.ip", "client.port", "vip", "vip.port"))
_CMP = ("==", "!=", "<", "<=", ">", ">=")
_STRF = ("prefix", "suffix", "match")
_FLIP = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<",
         "in": "notin", "prefix": "nprefix", "suffix": "nsuffix", "match": "nmatch",
         "regex": "nregex"}
_DEFAULTS = {"client.ip": ipaddress.ip_address("192.0.2.10"), "client.port": 40000,
             "vip": ipaddress.ip_address("198.51.100.1"), "vip.port": 80}
_METHODS = ("GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH")


class FastModel:
    """A field assignment (typed values: ip address objects, ints, strings; None = absent)."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def get(self, f):
        return self.values.get(f)

    def fields(self, fields) -> dict:
        out = {}
        for f in sorted(fields):
            v = self.values.get(f)
            out[f] = None if v is None else (str(v) if field_kind(f) == "ip" else v)
        return out

    def proto(self) -> int:
        present = [f for f, v in self.values.items() if v is not None]
        protos = {field_protocol(f) for f in present if not f.startswith("header.")}
        if "tls" in protos:
            return 1
        if "smtp" in protos:
            return 2
        if "pop3" in protos:
            return 4
        if "imap" in protos:
            return 5
        return 0


# ---------------------------------------------------------------------------------------------
# which rules are simple


def _atom_ok(a: Atom) -> bool:
    kind = field_kind(a.field)
    if kind == "ip":
        return a.op in ("==", "!=", "in") and all(l.net is not None for l in a.values)
    if kind == "int":
        if a.field.startswith("bitmatch("):
            return False
        return a.op in _CMP + ("in",) and all(l.num is not None for l in a.values)
    if a.op in _STRF:
        return True
    if a.op == "regex":
        return automata.supported(a)
    if a.op == "in":
        return all(l.num is None for l in a.values)
    if a.op in ("==", "!="):
        return True
    return a.op in _CMP and a.value.num is not None


def rule_literals(rs, r: int):
    """[(atom, positive)] whose conjunction is F(r), or None when r is not of the simple form."""
    cls = [c for c in rs.clauses if c.rule == r and c.action.terminal]
    if len(cls) != 1:
        return None
    g = cls[0].guard
    if isinstance(g, Const):
        return [] if g.value else None
    items = g.items if isinstance(g, And) else (g,)
    out = []
    for x in items:
        pos = True
        if isinstance(x, Not):
            x, pos = x.item, False
        if not isinstance(x, Atom) or not _atom_ok(x):
            return None
        out.append((x, pos))
    return out


def _holds(atom: Atom, pos: bool, value) -> bool:
    return atom_holds(atom, value) == pos


# ---------------------------------------------------------------------------------------------
# one field


def _ip_int(a) -> int:
    return int(a) if a.version == 4 else _V6_BASE + int(a)


def _ip_of(v: int):
    return ipaddress.IPv4Address(v) if v < _V6_BASE else ipaddress.IPv6Address(v - _V6_BASE)


def _ivs_intersect(a, b):
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _ivs_complement(a):
    return list(automata.complement(a, _IP_TOP))


def _ip_field(lits):
    allowed = [(0, _IP_TOP)]
    for a, pos in lits:
        nets = sorted((_ip_int(l.net.network_address), _ip_int(l.net.broadcast_address)) for l in a.values)
        merged = []
        for lo, hi in nets:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        inside = (a.op != "!=") == pos
        allowed = _ivs_intersect(allowed, merged if inside else _ivs_complement(merged))
        if not allowed:
            return UNSAT, None
    lo, hi = allowed[0]
    v = _ip_of(lo + min(10, hi - lo))
    if all(_holds(a, p, v) for a, p in lits):
        return SAT, v
    return UNKNOWN, None


def _port_field(lits):
    lo, hi = 0, 65535
    allowed = None
    excl = set()
    for a, pos in lits:
        op = a.op if pos else _FLIP[a.op]
        if op in ("in", "=="):
            s = {int(l.num) for l in a.values if float(l.num).is_integer()}
            allowed = s if allowed is None else allowed & s
        elif op in ("notin", "!="):
            excl |= {int(l.num) for l in a.values if float(l.num).is_integer()}
        else:
            x = a.value.num
            if op == ">":
                lo = max(lo, math.floor(x) + 1)
            elif op == ">=":
                lo = max(lo, math.ceil(x))
            elif op == "<":
                hi = min(hi, math.ceil(x) - 1)
            else:
                hi = min(hi, math.floor(x))
    if allowed is not None:
        cands = sorted(v for v in allowed if lo <= v <= hi and v not in excl)
    else:
        cands = []
        for v in range(lo, hi + 1):
            if v not in excl:
                cands.append(v)
                break
    for v in cands:
        if all(_holds(a, p, v) for a, p in lits):
            return SAT, v
    if not cands:
        return UNSAT, None
    return UNKNOWN, None


def _fmt(x) -> str:
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return str(x)


def _num_field(lits, pres_lits, extra_cands=()):
    """Text field compared with numeric literals only."""
    lo = hi = None
    lo_s = hi_s = False
    eq = None
    for a, op in pres_lits:
        x = a.value.num
        if op == "==":
            eq = x
        elif op in (">", ">="):
            if lo is None or x > lo or (x == lo and op == ">"):
                lo, lo_s = x, op == ">"
        elif op in ("<", "<="):
            if hi is None or x < hi or (x == hi and op == "<"):
                hi, hi_s = x, op == "<"
    cands = list(extra_cands)
    if eq is not None:
        cands.append(_fmt(eq))
    base = []
    if lo is not None:
        base += [math.floor(lo) + 1, lo + 1, lo + 0.5, lo + 0.05, lo + 0.005, lo]
    if hi is not None:
        base += [math.ceil(hi) - 1, hi - 1, hi - 0.5, hi - 0.05, hi - 0.005, hi]
    if lo is not None and hi is not None:
        base.append((lo + hi) / 2)
    base += [0, 1, -1]
    for b in base:
        if isinstance(b, float):
            b = round(b, 6)
        cands.append(_fmt(b))
    # the string fallback: non-numeric texts around the literals
    for a, op in pres_lits:
        t = a.value.text
        cands += [t + "a", t[:1] + "a", "a", "~", "N/A", "-a", t[:-1] if len(t) > 1 else "."]
    for c in cands:
        if all(_holds(a, p, c) for a, p in lits):
            return SAT, c
    # unsat only if both the numbers and the strings are excluded by two bounds
    num_empty = (eq is not None and ((lo is not None and (eq < lo or (eq == lo and lo_s)))
                                     or (hi is not None and (eq > hi or (eq == hi and hi_s)))))
    if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_s or hi_s))):
        num_empty = True
    if not num_empty:
        return UNKNOWN, None
    slo = shi = None
    slo_s = shi_s = False
    for a, op in pres_lits:
        t = a.value.text
        if op in (">", ">=") and (slo is None or t > slo or (t == slo and op == ">")):
            slo, slo_s = t, op == ">"
        if op in ("<", "<=") and (shi is None or t < shi or (t == shi and op == "<")):
            shi, shi_s = t, op == "<"
    if slo is not None and shi is not None and (slo > shi or (slo == shi and (slo_s or shi_s))):
        return UNSAT, None
    return UNKNOWN, None


def _text_field(f, lits, pres_lits, extra_cands=()):
    eqs = None
    P, S, M = [], [], []
    NP, NS, NM, NE = [], [], [], set()
    for a, op in pres_lits:
        texts = [l.text for l in a.values]
        if op in ("==", "in"):
            eqs = set(texts) if eqs is None else eqs & set(texts)
        elif op in ("!=", "notin"):
            NE |= set(texts)
        elif op == "prefix":
            P.append(texts[0])
        elif op == "suffix":
            S.append(texts[0])
        elif op == "match":
            M.append(texts[0])
        elif op == "nprefix":
            NP.append(texts[0])
        elif op == "nsuffix":
            NS.append(texts[0])
        elif op == "nmatch":
            NM.append(texts[0])
    if eqs is not None:
        for c in sorted(eqs):
            if all(_holds(a, p, c) for a, p in lits):
                return SAT, c
        return UNSAT, None
    p = max(P, key=len, default="")
    s = max(S, key=len, default="")
    if any(not p.startswith(x) for x in P) or any(not s.endswith(x) for x in S):
        return UNSAT, None
    if any(p.startswith(x) for x in NP) or any(s.endswith(x) for x in NS):
        return UNSAT, None
    if any(t in p or t in s or any(t in m for m in M) for t in NM):
        return UNSAT, None
    cands = list(extra_cands)
    lead = "/" if f in ("url", "path") and not p.startswith("/") else ""
    seps = ("", "x", "0", "-", "a1", "zz", "q9", "_")
    for sep in seps:
        body = sep.join(M)
        for start in ((lead + p, p) if lead else (p,)):
            cands.append(start + body + s)
            cands.append(start + sep + body + sep + s)
            cands.append(start + sep + body + sep + sep + s)
    for c in cands:
        if all(_holds(a, pp, c) for a, pp in lits):
            return SAT, c
    return UNKNOWN, None


def _domain(pattern: str) -> Atom:
    return Atom("domain", "regex", (Lit(pattern),))


#: Supersets of the values the extractors can produce for a field: conjoined before an
#: unsatisfiability claim (so a claim is exact over real requests, e.g. a header value never
#: ends in a newline, so `regex(h, "a$")` equals `suffix(h, "a")` there).
_LATIN1_STRIPPED = _domain("^(?:[^\\s\u0100-\U0010ffff](?:[^\r\n\u0100-\U0010ffff]*"
                           "[^\\s\u0100-\U0010ffff])?)?\\Z")
_STRIPPED = _domain(r"^(?:[^\s](?:[\s\S]*[^\s])?)?\Z")
_COOKIE_VALUE = _domain("^[^;,\r\n\u0100-\U0010ffff]*\\Z")
_TARGET = _domain("^[^ \r\n\u0100-\U0010ffff]*\\Z")


def _sound_domain(f: str) -> Atom | None:
    if f.startswith("header."):
        return _LATIN1_STRIPPED
    if f.startswith("xml."):
        return _STRIPPED
    if f.startswith("cookie."):
        return _COOKIE_VALUE
    if f in ("url", "path", "query"):
        return _TARGET
    return None


#: Readable values per field, to shape witnesses only.
_NICE = {
    "url": _domain(r"^/[!-\"$-~]*\Z"),
    "path": _domain(r"^/[!-\"$->@-~]*\Z"),
    "query": _domain(r"^[!-\"$-~]*\Z"),
    "host": _domain(r"^[a-z0-9._-]*[a-z0-9_-]\Z"),
    "header.host": _domain(r"^[a-z0-9._-]*[a-z0-9_-]\Z"),
    "tls.sni": _domain(r"^[a-z0-9._-]*[a-z0-9_-]\Z"),
}
_NICE_COOKIE = _domain(r"^[!#-+\--:<-~]*\Z")
_NICE_TEXT = _domain(r"^(?:[!-~](?:[ -~]*[!-~])?)?\Z")


def _auto_field(f, lits):
    """String terms of any kind on one field, decided exactly by automata."""
    sound = _sound_domain(f)
    if sound is not None:
        lits = lits + [(sound, True)]
    res, w = automata.solve(lits)
    if res != SAT:
        return res, None
    nice = _NICE.get(f) or (_NICE_COOKIE if f.startswith("cookie.") else
                            _NICE_TEXT if f.startswith(("header.", "xml.", "form.", "json.")) else None)
    if nice is not None:
        res2, w2 = automata.solve(lits + [(nice, True)])
        if res2 == SAT:
            w = w2
    if all(_holds(a, p, w) for a, p in lits):
        return SAT, w
    return UNKNOWN, None


def _field(f, lits):
    """Satisfy the literals on one field: (SAT, value or None=absent) / (UNSAT, _) / (UNKNOWN, _)."""
    kind = field_kind(f)
    positive = any(p for _, p in lits)
    if not positive and f not in ALWAYS and f not in ("method", "version"):
        return SAT, ABSENT
    if kind == "ip":
        return _ip_field(lits)
    if kind == "int":
        return _port_field(lits)
    pres = [(a, a.op if p else _FLIP[a.op]) for a, p in lits]
    numeric = [x for x in pres if x[0].op in _CMP and x[0].value.num is not None]
    extra = _METHODS if f == "method" else ("1.1", "1.0") if f == "version" else ()
    if numeric and len(numeric) != len(pres):
        r = (UNKNOWN, None)
    elif numeric:
        r = _num_field(lits, pres, extra)
    else:
        r = (UNKNOWN, None)
        if not any(a.op == "regex" for a, _ in lits):
            r = _text_field(f, lits, pres, extra)
        if r[0] == UNKNOWN:
            r = _auto_field(f, lits)
    if r[0] != SAT and not positive:
        return SAT, ABSENT  # method / version: absent (not HTTP)
    return r


def decide(lits):
    by: dict[str, list] = {}
    for a, p in lits:
        by.setdefault(a.field, []).append((a, p))
    vals = {}
    unknown = False
    for f, fl in by.items():
        r, v = _field(f, fl)
        if r == UNSAT:
            return UNSAT, None
        if r == UNKNOWN:
            unknown = True
        vals[f] = v
    if unknown:
        return UNKNOWN, None
    for f, v in _DEFAULTS.items():
        vals.setdefault(f, v)
    return SAT, vals


def _conj_true(rlits, vals) -> bool:
    return all(_holds(a, p, vals.get(a.field)) for a, p in rlits)


def solve(pos: list, neg: list, budget: int = 200):
    """Conjunction of the literal lists in `pos` and the negations of those in `neg`."""
    base = [l for ls in pos for l in ls]
    count = [0]

    def go(lits, rest):
        count[0] += 1
        if count[0] > budget:
            return UNKNOWN, None
        r, vals = decide(lits)
        if r != SAT:
            return r, None
        for k, R in enumerate(rest):
            if _conj_true(R, vals):
                break
        else:
            return SAT, vals
        if not R:
            return UNSAT, None
        others = rest[:k] + rest[k + 1:]
        unknown = False
        for a, p in R:
            r2, v2 = go(lits + [(a, not p)], others)
            if r2 == SAT:
                return SAT, v2
            if r2 == UNKNOWN:
                unknown = True
        return (UNKNOWN if unknown else UNSAT), None

    r, vals = go(base, list(neg))
    return r, (FastModel(vals) if r == SAT else None)
