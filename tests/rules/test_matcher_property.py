"""The compiled matcher must decide exactly like the naive in-order interpreter."""

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4cs.rules import RequestView, parse_rules

FIELDS = ["url", "host", "header.x-amount", "xml.purchase/totalAmount", "client.port", "client.ip"]
STRS = ["/a", "/a/b", "/img/x.gif", "a.com", "b.org", "5000", "20000", "5000.5", "-3", "abc", "", "/a.gif", "x1", "0x40"]
NUMS = ["5000", "20000", "0", "-3", "5000.5", "49.99", "0x40"]


def lit(draw, numeric):
    if numeric:
        return draw(st.sampled_from(NUMS))
    return '"' + draw(st.sampled_from(STRS)) + '"'


@st.composite
def atom(draw):
    f = draw(st.sampled_from(FIELDS))
    if f == "client.ip":
        nets = draw(st.lists(st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "192.168.1.7", "\"2001:db8::/32\""]), min_size=1, max_size=3))
        if draw(st.booleans()):
            return f"{f} {draw(st.sampled_from(['==', '!=']))} {nets[0]}"
        return f"{f} in [{', '.join(nets)}]"
    if f == "client.port":
        return f"{f} {draw(st.sampled_from(['==', '!=', '<', '<=', '>', '>=']))} {draw(st.sampled_from(['80', '443', '1024', '0']))}"
    kind = draw(st.sampled_from(["cmp", "func", "in"]))
    if kind == "cmp":
        return f"{f} {draw(st.sampled_from(['==', '!=', '<', '<=', '>', '>=']))} {lit(draw, draw(st.booleans()))}"
    if kind == "in":
        vals = [lit(draw, draw(st.booleans())) for _ in range(draw(st.integers(1, 3)))]
        return f"{f} in [{', '.join(vals)}]"
    fn = draw(st.sampled_from(["match", "prefix", "suffix", "regex"]))
    s = draw(st.sampled_from(STRS))
    if fn == "regex":
        s = draw(st.sampled_from(["^/a", "gif$", "[0-9]+", "b|c", "^$"]))
    return f'{fn}({f}, "{s}")'


@st.composite
def cond(draw, depth=0):
    if depth >= 2 or draw(st.integers(0, 2)) == 0:
        return draw(atom())
    op = draw(st.sampled_from(["&&", "||", "!"]))
    if op == "!":
        return f"!({draw(cond(depth + 1))})"
    return f"({draw(cond(depth + 1))} {op} {draw(cond(depth + 1))})"


ACTIONS = ["routeTo(g1)", "routeTo(g2, NONSTICKY)", "forward(s1)", "reject", "loadBalance(g3, roundRobin)", 'redirect("http://x/")']


@st.composite
def stmt(draw, depth=0):
    k = draw(st.integers(0, 4 if depth < 2 else 1))
    if k == 0:
        return draw(st.sampled_from(ACTIONS)) + ";"
    if k == 1:
        return f'log("m{draw(st.integers(0, 9))}", url);'
    then = " ".join(draw(st.lists(stmt(depth + 1), min_size=0, max_size=2)))
    s = f"if ({draw(cond())}) {{ {then} }}"
    if draw(st.booleans()):
        s += " else { " + " ".join(draw(st.lists(stmt(depth + 1), min_size=0, max_size=2))) + " }"
    return s


@st.composite
def ruleset(draw):
    n = draw(st.integers(1, 12))
    out = []
    for i in range(n):
        if draw(st.integers(0, 3)) == 0:
            body = " ".join(draw(st.lists(stmt(), min_size=1, max_size=3)))
            out.append(f"R{i}: if ({draw(cond())}) {{ {body} }}")
        else:
            out.append(f"R{i}: if ({draw(cond())}) {draw(st.sampled_from(ACTIONS))};")
    return "\n".join(out)


VALUES = STRS + ["5000.50", "20001", "4999", "/img/a.gif", "A.COM", "/a/b/c", "x", "9", "64"]


@st.composite
def request(draw):
    vals = {}
    for f in FIELDS:
        if draw(st.integers(0, 4)) == 0:
            continue  # absent
        if f == "client.ip":
            vals[f] = ipaddress.ip_address(draw(st.sampled_from(["10.1.2.3", "10.2.0.1", "192.168.1.7", "8.8.8.8", "2001:db8::5", "::1"])))
        elif f == "client.port":
            vals[f] = draw(st.sampled_from([80, 443, 1024, 0, 65535]))
        else:
            vals[f] = draw(st.sampled_from(VALUES) | st.text(alphabet="/a.b5g0-x", max_size=6))
    return vals


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ruleset(), st.lists(request(), min_size=1, max_size=8))
def test_compiled_equals_naive(text, reqs):
    rs = parse_rules(text)
    for vals in reqs:
        a = rs.decide(RequestView.from_fields(vals))
        b = rs.decide_naive(RequestView.from_fields(vals))
        assert a == b, (text, vals)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["/a", "/ab", "/abc", "b", "bc", "c", ".gif", "gif", "/x/y", "y.gif", "a", ""]), min_size=9, max_size=30, unique=True),
       st.lists(st.text(alphabet="/abcxy.gif", max_size=12), min_size=1, max_size=20))
def test_many_substrings_use_the_automaton(pats, urls):
    text = "\n".join(f'm{i}: if (match(url, "{p}")) routeTo(g{i});' for i, p in enumerate(pats))
    rs = parse_rules(text)
    fi = [f for f in rs.matcher.indexes if f.field == "url"][0]
    assert fi.ac is not None
    for u in urls:
        v = {"url": u}
        assert rs.decide(RequestView.from_fields(v)) == rs.decide_naive(RequestView.from_fields(v))


def test_matcher_skips_unrelated_rules():
    text = "\n".join(f'h{i}: if (host == "h{i}.com" && prefix(path, "/p{i}")) routeTo(g{i});' for i in range(2000))
    rs = parse_rules(text + '\nlast: routeTo(default);')
    v = RequestView.from_fields({"host": "h1500.com", "path": "/p1500/x"})
    d = rs.decide(v)
    assert d.rule == "h1500"
    # only the anchored clause and nothing else was verified: the candidate set is one clause
    assert rs.matcher.always == 1 << 2000
    assert rs.decide(RequestView.from_fields({"host": "zzz"})).rule == "last"


def test_body_not_parsed_when_an_earlier_rule_decides():
    rs = parse_rules('a: if (prefix(path, "/static")) routeTo(s);\nb: if (xml.order/total > 5) routeTo(x);')
    xml = b"<order><total>9</total></order>"
    raw = b"POST /static/x HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(xml) + xml
    v = rs.view(raw)
    assert rs.decide(v).rule == "a"
    assert "xml.order/total" not in v.values()
    v = rs.view(raw.replace(b"/static", b"/dyn"))
    assert rs.decide(v).rule == "b" and v.values()["xml.order/total"] == "9"
