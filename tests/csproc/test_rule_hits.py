"""Hits per rule, counted where the CS processor decides."""

from __future__ import annotations

from p4cs.csproc import Route

from cs_harness import T0, Harness


def request(h, cport, path):
    h.cport = cport
    h.handshake()
    h.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())


def test_each_decision_counts_for_its_rule_with_the_time_of_its_last_hit():
    h = Harness(routes=[Route("api", "web", "/api"), Route("deny", None, "/admin", action="reject")])
    request(h, 40001, "/api/x")
    h.now += 2.0
    request(h, 40002, "/api/y")
    request(h, 40003, "/admin")
    request(h, 40004, "/other")          # no rule: the default group takes it
    h.now += 1.5
    hits = h.eng.rule_hits.listing(h.now)
    assert hits == [
        {"service": "www", "rule": None, "hits": 1, "last_hit_ago_s": 1.5},
        {"service": "www", "rule": "api", "hits": 2, "last_hit_ago_s": 1.5},
        {"service": "www", "rule": "deny", "hits": 1, "last_hit_ago_s": 1.5},
    ]
    assert h.eng.stats.decided == 4
    assert h.now == T0 + 3.5


def test_no_decision_no_hit():
    h = Harness()
    h.handshake()
    assert h.eng.rule_hits.listing(h.now) == []
