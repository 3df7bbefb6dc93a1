"""Every rule set the parser accepts can be carried out: random valid rule sets and
random requests through the engine never reach an internal error, and a rule set naming
what the switch cannot do is refused when it is loaded."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4cs import capabilities
from p4cs.csproc import RuleSetDecider, Server, ServerGroup
from p4cs.rules.parser import RuleError
from p4cs.rules.ruleset import parse_rules, protocol_problems

from cs_harness import S1, S2, Harness, pkts

M = 2**32
ACTIONS = (["routeTo(web)", "routeTo(img, NONSTICKY)", "routeTo(nosuchgroup)", "forward(s1)",
            "forward(nosuchserver)", "forward(img)", "reject", 'redirect("http://x.example/")']
           + [f"loadBalance(web, {a})" for a in capabilities.ALGORITHMS]
           + [f"loadBalance(img, {a})" for a in capabilities.ALGORITHMS])
CONDS = ['prefix(path, "/a")', 'method == "POST"', 'header.X-K == "1"', "client.port > 40005",
         'cookie.s == "x"', "true"]


@st.composite
def rulesets(draw):
    n = draw(st.integers(1, 6))
    lines = []
    for i in range(n):
        act = draw(st.sampled_from(ACTIONS))
        if draw(st.booleans()):
            lines.append(f'r{i}: if ({draw(st.sampled_from(CONDS))}) {{ log("hit"); {act}; }}')
        else:
            lines.append(f"r{i}: {act};")
    return "\n".join(lines)


REQUESTS = st.builds(
    lambda m, p, h, c: (f"{m} {p} HTTP/1.1\r\nHost: a\r\n{h}{c}"
                        + ("Content-Length: 0\r\n" if m == "POST" else "") + "\r\n").encode(),
    st.sampled_from(["GET", "POST", "HEAD"]), st.sampled_from(["/", "/a", "/a/b", "/zz"]),
    st.sampled_from(["", "X-K: 1\r\n"]), st.sampled_from(["", "Cookie: s=x\r\n"]))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=rulesets(), reqs=st.lists(REQUESTS, min_size=1, max_size=4),
       sched=st.sampled_from(sorted(capabilities.SCHEDULERS)),
       answer=st.sampled_from(["SA", "RA", None]))
def test_valid_rule_sets_never_reach_an_internal_error(text, reqs, sched, answer):
    rs = parse_rules(text)
    s1, s2 = Server("s1", S1, 8080), Server("s2", S2, 8080)
    h = Harness(servers=[s1, s2], router=RuleSetDecider(rs),
                groups=[ServerGroup("web", [s1, s2], sched), ServerGroup("img", [s2], sched)])
    for i, req in enumerate(reqs):      # the harness fails on any error log
        h.cport = 40000 + i
        h.handshake()
        eff = h.send(req)
        syns = [p for _, p in pkts(eff) if p["TCP"].flags == "S"]
        if syns and answer:
            h.server(h.sframe(syns[0], answer, 7000, (h.cisn + 1) % M))
        h.tick(8.0)


@pytest.mark.parametrize("algo", sorted(capabilities.UNSUPPORTED_ALGORITHMS))
def test_unsupported_algorithm_is_refused_at_load_with_its_line(algo):
    with pytest.raises(RuleError) as e:
        parse_rules(f"a: routeTo(web);\nb: loadBalance(web, {algo});", "x.rules")
    msg = e.value.messages[0]
    assert msg.startswith("x.rules:2:") and "not supported" in msg
    assert capabilities.UNSUPPORTED_ALGORITHMS[algo] in msg


def test_fields_a_service_protocol_lacks_are_refused():
    rs = parse_rules('a: if (smtp.from == "x") { reject; }\nb: if (path == "/") { reject; }',
                     "m.rules")
    assert protocol_problems(rs, "smtp") == [
        "m.rules:2: error: rule b uses path, which requests of a smtp service do not have"]
    assert protocol_problems(rs, "http")[0].startswith("m.rules:1: error: rule a uses smtp.from")
    assert protocol_problems(parse_rules("c: if (client.port > 1) { reject; }"), "imap") == []


