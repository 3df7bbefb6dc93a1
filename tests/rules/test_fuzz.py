"""Short fuzzing runs of every parser that reads client bytes or rule files (bench/fuzz.py runs
the same targets for longer), the inputs that ever failed, and deep / long rule files."""

import pytest
from hypothesis import HealthCheck, given, settings

import fuzz_targets as ft
from p4cs.rules import RequestView, parse_rules
from p4cs.rules.conflicts import check_rules
from p4cs.rules.parser import MAX_COND_NESTING, MAX_IF_NESTING, RuleError, parse_rule_file

BOUND = 2.0  # seconds per input


@pytest.mark.parametrize("name", sorted(ft.TARGETS))
def test_fuzz_target(name):
    target, strategy, _ = ft.TARGETS[name]

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(data):
        with ft.time_bound(BOUND):
            target(data)

    run()


@pytest.mark.parametrize("name", sorted(ft.TARGETS))
def test_fuzz_regressions(name):
    target = ft.TARGETS[name][0]
    for fname, data in ft.corpus(name):
        with ft.time_bound(BOUND):
            target(data)


def test_framer_bytes_after_a_complete_request():
    """Bytes after the first request in the same piece are not parsed as a second request
    (found by the fuzzer: a good request was answered 400)."""
    raw = b"POST /j HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n{}" + b', "c": 5}'
    whole, _ = ft._frame([raw])
    split, _ = ft._frame([raw[i:i + 1] for i in range(len(raw))])
    assert split.ready and split.error is None
    assert whole.ready and whole.error is None


def _one_line_error(text):
    with pytest.raises(RuleError) as e:
        parse_rules(text, "deep.rules")
    msg = str(e.value)
    assert msg.startswith("deep.rules:1:") and msg.count("\n") <= 3
    return msg


def test_long_numbers_are_a_one_line_error():
    assert "number literal too long (5001 digits" in _one_line_error(
        "r: if (client.port == " + "9" * 5001 + ") reject;")
    assert "too long" in _one_line_error("r: if (xml.a < 1." + "5" * 5001 + ") reject;")
    parse_rules("r: if (xml.a < " + "9" * 100 + ") reject;")


def test_long_request_numbers_compare_exactly():
    rs = parse_rules("big: if (xml.a > 5) reject;\neq: if (xml.a == 5) routeTo(x);")
    for text, rule in (("9" * 5001, "big"), ("0" * 5000 + "5", "eq"), ("5." + "0" * 5000, "eq"),
                       ("-" + "9" * 5001, None), ("4." + "9" * 5000, None)):
        v = RequestView.from_fields({"xml.a": text})
        assert rs.decide(v).rule == rs.decide_naive(v).rule == rule, text


def test_nested_ifs_within_and_beyond_the_limit():
    deep = "r: " + 'if (host == "a") { ' * 1500 + "reject;" + " }" * 1500
    assert "nested too deeply" in _one_line_error(deep)
    n = MAX_IF_NESTING
    ok = "r: " + "".join(f'if (host != "h{i}" && !(url == "/{i}" || match(url, "x{i}"))) {{ log("l"); '
                         for i in range(n)) + "reject;" + " }" * n + "\ns: routeTo(g);"
    rs = parse_rules(ok)
    v = RequestView.from_fields({"host": "a", "url": "/y"})
    assert rs.decide(v).rule == rs.decide_naive(v).rule == "r"
    findings, _ = check_rules(rs, timeout_ms=2000)
    assert all(f.witness is None or f.witness["verified"] for f in findings)


def test_long_chains_are_flattened_and_deep_groups_limited():
    ors = "r: if (" + " || ".join(f'host == "h{i}"' for i in range(3000)) + ") reject;"
    rs = parse_rules(ors)
    assert rs.decide(RequestView.from_fields({"host": "h2999"})).rule == "r"
    assert rs.decide_naive(RequestView.from_fields({"host": "h2999"})).rule == "r"
    ands = "r: if (" + " && ".join(f'!(host == "h{i}")' for i in range(3000)) + ") reject;"
    assert parse_rules(ands).decide(RequestView.from_fields({"host": "x"})).rule == "r"
    assert "nested too deeply" in _one_line_error("r: if (" + "!" * 3000 + 'host == "a") reject;')
    n = MAX_COND_NESTING
    cond = 'host == "a"'
    for i in range(n):  # n groups: the limit
        cond = f'(url == "/{i}" {"||" if i % 2 else "&&"} {cond})'
    rs = parse_rules(f"r: if ({cond}) reject;\ns: if (host == \"a\") routeTo(x);")
    v = RequestView.from_fields({"host": "a", "url": "/0"})
    assert rs.decide(v) == rs.decide_naive(v)
    check_rules(rs, timeout_ms=2000)
    assert "nested too deeply" in _one_line_error(f'r: if (url == "/" || {cond}) reject;')
    assert parse_rules("r: if (" + "(" * 3000 + 'host == "a"' + ")" * 3000 + ") reject;")


def test_sequential_ifs_keep_guards_linear():
    body = " ".join(f'if (match(url, "x{i}")) {{ log("m{i}"); }} if (prefix(url, "/{i}")) {{ if (host == "b") reject; }}'
                    for i in range(60))
    rs = parse_rules(f'r: if (host == "a") {{ {body} routeTo(g); }}')
    v = RequestView.from_fields({"host": "a", "url": "/3x1"})
    assert rs.decide(v) == rs.decide_naive(v)
    assert rs.decide(v).logs == ("m1",)


def test_a_file_name_with_a_newline_stays_on_one_line():
    """Found by the CLI fuzzer: `p4cs rules eval $'\\n' …` printed its error on two lines."""
    with pytest.raises(RuleError) as e:
        parse_rule_file("\n")
    assert str(e.value).count("\n") == 0 and "\\n:0:0: error: cannot read rule file" in str(e.value)
