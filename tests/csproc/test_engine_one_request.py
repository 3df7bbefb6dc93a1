"""Services whose rules may reject a request carry one request per connection: the switch
relays the first request with ``Connection: close`` (its sequence space shifted by what it
added), so a second request never rides the fast path unclassified."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import TCP

from p4cs.csproc import InstallFlows, PrefixRouter, Route
from p4cs.csproc.framing import CLOSE, one_request
from p4cs.csproc.packet import apply_splice

from cs_harness import Harness, of, payload, pkts, valid

M = 2**32
GET = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
SECRET = b"GET /secret HTTP/1.1\r\nHost: a\r\n\r\n"
ROUTES = [Route("deny", None, "/secret", action="reject"), Route("all", "web", "/")]


@pytest.mark.parametrize("raw,want", [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\n" + CLOSE + b"Host: a\r\n\r\n"),
    (b"\r\nGET / HTTP/1.0\r\n\r\nGET /2", b"\r\nGET / HTTP/1.0\r\n" + CLOSE + b"\r\nGET /2"),
    (b"GET / HTTP/1.1\r\nconnection:keep-alive\r\nCONNECTION :  Upgrade\r\nUpgrade: x\r\n\r\nbody",
     b"GET / HTTP/1.1\r\n" + CLOSE + b"X-Dropped:".ljust(21) + b"\r\n" + b"X-Dropped:".ljust(21)
     + b"\r\nUpgrade: x\r\n\r\nbody"),
])
def test_one_request_rewrite(raw, want):
    assert one_request(raw) == want
    assert len(want) == len(raw) + len(CLOSE)


def relaying(h, req=GET, s_isn=5000):
    """Handshake, request, server handshake: (server SYN, InstallFlows of the c2s flow)."""
    h.handshake()
    eff = h.send(req)
    acks = [p for port, p in pkts(eff) if port == 1]
    assert len(acks) == 1 and acks[0][TCP].ack == (h.cisn + 1 + len(req)) % M   # owned
    syn = h.to_server_syn(eff)
    eff = h.server(h.sframe(syn, "SA", s_isn, (h.cisn + 1) % M))
    inst, = of(eff, InstallFlows)
    return syn, inst


@settings(max_examples=30, deadline=None)
@given(cisn=st.sampled_from([0, 1000, M - 1, M - 20, 2**31 - 1]),
       s_isn=st.sampled_from([0, 5, M - 1, 2**31]), mode=st.sampled_from(["transparent", "snat"]))
def test_first_request_relayed_with_close_and_flows_shifted(cisn, s_isn, mode):
    h = Harness(mode=mode, router=PrefixRouter(ROUTES), cisn=cisn)
    syn, inst = relaying(h, GET, s_isn)
    (c2s,) = inst.flows                      # RELAYING: the switch owns the request
    sent = b"".join(payload(valid(p.frame)) for p in inst.then)
    assert sent == one_request(GET)
    assert c2s.seq_delta == len(CLOSE)
    # The server acknowledges all it got: the return flow goes in, acks shifted back.
    end = (cisn + 1 + len(sent)) % M
    eff = h.server(h.sframe(syn, "A", (s_isn + 1) % M, end))
    (s2c,) = of(eff, InstallFlows)[0].flows
    assert s2c.ack_delta == (-len(CLOSE)) % M
    resp = h.sframe(syn, "PA", (s_isn + 1) % M, end, b"HTTP/1.1 200 OK\r\n\r\n")
    to_client = valid(apply_splice(resp, s2c))
    assert to_client[TCP].ack == (cisn + 1 + len(GET)) % M and to_client[TCP].seq == (h.sisn + 1) % M
    # What the client sends next continues the server's view of the stream.
    nxt = valid(apply_splice(h.cframe("PA", data=SECRET, rel=len(GET)), c2s))
    assert nxt[TCP].seq == end


def test_pipelined_request_is_relayed_after_the_close():
    """A second request already buffered goes to the server behind the first request's
    ``Connection: close``: the server answers the first and closes, never the second."""
    h = Harness(router=PrefixRouter(ROUTES))
    _, inst = relaying(h, GET + SECRET)
    sent = b"".join(payload(valid(p.frame)) for p in inst.then)
    assert sent == one_request(GET + SECRET) and sent.index(CLOSE) < sent.index(b"/secret")


def test_without_reject_rules_nothing_changes():
    h = Harness()
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    eff = h.server(h.sframe(syn, "SA", 5, h.cisn + 1))
    c2s, s2c = of(eff, InstallFlows)[0].flows
    assert c2s.seq_delta == 0 and s2c.ack_delta == 0
    assert payload(valid(of(eff, InstallFlows)[0].then[0].frame)) == GET


def test_rejected_first_request_is_403(h):
    h = Harness(router=PrefixRouter(ROUTES))
    h.handshake()
    eff = h.send(SECRET)
    assert b"403 Forbidden" in b"".join(payload(p) for _, p in pkts(eff))
