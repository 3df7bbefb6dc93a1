import pytest

from p4cs.rules import RuleError, parse_rules
from p4cs.rules.model import Action, If


def test_documents_syntax_variants():
    rs = parse_rules('''
    Rule 1: if (xml.purchase/totalAmount > 5000) routeTo(highSpeedServers);
    r2: if (xml.purchase/customerName == CCL) {routeTo(r2)}
    R4: if (xml.purchase:1.item:2.subTotal >= 50000) { routeTo(ace, NON_STICKY); } else { routeTo(wait, NOSTICKY); }
    if (suffix(url, \u201cgif\u201d)) { forward(img, NONSTICKY); }
    dflt: loadBalance(web, leastconnections);
    ''')
    names = [r.name for r in rs.rules]
    assert names == ["Rule 1", "r2", "R4", "rule4", "dflt"]
    r4 = rs.rule("R4").body[0]
    assert isinstance(r4, If) and r4.cond.field == "xml.purchase:1/item:2/subTotal"
    assert r4.then[0].sticky is False and r4.orelse[0].sticky is False
    assert rs.rule("Rule 1").body[0].then[0].sticky is True
    assert rs.rule("rule4").body[0].cond.value.text == "gif"
    assert rs.rule("dflt").body[0] == Action("loadBalance", "web", algorithm="leastConnections", line=6)
    assert rs.fields == {"xml.purchase/totalAmount", "xml.purchase/customerName",
                         "xml.purchase:1/item:2/subTotal", "url"}
    assert rs.needs_body


def test_operators_precedence_and_negation():
    rs = parse_rules('a: if (!(url == "/x") && host == "h" || method == GET) reject;')
    c = rs.rules[0].body[0].cond
    assert c.show() == '!url == "/x" && host == "h" || method == "GET"' or "||" in c.show()
    from p4cs.rules.model import Or, And, Not
    assert isinstance(c, Or) and isinstance(c.items[0], And) and isinstance(c.items[0].items[0], Not)


def test_header_names_case_insensitive_and_fields():
    rs = parse_rules('a: if (header.Content-Type == "x" && cookie.SID == "1" && json.a.b.0 == 2 '
                     '&& form.q == "z" && bitmatch(64, 8, 0xff) == 64 && tls.sni == "a" ) reject;')
    assert {"header.content-type", "cookie.SID", "json.a.b.0", "form.q", "bitmatch(64,8,0xff)",
            "tls.sni"} == set(rs.fields)


@pytest.mark.parametrize("text,line,col,needle,hint", [
    ("a: if (url = 1) reject;", 1, 12, "unexpected '='", "=="),
    ("a: if (urll == 1) reject;", 1, 8, "unknown field 'urll'", "url"),
    ("a: if (url == 1 { reject }", 1, 17, "unexpected '{'", "')'"),
    ("a: if (url == 1) { rout(x) }", 1, 20, "unknown action 'rout'", "routeTo"),
    ("a: if (url == 1) { reject ", 1, 27, "unexpected end of file", "}"),
    ('a: if (url == "x) reject', 1, 15, "unexpected character", "unterminated"),
    ("a: if (client.ip > 3) reject", 1, 18, "operator > does not apply", "CIDR"),
    ("a: if (url == 1) routeTo(g, SOMETIMES)", 1, 29, "expected STICKY or NONSTICKY", "NOSTICKY"),
    ("a: if (url == 1) loadBalance(g, magic)", 1, 33, "unknown load-balancing algorithm", "roundRobin"),
    ('a: if (regex(url, "(")) reject', 1, 19, "invalid regular expression", ""),
    ("a: if (xml.a:0.b == 1) reject", 1, 8, "1-based", ""),
    ("a: reject\n\na: reject", 3, 1, "already used", "line 1"),
    ("a: if url == 1 reject", 1, 7, "unexpected 'url'", "parentheses"),
])
def test_errors_point_at_line_col_with_caret_and_hint(text, line, col, needle, hint):
    with pytest.raises(RuleError) as ei:
        parse_rules(text, "t.rules")
    p = ei.value.problems[0]
    assert (p.line, p.col) == (line, col), str(ei.value)
    assert needle in p.message
    assert hint in p.hint
    s = str(ei.value)
    assert s.startswith(f"t.rules:{line}:{col}: error:")
    caret_line = s.splitlines()[2]
    assert caret_line.index("^") - 4 == col - 1


def test_all_semantic_errors_reported_together():
    with pytest.raises(RuleError) as ei:
        parse_rules('a: if (urll == 1) reject;\nb: if (url == 1) rout(x);\nc: reject;')
    assert [p.line for p in ei.value.problems] == [1, 2]


def test_empty_file_is_valid_and_matches_nothing():
    rs = parse_rules("# nothing\n")
    assert len(rs) == 0 and rs.fields == frozenset()
