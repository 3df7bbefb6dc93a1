"""Teardown (FIN/RST copies, idle expiry, install failure) and bad input."""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from p4cs.csproc import Config, CountFlows, InstallFlows, Log, RemoveFlows

from scapy.layers.l2 import Ether

from cs_harness import CLIENT, VIP, Harness, ip_int, of, pkts

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def spliced(h=None, **kw):
    h = h or Harness(**kw)
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    inst, = of(h.server(h.sframe(syn, "SA", 500, h.cisn + 1)), InstallFlows)
    return h, syn, inst


def test_fin_copies_remove_both_flows_after_time_wait():
    h, syn, inst = spliced(config=Config(time_wait=2.0))
    keys = [f.key for f in inst.flows]
    srv = h.servers[0]
    assert srv.active == 1
    # server closes first (FIN copy from the data plane, reason 4): nothing yet
    fin_s = h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET))
    assert h.server(fin_s, reason=4) == []
    # client FIN (copy): both directions closed -> remove after TIME_WAIT
    eff = h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4)
    rm, = of(eff, RemoveFlows)
    assert rm.keys == keys and rm.after == 2.0
    assert srv.active == 0 and h.eng.stats.teardowns == 1
    # tombstone: a late retransmitted FIN that misses is still spliced correctly
    (port, p), = pkts(h.server(fin_s, reason=2))
    assert port == 1 and p[TCP].flags == "FA" and p[TCP].seq == h.sisn + 1
    h.tick(2.0 + 3.0)   # time_wait + tombstone_margin
    assert not h.eng.by_id and not h.eng.conns_s
    assert pkts(h.client(h.cframe("S", seq=9, ack=0)))[0][1][TCP].flags == "SA"


def test_new_syn_in_time_wait_is_answered_once_the_old_entries_are_gone():
    """A host lets a new SYN through TIME_WAIT (RFC 1122 4.2.2.13): clients reuse a port
    whose connection the server closed first at once. The closed connection's entries are
    deleted now and the SYN-ACK leaves after the deletion (the client's ACK must not meet
    them); the tombstone is gone."""
    h, syn, inst = spliced(config=Config(time_wait=2.0))
    keys = [f.key for f in inst.flows]
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4)
    h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4)
    eff = h.client(h.cframe("S", seq=h.cisn + 100000, ack=0))
    rm, = eff
    assert isinstance(rm, RemoveFlows) and rm.keys == keys and rm.after == 0.0
    (port, p), = [(o.port, o.frame) for o in rm.then]
    synack = Ether(p)
    assert port == 1 and synack[TCP].flags == "SA" and synack[TCP].ack == h.cisn + 100001
    assert not h.eng.by_id and h.eng.stats.reincarnations == 1
    # the handshake completes on the new connection
    h.cisn, h.sisn = h.cisn + 100000, synack[TCP].seq
    h.client(h.cframe("A", rel=0))
    assert h.eng.stats.accepted == 2 and len(h.eng.by_id) == 1


def test_cookie_ack_in_time_wait_starts_a_new_connection():
    """Once the entries expired, the data plane answers the SYN itself: the ACK of that
    cookie handshake reaches the tombstone and opens a new connection; a late segment of
    the closed one (no valid cookie) is still spliced in software."""
    h, syn, inst = spliced(config=Config(time_wait=2.0))
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4)
    h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4)
    late = pkts(h.client(h.cframe("A", rel=len(GET) + 1, ack=h.sisn + 2)))
    assert len(late) == 1 and h.eng.stats.reincarnations == 0
    old_id, = h.eng.by_id
    # the data plane's SYN-ACK carries the cookie the engine would send
    cisn = (h.cisn + 100000) & 0xFFFFFFFF
    h.sisn = h.eng.cookies.make(ip_int(CLIENT), ip_int(VIP), h.cport, 80, cisn, 1460, h.now, None)
    h.cisn = cisn
    eff = h.client(h.cframe("A", rel=0))
    assert h.eng.stats.reincarnations == 1 and h.eng.stats.accepted == 2
    assert old_id not in h.eng.by_id and len(h.eng.by_id) == 1
    assert not of(eff, RemoveFlows)


def test_rst_copy_tears_down_at_once():
    h, syn, inst = spliced()
    eff = h.server(h.sframe(syn, "R", 501, 0), reason=4)
    rm, = of(eff, RemoveFlows)
    assert set(rm.keys) == {f.key for f in inst.flows}
    assert h.eng.stats.spliced_active == 0


def test_fin_seen_in_software_splice_path_counts_too():
    h, syn, inst = spliced()
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=2)
    eff = h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=1)
    assert len(pkts(eff)) == 1 and of(eff, RemoveFlows)


def test_removal_names_the_entries_a_fin_or_rst_ended():
    """RemoveFlows.ended: the keys whose entry the FIN / RST hit (their copies came from the
    data plane), which a data plane with a short end-of-flow expiry removes by itself."""
    h, syn, inst = spliced()
    c2s, s2c = (f.key for f in inst.flows)
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4)
    rm, = of(h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4), RemoveFlows)
    assert set(rm.ended) == {c2s, s2c}
    # a RST from the server: only its own entry saw it
    h, syn, inst = spliced()
    rm, = of(h.server(h.sframe(syn, "R", 501, 0), reason=4), RemoveFlows)
    assert rm.ended == (inst.flows[1].key,)
    # a FIN that took the software path hit no entry
    h, syn, inst = spliced()
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=2)
    rm, = of(h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4), RemoveFlows)
    assert rm.ended == (inst.flows[0].key,)


def test_idle_expiry_removes_the_other_entry_and_frees():
    h, syn, inst = spliced(mode="snat")
    c2s, s2c = inst.flows
    eff = h.eng.flow_expired(s2c.key, h.now)
    rm, = of(eff, RemoveFlows)
    assert rm.after == 0 and set(rm.keys) == {c2s.key, s2c.key}
    assert not h.eng.by_id and h.eng.policy._snat[c2s.sip][-1] == c2s.sport   # port returned
    assert h.eng.flow_expired(c2s.key, h.now) == []
    assert h.servers[0].active == 0 and h.eng.stats.spliced_active == 0


def test_install_failure_resets_both_sides():
    h, syn, inst = spliced()
    eff = h.eng.install_failed(inst.flows[0].conn_id, h.now)
    by_port = {port: p for port, p in pkts(eff)}
    assert by_port[1][TCP].flags == "R" and by_port[1][TCP].seq == h.sisn + 1
    assert by_port[2][TCP].flags == "R" and by_port[2][TCP].seq == h.cisn + 1 + len(GET)
    assert by_port[2][IP].dst == syn[IP].dst
    assert of(eff, RemoveFlows) and not h.eng.by_id


def test_keepalive_requests_stay_on_the_server():
    """STICKY: a second request on the spliced connection goes through the data plane;
    if it misses (flow still being installed) the engine splices it to the same server
    instead of classifying it again."""
    h, syn, inst = spliced()
    eff = h.send(b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n", rel=len(GET))
    (port, p), = pkts(eff)
    assert port == 2 and p[IP].dst == syn[IP].dst and h.eng.stats.decided == 1


BAD = [b"", b"\x00", b"\xff" * 13, b"\x00" * 60, b"garbage" * 30]


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=120), reason=st.integers(-1, 6))
def test_garbage_never_raises(data, reason):
    h = Harness()
    eff = h.eng.handle(data, 1, reason, 0.0)
    assert not pkts(eff)
    assert all(isinstance(e, Log) and e.level == "debug" for e in eff)


def test_mutated_frames_never_raise():
    rnd = random.Random(7)
    h, syn, inst = spliced()
    good = [h.cframe("PA", data=GET), h.cframe("S", seq=1, ack=0),
            h.sframe(syn, "SA", 1, h.cisn + 1), inst.then[0].frame]
    for _ in range(1500):
        f = bytearray(rnd.choice(good))
        for _ in range(rnd.randint(1, 4)):
            f[rnd.randrange(len(f))] = rnd.randrange(256)
        if rnd.random() < 0.2:
            f = f[:rnd.randrange(len(f))]
        eff = h.eng.handle(bytes(f), rnd.choice([1, 2]), rnd.randint(1, 4), h.now)
        assert not [e for e in eff if isinstance(e, Log) and e.level == "error"]


def test_bad_frames_counted_and_logs_rate_limited():
    h = Harness(config=Config(log_interval=1.0))
    good = h.cframe("PA", data=b"x")
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    logs = []
    for i in range(100):
        logs += h.eng.handle(bad, 1, 1, 10.0 + i * 0.01)
    assert h.eng.stats.bad_frames == 100
    assert h.eng.stats.bad_kinds == {"bad_tcp_checksum": 100}
    assert len(logs) == 1 and logs[0].level == "debug"
    later = h.eng.handle(bad, 1, 1, 12.0)
    assert later[0].fields["suppressed"] == 99
    h.eng.handle(b"\x00" * 10, 1, 1, 12.0)
    assert h.eng.stats.bad_kinds["truncated"] == 1


def test_fin_copies_after_rewrite_are_recognised():
    """A target may mirror the rewritten frame instead of the received one."""
    from p4cs.csproc.packet import apply_splice
    for mode in ("transparent", "snat"):
        h, syn, inst = spliced(mode=mode)
        c2s, s2c = inst.flows
        fin_s = apply_splice(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), s2c)
        assert h.server(fin_s, reason=4) == []
        fin_c = apply_splice(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), c2s)
        rm, = of(h.client(fin_c, reason=4), RemoveFlows)
        assert set(rm.keys) == {c2s.key, s2c.key}
        c = h.eng.by_id[c2s.conn_id]
        assert c.sl.nxt == 502 and c.cl.nxt == h.cisn + 1 + len(GET) + 1


def test_ip_exception_reason_goes_the_client_path(h):
    assert pkts(h.client(h.cframe("S", seq=h.cisn, ack=0), reason=5))[0][1][TCP].flags \
        == "SA"


def test_server_reset_after_splice_reaches_client_translated():
    # relay phase: the server resets instead of acknowledging the request
    h = Harness()
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    syn = h.to_server_syn(h.send(b"Host: a\r\n\r\n", rel=16))
    inst, = of(h.server(h.sframe(syn, "SA", 500, h.cisn + 1)), InstallFlows)
    eff = h.server(h.sframe(syn, "RA", 501, h.cisn + 1))
    (port, rst), = pkts(eff)
    assert port == 1 and rst[TCP].flags == "RA" and rst[TCP].seq == h.sisn + 1
    assert rst[IP].src == "10.0.0.100"
    rm, = of(eff, RemoveFlows)
    assert rm.keys == [inst.flows[0].key]
    # spliced, the RST missed in the data plane (flow being installed)
    h, syn, inst = spliced()
    eff = h.server(h.sframe(syn, "R", 501, 0))
    (port, rst), = pkts(eff)
    assert port == 1 and rst[TCP].flags == "R" and rst[TCP].seq == h.sisn + 1
    assert of(eff, RemoveFlows)


def test_client_reset_while_connecting_then_late_synack_is_reset():
    h = Harness()
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    h.client(h.cframe("R", rel=len(GET), ack=0))
    assert not h.eng.by_id and h.servers[0].active == 0
    (port, rst), = pkts(h.server(h.sframe(syn, "SA", 9, h.cisn + 1)))
    assert port == 2 and rst[TCP].flags == "R" and rst[TCP].seq == h.cisn + 1


def test_install_failure_after_close_only_cleans_up():
    h, syn, inst = spliced()
    h.server(h.sframe(syn, "R", 501, 0), reason=4)
    eff = h.eng.install_failed(inst.flows[0].conn_id, h.now)
    assert pkts(eff) == [] and of(eff, RemoveFlows) and not h.eng.by_id


def test_listing_and_deadline():
    h, syn, inst = spliced()
    (row,) = h.eng.connections()
    assert row["state"] == "spliced" and row["server"] == "10.0.1.1:8080"
    assert row["client"] == "192.168.1.10:40000" and row["rule"] == "all"
    h2 = Harness()
    h2.handshake()
    h2.client(h2.cframe("A"))
    assert h2.eng.next_deadline() == h2.now + h2.cfg.request_timeout


def test_lost_flows_reset_both_legs_when_they_answer():
    """A restarted switch lost the entries: each leg gets a probe at an old sequence number,
    and its answer (an ACK at whatever sequence numbers the fast path reached) an exact RST."""
    h, syn, inst = spliced(config=Config(reset_probes=3, reset_probe_interval=1.0, window_scale=7))
    c2s, s2c = inst.flows
    eff = h.eng.flow_lost(c2s.key, h.now)
    probes = dict(pkts(eff))
    M = 1 << 32
    assert probes[1][TCP].flags == "A" and probes[1][IP].dst == CLIENT
    assert probes[2][TCP].flags == "A" and probes[2][IP].dst == syn[IP].dst
    # old numbers: just below what each end had received when the connection was spliced
    assert probes[2][TCP].seq == (h.cisn + len(GET)) % M
    assert probes[1][TCP].seq == h.sisn % M
    assert h.eng.stats.spliced_active == 0 and h.eng.stats.flows_lost == 1
    assert h.eng.flow_lost(s2c.key, h.now) == []            # the same connection
    assert h.eng.connections()[0]["state"] == "resetting"
    (port, rst), = pkts(h.client(h.cframe("A", seq=h.cisn + 1 + len(GET), ack=123456789)))
    assert port == 1 and rst[TCP].flags == "R" and rst[TCP].seq == 123456789
    # A reset leg is answered so until the next probe time: its challenge ACK (RCV.NXT moved
    # on by data still in flight) gets the exact RST.
    (port, rst), = pkts(h.client(h.cframe("A", seq=h.cisn + 1 + len(GET), ack=123460000)))
    assert port == 1 and rst[TCP].flags == "R" and rst[TCP].seq == 123460000
    assert h.client(h.cframe("R", seq=h.cisn + 1 + len(GET), ack=0)) == []
    # the probes are repeated to the leg that has not answered
    assert [port for port, _ in pkts(h.tick(1.0))] == [2]
    (port, rst), = pkts(h.server(h.sframe(syn, "A", 987654321, 55555)))
    assert port == 2 and rst[TCP].flags == "R" and rst[TCP].seq == 55555
    assert h.servers[0].active == 0
    # both legs reset: forgotten at the next probe time, nothing more sent
    assert pkts(h.tick(1.0)) == [] and not h.eng.by_id


def test_a_reset_clients_next_connection_on_its_port_is_not_reset():
    """A leg once reset is answered with RSTs until the next probe time, but a new connection
    of the client on the same 4-tuple (its SYN, then the ACK of the cookie) is bound."""
    h, syn, inst = spliced(config=Config(reset_probes=3, reset_probe_interval=1.0, window_scale=7))
    h.eng.flow_lost(inst.flows[0].key, h.now)
    (port, rst), = pkts(h.client(h.cframe("A", seq=h.cisn + 1 + len(GET), ack=123456789)))
    assert rst[TCP].flags == "R" and h.eng.connections()[0]["state"] == "resetting"
    h.cisn += 100000
    rm, = of(h.syn(), RemoveFlows)               # the tombstone ends for the new connection
    (port, synack), = pkts(list(rm.then))        # (its SYN-ACK once the old keys are gone)
    assert synack[TCP].flags == "SA" and h.eng.stats.reincarnations == 1
    h.sisn = synack[TCP].seq
    eff = h.send(GET)
    assert h.to_server_syn(eff)[TCP].flags == "S"
    assert not [p for _port, p in pkts(eff) if p[TCP].flags == "R"]
    assert [c["state"] for c in h.eng.connections()] == ["connecting"]


def test_lost_flows_forgotten_when_nobody_answers():
    h, syn, inst = spliced(config=Config(reset_probes=3, reset_probe_interval=1.0, window_scale=7))
    assert len(pkts(h.eng.flow_lost(inst.flows[0].key, h.now))) == 2
    assert len(pkts(h.tick(1.0))) == 2
    assert len(pkts(h.tick(1.0))) == 2
    assert pkts(h.tick(1.0)) == [] and not h.eng.by_id and h.servers[0].active == 0


def test_lost_flows_of_a_closed_connection_change_nothing():
    h, syn, inst = spliced()
    h.server(h.sframe(syn, "R", 501, 0), reason=4)
    assert h.eng.flow_lost(inst.flows[0].key, h.now) == []
    assert h.eng.stats.flows_lost == 0


def test_half_closed_idle_connection_ends_when_its_entries_carry_nothing():
    """The server's FIN copy came, the client's never does (lost on the way to the CPU, as
    BMv2's 64-packet queue loses them under a burst of closes): the engine has the entries'
    packets counted every half_closed_idle seconds and ends the connection once a count
    equals the previous one, instead of leaving it to the flow idle timeout (300 s)."""
    h, syn, inst = spliced(config=Config(time_wait=2.0, half_closed_idle=10.0, window_scale=7))
    keys = tuple(f.key for f in inst.flows)
    srv = h.servers[0]
    assert h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4) == []
    assert h.tick(9.9) == []
    cnt, = h.tick(0.2)
    assert isinstance(cnt, CountFlows) and cnt.keys == keys
    assert h.eng.flows_counted((keys[0], 7), h.now) == []         # the first count
    assert srv.active == 1
    cnt, = h.tick(10.0)
    eff = h.eng.flows_counted((keys[1], 7), h.now)   # nothing moved (either key names it)
    rm, = of(eff, RemoveFlows)
    assert rm.keys == list(keys) and rm.after == 2.0
    assert srv.active == 0 and h.eng.stats.half_closed_idle == 1
    h.check()


def test_half_closed_connection_that_still_carries_data_is_left_alone():
    """A client that shut down its sending side while the server still sends (half-close,
    a download): the counts grow, the connection stays; the server's FIN then ends it as
    usual, and no count is asked any more."""
    h, syn, inst = spliced(config=Config(time_wait=2.0, half_closed_idle=10.0, window_scale=7))
    keys = tuple(f.key for f in inst.flows)
    srv = h.servers[0]
    assert h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 1), reason=4) == []
    for packets in (100, 250, 900):
        cnt, = h.tick(10.0)
        assert isinstance(cnt, CountFlows)
        assert h.eng.flows_counted((keys[0], packets), h.now) == []
        assert srv.active == 1
    # a count that could not be read is no evidence either way
    cnt, = h.tick(10.0)
    assert h.eng.flows_counted((keys[0], None), h.now) == []
    cnt, = h.tick(10.0)
    assert h.eng.flows_counted((keys[0], 900), h.now) == []
    eff = h.server(h.sframe(syn, "FA", 501, h.cisn + 2 + len(GET)), reason=4)
    rm, = of(eff, RemoveFlows)
    assert srv.active == 0 and h.eng.stats.half_closed_idle == 0
    assert not any(isinstance(e, CountFlows) for e in h.tick(30.0))


def test_half_closed_idle_zero_leaves_it_to_the_idle_timeout():
    h, syn, inst = spliced(config=Config(half_closed_idle=0, window_scale=7))
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4)
    assert h.tick(100.0) == []
    assert h.servers[0].active == 1


def test_half_closed_counting_stops_when_turned_off_live():
    """A live edit sets half_closed_idle to 0 while a connection waits for its count: the
    timer ends there (no count every tick); the idle timeout is left to end it."""
    h, syn, inst = spliced(config=Config(half_closed_idle=10.0, window_scale=7))
    keys = tuple(f.key for f in inst.flows)
    h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4)
    cnt, = h.tick(10.0)
    h.eng.cfg.half_closed_idle = 0
    assert h.eng.flows_counted((keys[0], 7), h.now) == []
    assert h.eng.next_deadline() is None or h.eng.next_deadline() > h.now
    assert h.tick(0.0) == [] and h.tick(100.0) == []
    assert h.servers[0].active == 1


def _logs(effects):
    return [e.msg for e in effects if isinstance(e, Log)]


def test_spliced_and_teardown_logs_only_when_wanted():
    """The access log's "spliced" line and the debug "teardown" line are effects by default;
    an engine told nobody writes them (the controller without an access log, below debug
    level) builds neither, and does the same otherwise."""
    for on in (True, False):
        h = Harness(config=Config(time_wait=2.0))
        h.eng.log_spliced = h.eng.log_debug = on
        h.handshake()
        syn = h.to_server_syn(h.send(GET))
        eff = h.server(h.sframe(syn, "SA", 500, h.cisn + 1))
        assert len(of(eff, InstallFlows)) == 1
        assert _logs(eff) == (["spliced"] if on else [])
        assert h.server(h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET)), reason=4) == []
        eff = h.client(h.cframe("FA", rel=len(GET), ack=h.sisn + 2), reason=4)
        assert len(of(eff, RemoveFlows)) == 1
        assert _logs(eff) == (["teardown"] if on else [])
        assert h.eng.stats.spliced == 1 and h.eng.stats.teardowns == 1


def test_expiry_of_a_half_closed_connection_leaves_a_tombstone():
    """The server's FIN moved its entry to the short expiry profile; under loss its last
    segments may come back after the entry expired: the connection is closed as after both
    FINs (the client's entry removed after TIME_WAIT), and a late server segment is still
    spliced in software to the client."""
    h, syn, inst = spliced(config=Config(time_wait=2.0))
    c2s, s2c = inst.flows
    fin_s = h.sframe(syn, "FA", 501, h.cisn + 1 + len(GET))
    assert h.server(fin_s, reason=4) == []              # the FIN copy: half-closed
    eff = h.eng.flow_expired(s2c.key, h.now)
    rm, = of(eff, RemoveFlows)
    assert set(rm.keys) == {c2s.key, s2c.key} and rm.after == 2.0
    assert h.eng.stats.teardowns == 1 and h.eng.stats.flows_expired == 1
    assert h.servers[0].active == 0 and h.eng.stats.spliced_active == 0
    (port, p), = pkts(h.server(fin_s, reason=2))        # retransmitted, missed: to the client
    assert port == 1 and p[TCP].flags == "FA" and p[TCP].seq == h.sisn + 1
    assert h.eng.flow_expired(c2s.key, h.now) == []
