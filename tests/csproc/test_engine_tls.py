"""TLS services: the engine frames the ClientHello, the rules route it on tls.sni /
tls.alpn, the bytes go to the server unchanged and the connection is spliced; TLS session
persistence learns from the server's ServerHello which session it holds.  The handshakes
are real (Python's ssl in memory: tls_memory.py)."""

from __future__ import annotations

import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from p4cs.csproc import Config, InstallFlows, RuleSetDecider, Server, ServerGroup
from p4cs.csproc import tls
from p4cs.csproc.packet import ip_str
from p4cs.csproc.policy import Persistence

from cs_harness import S1, S2, Harness, of, payload, pkts, valid
from tls_memory import Handshake, client_context, make_cert, server_context

rules = pytest.importorskip("p4cs.rules")
store_mod = pytest.importorskip("p4cs.rules.store")

V12, V13 = ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3
M = 2**32

RULES = '''
deny: if (tls.sni == "evil.example") { reject; }
a:    if (tls.sni == "a.example") { routeTo(ga); }
h2b:  if (tls.alpn == "h2") { routeTo(gb); }
b:    if (tls.sni == "b.example") { routeTo(gb); }
'''


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"), "a.example")


def harness(persistence=None, config=None, rule_text=RULES, **kw):
    s1, s2 = Server("s1", S1, 443), Server("s2", S2, 443)
    groups = [ServerGroup("web", [s1, s2], "rr"), ServerGroup("ga", [s1]),
              ServerGroup("gb", [s2])]
    store = store_mod.RuleStore(rules.parse_rules(rule_text))
    return Harness(router=RuleSetDecider(store), groups=groups, servers=[s1, s2],
                   protocol="tls", persistence=persistence, config=config, **kw)


def client_hello(cert, sni="a.example", version=V13, alpn=None) -> bytes:
    return Handshake(client_context(version), server_context(*cert, version), sni,
                     alpn=alpn).client_hello


def to_server(eff) -> bytes:
    return b"".join(payload(p) for port, p in pkts(eff) if port == 2)


def connect(h, hello: bytes, s_isn=7000, pieces=1):
    """Handshake, the ClientHello (in ``pieces`` segments), the server's SYN-ACK: (the
    switch's SYN, the InstallFlows it answers with)."""
    h.handshake()
    step = -(-len(hello) // pieces)
    for off in range(0, len(hello), step):
        eff = h.send(hello[off:off + step], rel=off)
    syn = h.to_server_syn(eff)
    eff = h.server(h.sframe(syn, "SA", s_isn, (h.cisn + 1) % M))
    inst, = of(eff, InstallFlows)
    return syn, inst


def relayed(inst) -> bytes:
    return b"".join(payload(valid(p.frame)) for p in inst.then)


@pytest.mark.parametrize("sni,alpn,dst", [("a.example", None, S1), ("b.example", None, S2),
                                          ("c.example", ["h2"], S2)])
def test_sni_and_alpn_route_and_the_hello_goes_unchanged(cert, sni, alpn, dst):
    h = harness()
    hello = client_hello(cert, sni, alpn=alpn)
    syn, inst = connect(h, hello)
    assert syn[IP].dst == dst and syn[TCP].dport == 443
    assert len(inst.flows) == 2                  # the client's segment was not acknowledged
    assert relayed(inst) == hello
    assert h.eng.stats.spliced == 1 and h.eng.stats.bad_hellos == 0


@pytest.mark.parametrize("version", [V12, V13])
def test_hello_in_pieces_is_buffered_then_relayed_whole(cert, version):
    h = harness()
    hello = client_hello(cert, "b.example", version)
    h.handshake()
    eff = h.send(hello[:3])                      # not even a record header
    assert [p[TCP].ack for _, p in pkts(eff)] == [(h.cisn + 1 + 3) % M]
    assert not h.eng.stats.decided
    eff = h.send(hello[3:40], rel=3)
    assert not h.eng.stats.decided
    syn = h.to_server_syn(h.send(hello[40:], rel=40))
    assert syn[IP].dst == S2
    eff = h.server(h.sframe(syn, "SA", 9, (h.cisn + 1) % M))
    (c2s,), = [i.flows for i in of(eff, InstallFlows)]   # the switch owns bytes: RELAYING
    assert relayed(of(eff, InstallFlows)[0]) == hello


def test_hello_over_two_records():
    from p4cs.rules.synth import build_client_hello
    hs = build_client_hello("b.example", None, None)[5:]
    two = (b"\x16\x03\x01" + (30).to_bytes(2, "big") + hs[:30] + b"\x16\x03\x01"
           + (len(hs) - 30).to_bytes(2, "big") + hs[30:])
    h = harness()
    syn, inst = connect(h, two)
    assert syn[IP].dst == S2 and relayed(inst) == two


@pytest.mark.parametrize("first", [
    b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",              # HTTP on a TLS port
    b"\x15\x03\x03\x00\x02\x02\x28",                            # an alert record
    b"\x16\x03\x01\x00\x00",                                    # an empty record
    b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",                # a ServerHello
    b"\x16\x03\x01\x00\x27\x01\x00\x00\x23" + b"\x03\x03" + bytes(32) + b"\x21",  # bad sid
])
def test_not_a_client_hello_is_reset_without_an_http_answer(first):
    h = harness()
    h.handshake()
    eff = h.send(first)
    (port, p), = pkts(eff)
    assert port == 1 and p[TCP].flags == "R" and not payload(p)
    assert p[TCP].seq == (h.sisn + 1) % M
    assert h.eng.stats.bad_hellos == 1 and not h.eng.by_id


def test_hello_above_max_header_bytes_is_reset(cert):
    h = harness(config=Config(max_header_bytes=128))
    h.handshake()
    hello = client_hello(cert)
    eff = h.send(hello[:100])
    (_, p), = pkts(eff)
    assert p[TCP].flags == "R"
    assert h.eng.stats.limit_header == 1 and not h.eng.by_id


def test_slow_hello_times_out_with_a_reset(cert):
    h = harness()
    h.handshake()
    h.send(client_hello(cert)[:20])
    eff = h.tick(h.cfg.request_timeout + 0.1)
    (_, p), = pkts(eff)
    assert p[TCP].flags == "R" and not payload(p)
    assert h.eng.stats.limit_timeout == 1 and not h.eng.by_id


def test_client_fin_before_a_whole_hello_is_reset(cert):
    h = harness()
    h.handshake()
    eff = h.send(client_hello(cert)[:20], flags="FPA")
    assert [p[TCP].flags for _, p in pkts(eff)] == ["R"]


@pytest.mark.parametrize("rule_text,alert", [(RULES, 49), ("x: if (tls.sni == \"x\") { routeTo(nogroup); }", 80)])
def test_reject_and_no_server_answer_a_fatal_alert(cert, rule_text, alert):
    h = harness(rule_text=rule_text)
    h.svc.default_group = None
    h.handshake()
    eff = h.send(client_hello(cert, "evil.example"))
    (_, p), = pkts(eff)
    assert payload(p) == bytes([21, 3, 3, 0, 2, 2, alert]) and "F" in p[TCP].flags


def test_reject_rules_do_not_rewrite_the_hello(cert):
    """One-request relaying (Connection: close) is for HTTP: TLS bytes go as they came."""
    h = harness()
    assert h.svc.decider.rejects
    hello = client_hello(cert, "a.example")
    _, inst = connect(h, hello)
    assert relayed(inst) == hello and len(inst.flows) == 2


def test_tls_fields_only_on_tls_services():
    from p4cs.rules.ruleset import parse_rules, protocol_problems
    rs = parse_rules(RULES, "tls.rules")
    assert protocol_problems(rs, "tls") == []
    probs = protocol_problems(rs, "http")
    assert probs and probs[0].startswith("tls.rules:2: error: rule deny uses tls.sni")


# ------------------------------------------------------------------ session persistence

TLS_SESSION = Persistence(300, kind="tls-session")


def serve(h, syn, inst, flight: bytes, s_isn=7000):
    """The server acknowledges the ClientHello and sends its first flight: the effects."""
    hello_end = (h.cisn + 1 + len(relayed(inst))) % M
    out = []
    mss = 1400
    for off in range(0, len(flight), mss):
        out += h.server(h.sframe(syn, "PA", (s_isn + 1 + off) % M, hello_end,
                                 flight[off:off + mss]))
    return out


def one(h, cctx, sctx, session=None, sni="a.example"):
    """A whole connection through the engine with a real handshake: (server address, the
    client's session, whether the server resumed)."""
    hs = Handshake(cctx, sctx, sni, session=session)
    h.cport += 1
    syn, inst = connect(h, hs.client_hello)
    assert inst.flows == [inst.flows[0]] and inst.flows[0].direction == "c2s"
    eff = serve(h, syn, inst, hs.server_flight)
    # the flight reached the client through the software splice, then the return flow went in
    got = b"".join(payload(p) for port, p in pkts(eff) if port == 1)
    assert got == hs.server_flight
    s2c, = [f for i in of(eff, InstallFlows) for f in i.flows]
    assert s2c.direction == "s2c"
    assert h.eng.by_id[inst.flows[0].conn_id].state == "spliced"
    sess = hs.finish()
    return syn[IP].dst, sess, hs.resumed


@pytest.mark.parametrize("version,tickets,kind", [(V12, False, "id"), (V12, True, "ticket"),
                                                  (V13, True, "psk")])
def test_resumed_session_goes_to_the_server_that_holds_it(cert, version, tickets, kind):
    """rr alternates s1, s2; a resumed session keeps its server.  TLS 1.2 session ids are
    learned from the full handshake; tickets and TLS 1.3 PSKs on their first resumption
    (the server's ServerHello shows it accepted them)."""
    h = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    cctx, sctx = client_context(version), server_context(*cert, version, tickets)
    first, sess, resumed = one(h, cctx, sctx)
    assert not resumed
    learned = [t["client"].split(":")[0] for t in h.eng.templates(h.now)]
    assert learned == (["id"] if kind == "id" else [])
    # an unrelated client takes the next server in turn
    other, _, _ = one(h, cctx, sctx)
    assert other != first
    # The first resumption: the session id maps to its server; a ticket or PSK not yet
    # (the scheduler's turn, which the in-memory server shares its ticket key with).
    again, _, resumed = one(h, cctx, sctx, sess)
    assert resumed
    if kind == "id":
        assert again == first
    mine = [t for t in h.eng.templates(h.now) if t["client"].startswith(kind + ":")]
    if kind == "id":
        mine = [t for t in mine if t["client"] == "id:" + sess.id.hex()]
    (t,) = mine
    assert t["server"] == again + ":443"
    for _ in range(3):
        dst, _, resumed = one(h, cctx, sctx, sess)
        assert resumed and dst == again
    assert h.eng.stats.spliced == 6


def test_session_template_follows_a_failed_server_and_ends_with_its_timeout(cert):
    h = harness(Persistence(30, kind="tls-session"),
                rule_text="x: if (tls.sni == \"none\") { reject; }")
    cctx, sctx = client_context(V12), server_context(*cert, V12, False)
    first, sess, _ = one(h, cctx, sctx)
    (t,) = h.eng.templates(h.now)
    assert (t["client"], t["netmask"], t["server"], t["connections"]) == (
        "id:" + sess.id.hex(), "-", first + ":443", 1)
    # Its server goes down: the resumption goes to the other one, which knows nothing of
    # the session (a full handshake, with a new session id, learned for the new server).
    down = next(s for s in h.servers if ip_str(s.ip) == first)
    h.eng.reset_server(down, h.now)
    for g in h.eng.groups.values():
        if down in g.servers:
            g.set_up(down, False, h.now)
    other = Handshake(cctx, server_context(*cert, V12, False), "a.example", session=sess)
    h.cport += 1
    syn, inst = connect(h, other.client_hello)
    assert syn[IP].dst != first
    serve(h, syn, inst, other.server_flight)
    new_sid = tls.parse_hello(tls.hello_message(tls.handshake_bytes(other.server_flight))[1],
                              False).session_id
    assert new_sid != sess.id
    rows = {t["client"]: t["server"] for t in h.eng.templates(h.now)}
    assert rows["id:" + new_sid.hex()] == syn[IP].dst + ":443"
    # Templates outlive their last connection by the timeout.
    for c in list(h.eng.by_id.values()):
        if c.state == "spliced":
            h.cport = c.cl.port
            h.client(h.cframe("R", rel=len(other.client_hello)))
    h.tick(29.0)
    assert h.eng.templates(h.now)
    h.tick(2.0)
    assert h.eng.templates(h.now) == []


def test_server_alert_instead_of_server_hello_learns_nothing(cert):
    h = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    hello = client_hello(cert, version=V12)
    syn, inst = connect(h, hello)
    eff = serve(h, syn, inst, bytes([21, 3, 3, 0, 2, 2, 40]))
    s2c, = [f for i in of(eff, InstallFlows) for f in i.flows]
    assert s2c.direction == "s2c" and h.eng.templates(h.now) == []


def test_server_hello_out_of_order_is_read_when_the_gap_fills(cert):
    h = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    cctx, sctx = client_context(V12), server_context(*cert, V12, False)
    hs = Handshake(cctx, sctx, "a.example")
    syn, inst = connect(h, hs.client_hello)
    end = (h.cisn + 1 + len(hs.client_hello)) % M
    flight = hs.server_flight
    eff = h.server(h.sframe(syn, "PA", 7001 + 40, end, flight[40:200]))   # a gap first
    assert not [f for i in of(eff, InstallFlows) for f in i.flows]
    eff = h.server(h.sframe(syn, "PA", 7001, end, flight[:200]))          # the whole start
    assert [f.direction for i in of(eff, InstallFlows) for f in i.flows] == ["s2c"]
    (t,) = h.eng.templates(h.now)
    assert t["client"].startswith("id:")


def test_tls_persistence_needs_a_tls_service():
    with pytest.raises(ValueError, match="tls-session persistence needs protocol tls"):
        Harness(persistence=TLS_SESSION)
    with pytest.raises(ValueError, match="kind"):
        Persistence(10, kind="cookie")


def test_offer_keys_and_hello_parser_agree_with_the_rules_extractor(cert):
    from p4cs.rules.extract import parse_client_hello
    hs = Handshake(client_context(V12), server_context(*cert, V12), "A.Example.", alpn=["h2"])
    ch = parse_client_hello(hs.client_hello)
    assert ch["sni"] == "a.example" and ch["alpn"] == "h2"
    hello = tls.client_hello(hs.client_hello)
    assert tls.Offer(hello).keys == ([] if not hello.session_id
                                     else ["id:" + hello.session_id.hex()])
    for n in range(len(hs.client_hello)):
        fr = tls.HelloFramer(8192)
        fr.feed(hs.client_hello[:n])
        assert not fr.ready and fr.error is None


def test_owned_hello_waits_for_both_the_ack_and_the_server_hello(cert):
    """A ClientHello in two segments is the switch's (it acknowledged the first part): the
    return flow waits for the server's ACK of it and for its ServerHello."""
    h = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    cctx, sctx = client_context(V12), server_context(*cert, V12, False)
    hs = Handshake(cctx, sctx, "a.example")
    syn, inst = connect(h, hs.client_hello, pieces=2)
    end = (h.cisn + 1 + len(hs.client_hello)) % M
    eff = h.server(h.sframe(syn, "PA", 7001, end, hs.server_flight[:300]))
    assert [f.direction for i in of(eff, InstallFlows) for f in i.flows] == ["s2c"]
    assert h.eng.templates(h.now)[0]["client"] == "id:" + tls.parse_hello(
        tls.hello_message(tls.handshake_bytes(hs.server_flight))[1], False).session_id.hex()

    h2 = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    hs = Handshake(cctx, sctx, "a.example")
    syn, inst = connect(h2, hs.client_hello, pieces=2)
    end = (h2.cisn + 1 + len(hs.client_hello)) % M
    half = (h2.cisn + 1 + len(hs.client_hello) // 2 - 10) % M   # short of what it owns
    eff = h2.server(h2.sframe(syn, "PA", 7001, half, hs.server_flight[:300]))
    assert not of(eff, InstallFlows)           # learned, but the server lacks bytes
    eff = h2.server(h2.sframe(syn, "A", 7301, end))
    assert [f.direction for i in of(eff, InstallFlows) for f in i.flows] == ["s2c"]


def test_hello_retry_request_is_read_past(cert):
    """A TLS 1.3 server that asks for another key share answers with a HelloRetryRequest;
    the session is learned from the ServerHello after the client's second ClientHello."""
    cctx, sctx = client_context(V13), server_context(*cert, V13)
    sess = Handshake(cctx, sctx, "a.example").finish()
    sctx.set_ecdh_curve("secp384r1")            # the client's first key share is x25519
    hs = Handshake(cctx, sctx, "a.example", session=sess)
    hrr = hs.server_flight
    watch = tls.ServerHelloWatch(tls.Offer(tls.client_hello(hs.client_hello)))
    assert watch.feed(0, hrr) == (False, None)
    hs.cin.write(hrr)
    hs._step(hs.c)
    hs.sin.write(hs.cout.read())                # the second ClientHello
    hs._step(hs.s)
    done, key = watch.feed(len(hrr), hs.sout.read())
    assert done and key == tls.Offer(tls.client_hello(hs.client_hello)).keys[0]
    assert key.startswith("psk:")


def test_session_templates_taken_over_by_another_policy(cert):
    """What a primary exports (the HA store carries it), a new primary imports: a resumed
    session still goes to its server; a client-ip service takes no session rows."""
    a = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    cctx, sctx = client_context(V12), server_context(*cert, V12, False)
    a.eng.policy.groups["web"].scheduler.pick()       # rr: a's first connection goes to s2
    first, sess, _ = one(a, cctx, sctx)
    assert first == S2
    rows = a.eng.policy.export_templates(a.now)
    assert rows == [["www", "id:" + sess.id.hex(), "s2", 300]]
    b = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    assert b.eng.policy.import_templates(rows, b.now) == 1
    b.handshake()
    assert b.to_server_syn(b.send(Handshake(cctx, sctx, "a.example", session=sess)
                                  .client_hello))[IP].dst == S2     # b's rr would say s1
    c = harness(Persistence(300), rule_text="x: if (tls.sni == \"none\") { reject; }")
    assert c.eng.policy.import_templates(rows, c.now) == 0


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_hellos_never_raise(data):
    """Bit flips, cuts and random bytes in ClientHellos and ServerHellos: the framer, the
    parser, the offer and the watch answer (or refuse), and never raise."""
    hello, flight = _REAL
    src = data.draw(st.sampled_from([hello, flight]))
    b = bytearray(src[:data.draw(st.integers(0, len(src)))])
    for _ in range(data.draw(st.integers(0, 8))):
        if b:
            b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    raw = bytes(b) + data.draw(st.binary(max_size=40))
    fr = tls.HelloFramer(8192)
    fr.feed(raw[:7])
    fr.feed(raw[7:])
    ch = tls.client_hello(raw)
    if ch is not None:
        offer = tls.Offer(ch)
        tls.ServerHelloWatch(offer).feed(0, raw)
    tls.ServerHelloWatch(tls.Offer(tls.client_hello(hello))).feed(0, raw)


def _real_pair():
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        hs = Handshake(client_context(V12), server_context(*make_cert(Path(d), "a.example"),
                                                           V12, False), "a.example")
    return hs.client_hello, hs.server_flight


_REAL = _real_pair()


def test_server_ack_before_its_server_hello_reaches_the_client(cert):
    """While the switch waits for the ServerHello, the server's pure ACK of the ClientHello
    (which the switch did not acknowledge) is passed on to the client."""
    h = harness(TLS_SESSION, rule_text="x: if (tls.sni == \"none\") { reject; }")
    hs = Handshake(client_context(V12), server_context(*cert, V12, False), "a.example")
    syn, inst = connect(h, hs.client_hello)
    end = (h.cisn + 1 + len(hs.client_hello)) % M
    eff = h.server(h.sframe(syn, "A", 7001, end))
    (port, p), = pkts(eff)
    assert port == 1 and p[TCP].flags == "A" and p[TCP].ack == end
    assert p[TCP].seq == (h.sisn + 1) % M and not of(eff, InstallFlows)
    eff = serve(h, syn, inst, hs.server_flight)
    assert [f.direction for i in of(eff, InstallFlows) for f in i.flows] == ["s2c"]


def test_session_templates_are_bounded_per_service(cert):
    """At max_sessions templates a new session replaces the oldest idle one; when every
    template of the first ones is in use, it is not learned (counted, logged)."""
    h = harness(Persistence(300, kind="tls-session", max_sessions=2),
                rule_text="x: if (tls.sni == \"none\") { reject; }")
    cctx, sctx = client_context(V12), server_context(*cert, V12, False)
    sessions = []
    for _ in range(3):
        _, sess, _ = one(h, cctx, sctx)
        sessions.append("id:" + sess.id.hex())
    # the connections are all spliced: their two templates are in use, the third waits
    assert {t["client"] for t in h.eng.templates(h.now)} == set(sessions[:2])
    assert h.eng.stats.sessions_not_learned == 1
    # the connections end: their templates go idle, and new sessions replace the oldest
    for c in list(h.eng.by_id.values()):
        h.cport = c.cl.port
        h.client(h.cframe("R", rel=10_000))
    for _ in range(2):
        _, sess, _ = one(h, cctx, sctx)
        sessions.append("id:" + sess.id.hex())
    assert {t["client"] for t in h.eng.templates(h.now)} == set(sessions[-2:])
