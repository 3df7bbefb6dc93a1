"""Window scaling (RFC 7323) on spliced connections: offered to the client only when it
offers it, the client's scale carried in the SYN cookie and relayed to the server, the
server's scale checked against Config.window_scale, the switch's own windows scaled."""

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from p4cs.csproc import Config, InstallFlows, Log
from p4cs.csproc.cookies import SynCookies

from cs_harness import (CLIENT, CPORT, S1, S1_MAC, S2, S2_MAC, SECRET, SW_IP, SW_S, VIP,
                        Harness, ip_int, of, opts, pkts)

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
M = 2**32


def ws_handshake(h, ws, window=64240):
    """Client SYN offering window scale ``ws`` (None: no option); completes nothing."""
    extra = [] if ws is None else [("WScale", ws)]
    (port, p), = pkts(h.syn(extra=extra))
    h.sisn = p[TCP].seq
    return p


def server_synack(h, syn, wscale, s_isn=5000):
    o = [("MSS", 1460)] + ([] if wscale is None else [("WScale", wscale)])
    t = TCP(sport=syn[TCP].dport, dport=syn[TCP].sport, seq=s_isn,
            ack=(h.cisn + 1) % M, flags="SA", window=65535, options=o)
    return bytes(Ether(src=S1_MAC, dst=SW_S) / IP(src=syn[IP].dst, dst=syn[IP].src) / t)


def test_syn_with_wscale_gets_our_scale_and_unscaled_window():
    h = Harness(config=Config(window_scale=5, max_header_bytes=100000))
    p = ws_handshake(h, 7)
    assert opts(p)["WScale"] == 5 and opts(p)["MSS"] == 1460
    assert p[TCP].window == 65535            # SYN-ACK windows are never scaled
    assert p[TCP].dataofs == 7               # MSS + NOP + WScale: 8 option bytes


def test_syn_without_wscale_gets_none(h):
    p = ws_handshake(h, None)
    assert opts(p) == {"MSS": 1460}


def test_window_scale_none_never_offers_nor_relays():
    h = Harness(config=Config(window_scale=None))
    p = ws_handshake(h, 7)
    assert opts(p) == {"MSS": 1460}
    syn = h.to_server_syn(h.send(GET))
    assert "WScale" not in opts(syn)


@pytest.mark.parametrize("ws", [None, 0, 1, 7, 13, 14])
@pytest.mark.parametrize("mss", [None, 536, 1400, 1460, 9000])
def test_cookie_round_trips_client_scale(ws, mss):
    k = SynCookies(SECRET)
    cip, vip, now = ip_int(CLIENT), ip_int(VIP), 5000.0
    isn = k.make(cip, vip, CPORT, 80, 77, mss, now, ws)
    got = k.check_opts(cip, vip, CPORT, 80, 77, isn, now + 64)
    assert got is not None and got[1] == ws
    assert k.check(cip, vip, CPORT, 80, 77, isn, now) == got[0]
    for bit in range(32):   # every bit, including the 4 scale bits, is authenticated
        assert k.check_opts(cip, vip, CPORT, 80, 77, isn ^ (1 << bit), now) is None


def test_cookie_caps_client_scale_at_14():
    k = SynCookies(SECRET)
    isn = k.make(1, 2, 3, 4, 5, 1460, 0.0, 200)
    assert k.check_opts(1, 2, 3, 4, 5, isn, 0.0) == (1460, 14)


def test_scale_above_14_in_syn_is_taken_as_14():
    h = Harness()
    ws_handshake(h, 15)
    syn = h.to_server_syn(h.send(GET))
    assert opts(syn)["WScale"] == 14


@pytest.mark.parametrize("cws", [0, 2, 7, 14])
def test_server_syn_carries_client_scale(cws):
    h = Harness()
    ws_handshake(h, cws)
    eff = h.client(h.cframe("PA", data=GET, window=300))
    syn = h.to_server_syn(eff)
    assert opts(syn)["WScale"] == cws and opts(syn)["MSS"] == 1460
    assert syn[TCP].window == min(65535, 300 << cws)   # the SYN's window is unscaled


def test_server_syn_without_client_scale_has_none(h):
    ws_handshake(h, None)
    syn = h.to_server_syn(h.client(h.cframe("PA", data=GET, window=300)))
    assert "WScale" not in opts(syn) and syn[TCP].window == 300


def test_relayed_request_carries_client_window_as_is():
    h = Harness()
    ws_handshake(h, 7)
    syn = h.to_server_syn(h.client(h.cframe("PA", data=GET, window=502)))
    eff = h.server(server_synack(h, syn, 7))
    inst, = of(eff, InstallFlows)
    first = Ether(inst.then[0].frame)
    assert first[TCP].window == 502          # the server applies the client's scale


def test_server_scale_equal_is_silent():
    h = Harness()
    ws_handshake(h, 7)
    syn = h.to_server_syn(h.send(GET))
    eff = h.server(server_synack(h, syn, 7))
    assert of(eff, InstallFlows)
    assert h.eng.stats.wscale_mismatch == 0
    assert not [e for e in of(eff, Log) if e.level == "warning"]


@pytest.mark.parametrize("sws", [None, 0, 6, 8, 14])
def test_server_scale_mismatch_is_counted_warned_and_spliced(sws):
    h = Harness()
    ws_handshake(h, 7)
    syn = h.to_server_syn(h.send(GET))
    eff = h.server(server_synack(h, syn, sws))
    assert of(eff, InstallFlows)              # the connection keeps working
    assert h.eng.stats.wscale_mismatch == 1
    warn, = [e for e in of(eff, Log) if e.level == "warning"]
    assert warn.fields["server_wscale"] == sws and warn.fields["window_scale"] == 7


def test_mismatch_warning_is_rate_limited():
    h = Harness(cisn=10)
    warnings = 0
    for i in range(3):
        h.cport = 41000 + i
        ws_handshake(h, 7)
        syn = h.to_server_syn(h.send(GET))
        eff = h.server(server_synack(h, syn, None))
        warnings += len([e for e in of(eff, Log) if e.level == "warning"])
    assert h.eng.stats.wscale_mismatch == 3 and warnings == 1


def test_no_client_scale_means_server_scale_is_not_checked(h):
    ws_handshake(h, None)
    syn = h.to_server_syn(h.send(GET))
    h.server(server_synack(h, syn, None))
    assert h.eng.stats.wscale_mismatch == 0


def test_switch_windows_to_client_are_scaled():
    h = Harness(config=Config(max_header_bytes=1000, max_body_bytes=0, window_scale=7))
    p = ws_handshake(h, 7)
    assert p[TCP].window == 1000
    eff = h.send(b"GET / HTTP/1.1\r\n")
    (_, ack), = pkts(eff)
    assert ack[TCP].window == (1000 - 16 + 127) >> 7      # 984 bytes, rounded up: 8
    # the same request without scaling on the client's side: bytes
    h2 = Harness(config=Config(max_header_bytes=1000, max_body_bytes=0, window_scale=7))
    ws_handshake(h2, None)
    (_, ack2), = pkts(h2.send(b"GET / HTTP/1.1\r\n"))
    assert ack2[TCP].window == 984


def test_switch_window_rounds_up_then_reaches_zero_only_when_full():
    h = Harness(config=Config(max_header_bytes=1000, max_body_bytes=0, window_scale=7))
    ws_handshake(h, 7)
    (_, a), = pkts(h.send(b"GET / HTTP/1.1\r\nX: " + b"y" * 900))
    assert a[TCP].window == 1                            # 1000-920 = 80 bytes -> 1 unit


def test_local_response_window_is_scaled():
    h = Harness(config=Config(window_scale=4))
    ws_handshake(h, 7)
    eff = h.send(b"BAD\r\n\r\n")
    out = [p for _, p in pkts(eff)]
    assert out and out[0][TCP].payload
    free = h.eng.cfg.max_header_bytes - len(b"BAD\r\n\r\n")
    assert all(p[TCP].window in ((free + 15) >> 4, 0) for p in out)


def test_retransmitted_synack_keeps_wscale():
    h = Harness()
    ws_handshake(h, 3)
    h.send(b"GET / HTTP/1.1\r\n")                      # state exists now
    (_, p), = pkts(h.client(h.cframe("S", seq=h.cisn, ack=0,
                                     options=[("MSS", 1460), ("WScale", 3)])))
    assert p[TCP].flags == "SA" and opts(p)["WScale"] == 7


def test_config_rejects_bad_scale():
    for bad in (-1, 15):
        with pytest.raises(ValueError):
            Config(window_scale=bad)


# ------------------------------------------------------------------ window_scale "auto"
def auto_harness(**kw):
    return Harness(config=Config(window_scale="auto", **kw))


def scale_probes(eff):
    return [p for _, p in pkts(eff) if p[IP].src == SW_IP and p[TCP].flags == "S"]


def probe_answer(h, probe, wscale):
    ip, tcp = probe[IP], probe[TCP]
    o = [("MSS", 1460)] + ([] if wscale is None else [("WScale", wscale)])
    p = Ether(src=S1_MAC if ip.dst == S1 else S2_MAC, dst=SW_S) / IP(src=ip.dst, dst=ip.src) / \
        TCP(sport=tcp.dport, dport=tcp.sport, seq=9000, ack=(tcp.seq + 1) % M, flags="SA",
            window=65535, options=o)
    return h.server(bytes(p), reason=3)


def learn(h, scales):
    """Answer the first round of scale probes: server ip -> scale."""
    probes = scale_probes(h.tick(0.1))
    assert sorted(p[IP].dst for p in probes) == sorted(scales)
    out = []
    for p in probes:
        assert "WScale" in opts(p)             # a probe offers scaling, so the answer tells
        out += probe_answer(h, p, scales[p[IP].dst])
    return out


def test_auto_offers_no_scale_until_learned():
    h = auto_harness()
    p = ws_handshake(h, 7)
    assert opts(p) == {"MSS": 1460}          # unknown: scaling stays off (64 KiB windows)
    syn = h.to_server_syn(h.send(GET))
    assert "WScale" not in opts(syn)         # so the server leg is unscaled too


def test_auto_probes_learn_the_servers_scale():
    h = auto_harness()
    eff = learn(h, {S1: 10, S2: 10})
    rsts = [p for _, p in pkts(eff) if p[TCP].flags == "R"]
    assert len(rsts) == 2                    # each probe's connection is reset
    assert [e.fields["wscale"] for e in of(eff, Log)] == [10, 10]
    assert h.eng.svc_window_scale(h.svc) == 10
    p = ws_handshake(h, 7)
    assert opts(p)["WScale"] == 10
    syn = h.to_server_syn(h.send(GET))
    assert opts(syn)["WScale"] == 7          # the client's own scale goes to the server
    eff = h.server(server_synack(h, syn, 10))
    assert of(eff, InstallFlows) and h.eng.stats.wscale_mismatch == 0
    assert not scale_probes(h.tick(30.0))    # known: no more probes


def test_auto_takes_the_smallest_scale_and_none_wins():
    h = auto_harness()
    learn(h, {S1: 10, S2: 7})
    assert h.eng.svc_window_scale(h.svc) == 7
    h2 = auto_harness()
    learn(h2, {S1: 10, S2: None})             # a server without scaling: none for all
    assert h2.eng.svc_window_scale(h2.svc) is None
    assert opts(ws_handshake(h2, 7)) == {"MSS": 1460}


def test_auto_relearns_from_a_connection_and_counts_the_mismatch():
    h = auto_harness()
    learn(h, {S1: 10, S2: 10})
    ws_handshake(h, 7)
    syn = h.to_server_syn(h.send(GET))
    eff = h.server(server_synack(h, syn, 9))  # the server's kernel changed its scale
    assert of(eff, InstallFlows)
    assert h.eng.stats.wscale_mismatch == 1   # this connection: counted and logged
    assert [e.level for e in of(eff, Log) if "wscale" in e.fields or
            "server_wscale" in e.fields] == ["info", "warning"]
    assert h.eng.svc_window_scale(h.svc) == 9    # the next ones are offered 9
    h.cport += 1
    assert opts(ws_handshake(h, 7))["WScale"] == 9


def test_auto_without_switch_address_sends_no_probe():
    h = auto_harness()
    h.eng.topo._pip.clear()                  # no address of the switch on the servers' port
    assert not scale_probes(h.tick(0.1))
    assert opts(ws_handshake(h, 7)) == {"MSS": 1460}


def test_window_scale_setting_is_checked():
    for bad in (15, -1, "7", "automatic", 7.0):
        with pytest.raises(ValueError):
            Config(window_scale=bad)


def test_auto_scale_is_per_service():
    """A service counts only the servers its routes and default group reach."""
    from p4cs.csproc import Server, ServerGroup
    s1, s2 = Server("s1", S1, 8080), Server("s2", S2, 8080)
    h = Harness(config=Config(window_scale="auto"), servers=[s1, s2],
                groups=[ServerGroup("web", [s1], "rr"), ServerGroup("other", [s2], "rr")])
    learn(h, {S1: 10, S2: 7})
    assert h.eng.svc_window_scale(h.svc) == 10     # s2 is not reachable from this service


def test_auto_scale_of_a_rule_set_counts_every_group():
    from p4cs.csproc import Server, ServerGroup

    class Rules:          # a decider without group_names: a rule may name any group
        needs_body = rejects = False

        def decide(self, raw, client, vip):
            from p4cs.csproc.routing import Decision
            return Decision()
    s1, s2 = Server("s1", S1, 8080), Server("s2", S2, 8080)
    h = Harness(config=Config(window_scale="auto"), servers=[s1, s2], router=Rules(),
                groups=[ServerGroup("web", [s1], "rr"), ServerGroup("other", [s2], "rr")])
    learn(h, {S1: 10, S2: 7})
    assert h.eng.svc_window_scale(h.svc) == 7


def test_auto_seeded_scale_until_one_is_learned():
    """A new primary offers the scale its predecessor learned (read from the switch) until
    its own probes answer; what they say then wins."""
    h = auto_harness()
    h.eng.seed_window_scale(h.svc, 9)
    assert h.eng.svc_window_scale(h.svc) == 9
    assert opts(ws_handshake(h, 7))["WScale"] == 9
    learn(h, {S1: 10, S2: 10})
    assert h.eng.svc_window_scale(h.svc) == 10
    h.eng.seed_window_scale(h.svc, 8)          # known now: a seed changes nothing
    assert h.eng.svc_window_scale(h.svc) == 10
