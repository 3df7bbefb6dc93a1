"""Conflict classes across predicate kinds agree with a brute-force search.

Rule pairs test one text field with equality, `in`, prefix, suffix, substring and regular
expressions (and their negations) over a small alphabet; the request space is every value of
up to 5 characters over that alphabet plus the field being absent. Short literals make every
difference between two such conditions show on a short value, so the brute-force classes are
the true ones. The alphabet has a character of every class the regexes name that the literals
do not use (the digit 2 beside the 1 of "a1"): without it, `^a[0-9]` and `prefix "a1"` would
look equal over the space while the checker rightly finds them different."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4cs.rules import RequestView, parse_rules
from p4cs.rules.conflicts import check_rules
from p4cs.rules.engine import eval_cond

F = "header.x-k"
ALPHA = "ab/12"
SPACE = [None] + ["".join(p) for n in range(6) for p in itertools.product(ALPHA, repeat=n)]
WORDS = ["a", "b", "ab", "/a", "a1", "1"]
REGEXES = ["^a", "a$", "^a[0-9]", "b+1", "^(a|b)+$", "[^a]", "^/?a", "a.b", "^$", "1$", "^[ab]{2}$"]

term = st.one_of(
    st.builds(lambda op, w: f'{op}({F}, "{w}")', st.sampled_from(["prefix", "suffix", "match"]), st.sampled_from(WORDS)),
    st.builds(lambda r: f'regex({F}, "{r}")', st.sampled_from(REGEXES)),
    st.builds(lambda op, w: f'{F} {op} "{w}"', st.sampled_from(["==", "!="]), st.sampled_from(WORDS)),
    st.builds(lambda ws: f"{F} in [" + ", ".join(f'"{w}"' for w in ws) + "]",
              st.lists(st.sampled_from(WORDS), min_size=1, max_size=2)),
)
lit = st.builds(lambda neg, t: ("!" if neg else "") + t, st.booleans(), term)
cond = st.lists(lit, min_size=1, max_size=2).map(" && ".join)


def brute(rs):
    (g1,), (g2,) = ([c.guard for c in rs.clauses if c.rule == r] for r in (0, 1))
    views = [RequestView.from_fields({} if v is None else {F: v}) for v in SPACE]
    f1 = {k for k, v in enumerate(views) if eval_cond(g1, v)}
    f2 = {k for k, v in enumerate(views) if eval_cond(g2, v)}
    return f1, f2


def expected(f1, f2, same):
    out = set() if f1 else {("shadowed", ("r1", "r1"))}  # can never fire
    if not f2:
        return out | {("shadowed", ("r2", "r2"))}
    if not f1 & f2:
        return out
    if f1 == f2:
        return {("duplicate" if same else "absolute", ("r1", "r2"))}
    if not same:
        out.add(("potential", ("r1", "r2")))
    if f2 <= f1:
        out.add(("shadowed" if same else "order", ("r1", "r2")))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(cond, cond, st.booleans())
def test_classes_match_brute_force(c1, c2, same):
    text = f"r1: if ({c1}) routeTo(a);\nr2: if ({c2}) routeTo({'a' if same else 'b'});\n"
    rs = parse_rules(text)
    findings, stats = check_rules(rs, timeout_ms=3000)
    assert not stats["undecided"], text
    got = {(f.kind, f.rules) for f in findings}
    assert got == expected(*brute(rs), same), text
    for f in findings:
        if f.witness:
            assert f.witness["verified"], (text, f)
