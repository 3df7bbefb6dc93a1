"""Term semantics, decisions, and the naive in-order interpreter (the reference that the
compiled matcher is tested against).

Semantics (docs/rules.md):
* a term on an absent field is false (so `!(f == x)` is true when f is absent);
* `==` ... `>=` compare numerically when the literal is an unquoted number and the field value
  is a decimal number (`-?digits[.digits]`), otherwise as strings (code-point order);
* match / prefix / suffix are substring / starts-with / ends-with; regex is a Python `re.search`;
* addresses compare with CIDR membership (`client.ip == 10.0.0.0/8`).
"""

from __future__ import annotations

import ipaddress
import operator
import re
from dataclasses import dataclass, field
from functools import lru_cache

from .model import Action, And, Atom, Const, Cond, Not, Or, Rule, as_number

#: The rule language's comparison operators; also applied to z3 terms by the conflict checker.
COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
           ">": operator.gt, ">=": operator.ge}

_IP = (ipaddress.IPv4Address, ipaddress.IPv6Address)


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def compare(op: str, value, lit) -> bool:
    """`value op lit` for a present value (str or int)."""
    if lit.num is not None:
        v = value if isinstance(value, int) else as_number(value)
        if v is not None:
            a, b = v, lit.num
        else:
            a, b = value, lit.text
    else:
        a, b = (value if isinstance(value, str) else str(value)), lit.text
    cmp = COMPARE.get(op)
    if cmp is None:
        raise ValueError(op)
    return cmp(a, b)


def atom_holds(atom: Atom, value) -> bool:
    if value is None:
        return False
    op = atom.op
    if isinstance(value, _IP):
        inside = any(lit.net is not None and value.version == lit.net.version and value in lit.net
                     for lit in atom.values)
        return (not inside) if op == "!=" else inside
    if op == "in":
        return any(compare("==", value, lit) for lit in atom.values)
    if op in ("match", "prefix", "suffix", "regex"):
        s = value if isinstance(value, str) else str(value)
        t = atom.value.text
        if op == "match":
            return t in s
        if op == "prefix":
            return s.startswith(t)
        if op == "suffix":
            return s.endswith(t)
        return _regex(t).search(s) is not None
    return compare(op, value, atom.value)


def eval_cond(c: Cond, view) -> bool:
    if isinstance(c, Atom):
        return atom_holds(c, view.get(c.field))
    if isinstance(c, And):
        return all(eval_cond(i, view) for i in c.items)
    if isinstance(c, Or):
        return any(eval_cond(i, view) for i in c.items)
    if isinstance(c, Not):
        return not eval_cond(c.item, view)
    if isinstance(c, Const):
        return c.value
    raise TypeError(c)


@dataclass(frozen=True)
class Decision:
    """The outcome of classifying one request."""

    rule: str | None
    action: str | None
    target: str | None = None
    sticky: bool = True
    algorithm: str | None = None
    logs: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, rule: str | None, action: Action | None, logs) -> "Decision":
        if action is None:
            return cls(None, None, None, True, None, tuple(logs))
        return cls(rule, action.kind, action.target, action.sticky, action.algorithm, tuple(logs))

    def to_dict(self) -> dict:
        return {"rule": self.rule, "action": self.action, "target": self.target,
                "sticky": self.sticky if self.action in ("routeTo", "forward", "loadBalance") else None,
                "algorithm": self.algorithm, "logs": list(self.logs)}

    def describe(self) -> str:
        if self.rule is None:
            return "no rule matched"
        s = f"rule {self.rule}: {self.action}"
        if self.target is not None:
            s += f" {self.target}"
        if self.algorithm:
            s += f" ({self.algorithm})"
        if self.action in ("routeTo", "forward", "loadBalance"):
            s += " STICKY" if self.sticky else " NONSTICKY"
        return s


def render_log(action: Action, get) -> str:
    parts = []
    for kind, v in action.log_args:
        if kind == "text":
            parts.append(v)
        else:
            val = get(v)
            parts.append("-" if val is None else str(val))
    return " ".join(parts)


def naive_decide(rules: list[Rule] | tuple[Rule, ...], view) -> Decision:
    """Execute every rule in file order, literally (the reference semantics)."""
    logs: list[str] = []

    def run(stmts) -> Action | None:
        for s in stmts:
            if isinstance(s, Action):
                if s.kind == "log":
                    logs.append(render_log(s, view.get))
                    continue
                return s
            branch = s.then if eval_cond(s.cond, view) else (s.orelse or ())
            a = run(branch)
            if a is not None:
                return a
        return None

    for r in rules:
        a = run(r.body)
        if a is not None:
            return Decision.of(r.name, a, logs)
    return Decision.of(None, None, logs)
