import json
import subprocess
import sys

from conftest import DATA, ROOT
from p4cs.rules import RequestView, parse_rules, load_rules
from p4cs.rules.conflicts import check_rules, regex_to_z3, surely_disjoint


def kinds(text):
    findings, _ = check_rules(parse_rules(text))
    return {(f.kind, f.rules) for f in findings}, findings


def test_slide_64_examples():
    findings, stats = check_rules(load_rules(DATA / "slide64.rules"))
    got = {(f.kind, f.rules) for f in findings}
    assert ("absolute", ("r1", "r2")) in got
    assert ("potential", ("r3", "r4")) in got
    assert not any(set(f.rules) & {"r1", "r2"} and set(f.rules) & {"r3", "r4"} for f in findings)
    for f in findings:
        assert f.witness and f.witness["verified"], f
    pot = [f for f in findings if f.kind == "potential"][0]
    amount = pot.witness["fields"]["xml.purchase/totalAmount"]
    assert float(amount) > 20000                      # a number satisfying both rules
    assert "<totalAmount>" in pot.witness["request"]
    assert pot.witness["decision"].startswith("rule r3")


def test_duplicate_order_shadowed_and_unsatisfiable():
    got, findings = kinds('''
    d1: if (host == "a.com" && prefix(path, "/img")) { routeTo(img); }
    d2: if (prefix(path, "/img") && host == "a.com") { routeTo(img); }
    g:  if (prefix(path, "/api")) { routeTo(api); }
    s:  if (prefix(path, "/api/v2") && method == "POST") { routeTo(v2); }
    n1: if (client.ip == 10.0.0.0/9) { reject; }
    n2: if (client.ip == 10.128.0.0/9) { reject; }
    n3: if (client.ip == 10.0.0.0/8 && client.port == 80) { reject; }
    x:  if (client.port > 10 && client.port < 5) { routeTo(never); }
    ''')
    assert ("duplicate", ("d1", "d2")) in got
    assert ("order", ("g", "s")) in got
    assert any(k == "shadowed" and r[1] == "n3" for k, r in got)   # covered by n1 and n2 together
    assert ("shadowed", ("x", "x")) in got
    for f in findings:
        if f.witness:
            assert f.witness["verified"], f
    o = [f for f in findings if f.kind == "order"][0]
    w = o.witness["fields"]
    assert w["path"].startswith("/api/v2") and w["method"] == "POST"
    assert o.witness["request"].startswith("POST /api/v2")


def test_no_findings_for_disjoint_rules():
    got, _ = kinds('''
    a: if (host == "a.com") routeTo(a);
    b: if (host == "b.com") routeTo(b);
    c: if (tls.sni == "a.com") routeTo(c);
    d: if (xml.purchase/totalAmount > 5000) routeTo(big);
    e: if (xml.purchase/totalAmount <= 5000) routeTo(small);
    ''')
    assert got == set()


def test_correct_order_is_only_a_warning_and_regex_witness():
    findings, _ = check_rules(parse_rules('''
    s: if (regex(url, "^/a[0-9]+$")) routeTo(num);
    g: if (prefix(url, "/a")) routeTo(all);
    '''))
    assert [(f.kind, f.severity) for f in findings] == [("potential", "warning")]
    import re
    assert re.fullmatch(r"/a[0-9]+", findings[0].witness["fields"]["url"])


def test_prefilter_is_sound_on_examples():
    from p4cs.rules.conflicts import _top_atoms
    rs = parse_rules('''
    a: if (host == "a.com") reject;
    b: if (host == "b.com") reject;
    c: if (prefix(path, "/x")) reject;
    d: if (prefix(path, "/y")) reject;
    e: if (client.port > 10 && client.port < 20) reject;
    f: if (client.port >= 20) reject;
    g: if (xml.t > 10) reject;
    h: if (xml.t < 5) reject;
    ''')
    t = [_top_atoms(rs, i) for i in range(len(rs.rules))]
    assert surely_disjoint(t[0], t[1]) and surely_disjoint(t[2], t[3]) and surely_disjoint(t[4], t[5])
    # "x > 10" and "x < 5" are not disjoint: non-numeric text compares as strings ("2a")
    assert not surely_disjoint(t[6], t[7])
    from p4cs.rules.engine import eval_cond
    v = RequestView.from_fields({"xml.t": "2a"})
    assert eval_cond(rs.rules[6].body[0].cond, v) and eval_cond(rs.rules[7].body[0].cond, v)


def test_regex_translation():
    import z3
    for pat, yes, no in [("^/a[0-9]+$", "/a12", "/a12x"), ("gif$", "x.gif", "x.gifs"), ("b|c", "xcx", "xax"),
                         ("^/[^/]+/?$", "/abc/", "/a/b")]:
        r = regex_to_z3(pat)
        s = z3.String("s")
        for val, expect in ((yes, True), (no, False)):
            sol = z3.Solver()
            sol.add(s == z3.StringVal(val), z3.InRe(s, r))
            assert (sol.check() == z3.sat) == expect, (pat, val)
    assert regex_to_z3("(a)\\1") is None


def test_cli_check_json_and_exit_status():
    env = {"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "p4cs.cli", "rules", "check", str(DATA / "slide64.rules"), "--json"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert {"kind", "rules", "witness"} <= set(out[0])
    assert {o["kind"] for o in out} >= {"absolute", "potential"}
    r = subprocess.run([sys.executable, "-m", "p4cs.cli", "rules", "check", str(DATA / "ecommerce.rules")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "no conflicts" in r.stdout  # the two rules test different fields


def test_cross_kind_implication_is_exact():
    got, findings = kinds('''
    g: if (prefix(url, "/a")) routeTo(all);
    s: if (regex(url, "^/a[0-9]+$")) routeTo(num);
    t: if (regex(header.x-k, "gif$")) routeTo(img);
    u: if (suffix(header.x-k, "gif") && !match(header.x-k, "x")) routeTo(other);
    v: if (match(header.x-k, "y") && regex(header.x-k, "^[^y]*$")) reject;
    ''')
    assert ("order", ("g", "s")) in got                       # the regex implies the prefix
    assert ("order", ("t", "u")) in got                       # gif$ = suffix gif on header values
    assert ("shadowed", ("v", "v")) in got                    # contradictory across kinds
    for f in findings:
        if f.witness:
            assert f.witness["verified"], f


def test_disjoint_pairs_carry_their_proof():
    env = {"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin"}
    rules = DATA.parent / "data" / "ecommerce.rules"
    r = subprocess.run([sys.executable, "-m", "p4cs.cli", "rules", "check", str(rules), "--json", "--disjoint"],
                       capture_output=True, text=True, env=env, timeout=120)
    out = json.loads(r.stdout)
    assert set(out) == {"findings", "disjoint"}
    _, stats = check_rules(parse_rules('a: if (regex(path, "^/x[0-9]")) routeTo(a);\n'
                                       'b: if (prefix(path, "/xa")) routeTo(b);'))
    assert stats["disjoint"] == [{"rules": ["a", "b"], "result": "disjoint",
                                  "reason": "no request satisfies both (field-wise procedure (exact; automata for text terms))"}]
