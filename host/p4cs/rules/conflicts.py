"""Conflict detection with witnesses (z3).

For every rule r, F(r) is the set of requests for which r decides (some terminal action of r is
reached when r is entered) and act(r) the action it takes. For rules i before j:

* duplicate   F(i) = F(j) and the same action everywhere            (error)
* absolute    F(i) = F(j), different action for some request        (error)
* potential   F(i) and F(j) intersect and act(i) != act(j) somewhere (warning)
* order       F(j) is a subset of F(i) and the actions differ: j never fires; the more
              specific rule is placed after the general one         (error)
* shadowed    j can never fire: F(j) is covered by F(i) with the same action, or by the union
              of earlier rules, or F(j) is empty                    (error)

Every finding carries a witness: a concrete request (field assignment, a raw request that the
extractors parse back into those fields, and the verification that the two rules really behave
as reported on it).
"""

from __future__ import annotations

import ipaddress
import re
import time
from dataclasses import dataclass, field

import z3

from .engine import COMPARE, atom_holds, compare, eval_cond, naive_decide
from .extract import RequestView
from . import fastcheck
from .model import (
    And,
    Atom,
    Const,
    Cond,
    Not,
    Or,
    field_kind,
    field_protocol,
    mk_or,
    parse_bitmatch_name,
)
from .ruleset import RuleSet
from .synth import build_client_hello, build_http_request, build_imap, build_pop3, build_smtp

try:  # Python 3.11+
    import re._parser as _sre_parse  # type: ignore
    import re._constants as _sre_c  # type: ignore
except ImportError:  # pragma: no cover
    import sre_constants as _sre_c  # type: ignore
    import sre_parse as _sre_parse  # type: ignore

ERROR_KINDS = ("duplicate", "absolute", "shadowed", "order")
KINDS = ("duplicate", "absolute", "potential", "shadowed", "order")

HTTP, TLS, SMTP, OTHER, POP3, IMAP = 0, 1, 2, 3, 4, 5
_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
            "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PURGE")
_V6_BASE = 1 << 32


@dataclass
class Finding:
    kind: str
    rules: tuple[str, str]
    message: str
    witness: dict | None = None

    @property
    def severity(self) -> str:
        return "error" if self.kind in ERROR_KINDS else "warning"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "rules": list(self.rules),
                "message": self.message, "witness": self.witness}


# ---------------------------------------------------------------------------------------------
# regex -> z3


class _Unsupported(Exception):
    pass


_EXTRA_CHARS: list[str] = []


def _chars():
    """Characters a witness may use: printable ASCII plus any used by the rule literals."""
    base = z3.Range(" ", "~")
    if not _EXTRA_CHARS:
        return base
    return z3.Union(base, *[z3.Re(z3.StringVal(c)) for c in _EXTRA_CHARS])


def _re_of_class(items):
    parts = []
    negate = False
    for op, av in items:
        if op is _sre_c.NEGATE:
            negate = True
        elif op is _sre_c.LITERAL:
            parts.append(z3.Re(z3.StringVal(chr(av))))
        elif op is _sre_c.RANGE:
            lo, hi = av
            parts.append(z3.Range(chr(lo), chr(hi)))
        elif op is _sre_c.CATEGORY:
            parts.append(_category(av))
        else:
            raise _Unsupported(str(op))
    r = parts[0] if len(parts) == 1 else z3.Union(*parts) if parts else z3.Empty(z3.ReSort(z3.StringSort()))
    if negate:
        r = z3.Intersect(_chars(), z3.Complement(r))
    return r


def _category(cat):
    digit = z3.Range("0", "9")
    word = z3.Union(z3.Range("a", "z"), z3.Range("A", "Z"), digit, z3.Re("_"))
    space = z3.Union(*[z3.Re(c) for c in " \t\n\r\f\v"])
    table = {
        _sre_c.CATEGORY_DIGIT: digit,
        _sre_c.CATEGORY_NOT_DIGIT: z3.Intersect(_chars(), z3.Complement(digit)),
        _sre_c.CATEGORY_WORD: word,
        _sre_c.CATEGORY_NOT_WORD: z3.Intersect(_chars(), z3.Complement(word)),
        _sre_c.CATEGORY_SPACE: space,
        _sre_c.CATEGORY_NOT_SPACE: z3.Intersect(_chars(), z3.Complement(space)),
    }
    if cat not in table:
        raise _Unsupported(str(cat))
    return table[cat]


def _re_seq(items):
    parts = [_re_item(op, av) for op, av in items]
    if not parts:
        return z3.Re(z3.StringVal(""))
    return parts[0] if len(parts) == 1 else z3.Concat(*parts)


def _re_item(op, av):
    if op is _sre_c.LITERAL:
        return z3.Re(z3.StringVal(chr(av)))
    if op is _sre_c.NOT_LITERAL:
        return z3.Intersect(_chars(), z3.Complement(z3.Re(z3.StringVal(chr(av)))))
    if op is _sre_c.ANY:
        return _chars()
    if op is _sre_c.IN:
        return _re_of_class(av)
    if op is _sre_c.BRANCH:
        return z3.Union(*[_re_seq(b) for b in av[1]])
    if op is _sre_c.SUBPATTERN:
        return _re_seq(av[-1])
    if op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT, getattr(_sre_c, "POSSESSIVE_REPEAT", None)):
        lo, hi, sub = av
        r = _re_seq(sub)
        if hi == _sre_c.MAXREPEAT:
            if lo == 0:
                return z3.Star(r)
            if lo == 1:
                return z3.Plus(r)
            return z3.Concat(z3.Loop(r, lo, lo), z3.Star(r))
        return z3.Loop(r, lo, hi) if hi > 0 else z3.Re(z3.StringVal(""))
    raise _Unsupported(str(op))


def regex_to_z3(pattern: str):
    """z3 regex for strings in which Python's re.search(pattern) finds a match, or None."""
    try:
        parsed = _sre_parse.parse(pattern)
        if parsed.state.flags & (_sre_c.SRE_FLAG_IGNORECASE | _sre_c.SRE_FLAG_MULTILINE | _sre_c.SRE_FLAG_DOTALL):
            return None
        items = list(parsed)
        anchored_start = anchored_end = False
        if items and items[0][0] is _sre_c.AT and items[0][1] in (_sre_c.AT_BEGINNING, _sre_c.AT_BEGINNING_STRING):
            anchored_start = True
            items = items[1:]
        if items and items[-1][0] is _sre_c.AT and items[-1][1] in (_sre_c.AT_END, _sre_c.AT_END_STRING):
            anchored_end = True
            items = items[:-1]
        core = _re_seq(items)
        anyc = z3.Star(_chars())
        parts = ([] if anchored_start else [anyc]) + [core] + ([] if anchored_end else [anyc])
        return z3.Concat(*parts) if len(parts) > 1 else parts[0]
    except (_Unsupported, _sre_c.error, RecursionError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# encoding


def _ip_int(addr) -> int:
    return int(addr) if addr.version == 4 else _V6_BASE + int(addr)


def _ip_from_int(v: int):
    if v < _V6_BASE:
        return ipaddress.IPv4Address(v)
    return ipaddress.IPv6Address(v - _V6_BASE)


def _z3_num(x) -> z3.ArithRef:
    return z3.RealVal(str(x))


class Encoder:
    """z3 variables and formulas for fields, atoms, rule conditions and actions."""

    def __init__(self, rs: RuleSet) -> None:
        self.rs = rs
        self.proto = z3.Int("proto")
        self.bodykind = z3.Int("bodykind")  # 0 xml, 1 form, 2 json
        self.present: dict[str, z3.BoolRef] = {}
        self.val: dict[str, z3.ExprRef] = {}
        self.numvar: dict[str, tuple] = {}
        self.domain: dict[str, list] = {}  # cheap constraints (no regular expressions)
        self.hard: dict[str, list] = {}  # regex-based constraints: character sets, number syntax
        self.approx: set[str] = set()  # atoms encoded as free booleans (unsupported regex)
        self.decimals: dict[str, int] = {}
        self.num_fields: set[str] = set()  # compared with numeric literals
        self.str_fields: set[str] = set()  # also tested as text
        extra: set[str] = set()
        for c in rs.clauses:
            self._scan_decimals(c.guard)
            self._scan_atoms(c.guard, extra)
        _EXTRA_CHARS[:] = sorted(ch for ch in extra if not (" " <= ch <= "~"))[:64]
        bm = [parse_bitmatch_name(f) for f in rs.fields if f.startswith("bitmatch(")]
        self.pkt_bits = max((o + l for o, l, _ in bm), default=0)
        self.pkt = z3.BitVec("packet", self.pkt_bits) if self.pkt_bits else None
        self.pkt_len = z3.Int("packet_bits")
        self._rule_f: dict[int, z3.BoolRef] = {}
        self._rule_act: dict[int, z3.ArithRef] = {}
        self.action_ids: dict[tuple, int] = {}

    def _scan_atoms(self, c: Cond, extra: set) -> None:
        if isinstance(c, Atom):
            for lit in c.values:
                extra.update(lit.text)
            if field_kind(c.field) == "str":
                if c.op in ("match", "prefix", "suffix", "regex") or any(l.num is None for l in c.values):
                    self.str_fields.add(c.field)
                if any(l.num is not None for l in c.values) and c.op not in ("match", "prefix", "suffix", "regex"):
                    self.num_fields.add(c.field)
        elif isinstance(c, (And, Or)):
            for i in c.items:
                self._scan_atoms(i, extra)
        elif isinstance(c, Not):
            self._scan_atoms(c.item, extra)

    def _scan_decimals(self, c: Cond) -> None:
        if isinstance(c, Atom):
            for lit in c.values:
                if lit.num is not None and isinstance(lit.num, float):
                    d = len(lit.text.partition(".")[2])
                    self.decimals[c.field] = max(self.decimals.get(c.field, 0), d)
        elif isinstance(c, (And, Or)):
            for i in c.items:
                self._scan_decimals(i)
        elif isinstance(c, Not):
            self._scan_decimals(c.item)

    # -- fields --------------------------------------------------------------------------------
    def field(self, f: str):
        if f in self.present:
            return self.present[f], self.val[f]
        p = z3.Bool(f"present[{f}]")
        dom: list = []
        hard: list = []
        kind = field_kind(f)
        proto = field_protocol(f)
        if f.startswith("header."):
            dom.append(z3.Implies(p, z3.Or(self.proto == HTTP, self.proto == SMTP)))
        elif proto is not None:
            dom.append(z3.Implies(p, self.proto == {"http": HTTP, "tls": TLS, "smtp": SMTP,
                                                    "pop3": POP3, "imap": IMAP}[proto]))
        if kind == "ip":
            v = z3.Int(f"[{f}]")
            dom.append(z3.And(v >= 0, v < _V6_BASE + (1 << 128)))
        elif kind == "int" and f.startswith("bitmatch("):
            o, l, m = parse_bitmatch_name(f)
            W = self.pkt_bits
            bits = z3.Extract(W - 1 - o, W - o - l, self.pkt)
            v = z3.BV2Int(bits & z3.BitVecVal(m, l))
            dom.append(p == (self.pkt_len >= o + l))
        elif kind == "int":
            v = z3.Int(f"[{f}]")
            dom.append(z3.And(v >= 0, v <= 65535))
        else:
            v = z3.String(f"[{f}]")
            for c in self._string_domain(f, v, p):
                (hard if _has_regex(c) else dom).append(c)
        self.present[f], self.val[f] = p, v
        self.domain[f] = dom
        self.hard[f] = hard
        if f in ("client.ip", "client.port", "vip", "vip.port"):
            dom.append(p)  # always known for a connection
        if f.startswith(("xml.", "form.", "json.")):
            bk = {"xml": [0, 1], "form": [1], "json": [2]}[f.split(".")[0]]
            dom.append(z3.Implies(p, z3.Or(*[self.bodykind == k for k in bk])))
        return p, v

    def _string_domain(self, f: str, v, p) -> list:
        chars = _chars()
        nospace = z3.Union(z3.Range("!", "~"), z3.Range("\u00a1", "\u00ff"))
        host_re = z3.Plus(z3.Union(z3.Range("a", "z"), z3.Range("0", "9"), z3.Re("."), z3.Re("-"), z3.Re("_")))
        if f in ("url", "path", "query"):
            return [z3.InRe(v, z3.Star(z3.Range("!", "~"))), z3.Not(z3.Contains(v, z3.StringVal("#"))),
                    z3.Implies(p, self.proto == HTTP)]
        if f == "method":
            return [z3.Or(*[v == z3.StringVal(m) for m in _METHODS]), p == (self.proto == HTTP)]
        if f == "version":
            return [z3.Or(v == z3.StringVal("1.0"), v == z3.StringVal("1.1")), p == (self.proto == HTTP)]
        if f in ("host", "header.host", "tls.sni"):
            return [z3.InRe(v, host_re), z3.Not(z3.SuffixOf(z3.StringVal("."), v))]
        if f == "tls.session_id":
            return [z3.InRe(v, z3.Plus(z3.Union(z3.Range("0", "9"), z3.Range("a", "f")))),
                    z3.Length(v) % 2 == 0, z3.Length(v) <= 64]
        if f == "tls.alpn":
            return [z3.InRe(v, z3.Plus(z3.Union(z3.Range("!", "+"), z3.Range("-", "~"))))]
        if f in ("pop3.user", "imap.user"):   # ASCII, no space, renders as an IMAP quoted string
            return [z3.InRe(v, z3.Plus(z3.Range("!", "~"))),
                    z3.Not(z3.Contains(v, z3.StringVal('"'))), z3.Not(z3.Contains(v, z3.StringVal("\\")))]
        if f.startswith(("smtp.", "cookie.")):
            bad = '<>;," ' if f.startswith("smtp.") else ';," '
            out = [z3.InRe(v, z3.Star(nospace))]
            out += [z3.Not(z3.Contains(v, z3.StringVal(c))) for c in bad if c != " "]
            if f.startswith("smtp."):
                out.append(z3.Length(v) >= 1)
            return out
        # headers, xml, form, json: printable, no surrounding whitespace (values are stripped)
        out = [z3.InRe(v, z3.Star(chars)),
               z3.Not(z3.PrefixOf(z3.StringVal(" "), v)), z3.Not(z3.SuffixOf(z3.StringVal(" "), v))]
        if f.startswith("form.") or f.startswith("xml."):
            out.append(z3.Not(z3.PrefixOf(z3.StringVal("<"), v)))
        return out

    def numeric(self, f: str):
        """(is_number, value) for a string field, linked to its text."""
        if f in self.numvar:
            return self.numvar[f]
        _, s = self.field(f)
        isnum = z3.Bool(f"isnum[{f}]")
        n = z3.Real(f"num[{f}]")
        sgn, ip, fr = z3.String(f"sgn[{f}]"), z3.String(f"int[{f}]"), z3.String(f"frac[{f}]")
        digits = z3.Range("0", "9")
        numre = z3.Concat(z3.Option(z3.Re("-")), z3.Plus(digits), z3.Option(z3.Concat(z3.Re("."), z3.Plus(digits))))
        K = self.decimals.get(f, 0) + 1
        flen = z3.Length(fr) - 1
        pow10 = z3.RealVal(1)
        for k in range(K, 0, -1):
            pow10 = z3.If(flen == k, z3.RealVal(10 ** k), pow10)
        mag = z3.ToReal(z3.StrToInt(ip)) + z3.If(
            z3.Length(fr) == 0, z3.RealVal(0),
            z3.ToReal(z3.StrToInt(z3.SubString(fr, 1, flen))) / pow10)
        scale = z3.RealVal(10 ** K)
        if f not in self.str_fields:
            # only numeric tests: the number itself (K decimals at most) stands for the text
            self.domain[f] = self.domain[f] + [z3.Implies(isnum, z3.IsInt(n * scale))]
            self.hard[f] = self.hard[f] + [isnum == z3.InRe(s, numre)]
            self.numvar[f] = (isnum, n)
            return isnum, n
        link = [
            isnum == z3.InRe(s, numre),
            z3.Implies(isnum, z3.And(
                s == z3.Concat(sgn, ip, fr),
                z3.Or(sgn == z3.StringVal(""), sgn == z3.StringVal("-")),
                z3.InRe(ip, z3.Plus(digits)),
                z3.Or(fr == z3.StringVal(""), z3.InRe(fr, z3.Concat(z3.Re("."), z3.Loop(digits, 1, K)))),
                n == z3.If(sgn == z3.StringVal("-"), -mag, mag))),
        ]
        self.hard[f] = self.hard[f] + link
        self.numvar[f] = (isnum, n)
        return isnum, n

    # -- atoms and conditions ------------------------------------------------------------------
    def atom(self, a: Atom) -> z3.BoolRef:
        p, v = self.field(a.field)
        kind = field_kind(a.field)
        if kind == "ip":
            inside = []
            for lit in a.values:
                net = lit.net
                lo = _ip_int(net.network_address)
                hi = _ip_int(net.broadcast_address)
                inside.append(z3.And(v >= lo, v <= hi))
            body = z3.Or(*inside)
            return z3.And(p, z3.Not(body) if a.op == "!=" else body)
        if a.op == "in":
            return z3.Or(*[self.atom(Atom(a.field, "==", (lit,))) for lit in a.values])
        if kind == "int":
            if a.op in ("match", "prefix", "suffix", "regex"):
                s = z3.IntToStr(v)
                return z3.And(p, self._strfunc(a, s))
            c = _z3_num(a.value.num)
            return z3.And(p, _cmp(a.op, z3.ToReal(v), c))
        if a.op in ("match", "prefix", "suffix", "regex"):
            return z3.And(p, self._strfunc(a, v))
        lit = a.value
        strcmp = _str_cmp(a.op, v, lit.text)
        if lit.num is None:
            return z3.And(p, strcmp)
        isnum, n = self.numeric(a.field)
        return z3.And(p, z3.If(isnum, _cmp(a.op, n, _z3_num(lit.num)), strcmp))

    def _strfunc(self, a: Atom, s):
        t = z3.StringVal(a.value.text)
        if a.op == "match":
            return z3.Contains(s, t)
        if a.op == "prefix":
            return z3.PrefixOf(t, s)
        if a.op == "suffix":
            return z3.SuffixOf(t, s)
        r = regex_to_z3(a.value.text)
        if r is None:
            self.approx.add(a.show())
            return z3.Bool(f"regex[{a.field}~{a.value.text}]")
        return z3.InRe(s, r)

    def cond(self, c: Cond) -> z3.BoolRef:
        if isinstance(c, Atom):
            return self.atom(c)
        if isinstance(c, And):
            return z3.And(*[self.cond(i) for i in c.items])
        if isinstance(c, Or):
            return z3.Or(*[self.cond(i) for i in c.items])
        if isinstance(c, Not):
            return z3.Not(self.cond(c.item))
        return z3.BoolVal(c.value)

    def rule_fires(self, r: int) -> z3.BoolRef:
        if r not in self._rule_f:
            guards = [c.guard for c in self.rs.clauses if c.rule == r and c.action.terminal]
            self._rule_f[r] = self.cond(mk_or(*guards)) if guards else z3.BoolVal(False)
        return self._rule_f[r]

    def rule_action(self, r: int) -> z3.ArithRef:
        if r not in self._rule_act:
            cls = [c for c in self.rs.clauses if c.rule == r and c.action.terminal]
            expr = z3.IntVal(-1)
            for c in reversed(cls):
                aid = self.action_ids.setdefault(c.action.key(), len(self.action_ids))
                expr = z3.If(self.cond(c.guard), z3.IntVal(aid), expr)
            self._rule_act[r] = expr
        return self._rule_act[r]

    def _links(self, fields: set) -> list:
        out = []
        if len(fields & {"url", "path", "query"}) >= 2:
            for g in ("url", "path", "query"):
                self.field(g)
            pu, u = self.present["url"], self.val["url"]
            pp, pa = self.present["path"], self.val["path"]
            pq, q = self.present["query"], self.val["query"]
            out += [pu == pp, z3.Implies(pq, pu),
                    z3.Implies(pu, u == z3.Concat(pa, z3.If(pq, z3.Concat(z3.StringVal("?"), q), z3.StringVal("")))),
                    z3.Not(z3.Contains(pa, z3.StringVal("?")))]
        for f in fields & {"url", "path"}:
            out.append(z3.Implies(self.present[f], z3.PrefixOf(z3.StringVal("/"), self.val[f])))
        if {"host", "header.host"} <= fields:
            out += [self.present["host"] == self.present["header.host"],
                    self.val["host"] == self.val["header.host"]]
        return out

    def domains_for(self, fields) -> list:
        fields = set(fields)
        out = [z3.And(self.proto >= 0, self.proto <= IMAP), z3.And(self.bodykind >= 0, self.bodykind <= 2)]
        for f in list(fields):
            self.field(f)
        out += self._links(fields)
        seen = set()
        for f in fields:
            self.field(f)
            for d in self.domain[f]:
                k = d.get_id()
                if k not in seen:
                    seen.add(k)
                    out.append(d)
        if self.pkt is not None:
            out.append(z3.And(self.pkt_len >= 0, self.pkt_len <= 8 * 1500))
        return out

    def model_fields(self, m: z3.ModelRef, fields) -> dict:
        out = {}
        for f in sorted(fields):
            p, v = self.present[f], self.val[f]
            if not z3.is_true(m.eval(p, model_completion=True)):
                out[f] = None
                continue
            kind = field_kind(f)
            val = m.eval(v, model_completion=True)
            if kind == "ip":
                out[f] = str(_ip_from_int(val.as_long()))
            elif kind == "int":
                out[f] = val.as_long()
            elif f in self.numvar and f not in self.str_fields and z3.is_true(
                    m.eval(self.numvar[f][0], model_completion=True)):
                out[f] = _fmt_num(m.eval(self.numvar[f][1], model_completion=True))
            else:
                out[f] = val.as_string()
        return out

    def model_packet(self, m: z3.ModelRef) -> bytes | None:
        if self.pkt is None:
            return None
        bits = m.eval(self.pkt, model_completion=True).as_long()
        nbytes = (self.pkt_bits + 7) // 8
        return (bits << (nbytes * 8 - self.pkt_bits)).to_bytes(nbytes, "big")


def _fmt_num(v) -> str:
    from fractions import Fraction

    fr = Fraction(v.as_fraction()) if hasattr(v, "as_fraction") else Fraction(str(v))
    if fr.denominator == 1:
        return str(fr.numerator)
    sign = "-" if fr < 0 else ""
    fr = abs(fr)
    ip, rem = divmod(fr.numerator, fr.denominator)
    digits = ""
    while rem and len(digits) < 30:
        rem *= 10
        d, rem = divmod(rem, fr.denominator)
        digits += str(d)
    return f"{sign}{ip}.{digits}"


_SEQ_PREDICATES = (z3.Z3_OP_SEQ_CONTAINS, z3.Z3_OP_SEQ_PREFIX, z3.Z3_OP_SEQ_SUFFIX)


def _has_regex(e) -> bool:
    """Whether a constraint is expensive for the string solver: a regular expression, or a
    negated contains / prefix / suffix."""
    todo = [(e, False)]
    seen = 0
    while todo and seen < 10000:
        x, neg = todo.pop()
        seen += 1
        if not z3.is_app(x):
            continue
        k = x.decl().kind()
        if k == z3.Z3_OP_SEQ_IN_RE or (neg and k in _SEQ_PREDICATES):
            return True
        todo.extend((c, neg or k == z3.Z3_OP_NOT) for c in x.children())
    return False


def _str_le(s, c: str, strict: bool):
    """s < c (strict) or s <= c in code-point order, for a constant c, without the solver's
    lexicographic operator (much faster: prefix tests and character codes)."""
    L = len(c)
    out = [z3.And(z3.PrefixOf(z3.StringVal(c[:k]), s), z3.Length(s) > k,
                  z3.StrToCode(z3.SubString(s, k, 1)) < ord(c[k])) for k in range(L)]
    out.append(z3.And(z3.PrefixOf(s, z3.StringVal(c)), (z3.Length(s) < L) if strict else (z3.Length(s) <= L)))
    return z3.Or(*out)


def _str_cmp(op: str, s, c: str):
    if op == "==":
        return s == z3.StringVal(c)
    if op == "!=":
        return s != z3.StringVal(c)
    if op == "<":
        return _str_le(s, c, True)
    if op == "<=":
        return _str_le(s, c, False)
    if op == ">":
        return z3.Not(_str_le(s, c, False))
    return z3.Not(_str_le(s, c, True))


def _cmp(op, a, b):
    return COMPARE[op](a, b)


# ---------------------------------------------------------------------------------------------
# cheap disjointness pre-filter


def _top_atoms(rs: RuleSet, r: int) -> list[Atom] | None:
    """Atoms every request on which rule r decides must satisfy (None: unknown)."""
    guards = [c.guard for c in rs.clauses if c.rule == r and c.action.terminal]
    if len(guards) != 1:
        return None
    g = guards[0]
    items = g.items if isinstance(g, And) else (g,)
    return [a for a in items if isinstance(a, Atom)]


def _interval_disjoint(a: Atom, b: Atom, numeric: bool) -> bool:
    def bound(x: Atom):
        key = x.value.num if numeric else x.value.text
        return x.op, key

    (oa, ka), (ob, kb) = bound(a), bound(b)
    lo = [(k, o == ">") for o, k in ((oa, ka), (ob, kb)) if o in (">", ">=")]
    hi = [(k, o == "<") for o, k in ((oa, ka), (ob, kb)) if o in ("<", "<=")]
    if not lo or not hi:
        return False
    (l, ls), (h, hs) = lo[0], hi[0]
    return l > h or (l == h and (ls or hs))


def _atoms_disjoint(a: Atom, b: Atom) -> bool:
    if a.field != b.field:
        return False
    kind = field_kind(a.field)
    if kind == "ip":
        if a.op in ("==", "in") and b.op in ("==", "in"):
            return not any(x.net.overlaps(y.net) for x in a.values for y in b.values
                           if x.net.version == y.net.version)
        return False
    for x, y in ((a, b), (b, a)):
        if x.op in ("==", "in") and all(l.num is None or kind == "int" for l in x.values):
            # x fixes the value to one of its literals: y must hold for one of them
            vals = [l.num if kind == "int" else l.text for l in x.values]
            return not any(atom_holds(y, v) for v in vals)
    if a.op == b.op == "prefix":
        s, t = a.value.text, b.value.text
        return not (s.startswith(t) or t.startswith(s))
    if a.op == b.op == "suffix":
        s, t = a.value.text, b.value.text
        return not (s.endswith(t) or t.endswith(s))
    ords = ("<", "<=", ">", ">=")
    if a.op in ords and b.op in ords:
        if kind == "int":
            return _interval_disjoint(a, b, True)
        if a.value.num is not None and b.value.num is not None:
            return _interval_disjoint(a, b, True) and _interval_disjoint(a, b, False)
        if a.value.num is None and b.value.num is None:
            return _interval_disjoint(a, b, False)
    if a.op in ("==", "in") and b.op in ("==", "in") and kind != "int":
        # numeric literals on both sides: equal numbers can be spelt differently ("5", "5.0")
        na = {l.num for l in a.values if l.num is not None}
        nb = {l.num for l in b.values if l.num is not None}
        sa = {l.text for l in a.values}
        sb = {l.text for l in b.values}
        return not (na & nb) and not (sa & sb)
    return False


def _protocols(atoms: list[Atom]) -> set:
    out = set()
    for a in atoms:
        p = field_protocol(a.field)
        if a.field.startswith("header."):
            continue
        if p is not None:
            out.add(p)
    return out


def surely_disjoint(ta: list[Atom] | None, tb: list[Atom] | None) -> bool:
    if ta is None or tb is None:
        return False
    if len(_protocols(ta) | _protocols(tb)) > 1:
        return True
    by_field: dict[str, list[Atom]] = {}
    for a in ta:
        by_field.setdefault(a.field, []).append(a)
    for b in tb:
        for a in by_field.get(b.field, ()):
            if _atoms_disjoint(a, b):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# the checker


class Checker:
    def __init__(self, rs: RuleSet, timeout_ms: int = 3000, fast: bool = True) -> None:
        self.rs = rs
        self.enc = Encoder(rs)
        self.timeout_ms = timeout_ms
        self.solver_calls = 0
        self.unknown: list[tuple[str, str]] = []
        self.top = [_top_atoms(rs, r) for r in range(len(rs.rules))]
        self.fields = [self._rule_fields(r) for r in range(len(rs.rules))]
        self.lits = [fastcheck.rule_literals(rs, r) for r in range(len(rs.rules))]
        self.fast = fast
        self.fast_answers = 0
        self.disjoint: list[dict] = []  # pairs proven never to decide the same request
        self._unsat_by = ""

    def _rule_fields(self, r: int) -> set[str]:
        from .model import cond_fields

        out: set[str] = set()
        for c in self.rs.clauses:
            if c.rule == r and c.action.terminal:
                out |= cond_fields(c.guard)
        return out

    def _ask(self, pos, neg, formula, fields, check=None, prefer: bool = False):
        """`_solve` of F(pos...) and not F(neg...), by the field-wise procedure when every rule
        involved is a simple conjunction and it can decide, else by z3."""
        if self.fast and all(self.lits[r] is not None for r in (*pos, *neg)):
            res, m = fastcheck.solve([self.lits[r] for r in pos], [self.lits[r] for r in neg])
            if res == fastcheck.UNSAT:
                self.fast_answers += 1
                self._unsat_by = "field-wise procedure (exact; automata for text terms)"
                return None
            if res == fastcheck.SAT and (check is None or self._verify(m, fields, check)):
                self.fast_answers += 1
                return m
        return self._solve(formula() if callable(formula) else formula, fields, check, prefer)

    def _check(self, s: z3.Solver, extra=()):
        self.solver_calls += 1
        s.push()
        s.add(*extra)
        r = s.check()
        m = s.model() if r == z3.sat else None
        s.pop()
        return r, m

    def _solve(self, formula, fields, check=None, prefer: bool = False):
        """sat -> model, unsat -> None, unknown -> 'unknown'.

        Staged, because regular-expression constraints make the string solver slow: (1) the
        formula alone; (2) + the cheap value domains; (3) + character sets and number syntax
        (regular expressions); (4) + the links between fields (url = path?query, host = Host
        header). Each stage only adds constraints, so unsat at any stage is final; a model is
        accepted as soon as the request built from it, parsed back by the extractors, really
        behaves as `check` says. `prefer`: first look for numbers where fields are compared with
        numbers."""
        fields = set(fields)
        s = z3.Solver()
        s.set("timeout", self.timeout_ms)
        s.add(formula)
        r, m = self._check(s)
        self._unsat_by = "SMT solver (z3)"
        if r == z3.unsat:
            return None
        enc = self.enc
        for f in fields:
            enc.field(f)
        s.add(z3.And(enc.proto >= 0, enc.proto <= IMAP), z3.And(enc.bodykind >= 0, enc.bodykind <= 2))
        if enc.pkt is not None:
            s.add(z3.And(enc.pkt_len >= 0, enc.pkt_len <= 8 * 1500))
        for f in fields:
            s.add(*enc.domain[f])
        nums = [enc.numvar[f][0] for f in fields if f in enc.numvar] if prefer else []
        last = None
        pending = [t for t in ([c for f in fields for c in enc.hard[f]], enc._links(fields)) if t]
        while True:
            r, m = self._check(s, nums) if nums else (None, None)
            if r != z3.sat:
                r, m = self._check(s)
            if r == z3.unsat:
                return None
            if r == z3.sat:
                last = m
                if check is None or self._verify(m, fields, check):
                    return m
            if not pending:
                break
            s.add(*pending.pop(0))
        return last if last is not None else "unknown"

    def _materialize(self, m, fields):
        if isinstance(m, fastcheck.FastModel):
            vals, packet, proto = m.fields(fields), None, m.proto()
        else:
            vals = self.enc.model_fields(m, fields)
            packet = self.enc.model_packet(m)
            proto = m.eval(self.enc.proto, model_completion=True).as_long()
        present = {k: v for k, v in vals.items() if v is not None}
        if not any(field_protocol(k) for k in present):
            proto = HTTP if not any(k.startswith("header.") for k in present) or proto != SMTP else SMTP
        # A Host modelled absent must stay absent (the HTTP builder otherwise adds a default).
        render = dict(present)
        for k in ("host", "header.host"):
            if k in vals and vals[k] is None:
                render[k] = None
        raw, text = _render(proto, render)
        client = (present.get("client.ip", "192.0.2.10"), present.get("client.port", 40000))
        vip = (present.get("vip", "198.51.100.1"), present.get("vip.port", 80))
        parsed = RequestView.from_bytes(raw, client=client, vip=vip, fields=self.rs.fields, packet=packet)
        return vals, packet, text, client, vip, parsed

    def _verify(self, m, fields, check) -> bool:
        try:
            parsed = self._materialize(m, fields)[-1]
            return bool(check(parsed))
        except Exception:  # a model we cannot render is simply not verified
            return False

    def witness(self, m, fields, i: int | None, j: int, expect) -> dict:
        vals, packet, text, client, vip, parsed = self._materialize(m, fields)
        ok = bool(expect(parsed))
        w = {
            "fields": vals,
            "request": text,
            "connection": f"client {client[0]}:{client[1]} -> vip {vip[0]}:{vip[1]}",
            "verified": ok,
        }
        if packet is not None:
            w["packet"] = packet.hex()
        naive = naive_decide(self.rs.rules, parsed)
        w["decision"] = naive.describe()
        w["verified"] = ok and self.rs.decide(parsed) == naive  # the compiled matcher agrees
        if self.enc.approx and not isinstance(m, fastcheck.FastModel):
            w["approximate"] = sorted(self.enc.approx)
        return w

    def _fires(self, r: int):
        from .model import mk_or as _mk_or

        guards = [c.guard for c in self.rs.clauses if c.rule == r and c.action.terminal]
        g = _mk_or(*guards) if guards else Const(False)
        return lambda view: eval_cond(g, view)

    def _action_of(self, r: int, view):
        for c in self.rs.clauses:
            if c.rule == r and c.action.terminal and eval_cond(c.guard, view):
                return c.action.key()
        return None

    def run(self) -> list[Finding]:
        rs, enc = self.rs, self.enc
        names = [r.name for r in rs.rules]
        findings: list[Finding] = []
        n = len(rs.rules)
        F = enc.rule_fires
        # rules that decide every request: they can cover rules on unrelated fields
        valid = [self._ask([], [r], lambda r=r: z3.Not(F(r)), self.fields[r]) is None for r in range(n)]
        by_field: dict[str, list[int]] = {}  # earlier rules testing each field
        valid_before: list[int] = []
        for j in range(n):
            fj = self._fires(j)
            m = self._ask([j], [], lambda j=j: F(j), self.fields[j], fj, prefer=True)
            cand = set(valid_before)
            for f in self.fields[j]:
                cand.update(by_field.get(f, ()))
                by_field.setdefault(f, []).append(j)
            if valid[j]:
                valid_before.append(j)
            if m is None:
                findings.append(Finding("shadowed", (names[j], names[j]),
                                        f"{names[j]} can never fire: its condition is unsatisfiable", None))
                continue
            if m == "unknown":
                self.unknown.append((names[j], names[j]))
            covered = False
            earlier = []
            for i in sorted(cand):
                if surely_disjoint(self.top[i], self.top[j]):
                    self.disjoint.append({"rules": [names[i], names[j]], "result": "disjoint",
                                          "reason": "prefilter: contradictory terms on one field, or different protocols"})
                    continue
                # (rules with no common field are only candidates when F(i) is total)
                earlier.append(i)
                fi = self._fires(i)
                flds = self.fields[i] | self.fields[j]
                both = self._ask([i, j], [], lambda i=i, j=j: z3.And(F(i), F(j)), flds,
                                 lambda v: fi(v) and fj(v), prefer=True)
                if both is None:
                    self.disjoint.append({"rules": [names[i], names[j]], "result": "disjoint",
                                          "reason": f"no request satisfies both ({self._unsat_by})"})
                    continue
                if both == "unknown":
                    self.unknown.append((names[i], names[j]))
                    continue
                pair = (names[i], names[j])
                differ = lambda v, i=i, j=j: self._action_of(i, v) != self._action_of(j, v)
                equiv = (self._ask([i], [j], lambda i=i, j=j: z3.And(F(i), z3.Not(F(j))), flds,
                                   lambda v: fi(v) and not fj(v)) is None
                         and self._ask([j], [i], lambda i=i, j=j: z3.And(F(j), z3.Not(F(i))), flds,
                                       lambda v: fj(v) and not fi(v)) is None)
                if self.lits[i] is not None and self.lits[j] is not None:
                    # one action each: they differ on the intersection iff they differ
                    diff = both if self._single_action(i) != self._single_action(j) else None
                else:
                    Ai, Aj = enc.rule_action(i), enc.rule_action(j)
                    diff = self._solve(z3.And(F(i), F(j), Ai != Aj), flds,
                                       lambda v: fi(v) and fj(v) and differ(v), prefer=True)
                    diff = None if diff == "unknown" else diff
                if equiv:
                    covered = True
                    if diff is not None:
                        w = self.witness(diff, flds, i, j, lambda v: fi(v) and fj(v) and differ(v))
                        findings.append(Finding("absolute", pair,
                            f"{names[i]} and {names[j]} have the same condition but different actions; {names[j]} never fires", w))
                    else:
                        w = self.witness(both, flds, i, j, lambda v: fi(v) and fj(v))
                        findings.append(Finding("duplicate", pair,
                            f"{names[j]} duplicates {names[i]} (same condition, same action)", w))
                    continue
                if diff is not None and self.fields[i] & self.fields[j]:
                    w = self.witness(diff, flds, i, j, lambda v: fi(v) and fj(v) and differ(v))
                    findings.append(Finding("potential", pair,
                        f"conditions of {names[i]} and {names[j]} intersect with different actions; {names[i]} wins on the intersection", w))
                sub = self._ask([j], [i], lambda i=i, j=j: z3.And(F(j), z3.Not(F(i))), flds,
                                lambda v: fj(v) and not fi(v))
                if sub is None:  # F(j) within F(i): j never fires
                    covered = True
                    if diff is not None:
                        w = self.witness(diff, flds, i, j, lambda v: fi(v) and fj(v) and differ(v))
                        findings.append(Finding("order", pair,
                            f"{names[j]} is more specific than {names[i]} but comes after it, so it never fires; move it before {names[i]}", w))
                    else:
                        w = self.witness(both, flds, i, j, lambda v: fi(v) and fj(v))
                        findings.append(Finding("shadowed", pair,
                            f"{names[j]} never fires: {names[i]} covers it with the same action (redundant rule)", w))
            if covered or not earlier or isinstance(m, str):
                continue
            flds = set(self.fields[j]).union(*[self.fields[i] for i in earlier])
            fe = [self._fires(i) for i in earlier]
            rest = self._ask([j], earlier, lambda j=j, e=tuple(earlier): z3.And(F(j), z3.Not(z3.Or(*[F(i) for i in e]))),
                             flds, lambda v: fj(v) and not any(f(v) for f in fe))
            if rest is None:
                w = self.witness(m, self.fields[j], None, j, fj)
                # the earlier rule that takes the witness
                first = next((names[i] for i in earlier if self._fires(i)(RequestView.from_fields(
                    {k: (ipaddress.ip_address(v) if field_kind(k) == "ip" else v)
                     for k, v in w["fields"].items() if v is not None}))), names[earlier[0]])
                findings.append(Finding("shadowed", (first, names[j]),
                    f"{names[j]} never fires: earlier rules ({', '.join(names[i] for i in earlier)}) together cover its condition", w))
        return findings

    def _single_action(self, r: int):
        return next(c.action.key() for c in self.rs.clauses if c.rule == r and c.action.terminal)


def _render(proto: int, f: dict) -> tuple[bytes | None, str]:
    if proto == TLS:
        raw = build_client_hello(f.get("tls.sni"), f.get("tls.session_id"), f.get("tls.alpn"))
        desc = ", ".join(f"{k[4:]}={v}" for k, v in f.items() if k.startswith("tls."))
        return raw, f"TLS ClientHello ({desc or 'no SNI'}): {raw.hex()}"
    if proto == SMTP:
        raw = build_smtp(f)
        return raw, raw.decode("latin-1")
    if proto in (POP3, IMAP):
        raw = build_pop3(f) if proto == POP3 else build_imap(f)
        return raw, raw.decode("latin-1")
    raw = build_http_request(f)
    return raw, raw.decode("latin-1")


def check_rules(rs: RuleSet, timeout_ms: int = 3000, fast: bool = True) -> tuple[list[Finding], dict]:
    """All findings for a rule set, plus statistics (solver calls, questions answered by the
    field-wise procedure, time, undecided pairs). `fast=False`: every question goes to z3."""
    t0 = time.perf_counter()
    ch = Checker(rs, timeout_ms, fast)
    findings = ch.run()
    stats = {"rules": len(rs.rules), "solver_calls": ch.solver_calls,
             "fast_answers": ch.fast_answers,
             "seconds": round(time.perf_counter() - t0, 3),
             "undecided": [list(p) for p in ch.unknown],
             "disjoint": ch.disjoint}
    return findings, stats
