"""Rule-set model: fields, literals, conditions, statements, and rules.

Everything here is immutable; a parsed rule set can be shared between threads and swapped
atomically by the store.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Union

# ---------------------------------------------------------------------------------------------
# Fields

#: Fields without a sub-name, with their value kind and the protocol they belong to.
SIMPLE_FIELDS: dict[str, tuple[str, str | None]] = {
    "url": ("str", "http"),
    "path": ("str", "http"),
    "query": ("str", "http"),
    "method": ("str", "http"),
    "version": ("str", "http"),
    "host": ("str", "http"),
    "tls.sni": ("str", "tls"),
    "tls.session_id": ("str", "tls"),
    "tls.alpn": ("str", "tls"),
    "smtp.from": ("str", "smtp"),
    "smtp.to": ("str", "smtp"),
    "smtp.helo": ("str", "smtp"),
    "pop3.user": ("str", "pop3"),
    "imap.user": ("str", "imap"),
    "client.ip": ("ip", None),
    "client.port": ("int", None),
    "vip": ("ip", None),
    "vip.port": ("int", None),
}

#: Field families `family.<name>`.
FAMILIES: dict[str, tuple[str, str | None]] = {
    "header": ("str", "http"),  # also SMTP message headers (after DATA)
    "cookie": ("str", "http"),
    "xml": ("str", "http"),
    "form": ("str", "http"),
    "json": ("str", "http"),
}

#: Families whose values live in the request body.
BODY_FAMILIES = ("xml.", "form.", "json.")



class FieldNameError(ValueError):
    """A field name that is not part of the language (message is user-facing)."""


def parse_xml_path(spec: str) -> tuple[tuple[str, int | None], ...]:
    """`purchase/totalAmount` or `purchase:1.item:2.subTotal` -> ((tag, index|None), ...).

    If the path contains '/', '/' separates steps (so tag names may contain '.'); otherwise
    '.' separates them. `:n` selects the n-th occurrence (1-based) of the tag within its parent.
    """
    sep = "/" if "/" in spec else "."
    steps = []
    for raw in spec.split(sep):
        if not raw:
            raise FieldNameError(f"empty step in XML tag sequence {spec!r}")
        name, _, idx = raw.partition(":")
        if not re.fullmatch(r"[A-Za-z_][\w.\-]*", name) or (sep == "." and "." in name):
            raise FieldNameError(f"invalid XML tag name {name!r} in {spec!r}")
        if idx:
            if not idx.isdigit() or int(idx) < 1:
                raise FieldNameError(
                    f"XML occurrence index must be a positive integer (1-based), got {idx!r}"
                )
            steps.append((name, int(idx)))
        elif raw.endswith(":"):
            raise FieldNameError(f"missing occurrence index after ':' in {spec!r}")
        else:
            steps.append((name, None))
    return tuple(steps)


def xml_path_text(steps: tuple[tuple[str, int | None], ...]) -> str:
    return "/".join(f"{t}:{i}" if i is not None else t for t, i in steps)


def canonical_field(name: str) -> str:
    """Validate a field name and return its canonical spelling.

    header names are case-insensitive (stored lower-case); XML paths use '/' and `:n`.
    """
    low = name.lower()
    if low in SIMPLE_FIELDS:
        return low
    fam, dot, rest = name.partition(".")
    fam_l = fam.lower()
    if dot and fam_l in FAMILIES:
        if not rest:
            raise FieldNameError(f"missing name after '{fam_l}.'")
        if fam_l == "header":
            if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", rest):
                raise FieldNameError(f"invalid header name {rest!r}")
            return "header." + rest.lower()
        if fam_l == "xml":
            return "xml." + xml_path_text(parse_xml_path(rest))
        if fam_l == "json":
            if any(not p for p in rest.split(".")):
                raise FieldNameError(f"empty step in JSON path {rest!r}")
        return fam_l + "." + rest
    raise FieldNameError(f"unknown field {name!r}")


def all_field_names() -> list[str]:
    return list(SIMPLE_FIELDS) + [f + ".<name>" for f in FAMILIES] + ["bitmatch(offset,length,mask)"]


def field_kind(fname: str) -> str:
    if fname.startswith("bitmatch("):
        return "int"
    if fname in SIMPLE_FIELDS:
        return SIMPLE_FIELDS[fname][0]
    return FAMILIES[fname.split(".", 1)[0]][0]


def field_protocol(fname: str) -> str | None:
    if fname.startswith("bitmatch("):
        return None
    if fname in SIMPLE_FIELDS:
        return SIMPLE_FIELDS[fname][1]
    return FAMILIES[fname.split(".", 1)[0]][1]


def is_body_field(fname: str) -> bool:
    return fname.startswith(BODY_FAMILIES)


def bitmatch_name(offset: int, length: int, mask: int) -> str:
    return f"bitmatch({offset},{length},{mask:#x})"


def parse_bitmatch_name(fname: str) -> tuple[int, int, int]:
    o, l, m = fname[len("bitmatch(") : -1].split(",")
    return int(o), int(l), int(m, 16)


# ---------------------------------------------------------------------------------------------
# Literals and conditions

_NUM_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


#: Longer decimal numbers (request values) are read exactly as Decimal: int() refuses more
#: than 4300 digits and float() rounds them to infinity. Decimals compare and hash exactly
#: like ints and floats of the same value.
_LONG_NUMBER = 300


def as_number(text: str) -> int | float | Decimal | None:
    """The numeric value of `text` if it is a decimal number (`-?digits[.digits]`), else None."""
    t = text.strip()
    if not _NUM_RE.fullmatch(t):
        return None
    if len(t) > _LONG_NUMBER:
        return Decimal(t)
    if "." in t:
        return float(t)
    return int(t)


@dataclass(frozen=True)
class Lit:
    """A literal on the right-hand side of a term."""

    text: str
    num: int | float | None = None  # set for unquoted numbers (numeric comparison applies)
    net: Union[ipaddress.IPv4Network, ipaddress.IPv6Network, None] = None  # for ip fields

    def show(self) -> str:
        if self.net is not None:
            return str(self.net)
        if self.num is not None:
            return self.text
        return '"' + self.text.replace("\\", "\\\\").replace('"', '\\"') + '"'


CMP_OPS = ("==", "!=", "<", "<=", ">", ">=")
FUNC_OPS = ("match", "prefix", "suffix", "regex")


@dataclass(frozen=True)
class Atom:
    """`field op value`, `func(field, value)` or `field in [values]`."""

    field: str
    op: str  # one of CMP_OPS, FUNC_OPS, "in"
    values: tuple[Lit, ...]

    @property
    def value(self) -> Lit:
        return self.values[0]

    def show(self) -> str:
        if self.op in FUNC_OPS:
            return f"{self.op}({self.field}, {self.value.show()})"
        if self.op == "in":
            return f"{self.field} in [{', '.join(v.show() for v in self.values)}]"
        return f"{self.field} {self.op} {self.value.show()}"


@dataclass(frozen=True)
class And:
    items: tuple["Cond", ...]

    def show(self) -> str:
        return " && ".join(_paren(c, (Or,)) for c in self.items)


@dataclass(frozen=True)
class Or:
    items: tuple["Cond", ...]

    def show(self) -> str:
        return " || ".join(_paren(c, ()) for c in self.items)


@dataclass(frozen=True)
class Not:
    item: "Cond"

    def show(self) -> str:
        return "!" + _paren(self.item, (And, Or, Atom))


@dataclass(frozen=True)
class Const:
    value: bool

    def show(self) -> str:
        return "true" if self.value else "false"


TRUE = Const(True)
FALSE = Const(False)

Cond = Union[Atom, And, Or, Not, Const]


def _paren(c: Cond, wrap: tuple) -> str:
    s = c.show()
    return f"({s})" if isinstance(c, wrap) else s


def mk_and(*items: Cond) -> Cond:
    out: list[Cond] = []
    for c in items:
        if c == TRUE:
            continue
        if c == FALSE:
            return FALSE
        out.extend(c.items if isinstance(c, And) else (c,))
    if not out:
        return TRUE
    return out[0] if len(out) == 1 else And(tuple(out))


def mk_or(*items: Cond) -> Cond:
    out: list[Cond] = []
    for c in items:
        if c == FALSE:
            continue
        if c == TRUE:
            return TRUE
        out.extend(c.items if isinstance(c, Or) else (c,))
    if not out:
        return FALSE
    return out[0] if len(out) == 1 else Or(tuple(out))


def mk_not(c: Cond) -> Cond:
    if isinstance(c, Const):
        return Const(not c.value)
    if isinstance(c, Not):
        return c.item
    return Not(c)


def cond_fields(c: Cond) -> set[str]:
    if isinstance(c, Atom):
        return {c.field}
    if isinstance(c, (And, Or)):
        out: set[str] = set()
        for i in c.items:
            out |= cond_fields(i)
        return out
    if isinstance(c, Not):
        return cond_fields(c.item)
    return set()


# ---------------------------------------------------------------------------------------------
# Statements and rules

TERMINAL_ACTIONS = ("routeTo", "forward", "loadBalance", "reject", "redirect")


@dataclass(frozen=True)
class Action:
    kind: str  # routeTo | forward | loadBalance | reject | redirect | log
    target: str | None = None
    sticky: bool = True
    algorithm: str | None = None
    log_args: tuple[tuple[str, str], ...] = ()  # (("text", s) | ("field", name)) for log
    line: int = 0

    @property
    def terminal(self) -> bool:
        return self.kind != "log"

    def key(self) -> tuple:
        """Identity of the routing outcome (what conflict detection compares)."""
        return (self.kind, self.target, self.sticky, self.algorithm)

    def show(self) -> str:
        if self.kind == "reject":
            return "reject"
        if self.kind == "routeTo":
            return f"routeTo({self.target}, {'STICKY' if self.sticky else 'NONSTICKY'})"
        if self.kind == "loadBalance":
            return f"loadBalance({self.target}, {self.algorithm})"
        if self.kind == "log":
            return "log(" + ", ".join(
                (f'"{v}"' if k == "text" else v) for k, v in self.log_args
            ) + ")"
        return f"{self.kind}({self.target})"


@dataclass(frozen=True)
class If:
    cond: Cond
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] | None
    line: int = 0


Stmt = Union[If, Action]


@dataclass(frozen=True)
class Rule:
    name: str
    body: tuple[Stmt, ...]
    line: int
    col: int = 1
    source: str = ""  # the rule's source text, for reports


@dataclass(frozen=True)
class Clause:
    """One reachable action of a rule, flattened: `guard` holds iff control reaches `action`
    when the rule is entered."""

    rule: int  # index of the rule in the set
    guard: Cond
    action: Action
    index: int = field(default=0, compare=False)  # position in the flattened clause list


def flatten_rule(rule_index: int, body: tuple[Stmt, ...]) -> list[Clause]:
    """Symbolically execute a rule body: every action with the condition under which it runs.

    Statements run in sequence; a terminal action ends the rule; `log` does not. The
    condition for falling through a statement list is kept relative to the list's entry
    condition, so a sequence of `if`s grows the guards linearly, not exponentially.
    """
    out: list[Clause] = []

    def run(stmts: tuple[Stmt, ...], entry: Cond) -> Cond:
        """Emit the clauses of `stmts` entered under `entry`; return L such that control
        falls through the list iff entry && L."""
        local: Cond = TRUE
        for s in stmts:
            if local == FALSE:
                return FALSE
            if isinstance(s, Action):
                out.append(Clause(rule_index, mk_and(entry, local), s))
                if s.terminal:
                    return FALSE
            else:
                here = mk_and(entry, local)
                ft_then = run(s.then, mk_and(here, s.cond))
                ft_else = run(s.orelse or (), mk_and(here, mk_not(s.cond)))
                if ft_then != TRUE or ft_else != TRUE:  # both TRUE: the if always falls through
                    local = mk_and(local, mk_or(mk_and(s.cond, ft_then),
                                                mk_and(mk_not(s.cond), ft_else)))
        return local

    run(body, TRUE)
    return out
