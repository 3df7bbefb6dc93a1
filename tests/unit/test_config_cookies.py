"""Cookie persistence in the configuration: only on http services, a cookie name that is a
token, each kind's own keys (file:line errors); the running configuration saved and edited
(p4cs save, service add/edit --cookie-learn/--cookie-insert) keeps it."""

from __future__ import annotations

import pytest

from p4cs.controller.config import ConfigError, parse_config
from p4cs.controller.operator import dump, edit, to_doc, validate

from test_config import BASE
from test_config_tls import tls_service


def http(extra: str) -> str:
    return BASE.replace("default_group: g}", "default_group: g,\n     persistence: " + extra + "}")


def test_both_kinds_parse():
    p = parse_config(http("{kind: cookie-learn, name: SESSIONID, timeout_s: 3600, "
                          "max_sessions: 500}"), "c.yaml").services[0].persistence
    assert (p.kind, p.name, p.timeout_s, p.max_sessions) == ("cookie-learn", "SESSIONID", 3600, 500)
    p = parse_config(http("{kind: cookie-insert, name: SRV, key: k1}"), "c.yaml") \
        .services[0].persistence
    assert (p.kind, p.name, p.key) == ("cookie-insert", "SRV", "k1")


@pytest.mark.parametrize("text,words", [
    (tls_service(",\n     persistence: {kind: cookie-learn, name: S}"),
     "cookie-learn persistence needs protocol http, not tls"),
    (http("{kind: cookie-insert}"), "missing 'name'"),
    (http("{kind: cookie-learn, name: \"SESSION ID\"}"), "cookie name 'SESSION ID' is not a token"),
    (http("{kind: cookie-learn, name: \"a;b\"}"), "is not a token"),
    (http("{kind: cookie-insert, name: SRV, timeout_s: 60}"),
     "timeout_s belongs to client-ip and tls-session and cookie-learn persistence, not cookie-insert"),
    (http("{kind: cookie-insert, name: SRV, max_sessions: 60}"),
     "max_sessions belongs to tls-session and cookie-learn persistence, not cookie-insert"),
    (http("{kind: cookie-learn, name: S, netmask: 255.0.0.0}"),
     "a netmask belongs to client-ip persistence, not cookie-learn"),
    (http("{kind: cookie-learn, name: S, key: k}"),
     "a key belongs to cookie-insert persistence, not cookie-learn"),
    (http("{timeout_s: 9, name: S}"), "a cookie name belongs to cookie-learn and cookie-insert"),
])
def test_bad_cookie_persistence(text, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "c.yaml")
    assert str(ei.value).startswith("c.yaml:12: ") and words in str(ei.value), str(ei.value)


def test_save_and_live_edits_keep_cookie_persistence():
    cfg = parse_config(http("{kind: cookie-insert, name: SRV, key: k1}"), "c.yaml")
    assert parse_config(dump(to_doc(cfg)), "<saved>").services == cfg.services
    doc = to_doc(cfg)
    with pytest.raises(ConfigError, match="cookie-insert persistence has no timeout"):
        edit(doc, {"op": "service.edit", "address": "10.0.0.100:80", "persistence": 30})
    doc = edit(doc, {"op": "service.edit", "address": "10.0.0.100:80", "cookie_insert": "ID"})
    p = validate(doc).services[0].persistence
    assert (p.kind, p.name, p.key) == ("cookie-insert", "ID", "k1")
    doc = edit(doc, {"op": "service.edit", "address": "10.0.0.100:80",
                     "cookie_learn": "SESSIONID", "persistence": 600})
    p = validate(doc).services[0].persistence
    assert (p.kind, p.name, p.timeout_s, p.key) == ("cookie-learn", "SESSIONID", 600, None)
    doc = edit(doc, {"op": "service.edit", "address": "10.0.0.100:80", "persistence": 60})
    assert validate(doc).services[0].persistence.timeout_s == 60
    assert validate(doc).services[0].persistence.kind == "cookie-learn"
    with pytest.raises(ConfigError, match="not both"):
        edit(doc, {"op": "service.edit", "address": "10.0.0.100:80", "cookie_learn": "A",
                   "cookie_insert": "B"})
    doc = edit(doc, {"op": "service.edit", "address": "10.0.0.100:80", "persistence": 0})
    assert validate(doc).services[0].persistence is None
