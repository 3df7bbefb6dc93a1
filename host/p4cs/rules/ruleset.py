"""RuleSet: a parsed, compiled, immutable rule set."""

from __future__ import annotations

from pathlib import Path

from p4cs.capabilities import PROTOCOL_FIELDS

from .compiler import Matcher
from .engine import Decision, naive_decide
from .extract import RequestView
from .model import (Action, Clause, If, Rule, cond_fields, field_protocol, flatten_rule,
                    is_body_field)
from .parser import RuleError, parse_rule_file, parse_rule_text


def _stmt_fields(stmts) -> set[str]:
    out: set[str] = set()
    for s in stmts:
        if isinstance(s, Action):
            out.update(v for k, v in s.log_args if k == "field")
        elif isinstance(s, If):
            out |= cond_fields(s.cond)
            out |= _stmt_fields(s.then)
            out |= _stmt_fields(s.orelse or ())
    return out


class RuleSet:
    """Rules in priority (file) order, compiled for matching.

    fields: the field names the rules reference (extract only these);
    needs_body: whether any of them lives in the request body (xml., form., json.)."""

    def __init__(self, rules: list[Rule], source: str | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.source = source
        clauses: list[Clause] = []
        for i, r in enumerate(self.rules):
            clauses.extend(flatten_rule(i, r.body))
        self.clauses: tuple[Clause, ...] = tuple(
            Clause(c.rule, c.guard, c.action, n) for n, c in enumerate(clauses))
        fields: set[str] = set()
        for r in self.rules:
            fields |= _stmt_fields(r.body)
        self.fields: frozenset[str] = frozenset(fields)
        self.needs_body: bool = any(is_body_field(f) for f in fields)
        self.matcher = Matcher(list(self.clauses), [r.name for r in self.rules])

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"<RuleSet {len(self.rules)} rules from {self.source or '<text>'}>"

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def view(self, raw: bytes, client=None, vip=None, packet: bytes | None = None) -> RequestView:
        return RequestView.from_bytes(raw, client=client, vip=vip, fields=self.fields, packet=packet)

    def decide(self, view) -> Decision:
        """First matching rule wins (compiled matcher)."""
        return self.matcher.decide(view)

    def decide_naive(self, view) -> Decision:
        """Reference: every rule interpreted in order."""
        return naive_decide(self.rules, view)


def parse_rules(text: str, filename: str = "<rules>") -> RuleSet:
    """Parse and compile rule text; raises RuleError."""
    return RuleSet(parse_rule_text(text, filename), source=filename)


def load_rules(path: str | Path) -> RuleSet:
    """Load and compile a rule file; raises RuleError (file:line:col, caret, hint)."""
    return RuleSet(parse_rule_file(path), source=str(path))


def protocol_problems(rs: RuleSet, protocol: str) -> list[str]:
    """file:line errors for the fields of ``rs`` that requests of a ``protocol`` service
    never have (``p4cs.capabilities.PROTOCOL_FIELDS``): such a rule could never match."""
    have = PROTOCOL_FIELDS[protocol]
    out = []
    for r in rs.rules:
        for f in sorted(_stmt_fields(r.body)):
            p = field_protocol(f)
            if p is not None and p not in have:
                out.append(f"{rs.source}:{r.line}: error: rule {r.name} uses {f}, which "
                           f"requests of a {protocol} service do not have")
    return out


def classify(rs: RuleSet, raw: bytes, client=None, vip=None, packet: bytes | None = None) -> Decision:
    """Decide one request: what `p4cs rules eval` and the controller call."""
    return rs.decide(rs.view(raw, client, vip, packet))
