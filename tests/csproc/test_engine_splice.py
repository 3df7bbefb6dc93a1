"""After the server handshake: the flows are a correct splice of the two legs,
including sequence wrap-around; packets racing the install; two-phase relay."""

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from p4cs.csproc import Config, InstallFlows
from p4cs.csproc.packet import apply_splice

from cs_harness import (CLIENT, CPORT, S1, VIP, Harness, of, payload, pkts, valid)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
M = 2**32


def spliced(h, s_isn, mode="transparent", req=GET):
    h.handshake()
    syn = h.to_server_syn(h.send(req))
    eff = h.server(h.sframe(syn, "SA", s_isn, (h.cisn + 1) % M))
    inst, = of(eff, InstallFlows)
    return syn, inst


@settings(max_examples=40, deadline=None)
@given(cisn=st.sampled_from([0, 1, 1000, M - 1, M - 2, M - 30, 2**31 - 1, 2**31]),
       s_isn=st.sampled_from([0, 5, M - 1, M - 10, 2**31, 123456789]),
       resp=st.integers(0, 60), mode=st.sampled_from(["transparent", "snat"]))
def test_flows_are_a_valid_continuation(cisn, s_isn, resp, mode):
    h = Harness(mode=mode, cisn=cisn)
    syn, inst = spliced(h, s_isn, mode)
    c2s, s2c = inst.flows
    # the server answers `resp` bytes; the client acknowledges them and sends more
    body = bytes(range(resp))
    srv = h.sframe(syn, "PA", (s_isn + 1) % M, (cisn + 1 + len(GET)) % M, body)
    to_client = valid(apply_splice(srv, s2c))
    assert (to_client[IP].src, to_client[IP].dst) == (VIP, CLIENT)
    assert (to_client[TCP].sport, to_client[TCP].dport) == (80, CPORT)
    # continues the client's view of the switch's stream (switch ISN h.sisn)
    assert to_client[TCP].seq == (h.sisn + 1) % M
    assert to_client[TCP].ack == (cisn + 1 + len(GET)) % M
    assert payload(to_client) == body
    cli = h.cframe("PA", data=b"more", rel=len(GET), ack=(h.sisn + 1 + resp) % M)
    to_server = valid(apply_splice(cli, c2s))
    assert to_server[IP].dst == S1 and to_server[TCP].dport == 8080
    assert (to_server[IP].src, to_server[TCP].sport) == (syn[IP].src, syn[TCP].sport)
    # continues the server's view: client ISN unchanged, acks in the server's space
    assert to_server[TCP].seq == (cisn + 1 + len(GET)) % M
    assert to_server[TCP].ack == (s_isn + 1 + resp) % M
    # and the first relayed segment is exactly what the server expects next
    first = valid(inst.then[0].frame)
    assert first[TCP].seq == (cisn + 1) % M and first[TCP].ack == (s_isn + 1) % M


def test_client_segment_between_decision_and_install_is_relayed_once(h):
    h.handshake()
    head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    syn = h.to_server_syn(h.send(head))               # decided on headers
    # body arrives while the switch waits for the server: buffered, not acked
    eff = h.send(b"01234", rel=len(head))
    assert pkts(eff) == []
    assert pkts(h.send(b"01234", rel=len(head))) == []   # client retransmission: dropped
    eff = h.server(h.sframe(syn, "SA", 50, h.cisn + 1))
    inst, = of(eff, InstallFlows)
    data = b"".join(payload(valid(p.frame)) for p in inst.then)
    assert data == head + b"01234"                    # each byte exactly once
    # after the flows were emitted, before they are in: software splice, in order
    eff = h.send(b"56789", rel=len(head) + 5)
    (port, p), = pkts(eff)
    assert port == 2 and p[IP].dst == S1 and payload(p) == b"56789"
    assert p[TCP].seq == h.cisn + 1 + len(head) + 5 and p[TCP].ack == 51
    assert h.eng.stats.sw_spliced == 1
    # a server packet that misses (s2c flow not in yet) is spliced too
    (port, p), = pkts(h.server(h.sframe(syn, "A", 51, h.cisn + 1 + len(head) + 10)))
    assert port == 1 and p[IP].src == VIP and p[TCP].seq == h.sisn + 1


def test_client_fin_with_request_is_relayed():
    h = Harness()
    h.handshake()
    req = b"GET / HTTP/1.0\r\n\r\n"
    syn = h.to_server_syn(h.send(req, flags="FPA"))
    inst, = of(h.server(h.sframe(syn, "SA", 1, h.cisn + 1)), InstallFlows)
    p = valid(inst.then[-1].frame)
    assert str(p[TCP].flags) == "FPA" and payload(p) == req


def test_owned_bytes_are_relayed_reliably_before_return_flow():
    """The switch acknowledged the first part of the request itself; the client will
    never resend it, so the server->client flow waits for the server's ACK."""
    h = Harness()
    h.handshake()
    a, b = b"GET / HTTP/1.1\r\nHo", b"st: a\r\n\r\n"
    eff = h.send(a)
    (port, ack), = pkts(eff)
    assert ack[TCP].ack == h.cisn + 1 + len(a)          # acked: now the switch's
    syn = h.to_server_syn(h.send(b, rel=len(a)))
    eff = h.server(h.sframe(syn, "SA", 100, h.cisn + 1))
    inst, = of(eff, InstallFlows)
    assert [f.direction for f in inst.flows] == ["c2s"]
    assert b"".join(payload(valid(p.frame)) for p in inst.then) == a + b
    # the relay is lost: retransmitted on timeout
    eff = h.tick(0.25)
    assert b"".join(payload(p) for _, p in pkts(eff)) == a + b
    # server acks only the first part (dup ack): resend from the hole
    eff = h.server(h.sframe(syn, "A", 101, h.cisn + 1 + 5))
    (port, p), = pkts(eff)
    assert port == 2 and p[TCP].seq == h.cisn + 1 + 5 and payload(p) == (a + b)[5:]
    # server acks everything with its response: forwarded, then the return flow
    eff = h.server(h.sframe(syn, "PA", 101, h.cisn + 1 + len(a + b), b"HTTP/1.1 200"))
    (port, p), = pkts(eff)
    assert port == 1 and p[TCP].seq == h.sisn + 1 and payload(p) == b"HTTP/1.1 200"
    inst, = of(eff, InstallFlows)
    assert [f.direction for f in inst.flows] == ["s2c"]
    assert h.tick(5) == []                               # no more retransmissions
    assert h.eng.stats.spliced_active == 1


def test_relay_gives_up_and_resets_both():
    h = Harness(config=Config(relay_retries=2))
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    syn = h.to_server_syn(h.send(b"Host: a\r\n\r\n", rel=16))
    h.server(h.sframe(syn, "SA", 100, h.cisn + 1))
    h.tick(0.2)
    h.tick(0.4)
    eff = h.tick(0.8)
    rst = {port: p for port, p in pkts(eff)}
    assert rst[1][TCP].flags == "R" and rst[1][TCP].seq == h.sisn + 1
    assert rst[2][TCP].flags == "R" and rst[2][TCP].seq == h.cisn + 1 + 16 + 11
    assert h.eng.stats.server_timeouts == 1 and not h.eng.by_id


def test_server_synack_retransmission_in_relay_phase_resends_request():
    h = Harness()
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    syn = h.to_server_syn(h.send(b"Host: a\r\n\r\n", rel=16))
    h.server(h.sframe(syn, "SA", 100, h.cisn + 1))
    eff = h.server(h.sframe(syn, "SA", 100, h.cisn + 1))
    (port, p), = pkts(eff)
    assert port == 2 and p[TCP].seq == h.cisn + 1 and p[TCP].ack == 101
    assert payload(p) == b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
