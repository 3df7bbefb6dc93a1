"""Content-switching rules: the rule language, L7 field extraction, compiled matching,
conflict detection and hot reload. See docs/rules.md and docs/interfaces.md section 3."""

from .engine import Decision
from .extract import RequestView
from .parser import Problem, RuleError
from .ruleset import RuleSet, classify, load_rules, parse_rules

__all__ = ["Decision", "Problem", "RequestView", "RuleError", "RuleSet", "classify",
           "load_rules", "parse_rules"]
