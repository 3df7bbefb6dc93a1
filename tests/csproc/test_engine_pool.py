"""Pooled server connections (docs/csproc.md section 16): the switch opens idle
connections to the servers with its own ISN and splices later clients onto them."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from p4cs.csproc import Config, InstallFlows, Server, ServerPool, VirtualService
from p4cs.csproc.packet import apply_splice

from cs_harness import (CLIENT, S1, S1_MAC, SNAT, SW_S, VIP, Harness, ip_int, of, opts,
                        payload, pkts, valid)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
M = 2**32
WS = [("WScale", 7)]


def pool_harness(cisn=1000, idle=1, max_age=30.0, config=None):
    return Harness(mode="snat", cisn=cisn, servers=[Server("s1", S1, 8080)],
                   server_pool=ServerPool(idle, max_age), config=config)


def syns(eff):
    return [p for _, p in pkts(eff) if p[TCP].flags == "S"]


def answer(syn, flags, seq, ack=None, ws=7, mss=1460, data=b""):
    """The server's packet answering the switch's SYN ``syn`` (SYN-ACK: options)."""
    ack = (syn[TCP].seq + 1) % M if ack is None else ack
    o = [("MSS", mss)] + ([("WScale", ws)] if ws is not None else []) if "S" in flags else []
    p = Ether(src=S1_MAC, dst=SW_S) / IP(src=S1, dst=SNAT) / TCP(
        sport=8080, dport=syn[TCP].sport, seq=seq, ack=ack, flags=flags, window=29200,
        options=o)
    return bytes(p / Raw(data) if data else p)


def new_client(h, cport, cisn, mss=1460, ws=True):
    h.cport, h.cisn, h.sisn = cport, cisn, None
    eff = h.syn(mss, WS if ws else ())
    (_, p), = pkts(eff)
    h.sisn = p[TCP].seq
    return p


def open_pool(h, s_isn=5000, ws=True):
    """A first client: a fresh connection to s1 (established and closed) plus one pooled
    connection, answered; returns the pooled connection's SYN."""
    new_client(h, 40000, h.cisn, ws=ws)
    fresh, pooled = syns(h.send(GET))
    assert fresh[TCP].seq == h.cisn and pooled[TCP].seq != h.cisn
    assert fresh[TCP].sport != pooled[TCP].sport and pooled[IP].src == SNAT
    o = opts(pooled)
    assert o["MSS"] == 1460 and o.get("WScale") == (7 if ws else None)
    eff = h.server(answer(pooled, "SA", s_isn, ws=7 if ws else None))
    (_, ack), = pkts(eff)
    assert ack[TCP].flags == "A" and ack[TCP].seq == (pooled[TCP].seq + 1) % M
    assert ack[TCP].ack == (s_isn + 1) % M and ack[TCP].sport == pooled[TCP].sport
    st_ = h.eng.stats
    assert st_.pooled_opened == 1 and st_.pooled_idle == 1
    return pooled


@settings(max_examples=40, deadline=None)
@given(cisn=st.sampled_from([0, 1, 1000, M - 1, M - 2, M - 30, 2**31 - 1, 2**31]),
       s_isn=st.sampled_from([0, 5, M - 1, M - 10, 2**31, 123456789]),
       resp=st.integers(0, 60))
def test_client_spliced_onto_pooled_connection(cisn, s_isn, resp):
    h = pool_harness()
    pooled = open_pool(h, s_isn)
    P = pooled[TCP].seq
    new_client(h, 40001, cisn)
    eff = h.send(GET)
    inst, = of(eff, InstallFlows)                     # no SYN-ACK to wait for
    refill, = syns(eff)                               # the pool is filled again
    assert refill[TCP].sport != pooled[TCP].sport
    c2s, s2c = inst.flows
    assert (c2s.sip, c2s.dip, c2s.sport, c2s.dport) == (ip_int(SNAT), ip_int(S1),
                                                        pooled[TCP].sport, 8080)
    assert s2c.key.sport == 8080 and s2c.key.dport == pooled[TCP].sport
    assert c2s.seq_delta == (P - cisn) % M and s2c.ack_delta == (cisn - P) % M
    # the request goes on the pooled connection, in the server's sequence space
    first = valid(inst.then[0].frame)
    assert first[TCP].sport == pooled[TCP].sport and payload(first) == GET
    assert first[TCP].seq == (P + 1) % M and first[TCP].ack == (s_isn + 1) % M
    assert h.eng.stats.pooled_used == 1 and h.eng.stats.pooled_idle == 0
    # later packets of both sides, through the flows
    body = bytes(range(resp))
    srv = answer(pooled, "PA", (s_isn + 1) % M, (P + 1 + len(GET)) % M, data=body)
    to_client = valid(apply_splice(srv, s2c))
    assert (to_client[IP].src, to_client[IP].dst) == (VIP, CLIENT)
    assert to_client[TCP].seq == (h.sisn + 1) % M
    assert to_client[TCP].ack == (cisn + 1 + len(GET)) % M and payload(to_client) == body
    cli = h.cframe("PA", data=b"more", rel=len(GET), ack=(h.sisn + 1 + resp) % M)
    to_server = valid(apply_splice(cli, c2s))
    assert (to_server[IP].src, to_server[TCP].sport) == (SNAT, pooled[TCP].sport)
    assert to_server[TCP].seq == (P + 1 + len(GET)) % M
    assert to_server[TCP].ack == (s_isn + 1 + resp) % M


def test_incompatible_clients_get_a_fresh_connection_and_the_pool_follows():
    """A client whose options fit no pooled connection gets a new one, as without a pool;
    the full pool gives up its oldest idle connection for one with that client's options."""
    h = pool_harness(idle=1)
    old = open_pool(h)
    # a smaller MSS than the pooled connection announced
    new_client(h, 40001, 8000, mss=536)
    eff = h.send(GET)
    assert not of(eff, InstallFlows)
    rst, = [p for _, p in pkts(eff) if p[TCP].flags == "R"]
    assert rst[TCP].sport == old[TCP].sport and rst[TCP].seq == (old[TCP].seq + 1) % M
    fresh, pooled = syns(eff)
    assert fresh[TCP].seq == 8000 and opts(fresh)["MSS"] == 536 and opts(pooled)["MSS"] == 536
    assert h.eng.stats.pooled_closed == 1 and h.eng.stats.pooled_idle == 0
    h.server(answer(pooled, "SA", 3))
    # no window scaling: the pooled connection scales, so it does not fit either
    new_client(h, 40002, 9000, ws=False)
    eff = h.send(GET)
    fresh, unscaled = syns(eff)
    assert fresh[TCP].seq == 9000 and "WScale" not in opts(unscaled)
    h.server(answer(unscaled, "SA", 4, ws=None))
    # a client like the last one takes the pooled connection
    new_client(h, 40003, 10000, ws=False)
    inst, = of(h.send(GET), InstallFlows)
    assert valid(inst.then[0].frame)[TCP].sport == unscaled[TCP].sport
    assert h.eng.stats.pooled_used == 1 and h.eng.stats.pooled_closed == 2


def test_pool_fills_to_its_size_and_refills_on_use():
    h = pool_harness(idle=3)
    new_client(h, 40000, 1000)
    s = syns(h.send(GET))
    assert len(s) == 4                                 # the client's, and 3 pooled
    for i, p in enumerate(s[1:]):
        h.server(answer(p, "SA", 100 * i))
    assert h.eng.stats.pooled_idle == 3
    new_client(h, 40001, 2000)
    eff = h.send(GET)
    assert of(eff, InstallFlows) and len(syns(eff)) == 1
    assert h.eng.pools.sizes()[h.servers[0]] == {"idle": 2, "opening": 1}


def test_server_reset_of_idle_pooled_connection():
    h = pool_harness()
    pooled = open_pool(h, s_isn=77)
    free = len(h.eng.policy._snat[h.svc.snat_ip])
    # an RST outside the window changes nothing
    assert h.server(answer(pooled, "R", 5000, 0)) == []
    assert h.eng.stats.pooled_idle == 1
    assert h.server(answer(pooled, "R", 78, 0)) == []
    st_ = h.eng.stats
    assert st_.pooled_idle == 0 and st_.pooled_closed == 1
    assert len(h.eng.policy._snat[h.svc.snat_ip]) == free + 1
    # the next client gets a fresh connection (and a new pooled one)
    new_client(h, 40001, 5000)
    fresh, pooled2 = syns(h.send(GET))
    assert fresh[TCP].seq == 5000


def test_server_fin_on_idle_pooled_connection_is_reset():
    h = pool_harness()
    pooled = open_pool(h, s_isn=77)
    P = pooled[TCP].seq
    (_, rst), = pkts(h.server(answer(pooled, "FA", 78, (P + 1) % M)))
    assert rst[TCP].flags == "R" and rst[TCP].seq == (P + 1) % M
    assert h.eng.stats.pooled_idle == 0 and h.eng.stats.pooled_closed == 1


def test_max_age_closes_idle_pooled_connection():
    h = pool_harness(max_age=20.0)
    pooled = open_pool(h)
    P = pooled[TCP].seq
    assert h.eng.next_deadline() <= h.now + 20.0
    assert not [p for _, p in pkts(h.tick(19.0)) if p[TCP].sport == pooled[TCP].sport]
    (_, rst), = [(port, p) for port, p in pkts(h.tick(1.5))
                 if p[TCP].sport == pooled[TCP].sport]
    assert rst[TCP].flags == "R" and rst[TCP].seq == (P + 1) % M and rst[IP].dst == S1
    assert h.eng.stats.pooled_closed == 1 and not h.eng.pools.by_key


def test_unanswered_pooled_syn_is_retried_then_dropped():
    h = pool_harness()
    new_client(h, 40000, 1000)
    fresh, pooled = syns(h.send(GET))
    sport = pooled[TCP].sport
    again = [p for _, p in pkts(h.tick(1.0)) if p[TCP].sport == sport]
    assert len(again) == 1 and again[0][TCP].seq == pooled[TCP].seq
    assert [p for _, p in pkts(h.tick(2.0)) if p[TCP].sport == sport]
    h.tick(4.5)
    assert not h.eng.pools.by_key and h.eng.stats.pooled_opened == 0
    assert h.eng.stats.pooled_failed == 1
    # a late SYN-ACK of it is answered with an RST, as for any abandoned SYN
    (_, rst), = pkts(h.server(answer(pooled, "SA", 9)))
    assert rst[TCP].flags == "R"


def test_server_refusing_pooled_syn():
    h = pool_harness()
    new_client(h, 40000, 1000)
    fresh, pooled = syns(h.send(GET))
    assert h.server(answer(pooled, "RA", 0)) == []
    assert not h.eng.pools.by_key and h.eng.stats.pooled_failed == 1


def test_server_down_drops_its_pool():
    h = pool_harness()
    pooled = open_pool(h)
    out = h.eng.reset_server(h.servers[0], h.now)
    rst, = [p for p in (valid(e.frame) for e in out if hasattr(e, "frame"))
            if p[TCP].sport == pooled[TCP].sport]
    assert rst[TCP].flags == "R" and rst[IP].dst == S1
    assert not h.eng.pools.by_key and h.eng.stats.pooled_closed == 1
    h.check()


def test_two_phase_install_on_pooled_connection():
    """A request in two segments: the switch owns the first, so only c2s goes in, and
    the switch retransmits (in the pooled connection's sequence space) until the server
    acknowledges it."""
    h = pool_harness()
    pooled = open_pool(h, s_isn=M - 3)
    P = pooled[TCP].seq
    s_isn = M - 3
    new_client(h, 40001, M - 5)
    head = b"GET / HTTP/1.1\r\n"
    (_, ack), = pkts(h.send(head))
    assert ack[TCP].ack == (M - 5 + 1 + len(head)) % M
    eff = h.send(b"Host: a\r\n\r\n", rel=len(head))
    inst, = of(eff, InstallFlows)
    assert len(inst.flows) == 1 and inst.flows[0].seq_delta == (P - (M - 5)) % M
    first = valid(inst.then[0].frame)
    assert first[TCP].seq == (P + 1) % M and payload(first) == GET
    # no ACK from the server: retransmitted at the same sequence number
    again = [p for _, p in pkts(h.tick(0.25)) if p[TCP].sport == pooled[TCP].sport]
    assert again and again[0][TCP].seq == (P + 1) % M
    # a duplicate ACK for the first byte: resend from there
    (_, dup), = pkts(h.server(answer(pooled, "A", (s_isn + 1) % M, (P + 1) % M)))
    assert dup[TCP].seq == (P + 1) % M
    # the server acknowledges the whole request: the return flow goes in
    eff = h.server(answer(pooled, "A", (s_isn + 1) % M, (P + 1 + len(GET)) % M))
    inst2, = of(eff, InstallFlows)
    assert inst2.flows[0].direction == "s2c"
    assert inst2.flows[0].ack_delta == ((M - 5) - P) % M


def test_spliced_pooled_connection_tears_down_and_frees_its_port():
    h = pool_harness()
    pooled = open_pool(h)
    new_client(h, 40001, 3000)
    inst, = of(h.send(GET), InstallFlows)
    c2s, s2c = inst.flows
    fin_c = h.cframe("FA", rel=len(GET))
    h.client(apply_splice(fin_c, c2s), reason=4, port=2)
    fin_s = answer(pooled, "FA", 5001, (pooled[TCP].seq + 1 + len(GET) + 1) % M)
    h.server(fin_s, reason=4)
    h.tick(h.eng.cfg.time_wait + h.eng.cfg.tombstone_margin + 0.1)
    assert h.eng.stats.teardowns == 1
    assert pooled[TCP].sport not in [c.sl.src_port for c in h.eng.by_id.values()]


def test_pool_needs_snat_and_http():
    with pytest.raises(ValueError, match="needs mode snat"):
        VirtualService("w", VIP, 80, None, server_pool=ServerPool(2, 10.0))
    with pytest.raises(ValueError, match="needs protocol http"):
        VirtualService("w", VIP, 443, None, mode="snat", snat_ip=SNAT, protocol="tls",
                       server_pool=ServerPool(2, 10.0))
    with pytest.raises(ValueError, match="idle"):
        ServerPool(-1, 10.0)
    with pytest.raises(ValueError, match="max_age"):
        ServerPool(1, 0)


def test_idle_zero_pools_nothing():
    h = pool_harness(idle=0)
    new_client(h, 40000, 1000)
    assert len(syns(h.send(GET))) == 1 and not h.eng.pools.by_key


def test_live_edit_without_pool_resets_pooled_connections():
    h = pool_harness()
    pooled = open_pool(h)
    svc = VirtualService("www", VIP, 80, h.svc.decider, default_group="web", mode="snat",
                         snat_ip=SNAT)
    out = h.eng.reconfigure([svc], {g.name: g for g in h.groups}, Config(window_scale=7),
                            h.now)
    rst, = [valid(e.frame) for e in out]
    assert rst[TCP].flags == "R" and rst[TCP].sport == pooled[TCP].sport
    assert not h.eng.pools.by_key


def test_isn_follows_a_clock_per_four_tuple():
    """A reused SNAT port gets an ISN beyond the previous connection's on the same
    4-tuple (a server's TIME_WAIT accepts the SYN), RFC 6528."""
    pools = pool_harness().eng.pools
    key = (ip_int(S1), 8080, ip_int(SNAT), 20000)
    assert (pools.isn(key, 1020.0) - pools.isn(key, 1000.0)) % M == 20 * 250_000
    assert pools.isn(key, 1000.0) != pools.isn((ip_int(S1), 8080, ip_int(SNAT), 20001), 1000.0)


def test_mss_compared_with_what_the_pooled_syn_announced():
    """The server's own (smaller) MSS does not make a pooled connection fit a client with a
    smaller MSS than the pooled SYN announced: the server sends up to the announced one."""
    h = pool_harness()
    new_client(h, 40000, 1000)
    fresh, pooled = syns(h.send(GET))
    h.server(answer(pooled, "SA", 77, mss=1000))
    new_client(h, 40001, 2000, mss=1200)
    fresh2, repl = syns(h.send(GET))      # and the pool follows: a 1200 one replaces it
    assert fresh2[TCP].seq == 2000 and h.eng.stats.pooled_used == 0
    assert opts(repl)["MSS"] == 1200
    h.server(answer(repl, "SA", 99, mss=1000))
    # a 1460 client takes it; the request goes in segments of the server's MSS (1000)
    new_client(h, 40002, 3000)
    big = b"GET /" + b"a" * 1500 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    h.send(big[:1400])
    inst, = of(h.send(big[1400:], rel=1400), InstallFlows)
    assert [len(payload(valid(p.frame))) for p in inst.then] == [1000, len(big) - 1000]
