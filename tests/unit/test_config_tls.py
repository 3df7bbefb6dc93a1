"""TLS services in the configuration: protocol tls, tls.* rules only on tls services (the
rule's file:line in the error), tls-session persistence only on tls services; and `p4cs rules
check --protocol` says the same."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from p4cs.controller.config import ConfigError, load_config, parse_config

from test_config import BASE

RULES = 'a: if (tls.sni == "a.example") { routeTo(g); }\nb: if (tls.alpn == "h2") {\n  routeTo(g);\n}\n'


def tls_service(extra: str = "") -> str:
    return BASE.replace("{vip: 10.0.0.100, port: 80, default_group: g}",
                        "{vip: 10.0.0.100, port: 443, protocol: tls, default_group: g" + extra + "}")


def test_tls_service_with_tls_rules_and_session_persistence(tmp_path):
    (tmp_path / "t.rules").write_text(RULES)
    p = tmp_path / "c.yaml"
    p.write_text(tls_service(", rules: t.rules,\n     persistence: {kind: tls-session, timeout_s: 120, "
                             "max_sessions: 5000}"))
    svc = load_config(p).services[0]
    assert svc.protocol == "tls"
    assert (svc.persistence.kind, svc.persistence.timeout_s, svc.persistence.max_sessions) == (
        "tls-session", 120, 5000)
    # client-ip persistence stays the default kind, on any service
    svc = parse_config(tls_service(", persistence: {timeout_s: 60}"), "c.yaml").services[0]
    assert svc.persistence.kind == "client-ip"


def test_tls_rules_on_an_http_service_name_the_rule_line(tmp_path):
    (tmp_path / "t.rules").write_text(RULES)
    p = tmp_path / "c.yaml"
    p.write_text(BASE.replace("default_group: g}", "default_group: g,\n     rules: t.rules}"))
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value) == (f"{p}:12: {tmp_path / 't.rules'}:1: error: rule a uses tls.sni, "
                             "which requests of a http service do not have (and 1 more)")
    (tmp_path / "h.rules").write_text('a: if (prefix(url, "/x")) { routeTo(g); }\n')
    p.write_text(tls_service(",\n     rules: h.rules"))
    with pytest.raises(ConfigError, match=r"c.yaml:12: .*h.rules:1: error: rule a uses url, "
                                          "which requests of a tls service do not have"):
        load_config(p)


@pytest.mark.parametrize("text,line,words", [
    (tls_service(", routes: [{prefix: /, group: g}]"), 11, "a tls service decides with 'rules'"),
    (BASE.replace("default_group: g}", "default_group: g,\n     persistence: {kind: tls-session}}"),
     12, "tls-session persistence needs protocol tls, not http"),
    (tls_service(",\n     persistence: {kind: tls-session, netmask: 255.255.255.0}"), 12,
     "a netmask belongs to client-ip persistence"),
    (tls_service(",\n     persistence: {kind: cookie}"), 12,
     "persistence kind must be one of client-ip, tls-session, cookie-learn, cookie-insert, "
     "got 'cookie'"),
    (tls_service(",\n     persistence: {timeout_s: 9, max_sessions: 10}"), 12,
     "max_sessions belongs to tls-session and cookie-learn persistence, not client-ip"),
    (tls_service(",\n     persistence: {kind: tls-session, max_sessions: 0}"), 12, "max_sessions"),
])
def test_bad_tls_services(text, line, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "c.yaml")
    assert str(ei.value).startswith(f"c.yaml:{line}: ") and words in str(ei.value), str(ei.value)


def test_rules_check_protocol_tls(tmp_path):
    from p4cs.rules.cli import app
    f = tmp_path / "t.rules"
    f.write_text(RULES)
    r = CliRunner().invoke(app, ["check", str(f), "--protocol", "tls"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["check", str(f), "--protocol", "http"])
    assert r.exit_code == 1
    assert f"{f}:1: error: rule a uses tls.sni, which requests of a http service do not have" in r.output


def test_live_edits_keep_tls_session_persistence(tmp_path):
    """The running configuration saved and edited (p4cs save / service edit) keeps a TLS
    service's persistence kind; -p changes its timeout, -M makes it client-IP."""
    from p4cs.controller.operator import dump, edit, to_doc, validate
    cfg = parse_config(tls_service(", persistence: {kind: tls-session, timeout_s: 120, "
                                   "max_sessions: 77}"), "c.yaml")
    again = parse_config(dump(to_doc(cfg)), "<saved>")
    assert again.services == cfg.services
    doc = edit(to_doc(cfg), {"op": "service.edit", "address": "10.0.0.100:443", "persistence": 30})
    assert validate(doc).services[0].persistence.kind == "tls-session"
    assert validate(doc).services[0].persistence.timeout_s == 30
    assert validate(doc).services[0].persistence.max_sessions == 77
    doc = edit(doc, {"op": "service.edit", "address": "10.0.0.100:443", "persistence": 30,
                     "netmask": "255.255.255.0"})
    assert validate(doc).services[0].persistence.kind == "client-ip"
