"""Client handshake (SYN cookies), request buffering and the server handshake."""

from scapy.layers.inet import IP, TCP

from p4cs.csproc import Config, InstallFlows, PacketOut, Route
from p4cs.csproc.cookies import SynCookies
from p4cs.csproc.packet import ip_int

from cs_harness import (CLI_MAC, CLIENT, CPORT, S1, S1_MAC, SECRET, SNAT, SW_C, SW_S, VIP,
                        Harness, of, opts, payload, pkts)

GET = b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\nAccept: */*\r\n\r\n"


def test_syn_answered_with_valid_cookie_mss_and_wscale(h):
    eff = h.syn(mss=1400, extra=[("SAckOK", b""), ("WScale", 7),
                                 ("Timestamp", (1, 0))])
    assert len(eff) == 1
    (port, p), = pkts(eff)
    assert port == 1 and p.src == SW_C and p.dst == CLI_MAC
    assert (p[IP].src, p[IP].dst, p[TCP].sport, p[TCP].dport) == (VIP, CLIENT, 80, CPORT)
    assert p[TCP].flags == "SA" and p[TCP].ack == h.cisn + 1
    # no SACK, no timestamps; window scaling because the client offered it
    assert opts(p) == {"MSS": 1460, "NOP": None, "WScale": 7}
    mss = SynCookies(SECRET).check(ip_int(CLIENT), ip_int(VIP), CPORT, 80, h.cisn,
                                   p[TCP].seq, h.now)
    assert mss == 1400
    assert h.eng.stats.syncookies_sent == 1 and not h.eng.conns_c   # stateless


def test_retransmitted_syn_gets_same_cookie(h):
    a = pkts(h.syn())[0][1]
    h.now += 3
    b = pkts(h.syn())[0][1]
    assert a[TCP].seq == b[TCP].seq
    assert not h.eng.conns_c


def test_cookie_rejects_forged_and_stale_acks(h):
    p = h.handshake()
    # wrong ISN guess: dropped silently, no state
    eff = h.client(h.cframe("A", ack=(h.sisn + 2) & 0xFFFFFFFF))
    assert not pkts(eff) and [e.level for e in eff] == ["debug"]
    # segment that is not the first one (seq != cisn+1): cannot validate
    assert pkts(h.client(h.cframe("PA", data=b"x", rel=10))) == []
    assert h.eng.stats.syncookies_invalid == 2 and not h.eng.conns_c
    # valid cookie, but much too late
    h.now += 64 * 4
    assert pkts(h.client(h.cframe("A"))) == []
    assert h.eng.stats.syncookies_invalid == 3 and not h.eng.conns_c
    # and in time it validates
    h.now -= 64 * 4
    h.client(h.cframe("A"))
    assert p is not None and len(h.eng.conns_c) == 1


def test_no_mss_option_means_536():
    h = Harness()
    h.handshake(mss=None)
    syn = h.to_server_syn(h.send(GET))
    assert opts(syn) == {"MSS": 536}


def test_ack_then_get_opens_server_with_client_isn_transparent(h):
    h.handshake(mss=1452)
    assert h.client(h.cframe("A")) == []          # pure ACK: state, nothing to say
    assert h.eng.stats.accepted == 1
    eff = h.send(GET)
    syn = h.to_server_syn(eff)
    port = [e.port for e in of(eff, PacketOut)][0]
    assert port == 2 and syn.src == SW_S and syn.dst == S1_MAC
    assert (syn[IP].src, syn[IP].dst) == (CLIENT, S1)
    assert (syn[TCP].sport, syn[TCP].dport) == (CPORT, 8080)
    assert syn[TCP].seq == h.cisn and syn[TCP].window == 64240
    assert opts(syn) == {"MSS": 1452}             # client's MSS relayed, nothing else
    # The decided request is not acknowledged by the switch: the server will.
    assert not [p for _, p in pkts(eff) if p[IP].dst == CLIENT]


def test_snat_mode_uses_pool_address_and_port():
    h = Harness(mode="snat")
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    assert syn[IP].src == SNAT and syn[TCP].sport == 20000
    assert syn[TCP].seq == h.cisn
    h2 = h.eng
    # a second client gets the next port
    h.cport, h.cisn, h.sisn = CPORT + 1, 5000, None
    h.handshake()
    syn2 = h.to_server_syn(h.send(GET))
    assert syn2[TCP].sport == 20001 and syn2[IP].dst != syn[IP].dst   # rr: other server
    assert len(h2.conns_s) == 2


def test_server_synack_installs_both_flows_transparent(h):
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    s_isn = 777
    eff = h.server(h.sframe(syn, "SA", s_isn, h.cisn + 1, mss=1400))
    inst, = of(eff, InstallFlows)
    c2s, s2c = inst.flows
    M = 2**32
    assert c2s.key == (ip_int(CLIENT), ip_int(VIP), 6, CPORT, 80)
    assert (c2s.sip, c2s.dip, c2s.sport, c2s.dport) == (ip_int(CLIENT), ip_int(S1), CPORT,
                                                        8080)
    assert c2s.port == 2 and c2s.dmac == bytes.fromhex("bb0000000001")
    assert c2s.smac == bytes.fromhex("020000000002")
    assert c2s.seq_delta == 0 and c2s.ack_delta == (s_isn - h.sisn) % M
    assert s2c.key == (ip_int(S1), ip_int(CLIENT), 6, 8080, CPORT)
    assert (s2c.sip, s2c.dip, s2c.sport, s2c.dport) == (ip_int(VIP), ip_int(CLIENT), 80,
                                                        CPORT)
    assert s2c.port == 1 and s2c.dmac == bytes.fromhex("aa0000000001")
    assert s2c.seq_delta == (h.sisn - s_isn) % M and s2c.ack_delta == 0
    assert c2s.conn_id == s2c.conn_id and c2s.idle_timeout_s == 300.0
    # then: the buffered request, completing the server's handshake
    (port, d), = [(e.port, e) for e in inst.then]
    from cs_harness import valid
    p = valid(d.frame)
    assert port == 2 and p[TCP].flags == "PA"
    assert p[TCP].seq == h.cisn + 1 and p[TCP].ack == s_isn + 1
    assert payload(p) == GET
    assert h.eng.stats.spliced == 1 and h.eng.stats.half_bound == 0


def test_snat_flows():
    h = Harness(mode="snat")
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    eff = h.server(h.sframe(syn, "SA", 5, h.cisn + 1))
    c2s, s2c = of(eff, InstallFlows)[0].flows
    assert (c2s.sip, c2s.sport) == (ip_int(SNAT), 20000)
    assert s2c.key == (ip_int(S1), ip_int(SNAT), 6, 8080, 20000)
    assert (s2c.dip, s2c.dport, s2c.sip, s2c.sport) == (ip_int(CLIENT), CPORT, ip_int(VIP),
                                                        80)
    # SNAT replies may also arrive as "to a switch-local address" (reason 3)
    h2 = Harness(mode="snat")
    h2.handshake()
    syn = h2.to_server_syn(h2.send(GET))
    assert of(h2.server(h2.sframe(syn, "SA", 5, h2.cisn + 1), reason=3), InstallFlows)


def test_large_request_relayed_in_server_mss_segments():
    h = Harness(config=Config(max_header_bytes=8192))
    req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    h.handshake()
    h.send(req[:1400])
    h.send(req[1400:2800], rel=1400)
    syn = h.to_server_syn(h.send(req[2800:], rel=2800))
    eff = h.server(h.sframe(syn, "SA", 9, h.cisn + 1, mss=1000))
    inst, = of(eff, InstallFlows)
    from cs_harness import valid
    segs = [valid(e.frame) for e in inst.then]
    assert [len(payload(p)) for p in segs] == [1000, 1000, 1000, len(req) - 3000]
    assert b"".join(payload(p) for p in segs) == req
    assert [p[TCP].seq - h.cisn - 1 for p in segs] == [0, 1000, 2000, 3000]
    assert [str(p[TCP].flags) for p in segs] == ["A", "A", "A", "PA"]


def test_routing_by_prefix_picks_group():
    from p4cs.csproc import Server, ServerGroup
    img = ServerGroup("img", [Server("i1", "10.0.1.2", 8081)])
    web = ServerGroup("web", [Server("s1", S1, 8080)])
    h = Harness(routes=[Route("images", "img", "/img/"), Route("rest", "web", "/")],
                groups=[web, img])
    h.handshake()
    syn = h.to_server_syn(h.send(b"GET /img/a.gif HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (syn[IP].dst, syn[TCP].dport) == ("10.0.1.2", 8081)


def _effects(h, batch):
    out = []
    for frame, port, reason in batch:
        out += h.client(frame, reason, port)
    return out


def test_a_request_in_the_same_batch_supersedes_the_handshake_ack():
    """The client's ACK and its request read together: the ACK is not handled, and the
    request opens the connection as it would have after it (the same server SYN, the same
    state); a pure ACK with data after it in another batch, or of another 4-tuple, stays."""
    a, b = Harness(), Harness()
    for h in (a, b):
        h.handshake(mss=1400)
    other = a.cframe("A", ack=a.sisn + 5)                         # no data follows it
    batch = [(a.cframe("A"), 1, 1), (other, 1, 1), (a.cframe("PA", data=GET), 1, 1)]
    kept = a.eng.superseded(batch)
    assert kept == batch[1:] and a.eng.stats.acks_superseded == 1
    got = _effects(a, kept)
    want = _effects(b, [(b.cframe("A"), 1, 1), (b.cframe("PA", data=GET), 1, 1)])
    assert [bytes(p) for _, p in pkts(got)] == [bytes(p) for _, p in pkts(want)]
    assert a.eng.stats.accepted == b.eng.stats.accepted == 1
    (ca,), (cb,) = a.eng.conns_c.values(), b.eng.conns_c.values()
    assert (ca.state, ca.cl.mss, ca.sl.our_isn) == (cb.state, cb.cl.mss, cb.sl.our_isn)
    # the connection lives now: a pure ACK of it is always handled
    live = [(a.cframe("A", rel=len(GET)), 1, 1), (a.cframe("PA", data=b"x", rel=len(GET)), 1, 1)]
    assert a.eng.superseded(live) == live and a.eng.stats.acks_superseded == 1


def test_a_request_supersedes_the_cookie_ack_on_a_tombstone():
    """The ACK of a new cookie handshake on the 4-tuple of a closed connection (its
    tombstone): the request read with it reincarnates the 4-tuple on its own."""
    from test_engine_teardown import spliced     # noqa: PLC0415 - the teardown tests' helper
    h, syn, _inst = spliced(config=Config(time_wait=2.0))
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4)
    h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4)
    cisn = (h.cisn + 100000) & 0xFFFFFFFF
    h.sisn = h.eng.cookies.make(ip_int(CLIENT), ip_int(VIP), h.cport, 80, cisn, 1460, h.now,
                                None)
    h.cisn = cisn
    batch = [(h.cframe("A"), 1, 1), (h.cframe("PA", data=GET), 1, 1)]
    kept = h.eng.superseded(batch)
    assert kept == batch[1:]
    eff = _effects(h, kept)
    assert h.eng.stats.reincarnations == 1 and h.eng.stats.accepted == 2
    assert h.to_server_syn(eff)[TCP].seq == cisn
