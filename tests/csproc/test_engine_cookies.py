"""HTTP cookie persistence (docs/csproc.md section 15): the engine reads a connection's first
response up to the end of its header block; ``cookie-insert`` inserts its Set-Cookie line
there and moves the connection's sequence spaces past it, ``cookie-learn`` learns the
value the server set.  scapy plays the client and the servers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from p4cs.csproc import Config, InstallFlows, PrefixRouter, Route
from p4cs.csproc.httpcookie import ResponseWatch, request_cookie, server_id, session_key
from p4cs.csproc.packet import apply_splice
from p4cs.csproc.policy import Persistence

from cs_harness import S1, S2, Harness, RemoveFlows, of, payload, pkts, valid

M = 2**32
GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
HEAD = b"HTTP/1.1 200 OK\r\nServer: t\r\nContent-Length: 10\r\n\r\n"
BODY = b"0123456789"
INSERT = Persistence(kind="cookie-insert", name="SRV")
LEARN = Persistence(60, kind="cookie-learn", name="SESSIONID")


def line(server: str) -> bytes:
    return b"Set-Cookie: SRV=" + server_id(server).encode() + b"; Path=/\r\n"


def with_line(head: bytes, server: str) -> bytes:
    return head[:-2] + line(server) + b"\r\n"


class Conn:
    """One connection through the harness: the client's and the server's views."""

    def __init__(self, h, req=GET, s_isn=7000):
        self.h, self.req, self.s_isn = h, req, s_isn
        h.cport += 1
        h.handshake()
        eff = h.send(req)
        self.syn = h.to_server_syn(eff)
        self.server = self.syn[IP].dst
        self.name = "s1" if self.server == S1 else "s2"
        self.eff = h.server(h.sframe(self.syn, "SA", s_isn, (h.cisn + 1) % M))
        self.got: dict[int, bytes] = {}      # client stream offset -> bytes received
        self.cport, self.sisn = h.cport, h.sisn

    def s(self, off, data=b"", flags="PA"):
        """The server sends ``data`` at its stream offset ``off``: the effects; what reaches
        the client is recorded by client stream offset."""
        h = self.h
        h.cport, h.sisn = self.cport, self.sisn
        eff = h.server(h.sframe(self.syn, flags, (self.s_isn + 1 + off) % M,
                                (h.cisn + 1 + len(self.req)) % M, data))
        self.record(eff)
        return eff

    def record(self, eff):
        for port, p in pkts(eff):
            if port == 1 and payload(p):
                self.got[(p[TCP].seq - self.h.sisn - 1) % M] = payload(p)

    def stream(self) -> bytes:
        out = b""
        for off in sorted(self.got):
            assert off <= len(out), "gap in what the client got"
            out = out[:off] + self.got[off] + out[off + len(self.got[off]):]
        return out

    def ack(self, n):
        """The client acknowledges ``n`` bytes of its stream: the effects."""
        h = self.h
        h.cport, h.sisn = self.cport, self.sisn
        return h.client(h.cframe("A", rel=len(self.req), ack=(h.sisn + 1 + n) % M))


def test_request_cookie_and_set_cookie_parsing():
    req = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; SRV=\"x1\"\r\ncookie: b=2\r\n\r\n"
    assert request_cookie(req, b"SRV") == b"x1"
    assert request_cookie(req, b"b") == b"2"
    assert request_cookie(req, b"c") is None
    assert request_cookie(b"GET / HTTP/1.1\r\nX-Cookie: SRV=1\r\n\r\n", b"SRV") is None
    assert server_id("s1") != server_id("s2") and len(server_id("s1")) == 16
    with pytest.raises(ValueError, match="not a token"):
        Persistence(kind="cookie-insert", name="a b")
    with pytest.raises(ValueError, match="cookie name"):
        Persistence(kind="cookie-learn")
    with pytest.raises(ValueError, match="needs protocol http"):
        Harness(persistence=INSERT, protocol="tls")


@settings(max_examples=30, deadline=None)
@given(cisn=st.sampled_from([1000, M - 1, M - 20, 2**31 - 5]),
       s_isn=st.sampled_from([5, M - 1, M - 60, M - 61, 2**31]),
       mode=st.sampled_from(["transparent", "snat"]))
def test_insert_shifts_both_flows_by_the_line(cisn, s_isn, mode):
    h = Harness(mode=mode, cisn=cisn, persistence=INSERT)
    c = Conn(h, s_isn=s_isn)
    assert not of(c.eff, InstallFlows)              # both directions stay in the engine
    eff = c.s(0, HEAD + BODY)
    want = with_line(HEAD, c.name) + BODY
    assert c.stream() == want and not of(eff, InstallFlows)
    assert h.eng.stats.cookies_inserted == 1
    # the client acknowledges everything: the server sees its own bytes acknowledged
    eff = c.ack(len(want))
    (port, to_srv), = pkts(eff)
    assert port == 2 and to_srv[TCP].ack == (s_isn + 1 + len(HEAD + BODY)) % M
    inst, = of(eff, InstallFlows)
    c2s, s2c = inst.flows
    n = len(line(c.name))
    assert (s2c.seq_delta - (h.sisn - s_isn)) % M == n
    assert (c2s.ack_delta + s2c.seq_delta) % M == 0
    # later packets through the flows continue both legs exactly
    more = b"next bytes"
    srv = h.sframe(c.syn, "PA", (s_isn + 1 + len(HEAD + BODY)) % M,
                   (cisn + 1 + len(GET)) % M, more)
    to_client = valid(apply_splice(srv, s2c))
    assert to_client[TCP].seq == (h.sisn + 1 + len(want)) % M and payload(to_client) == more
    cli = h.cframe("PA", data=b"GET /2 HTTP/1.1\r\n\r\n", rel=len(GET),
                   ack=(h.sisn + 1 + len(want) + len(more)) % M)
    to_server = valid(apply_splice(cli, c2s))
    assert to_server[TCP].seq == (cisn + 1 + len(GET)) % M
    assert to_server[TCP].ack == (s_isn + 1 + len(HEAD + BODY) + len(more)) % M


@pytest.mark.parametrize("cut", [[5], [len(HEAD) - 1], [len(HEAD) - 2], [len(HEAD) - 3],
                                 [len(HEAD) - 4], [len(HEAD)], [3, 20, len(HEAD) - 1]])
def test_header_split_across_segments(cut):
    """Wherever the segments cut the header block (inside the final CR LF CR LF too), the
    client gets the block with the line before its final CRLF, every byte once in place."""
    h = Harness(persistence=INSERT)
    c = Conn(h)
    resp = HEAD + BODY
    bounds = [0] + cut + [len(resp)]
    for a, b in zip(bounds, bounds[1:]):
        c.s(a, resp[a:b])
    want = with_line(HEAD, c.name) + BODY
    assert c.stream() == want
    inst, = of(c.ack(len(want)), InstallFlows)
    assert len(inst.flows) == 2


def test_rewritten_segment_is_resent_identically_and_acks_map_into_the_server_space():
    """A retransmission of the segment that holds the point (or of one before it) goes out
    as the first time; a client ACK before the line acknowledges only what came before."""
    h = Harness(persistence=INSERT)
    c = Conn(h)
    first = c.s(0, HEAD[:10])
    second = c.s(10, HEAD[10:] + BODY)
    again = c.s(10, HEAD[10:] + BODY)
    frames = lambda eff: [bytes(p) for port, p in pkts(eff) if port == 1]  # noqa: E731
    assert frames(again) == frames(second)
    assert frames(c.s(0, HEAD[:10])) == frames(first)
    # the client acknowledges the first ten bytes only: the server sees ten
    (port, p), = pkts(c.ack(10))
    assert port == 2 and p[TCP].ack == (7000 + 1 + 10) % M
    assert h.eng.by_id[max(h.eng.by_id)].state == "relaying"


def test_rewritten_segment_above_the_mss_is_split_at_the_point():
    """The line makes a full-sized segment too big: it is split at the insertion point, so
    that an ACK of the first piece is an ACK of the bytes before the line."""
    h = Harness(persistence=INSERT)
    c = Conn(h)
    head = b"HTTP/1.1 200 OK\r\nX: " + b"y" * 1300 + b"\r\nContent-Length: 150\r\n\r\n"
    resp = head + b"b" * (1460 - len(head))
    eff = c.s(0, resp)
    sizes = [len(payload(p)) for port, p in pkts(eff) if port == 1]
    assert sizes == [len(head) - 2, 2 + len(line(c.name)) + 1460 - len(head)]
    assert c.stream() == with_line(head, c.name) + resp[len(head):]
    (port, p), = pkts(c.ack(len(head) - 2))
    assert p[TCP].ack == (7000 + 1 + len(head) - 2) % M
    assert of(c.ack(len(c.stream())), InstallFlows)


def test_interim_response_is_passed_and_the_final_one_gets_the_line():
    h = Harness(persistence=INSERT)
    c = Conn(h)
    cont = b"HTTP/1.1 100 Continue\r\n\r\n"
    c.s(0, cont)
    c.s(len(cont), HEAD + BODY)
    assert c.stream() == cont + with_line(HEAD, c.name) + BODY


def test_oversize_header_passes_unchanged():
    h = Harness(persistence=INSERT)
    c = Conn(h)
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 90)
                                             for i in range(200)) + b"\r\n"
    resp = head + BODY
    eff = []
    for off in range(0, len(resp), 1400):
        eff += c.s(off, resp[off:off + 1400])
    assert c.stream() == resp
    assert h.eng.stats.limit_response_header == 1 and h.eng.stats.cookies_inserted == 0
    inst, = of(eff, InstallFlows)      # at once: nothing was inserted
    c2s, s2c = inst.flows
    assert (s2c.seq_delta - (h.sisn - 7000)) % M == 0 and (c2s.ack_delta + s2c.seq_delta) % M == 0


def test_invalid_response_resets_both_and_spares_other_connections():
    h = Harness(persistence=INSERT)
    ok = Conn(h)
    bad = Conn(h)
    eff = bad.s(0, b"SSH-2.0-OpenSSH\r\n")
    rst = [(port, p) for port, p in pkts(eff) if p[TCP].flags & 0x04]
    assert sorted(port for port, _ in rst) == [1, 2]
    assert not bad.got and h.eng.stats.bad_responses == 1
    ok.s(0, HEAD + BODY)
    assert ok.stream() == with_line(HEAD, ok.name) + BODY


def test_valid_cookie_is_spliced_at_once_and_a_dead_servers_falls_back():
    h = Harness(persistence=INSERT)
    req = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: SRV=" + server_id("s2").encode() + b"\r\n\r\n"
    for _ in range(2):      # rr would alternate; the cookie keeps s2
        c = Conn(h, req)
        assert c.server == S2
        inst, = of(c.eff, InstallFlows)
        assert [f.direction for f in inst.flows] == ["c2s", "s2c"]
    h.servers[1].up = False
    c = Conn(h, req)
    assert c.server == S1 and not of(c.eff, InstallFlows)
    c.s(0, HEAD + BODY)
    assert c.stream() == with_line(HEAD, "s1") + BODY
    h.servers[1].up = True
    h.servers[1].weight = 0         # a drained server gets no new cookie connections
    assert Conn(h, req).server == S1


def test_no_first_response_in_time_resets_both():
    h = Harness(persistence=INSERT, config=Config(window_scale=7, flow_idle_timeout=30))
    Conn(h)
    h.tick(29)
    assert h.eng.by_id
    eff = h.tick(2)
    assert len([p for port, p in pkts(eff) if p[TCP].flags & 0x04]) == 2 and not h.eng.by_id


def test_learn_pins_later_connections_to_the_server_that_set_the_cookie():
    h = Harness(persistence=LEARN)
    c = Conn(h)
    head = b"HTTP/1.1 200 OK\r\nSet-Cookie: SESSIONID=abc; Path=/\r\nContent-Length: 10\r\n\r\n"
    eff = c.s(0, head + BODY)
    assert c.stream() == head + BODY                    # nothing changed
    s2c, = [f for i in of(eff, InstallFlows) for f in i.flows]
    assert s2c.direction == "s2c" and of(c.eff, InstallFlows)[0].flows[0].direction == "c2s"
    (t,) = h.eng.templates(h.now)
    assert t["client"] == session_key(b"abc") and t["server_name"] == c.name
    req = b"GET /x HTTP/1.1\r\nHost: a\r\nCookie: x=1; SESSIONID=abc\r\n\r\n"
    assert [Conn(h, req).name for _ in range(3)] == [c.name] * 3
    # a dead (or drained) server's cookie goes by the scheduler
    srv = next(s for s in h.servers if s.name == c.name)
    srv.weight = 0
    assert {Conn(h, req).name for _ in range(2)} == {"s1", "s2"} - {c.name}
    rows = h.eng.policy.export_templates(h.now)
    assert rows and all(r[1].startswith("cookie:") for r in rows)
    other = Harness(persistence=LEARN)
    assert other.eng.policy.import_templates(rows, other.now) == len(rows)
    assert Harness(persistence=Persistence(kind="tls-session"), protocol="tls").eng.policy \
        .import_templates(rows, other.now) == 0


def test_learn_templates_are_bounded():
    h = Harness(persistence=Persistence(60, kind="cookie-learn", name="SESSIONID",
                                        max_sessions=2))
    conns = []
    for v in (b"a", b"b", b"c"):
        c = Conn(h)
        c.s(0, b"HTTP/1.1 200 OK\r\nSet-Cookie: SESSIONID=" + v + b"\r\n\r\n")
        conns.append(c)
    assert {t["client"] for t in h.eng.templates(h.now)} == {session_key(b"a"),
                                                             session_key(b"b")}
    assert h.eng.stats.sessions_not_learned == 1


def test_learn_passes_a_bad_response_and_learns_nothing():
    h = Harness(persistence=LEARN)
    c = Conn(h)
    eff = c.s(0, b"garbage\r\n\r\n")
    assert c.stream() == b"garbage\r\n\r\n" and of(eff, InstallFlows)
    assert h.eng.stats.bad_responses == 1 and h.eng.templates(h.now) == []


def test_watch_reads_split_headers_and_ignores_out_of_order_bytes():
    w = ResponseWatch(b"SID", None)
    resp = b"HTTP/1.1 200 OK\r\nSet-Cookie: SID=q1; HttpOnly\r\n\r\nbody"
    w.feed(20, resp[20:])
    assert not w.settled
    for i in range(0, len(resp), 3):
        w.feed(i, resp[i:i + 3])
    assert w.settled and w.learned == b"q1" and w.point is None


@settings(max_examples=20, deadline=None)
@given(cisn=st.sampled_from([1000, M - 1, M - 30]), s_isn=st.sampled_from([5, M - 1, M - 70]))
def test_insert_with_a_request_the_switch_owns_and_rewrites(cisn, s_isn):
    """A service that may reject relays one request with Connection: close (the client's
    space shifted by 19 bytes, §9), and inserts the cookie (the server's shifted by the
    line): the flows carry both shifts, each in its own direction."""
    from p4cs.csproc.framing import CLOSE, one_request
    h = Harness(router=PrefixRouter([Route("deny", None, "/secret", action="reject"),
                                     Route("all", "web", "/")]), cisn=cisn, persistence=INSERT)
    c = Conn(h, s_isn=s_isn)
    sent = b"".join(payload(p) for port, p in pkts(c.eff) if port == 2)
    assert sent == one_request(GET) and not of(c.eff, InstallFlows)
    # the server acknowledges the whole request with its response
    end = (cisn + 1 + len(sent)) % M
    eff = h.server(h.sframe(c.syn, "PA", (s_isn + 1) % M, end, HEAD + BODY))
    c.record(eff)
    want = with_line(HEAD, c.name) + BODY
    assert c.stream() == want and not of(eff, InstallFlows)
    (p,) = [p for port, p in pkts(eff) if port == 1]
    assert p[TCP].ack == (cisn + 1 + len(GET)) % M      # the client's space
    inst, = of(c.ack(len(want)), InstallFlows)
    c2s, s2c = inst.flows
    assert (c2s.seq_delta, s2c.ack_delta) == (len(CLOSE), (-len(CLOSE)) % M)
    assert (s2c.seq_delta - (h.sisn - s_isn)) % M == len(line(c.name))
    srv = h.sframe(c.syn, "PA", (s_isn + 1 + len(HEAD + BODY)) % M, (end + 4) % M, b"more")
    to_client = valid(apply_splice(srv, s2c))
    assert to_client[TCP].seq == (h.sisn + 1 + len(want)) % M
    assert to_client[TCP].ack == (cisn + 1 + len(GET) + 4) % M
    cli = h.cframe("PA", data=b"abcd", rel=len(GET), ack=(h.sisn + 1 + len(want) + 4) % M)
    to_server = valid(apply_splice(cli, c2s))
    assert to_server[TCP].seq == end
    assert to_server[TCP].ack == (s_isn + 1 + len(HEAD + BODY) + 4) % M


@pytest.mark.parametrize("who", ["client", "server"])
def test_reset_while_the_line_is_unacknowledged_removes_nothing_installed(who):
    h = Harness(persistence=INSERT)
    c = Conn(h)
    c.s(0, HEAD + BODY)
    if who == "client":
        eff = h.client(h.cframe("R", rel=len(GET)))
    else:
        eff = c.s(len(HEAD + BODY), flags="R")
    (rm,) = of(eff, RemoveFlows)
    assert rm.keys == [] and not of(eff, InstallFlows)
    h.tick(5)
    assert not h.eng.by_id and h.servers[0].active == h.servers[1].active == 0


def test_fin_of_both_before_the_line_is_acknowledged_ends_after_the_install():
    h = Harness(persistence=INSERT)
    c = Conn(h)
    c.s(0, HEAD + BODY, flags="FPA")
    want = with_line(HEAD, c.name) + BODY
    eff = h.client(h.cframe("FA", rel=len(GET), ack=(h.sisn + 1 + len(want) + 1) % M))
    (inst,) = of(eff, InstallFlows)
    (rm,) = of(eff, RemoveFlows)
    assert rm.keys == [f.key for f in inst.flows]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_any_segmentation_and_retransmission_gives_the_client_one_exact_stream(data):
    """Server segments cut anywhere, some sent twice, some out of order (dropped until the
    point is known, then retransmitted): the client's stream is the response with the line,
    every byte at one place, and the flows go in once it has acknowledged the line."""
    head = HEAD[:-2] + data.draw(st.sampled_from([b"", b"X-A: 1\r\n", b"X-Long: " + b"z" * 2000
                                                  + b"\r\n"])) + b"\r\n"
    resp = head + BODY
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(resp) - 1), max_size=5))))
    bounds = [0] + cuts + [len(resp)]
    segs = list(zip(bounds, bounds[1:]))
    h = Harness(persistence=INSERT)
    c = Conn(h)
    order = list(segs)
    if len(order) > 1 and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(order) - 2))
        order[i], order[i + 1] = order[i + 1], order[i]      # one pair out of order
    for a, b in order + segs:                                 # then all again, in order
        c.s(a, resp[a:b])
        if data.draw(st.booleans()):
            c.s(a, resp[a:b])
    want = with_line(head, c.name) + BODY
    assert c.stream() == want
    assert of(c.ack(len(want)), InstallFlows)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=300), cut=st.integers(0, 300))
def test_watch_never_raises_on_random_bytes(raw, cut):
    for line_ in (None, b"Set-Cookie: SRV=1\r\n"):
        w = ResponseWatch(b"SRV", line_)
        for off, part in ((0, raw[:cut]), (cut, raw[cut:]), (0, HEAD + raw)):
            w.feed(off, part)
        assert not w.settled or w.point is None or w.point <= len(HEAD + raw)


def test_a_connection_keeps_its_service_s_cookie_across_a_live_edit():
    """The service loses its persistence between the decision and the server's SYN-ACK:
    the connection carries on as it was decided (its first response gets the line)."""
    import dataclasses
    h = Harness(persistence=INSERT)
    h.handshake()
    syn = h.to_server_syn(h.send(GET))
    h.eng.reconfigure([dataclasses.replace(h.svc, persistence=None)],
                      {g.name: g for g in h.groups}, h.cfg, h.now)
    eff = h.server(h.sframe(syn, "SA", 7000, (h.cisn + 1) % M))
    assert not of(eff, InstallFlows)
    name = "s1" if syn[IP].dst == S1 else "s2"
    eff = h.server(h.sframe(syn, "PA", 7001, (h.cisn + 1 + len(GET)) % M, HEAD + BODY))
    got = b"".join(payload(p) for port, p in pkts(eff) if port == 1)
    assert got == with_line(HEAD, name) + BODY
