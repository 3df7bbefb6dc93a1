"""The engine driven by the real rules engine through RuleSetDecider."""

import pytest
from scapy.layers.inet import IP

from p4cs.csproc import Config, InstallFlows, RuleSetDecider, Server, ServerGroup

from cs_harness import Harness, of, pkts

rules = pytest.importorskip("p4cs.rules")
store_mod = pytest.importorskip("p4cs.rules.store")

RULES = '''
img:  if (prefix(url, "/img/")) { routeTo(img); }
big:  if (xml.purchase/totalAmount > 5000) { routeTo(fast); }
'''

XML = b"<purchase><customerName>CCL</customerName><totalAmount>52000</totalAmount></purchase>"


def harness():
    store = store_mod.RuleStore(rules.parse_rules(RULES))
    groups = [ServerGroup("web", [Server("w", "10.0.1.1", 8080)]),
              ServerGroup("img", [Server("i", "10.0.1.2", 8080)]),
              ServerGroup("fast", [Server("f", "10.0.1.3", 8080)])]
    h = Harness(router=RuleSetDecider(store), groups=groups, config=Config())
    from p4cs.csproc import StaticTopology
    h.eng.topo = StaticTopology({1: "02:00:00:00:00:01", 2: "02:00:00:00:00:02"},
                                {f"10.0.1.{i}": (2, "bb:00:00:00:00:01") for i in (1, 2, 3)})
    return h, store


def test_body_rule_waits_for_xml_and_routes_to_fast():
    h, store = harness()
    assert h.svc.decider.needs_body
    h.handshake()
    head = (b"POST /cgi-bin/purchase.pl HTTP/1.0\r\nContent-Type: text/xml\r\n"
            b"Content-Length: " + str(len(XML)).encode() + b"\r\n\r\n")
    eff = h.send(head + XML[:30])
    assert [p for port, p in pkts(eff) if port == 2] == []       # still waiting for body
    syn = h.to_server_syn(h.send(XML[30:], rel=len(head) + 30))
    assert syn[IP].dst == "10.0.1.3"
    eff = h.server(h.sframe(syn, "SA", 1, h.cisn + 1))
    assert of(eff, InstallFlows)


def test_url_rule_and_default_group():
    h, store = harness()
    h.handshake()
    assert h.to_server_syn(h.send(b"GET /img/x.gif HTTP/1.0\r\n\r\n"))[IP].dst == "10.0.1.2"
    h2, _ = harness()
    h2.handshake()
    assert h2.to_server_syn(h2.send(b"GET / HTTP/1.0\r\n\r\n"))[IP].dst == "10.0.1.1"
