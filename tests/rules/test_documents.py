"""The source documents' examples, end to end through classify() and the CLI."""

import json
import subprocess
import sys

from conftest import DATA, ROOT
from p4cs.rules import classify, load_rules

CLIENT = ("192.0.2.10", 40000)
VIP = ("198.51.100.1", 80)


def decide(rules, req):
    return classify(load_rules(DATA / rules), (DATA / req).read_bytes(), CLIENT, VIP)


def test_ecommerce_total_amount_goes_to_high_speed_servers():
    d = decide("ecommerce.rules", "purchase_textxml.http")
    assert (d.rule, d.action, d.target, d.sticky) == ("Rule 1", "routeTo", "highSpeedServers", True)


def test_ecommerce_rule2_when_amount_small():
    xml = (DATA / "purchase.xml").read_bytes().replace(b"52000", b"4000")
    raw = b"POST /purchase.cgi HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(xml) + xml
    d = classify(load_rules(DATA / "ecommerce.rules"), raw, CLIENT, VIP)
    assert d.target == "specialCustomerServers"


def test_lcs_demo_rules():
    assert decide("lcs.rules", "lcs1.http").target == "ace"
    assert decide("lcs.rules", "lcs2.http").target == "wait"
    d = decide("lcs.rules", "purchase_textxml.http")  # 2nd subTotal is 2000 < 50000
    assert (d.rule, d.target, d.sticky, d.logs) == ("R4", "wait", False, ("serevr=wait 2000",))
    xml = (DATA / "purchase.xml").read_bytes().replace(b"<subTotal>2000<", b"<subTotal>60000<")
    raw = b"POST /x HTTP/1.1\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % len(xml) + xml
    assert classify(load_rules(DATA / "lcs.rules"), raw, CLIENT, VIP).target == "ace"


def test_process_pl_and_total_amount():
    d = decide("process.rules", "purchase_form.http")  # url has process.pl, XML inside the form
    assert (d.rule, d.target, d.sticky) == ("fast", "FastServers", False)
    d = decide("process.rules", "purchase_textxml.http")  # purchase.cgi: no
    assert (d.rule, d.action, d.algorithm) == ("rest", "loadBalance", "roundRobin")


def test_operator_rule_file():
    assert decide("mixed.rules", "clienthello.bin").target == "tlsPool"
    assert decide("mixed.rules", "smtp.txt").target == "quarantine"
    assert decide("mixed.rules", "garbage.bin").rule == "default"
    rs = load_rules(DATA / "mixed.rules")
    assert classify(rs, b"GET /img/a.JPG HTTP/1.1\r\nHost: viva.uccs.edu\r\n\r\n", CLIENT, VIP).rule == "default"
    assert classify(rs, b"GET /img/a.jpeg HTTP/1.1\r\nHost: VIVA.uccs.edu\r\n\r\n", CLIENT, VIP).target == "imageServers"
    assert classify(rs, b"GET / HTTP/1.1\r\n\r\n", ("203.0.113.9", 1), VIP).action == "reject"
    assert classify(rs, b"GET /old/x HTTP/1.1\r\n\r\n", CLIENT, VIP).target == "https://www.example.com/new/"
    assert classify(rs, b"GET / HTTP/1.1\r\nCookie: beta=1\r\n\r\n", CLIENT, VIP).algorithm == "leastConnections"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "p4cs.cli", "rules", *args], capture_output=True,
                          text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin"},
                          timeout=120)


def test_cli_eval_json():
    r = run_cli("eval", str(DATA / "lcs.rules"), str(DATA / "lcs1.http"), str(DATA / "purchase_textxml.http"), "--json")
    assert r.returncode == 0, r.stderr
    out = [json.loads(l) for l in r.stdout.splitlines()]
    assert [(o["rule"], o["action"], o["target"], o["sticky"]) for o in out] == [
        ("R10", "routeTo", "ace", False), ("R4", "routeTo", "wait", False)]
    assert out[0]["request"].endswith("lcs1.http")


def test_cli_eval_human_and_no_match():
    r = run_cli("eval", str(DATA / "ecommerce.rules"), str(DATA / "lcs1.http"), str(DATA / "purchase_textxml.http"))
    assert r.returncode == 0
    assert "lcs1.http: no rule matched" in r.stdout
    assert "rule Rule 1: routeTo highSpeedServers STICKY" in r.stdout


def test_cli_bad_input_has_no_traceback():
    for args in (["eval", str(DATA / "bad.rules"), str(DATA / "lcs1.http")],
                 ["eval", str(DATA / "lcs.rules"), "/nonexistent/req"],
                 ["eval", str(DATA / "lcs.rules"), str(DATA / "lcs1.http"), "--client", "nope"],
                 ["check", "/nonexistent.rules"],
                 ["check", str(DATA / "bad_semantic.rules")]):
        r = run_cli(*args)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr + r.stdout
    r = run_cli("check", str(DATA / "bad.rules"))
    assert "bad.rules:2:38: error: unexpected '='" in r.stderr and "hint: use '==' to compare" in r.stderr
