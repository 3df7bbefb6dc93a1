"""Server choice through the engine: client-IP persistence, health checks (active probes
through the data plane, passive on failed connects), the end of a server's connections
when it goes down, the connect timeout, and decisions the switch cannot carry out."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from p4cs.csproc import Config, Decision, InstallFlows, Log, RemoveFlows, Server, ServerGroup
from p4cs.csproc.health import HealthCheck
from p4cs.csproc.policy import Persistence

from cs_harness import (CLIENT, S1, S1_MAC, S2, S2_MAC, SW_IP, SW_S, Harness, of, pkts)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
M = 2**32


def connect(h, cport):
    """A new client connection from ``cport``; the server the switch sends its SYN to."""
    h.cport = cport
    h.handshake()
    return h.to_server_syn(h.send(GET))


def splice(h, cport):
    syn = connect(h, cport)
    eff = h.server(h.sframe(syn, "SA", 5000, (h.cisn + 1) % M))
    assert of(eff, InstallFlows)
    return syn


def test_persistence_keeps_a_client_network_on_its_server():
    h = Harness(persistence=Persistence(300, "255.255.255.0"))
    first = splice(h, 41000)[IP].dst
    assert [connect(h, 41001 + i)[IP].dst for i in range(3)] == [first] * 3
    t, = h.eng.templates(h.now)
    assert (t["client"], t["netmask"], t["server"]) == ("192.168.1.0", "255.255.255.0",
                                                         f"{first}:8080")
    assert t["connections"] >= 1


def test_template_outlives_its_connections_by_the_timeout():
    h = Harness(persistence=Persistence(10))
    assert splice(h, 42000)[IP].dst == S1
    h.tick(30.0)                                    # a long connection keeps it
    assert connect(h, 42001)[IP].dst == S1
    for c in list(h.eng.by_id.values()):
        h.cport = c.cl.port
        h.client(h.cframe("R", rel=len(GET)))       # both end
    t, = h.eng.templates(h.now)
    assert t["connections"] == 0 and t["expires_in"] == 10.0
    h.tick(9.0)
    assert h.eng.templates(h.now)
    h.tick(1.5)
    assert h.eng.templates(h.now) == []
    assert connect(h, 42002)[IP].dst == S2          # the scheduler's turn again


def test_templates_taken_over_by_another_policy():
    """What a primary exports, a new primary imports: the client network stays on its
    server (the HA store carries the rows between controllers)."""
    a = Harness(persistence=Persistence(300, "255.255.255.0"))
    a.eng.policy.groups["web"].scheduler.pick()       # rr: the client's first server is s2
    assert splice(a, 41000)[IP].dst == S2
    rows = a.eng.policy.export_templates(a.now)
    assert rows == [["www", rows[0][1], "s2", 300]]     # in use: the whole timeout left
    b = Harness(persistence=Persistence(300, "255.255.255.0"))
    assert b.eng.policy.import_templates(rows + [["www", 1, "no-such-server", 5]], b.now) == 1
    assert b.eng.policy.import_templates(rows, b.now) == 0     # the one it has wins
    assert b.eng.policy.export_templates(b.now) == rows
    # b's rr would start with s1: the template sends the client to s2
    assert connect(b, 41001)[IP].dst == S2


def test_without_persistence_rr_alternates():
    h = Harness()
    assert [connect(h, 43000 + i)[IP].dst for i in range(4)] == [S1, S2, S1, S2]


# ---------------------------------------------------------------------------- health
def health_harness(check, fall=2, rise=2, **kw):
    servers = [Server("s1", S1, 8080), Server("s2", S2, 8080)]
    hc = HealthCheck(check, interval=1.0, timeout=0.5, rise=rise, fall=fall, expect=200)
    return Harness(servers=servers, groups=[ServerGroup("web", servers, "rr", health=hc)],
                   **kw)


def probes(eff):
    return [p for port, p in pkts(eff) if p[IP].src == SW_IP]


def answer(h, probe, flags, seq=9000, data=b""):
    ip, tcp = probe[IP], probe[TCP]
    ack = (tcp.seq + (1 if "S" in tcp.flags else len(tcp.payload))) % M
    p = Ether(src=S1_MAC if ip.dst == S1 else S2_MAC, dst=SW_S) / \
        IP(src=ip.dst, dst=ip.src) / TCP(sport=tcp.dport, dport=tcp.sport, seq=seq, ack=ack,
                                         flags=flags)
    if data:
        p = p / Raw(data)
    return h.server(bytes(p), reason=3)


def test_tcp_check_takes_a_silent_server_down_and_resets_its_flows():
    h = health_harness("tcp")
    syn = splice(h, 44000)
    assert syn[IP].dst == S1
    for _ in range(2):                      # two rounds: s1 silent, s2 answers
        eff = h.tick(1.0)
        sent = probes(eff)
        assert sorted(p[IP].dst for p in sent) == [S1, S2]
        assert all(p[TCP].flags == "S" and 60000 <= p[TCP].sport for p in sent)
        s2 = next(p for p in sent if p[IP].dst == S2)
        eff = answer(h, s2, "SA")
        rst, = probes(eff)
        assert rst[TCP].flags == "R" and rst[TCP].seq == s2[TCP].seq + 1
        eff = h.tick(0.6)                   # s1's probe times out
    down = [e for e in eff if isinstance(e, Log) and e.msg == "server down"]
    assert down and down[0].fields["server"] == "s1"
    assert not h.servers[0].up and h.eng.health.state(h.servers[0])["state"] == "down"
    # its spliced connection: flows removed at once, then (once the removal is written) the
    # client is asked where its stream is (an ACK with an old sequence number) and reset
    # exactly there, the server too
    rm, = [r for r in of(eff, RemoveFlows) if r.after == 0.0 and len(r.keys) == 2]
    assert h.servers[0].active == 0
    assert not [p for port, p in pkts(eff) if port == 1]     # not before the removal
    ask, = [p for port, p in pkts(list(rm.then)) if port == 1]
    assert ask[TCP].flags == "A" and ask[IP].dst == CLIENT
    rcv_nxt, snd_nxt = (ask[TCP].seq + 12345) % M, (h.cisn + 1 + len(GET) + 99) % M
    eff = h.client(h.cframe("A", seq=snd_nxt, ack=rcv_nxt), reason=1)
    rsts = {(port, p[IP].dst): p[TCP].seq for port, p in pkts(eff) if p[TCP].flags == "R"}
    assert rsts == {(1, CLIENT): rcv_nxt, (2, S1): snd_nxt}
    # Data of the fast path still in flight when the entries went moved the client's RCV.NXT
    # past that ACK: it answers the RST with a challenge ACK (RFC 5961 3.2), which gets the
    # exact RST; the server's went once.
    moved = (rcv_nxt + 1448) % M
    eff = h.client(h.cframe("A", seq=snd_nxt, ack=moved), reason=1)
    rsts = {(port, p[IP].dst): p[TCP].seq for port, p in pkts(eff) if p[TCP].flags == "R"}
    assert rsts == {(1, CLIENT): moved}
    eff = h.tick(0.6)           # the next probe time: forgotten, the client not asked again
    assert not [p for port, p in pkts(eff) if port == 1] and not h.eng.by_id
    # new connections go to s2
    assert [connect(h, 44001 + i)[IP].dst for i in range(3)] == [S2] * 3


def test_a_silent_client_is_forgotten_after_three_asks():
    h = health_harness("tcp", fall=1)
    splice(h, 44100)
    rm, = of(h.eng.health.passive(h.servers[0], h.now, "test"), RemoveFlows)
    first = [p for port, p in pkts(list(rm.then)) if port == 1]      # after the removal
    asks = [len([p for port, p in pkts(h.tick(t)) if port == 1]) for t in (0.6, 0.6, 0.6)]
    assert len(first) == 1 and asks == [1, 1, 0] and not h.eng.by_id


def test_http_check_wants_the_expected_status_and_rise_brings_back():
    h = health_harness("http", fall=1, rise=2)
    sent = probes(h.tick(1.0))
    p1 = next(p for p in sent if p[IP].dst == S1)
    req, = probes(answer(h, p1, "SA"))
    assert bytes(req[TCP].payload).startswith(b"GET / HTTP/1.0\r\n")
    eff = answer(h, req, "PA", seq=9001, data=b"HTTP/1.1 500 Oops\r\n\r\n")
    assert not h.servers[0].up
    assert h.eng.health.state(h.servers[0])["last_detail"] == "status 500"
    for _ in range(2):
        sent = probes(h.tick(1.0))
        p1 = next(p for p in sent if p[IP].dst == S1)
        req, = probes(answer(h, p1, "SA"))
        answer(h, req, "PA", seq=9001, data=b"HTTP/1.0 200 OK\r\n")
    assert h.servers[0].up


def test_passive_check_counts_refused_connects():
    h = health_harness("tcp", fall=1)
    syn = connect(h, 45000)
    assert syn[IP].dst == S1
    eff = h.server(h.sframe(syn, "RA", 0, (h.cisn + 1) % M))
    assert not h.servers[0].up
    assert h.eng.health.state(h.servers[0])["last_detail"] == "passive: refused"
    assert [p[IP].dst for _, p in pkts(eff) if p[TCP].flags == "S"] == [S2]


def test_server_connect_timeout_is_honoured():
    h = Harness(config=Config(server_connect_timeout=2.5, window_scale=7, server_syn_jitter=0))
    syn = connect(h, 46000)
    assert syn[IP].dst == S1
    assert [p[IP].dst for _, p in pkts(h.tick(1.0))] == [S1]       # SYN retransmitted
    assert pkts(h.tick(1.0)) == []                                 # (next one at 3 s)
    eff = h.tick(0.5)                                              # 2.5 s: give up
    assert [p[IP].dst for _, p in pkts(eff) if p[TCP].flags == "S"] == [S2]


def test_a_burst_of_server_syns_is_not_retransmitted_in_a_burst():
    """200 connections send their server SYN at the same instant; none is answered. Each
    retransmission interval is stretched by a fixed share of up to server_syn_jitter per
    connection, so the retransmissions spread over [1, 1.5) s instead of leaving together
    (into the same full queue of a slow switch, as on BMv2 under a burst)."""
    h = Harness(config=Config(window_scale=7, redispatch=0, max_half_bound_per_client=10000))
    for i in range(200):
        connect(h, 20000 + i)
    assert h.tick(0.999) == []
    per_slot = []
    for _ in range(5):                      # 1.0 .. 1.5 s in 0.1 s steps
        per_slot.append(len([p for _, p in pkts(h.tick(0.1)) if p[TCP].flags == "S"]))
    assert sum(per_slot) == 200, per_slot
    assert max(per_slot) <= 60, per_slot     # about 40 each; all 200 at once without it


def test_weight_zero_drains_through_the_engine():
    h = Harness()
    splice(h, 47000)
    h.eng.set_weight("web", "s1", 0, h.now)
    assert h.servers[0].active == 1                 # its connection stays
    assert [connect(h, 47001 + i)[IP].dst for i in range(3)] == [S2] * 3


class Fixed:
    needs_body = False

    def __init__(self, d):
        self.d = d

    def decide(self, raw, client, vip):
        return self.d


def test_a_decision_with_an_unknown_algorithm_answers_503():
    h = Harness(router=Fixed(Decision("r", "loadBalance", "web", algorithm="fastestResponse")))
    h.handshake()
    eff = h.send(GET)
    assert any(b"503" in bytes(p[TCP].payload) for _, p in pkts(eff))


def test_a_template_that_moves_away_and_back_counts_the_connections_that_stayed():
    """A template follows its client's connection to another server when its server refuses
    one; the client's connections still spliced on the first server go on. When the
    template comes back to that server, it counts them again: it lives as long as any of
    them (before, it came back counting only the new connection, reached 0 while the
    others ran, and could expire under them)."""
    h = Harness(persistence=Persistence(10))
    assert splice(h, 43000)[IP].dst == S1                       # A, spliced on s1
    syn = connect(h, 43001)                                     # B: s1 refuses it
    assert syn[IP].dst == S1
    eff = h.server(h.sframe(syn, "RA", 0, (syn[TCP].seq + 1) % M))
    (port, moved), = [(p, q) for p, q in pkts(eff) if q[TCP].flags == "S"]
    assert moved[IP].dst == S2                                  # the template moves to s2
    syn = connect(h, 43002)                                     # C: s2 refuses it
    assert syn[IP].dst == S2
    eff = h.server(h.sframe(syn, "RA", 0, (syn[TCP].seq + 1) % M))
    (port, back), = [(p, q) for p, q in pkts(eff) if q[TCP].flags == "S"]
    assert back[IP].dst == S1                                   # and back to s1
    t, = h.eng.templates(h.now)
    assert t["server"] == f"{S1}:8080" and t["connections"] == 2        # A and C
    h.cport = 43000
    h.client(h.cframe("R", rel=len(GET)))                       # A ends: C still holds it
    t, = h.eng.templates(h.now)
    assert t["connections"] == 1
    h.tick(30.0)
    assert h.eng.templates(h.now)


def test_a_live_edit_that_ends_persistence_under_a_connecting_client():
    """A connection chosen under a template whose service loses its persistence (a live
    edit) before its server answers is bound without one when it is redispatched: no
    internal error (the template's timeout was looked up in the service's persistence)."""
    import dataclasses

    h = Harness(persistence=Persistence(10))
    syn = connect(h, 44000)
    assert syn[IP].dst == S1
    h.eng.reconfigure([dataclasses.replace(h.svc, persistence=None)],
                      {g.name: g for g in h.groups}, h.cfg, h.now)
    eff = h.server(h.sframe(syn, "RA", 0, (syn[TCP].seq + 1) % M))   # s1 refuses
    (port, moved), = [(p, q) for p, q in pkts(eff) if q[TCP].flags == "S"]
    assert moved[IP].dst == S2 and h.eng.templates(h.now) == []
    inst, = of(h.server(h.sframe(moved, "SA", 5000, (h.cisn + 1) % M)), InstallFlows)
    assert h.servers[1].active == 1
