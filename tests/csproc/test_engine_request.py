"""Request reassembly, limits, local answers, server failures."""

import pytest
from scapy.layers.inet import IP, TCP

from p4cs.csproc import Config, Decision, InstallFlows, Log, PacketOut, PrefixRouter, Route

from cs_harness import (CLIENT, S1, S2, VIP, EveryRequest, Harness, ip_int, of, payload,
                        pkts, valid)

M = 2**32

# Slide 71: "Content-length: 7" ends segment n, "53\r\n" starts segment n+1.
SEG_N = (b"POST /cgi-bin/cs622/purchase.pl HTTP/1.0\r\n"
         b"Referer: http://archie.uccs.edu/~acsd/lcs/xmldemo.html\r\n"
         b"Connection: Keep-Alive\r\n"
         b"User-Agent: Mozilla/4.75 [en] (X11; U; Linux 2.2.16-22enterprise i686) \r\n"
         b"Host: viva.uccs.edu\r\n"
         b"Accept: image/gif, image/x-xbitmap, image/jpeg, image/pjpeg, image/png, */*\r\n"
         b"Accept-Encoding: gzip\r\nAccept-Language: en\r\n"
         b"Accept-Charset: iso-8859-1,*,utf-8\r\n"
         b"Content-type: application/x-www-form-urlencoded\r\n"
         b"Content-length: 7")
SEG_N1 = b"53\r\n\r\n" + b"x" * 753


class BodyRouter(PrefixRouter):
    """A decider that needs the body and records what it was given."""

    needs_body = True

    def __init__(self):
        super().__init__([Route("all", "web", "/")])
        self.seen = []

    def decide(self, raw, client=None, vip=None):
        self.seen.append(raw)
        return super().decide(raw, client, vip)


def client_pkts(eff):
    return [p for port, p in pkts(eff) if port == 1]


def test_slide71_content_length_split_across_segments():
    r = BodyRouter()
    h = Harness(router=r, config=Config(mss=1460))
    h.handshake()
    eff = h.send(SEG_N)
    (ack,) = client_pkts(eff)
    assert ack[TCP].ack == h.cisn + 1 + len(SEG_N) and not r.seen
    body = SEG_N1[:600]
    eff = h.send(body, rel=len(SEG_N))                  # body incomplete: 753 needed
    assert not r.seen and client_pkts(eff)[0][TCP].ack == h.cisn + 1 + len(SEG_N) + 600
    syn = h.to_server_syn(h.send(SEG_N1[600:], rel=len(SEG_N) + 600))
    assert r.seen == [SEG_N + SEG_N1]
    eff = h.server(h.sframe(syn, "SA", 3, h.cisn + 1))
    inst, = of(eff, InstallFlows)
    from cs_harness import valid
    assert b"".join(payload(valid(p.frame)) for p in inst.then) == SEG_N + SEG_N1


def test_headers_only_rules_decide_without_waiting_for_body(h):
    h.handshake()
    eff = h.send(SEG_N + b"53\r\n\r\n")
    assert h.to_server_syn(eff)


def test_chunked_body_waits_for_last_chunk():
    r = BodyRouter()
    h = Harness(router=r)
    h.handshake()
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    h.send(head + b"5\r\nhello\r\n")
    assert not r.seen
    h.to_server_syn(h.send(b"0\r\n\r\n", rel=len(head) + 10))
    assert r.seen == [head + b"5\r\nhello\r\n0\r\n\r\n"]


def test_out_of_order_segments_are_reassembled(h):
    h.handshake()
    a, b, c = b"GET /abc HTTP/1.1\r\n", b"Host: www.example", b".com\r\n\r\n"
    # Before the handshake ACK, a segment that is not the first cannot validate the
    # cookie (dropped, the client retransmits); after it, holes are buffered.
    assert pkts(h.send(b, rel=len(a))) == [] and not h.eng.by_id
    h.client(h.cframe("A"))
    eff = h.send(b, rel=len(a))                    # hole at the start
    (dup,) = client_pkts(eff)
    assert dup[TCP].ack == h.cisn + 1               # duplicate ACK for the hole
    eff = h.send(c, rel=len(a + b))
    assert client_pkts(eff)[0][TCP].ack == h.cisn + 1
    syn = h.to_server_syn(h.send(a))               # fills the hole: complete request
    inst, = of(h.server(h.sframe(syn, "SA", 1, h.cisn + 1)), InstallFlows)
    from cs_harness import valid
    assert b"".join(payload(valid(p.frame)) for p in inst.then) == a + b + c
    assert h.eng.stats.out_of_order == 2


def test_overlapping_retransmission_is_trimmed(h):
    h.handshake()
    a = b"GET / HTTP/1.1\r\nHost"
    h.send(a)
    syn = h.to_server_syn(h.send(b"1.1\r\nHost: x\r\n\r\n", rel=len(a) - 9))
    inst, = of(h.server(h.sframe(syn, "SA", 1, h.cisn + 1)), InstallFlows)
    from cs_harness import valid
    assert b"".join(payload(valid(p.frame)) for p in inst.then) == \
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def response(eff):
    ps = client_pkts(eff)
    assert ps and "F" in str(ps[-1][TCP].flags)
    return b"".join(payload(p) for p in ps)


def test_header_too_big_is_431():
    h = Harness(config=Config(max_header_bytes=512))
    h.handshake()
    eff = h.send(b"GET / HTTP/1.1\r\nX: " + b"a" * 600)
    assert response(eff).startswith(b"HTTP/1.1 431 ")
    assert h.eng.stats.limit_header == 1
    assert [e for e in eff if isinstance(e, Log) and e.fields.get("status") == 431]


def test_body_too_big_is_413():
    h = Harness(router=BodyRouter(), config=Config(max_body_bytes=100))
    h.handshake()
    eff = h.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")
    assert response(eff).startswith(b"HTTP/1.1 413 ")
    h2 = Harness(router=BodyRouter(), config=Config(max_body_bytes=100))
    h2.handshake()
    head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    eff = h2.send(head + b"80\r\n" + b"z" * 128 + b"\r\n")
    assert response(eff).startswith(b"HTTP/1.1 413 ")
    assert h2.eng.stats.limit_body == 1


def test_window_bounds_buffered_bytes():
    h = Harness(config=Config(max_header_bytes=1000, max_body_bytes=0))
    p = h.handshake()
    assert p[TCP].window == 1000
    eff = h.send(b"GET / HTTP/1.1\r\n")
    assert client_pkts(eff)[0][TCP].window == 1000 - 16   # right edge stays put


def test_slowloris_gets_408_then_state_is_freed():
    h = Harness(config=Config(request_timeout=10))
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    for i in range(3):
        h.now += 3
        h.send(b"X: y\r\n", rel=16 + 6 * i)
    eff = h.tick(1.5)
    assert response(eff).startswith(b"HTTP/1.1 408 ")
    assert h.eng.stats.limit_timeout == 1 and h.eng.stats.half_bound == 1
    # the client never answers: response retransmitted, then reset and freed
    retr = h.tick(0.6)
    assert response(retr).startswith(b"HTTP/1.1 408 ")
    eff = h.tick(10)
    assert [p[TCP].flags for p in client_pkts(eff)] == ["R"]
    assert not h.eng.by_id and h.eng.stats.half_bound == 0


def test_clean_close_after_local_answer():
    h = Harness(routes=[Route("no", None, "/", action="reject")])
    h.handshake()
    eff = h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    resp = response(eff)
    assert resp.startswith(b"HTTP/1.1 403 Forbidden\r\n") and b"Connection: close" in resp
    last = client_pkts(eff)[-1]
    fin_end = last[TCP].seq + len(payload(last)) + 1
    assert last[TCP].ack == h.cisn + 1 + 27
    # client acks our FIN and sends its own
    eff = h.client(h.cframe("FA", rel=27, ack=fin_end))
    (ack,) = client_pkts(eff)
    assert ack[TCP].ack == h.cisn + 1 + 27 + 1 and ack[TCP].seq == fin_end
    h.tick(3)
    assert not h.eng.by_id and h.eng.stats.rejected == 1


def test_redirect_is_302():
    h = Harness(routes=[Route("r", "https://www.example.com/", "/", action="redirect")])
    h.handshake()
    resp = response(h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert resp.startswith(b"HTTP/1.1 302 Found\r\n")
    assert b"\r\nLocation: https://www.example.com/\r\n" in resp


def test_no_match_without_default_group_is_503():
    h = Harness(routes=[Route("img", "web", "/img/")])
    h.svc.default_group = None
    h.handshake()
    assert response(h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")).startswith(
        b"HTTP/1.1 503 ")
    assert h.eng.stats.no_server == 1


def test_bad_request_is_400(h):
    h.handshake()
    assert response(h.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")).startswith(
        b"HTTP/1.1 400 ")
    h2 = Harness()
    h2.handshake()   # request smuggling attempt
    assert response(h2.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n")).startswith(
        b"HTTP/1.1 400 ")


def test_half_bound_limit_resets():
    h = Harness(config=Config(max_half_bound=1))
    h.handshake()
    h.client(h.cframe("A"))
    h.cport += 1
    h.cisn = 77
    h.handshake()
    eff = h.client(h.cframe("A"))
    (rst,) = client_pkts(eff)
    assert rst[TCP].flags == "R" and rst[TCP].seq == h.sisn + 1
    assert h.eng.stats.limit_half_bound == 1 and len(h.eng.by_id) == 1
    assert [e.level for e in eff if isinstance(e, Log)] == ["warning"]


def test_client_reset_frees_state(h):
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    h.client(h.cframe("R", rel=16))
    assert not h.eng.by_id and h.eng.stats.client_resets == 1
    assert h.eng.stats.half_bound == 0


@pytest.mark.parametrize("redispatch", [0, 1])
def test_server_refuses(redispatch):
    h = Harness(config=Config(redispatch=redispatch))
    h.handshake()
    syn = h.to_server_syn(h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert syn[IP].dst == S1
    eff = h.server(h.sframe(syn, "RA", 0, h.cisn + 1))
    assert h.eng.stats.server_refused == 1 and h.servers[0].active == 0
    if redispatch:
        syn2 = h.to_server_syn(eff)
        assert syn2[IP].dst == S2 and syn2[TCP].seq == h.cisn
        eff = h.server(h.sframe(syn2, "RA", 0, h.cisn + 1))
    assert response(eff).startswith(b"HTTP/1.1 503 ")
    assert [s.active for s in h.servers] == [0, 0]


def test_server_silent_syn_retries_then_503():
    h = Harness(config=Config(redispatch=0, server_syn_rto=1.0, server_syn_retries=2,
                                window_scale=7, server_syn_jitter=0))
    h.handshake()
    syn = h.to_server_syn(h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert h.to_server_syn(h.tick(1.0))[TCP].seq == syn[TCP].seq
    assert h.tick(1.0) == []
    assert h.to_server_syn(h.tick(1.0))
    eff = h.tick(4.0)
    assert response(eff).startswith(b"HTTP/1.1 503 ")
    assert h.eng.stats.server_timeouts == 1 and not h.eng.conns_s
    # the late SYN-ACK of the abandoned server connection is reset
    (port, rst), = pkts(h.server(h.sframe(syn, "SA", 9, h.cisn + 1)))
    assert port == 2 and rst[TCP].flags == "R" and rst[TCP].seq == h.cisn + 1


def test_server_synack_with_wrong_ack_is_reset(h):
    h.handshake()
    syn = h.to_server_syn(h.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
    eff = h.server(h.sframe(syn, "SA", 9, h.cisn + 5))
    (port, rst), = pkts(eff)
    assert rst[TCP].flags == "R" and rst[TCP].seq == h.cisn + 5 and not of(eff, InstallFlows)


def test_decider_error_answers_503_and_logs():
    class Broken:
        needs_body = False

        def decide(self, raw, client, vip):
            raise RuntimeError("boom")

    h = Harness(router=Broken())
    h.handshake()
    eff = h.eng.handle(h.cframe("PA", data=b"GET / HTTP/1.1\r\n\r\n"), 1, 1, h.now)
    assert response(eff).startswith(b"HTTP/1.1 503 ")
    assert [e for e in eff if isinstance(e, Log) and e.level == "error"]


def test_rule_logs_and_nonsticky_decision():
    class R:
        needs_body = False

        def decide(self, raw, client, vip):
            assert client == ("192.168.1.10", 40000) and vip == ("10.0.0.100", 80)
            return Decision("r1", "routeTo", "web", sticky=False, logs=("big purchase",))

    h = Harness(router=R())
    h.handshake()
    eff = h.send(b"GET / HTTP/1.1\r\n\r\n")
    msgs = [e.msg for e in eff if isinstance(e, Log)]
    assert "big purchase" in msgs and not any("NONSTICKY" in m for m in msgs)
    assert h.to_server_syn(eff)
    # every later request is classified on its own (test_engine_nonsticky.py)
    assert h.eng.by_id[1].ka is not None


def test_global_buffer_budget_applies_backpressure():
    h = Harness(config=Config(max_buffered_bytes=100))
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\nX: " + b"a" * 70)       # 89 bytes buffered, acked
    assert h.eng.stats.buffered_bytes == 89
    h.cport, h.cisn = h.cport + 1, 5
    h.handshake()
    eff = h.send(b"GET / HTTP/1.1\r\nX: " + b"b" * 70)
    assert client_pkts(eff) == []                        # not accepted, not acked
    assert h.eng.stats.limit_memory == 1 and h.eng.stats.buffered_bytes == 89
    h.cport, h.cisn = h.cport - 1, 1000
    h.sisn = None
    h.client(h.cframe("R", rel=89, ack=0))              # first client goes away
    assert h.eng.stats.buffered_bytes == 0


@pytest.mark.parametrize("cisn", [M - 1, M - 5, M - 20])
def test_reassembly_across_sequence_wrap(cisn):
    h = Harness(cisn=cisn)
    h.handshake()
    h.client(h.cframe("A"))
    a, b, c = b"GET / HT", b"TP/1.1\r\nHost:", b" a\r\n\r\n"
    assert client_pkts(h.send(c, rel=len(a + b)))[0][TCP].ack == (cisn + 1) % M
    assert client_pkts(h.send(a))[0][TCP].ack == (cisn + 1 + len(a)) % M
    syn = h.to_server_syn(h.send(b, rel=len(a)))
    assert syn[TCP].seq == cisn
    eff = h.server(h.sframe(syn, "SA", 7, (cisn + 1) % M))
    inst, = of(eff, InstallFlows)
    from cs_harness import valid
    segs = [valid(p.frame) for p in inst.then]
    assert b"".join(payload(p) for p in segs) == a + b + c
    assert segs[0][TCP].seq == (cisn + 1) % M


def test_gap_while_connecting_dup_acks_only_owned_bytes():
    # nothing owned: a hole while connecting is left to the server to report
    h = Harness()
    h.handshake()
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n"
    h.to_server_syn(h.send(head))
    assert pkts(h.send(b"6789", rel=len(head) + 6)) == []
    # owned bytes: duplicate ACK at the owned edge, so the client fast-retransmits
    h = Harness()
    h.handshake()
    h.send(head[:20])
    h.to_server_syn(h.send(head[20:], rel=20))
    (ack,) = client_pkts(h.send(b"6789", rel=len(head) + 6))
    assert ack[TCP].ack == h.cisn + 1 + 20 and ack[TCP].flags == "A"


def test_blind_reset_outside_window_is_ignored(h):
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    h.client(h.cframe("R", rel=100000, ack=0))
    assert len(h.eng.by_id) == 1 and h.eng.stats.client_resets == 0


def test_syn_on_established_half_bound_connection():
    h = Harness()
    first = h.handshake()
    h.send(b"GET / HTTP/1.1\r\n")
    # same ISN: the client did not see our SYN-ACK; answer again with the same cookie
    (again,) = client_pkts(h.client(h.cframe("S", seq=h.cisn, ack=0,
                                             options=[("MSS", 1460)])))
    assert again[TCP].flags == "SA" and again[TCP].seq == first[TCP].seq
    assert again[TCP].ack == h.cisn + 1
    # another ISN on the same 4-tuple while the connection lives: ignored
    assert h.client(h.cframe("S", seq=h.cisn + 99999, ack=0)) == []
    assert len(h.eng.by_id) == 1


@pytest.mark.parametrize("router", [None, EveryRequest()], ids=["sticky", "nonsticky"])
def test_a_fin_before_bytes_already_received_does_not_cut_the_request(router):
    """A FIN whose place in the stream is before bytes the client already sent (a bogus or
    mangled old segment) is not the end of its stream: the whole request still goes to the
    server (it was cut to the FIN's place, and a NONSTICKY connection then failed to find
    the end of its header block when the server answered)."""
    get = b"GET /a HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"
    h = Harness(router=router)
    h.handshake()
    syn = h.to_server_syn(h.send(get))
    h.client(h.cframe("FA", data=get[:30]))              # FIN at offset 30 of 45
    h.client(h.cframe("FA", data=b"", rel=10))           # and one at 10, without data
    req = h.eng.conns_c[(ip_int(CLIENT), h.cport, ip_int(VIP), 80)].req
    assert bytes(req.buf) == get and req.fin_at is None
    eff = h.server(h.sframe(syn, "SA", 3, h.cisn + 1))
    inst = of(eff, InstallFlows)
    frames = inst[0].then if inst else [e for e in eff if isinstance(e, PacketOut)]
    assert b"".join(payload(valid(p.frame)) for p in frames) == get
    # the client's real FIN, after its request, still counts
    h.client(h.cframe("FA", rel=len(get)))
    assert h.eng.stats.bad_frames == 0
