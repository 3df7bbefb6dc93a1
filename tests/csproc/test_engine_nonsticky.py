"""NONSTICKY keep-alive connections (docs/csproc.md section 17): every request is classified
on its own and may move the client to another server; the switch reads each response's
head, lets long bodies ride the server -> client entry, and continues the client's sequence
spaces across server connections.  scapy plays the client and three servers; the flow
entries the engine installs are applied with ``apply_splice`` to the packets that would
meet them."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP

from p4cs.csproc import InstallFlows, Server, ServerGroup
from p4cs.csproc.keepalive import ResponseReader
from p4cs.csproc.packet import apply_splice
from p4cs.csproc.routing import Decision

from cs_harness import S1, S2, S3, Harness, PacketOut, RemoveFlows, of, payload, pkts, valid

M = 2**32
NAMES = {S1: "s1", S2: "s2", S3: "s3"}


class ByPath:
    """/a -> group ga, /b -> gb, /c -> gc (NONSTICKY); /s -> ga STICKY; /x rejected."""

    needs_body = False

    def __init__(self, rejects=False):
        self.rejects = rejects

    def decide(self, raw, client, vip):
        path = raw.split(b" ", 2)[1]
        if path.startswith(b"/x"):
            return Decision("x", "reject")
        if path.startswith(b"/s"):
            return Decision("s", "routeTo", "ga", sticky=True)
        return Decision(path[1:2].decode(), "routeTo", "g" + path[1:2].decode(), sticky=False)


def req(path: str, extra: bytes = b"") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: www\r\n".encode() + extra + b"\r\n"


def resp(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body


class Lab:
    """A client on a NONSTICKY service of three groups of one server each, and what each
    side has received.  ``flows``: the entries in place (key -> FlowSpec)."""

    def __init__(self, cisn=1000, isns=(7000, 9000, 11000), mode="transparent", rejects=False):
        self.servers = [Server("s1", S1, 8080), Server("s2", S2, 8080), Server("s3", S3, 8080)]
        groups = [ServerGroup("g" + n, [s], "rr") for n, s in zip("abc", self.servers)]
        groups.append(ServerGroup("web", self.servers[:1], "rr"))    # the default group
        self.h = h = Harness(mode=mode, cisn=cisn, router=ByPath(rejects),
                             servers=self.servers, groups=groups)
        self.isns = dict(zip((S1, S2, S3), isns))
        h.handshake()
        self.cnt = 0                 # client bytes sent
        self.client_got = {}         # client stream offset -> bytes
        self.server_got = {}         # (server, src port) -> {server stream offset: bytes}
        self.legs = {}               # (server, src port) -> [syn, isn, next server offset]
        self.flows = {}
        self.resets = []             # (server, src port) of RSTs the switch sent a server
        self.cack = 0                # client stream offset the client acknowledged

    # what the switch emits
    def apply(self, eff):
        for e in eff:
            if isinstance(e, InstallFlows):
                for f in e.flows:
                    assert f.direction == "s2c", "a NONSTICKY connection has no c2s entry"
                    self.flows[f.key] = f
                self.record(e.then)
            elif isinstance(e, RemoveFlows):
                for k in e.keys:
                    self.flows.pop(k, None)
                self.record(e.then)
        self.record([e for e in eff if not isinstance(e, (InstallFlows, RemoveFlows))])
        return eff

    def record(self, effects):
        h = self.h
        for port, p in pkts(effects):
            t = p[TCP]
            if port == 1:
                if payload(p):
                    self.client_got[(t.seq - h.sisn - 1) % M] = payload(p)
                continue
            leg = (p[IP].dst, t.sport)
            if t.flags == "S":
                self.legs[leg] = [p, None, 0]
                continue
            if "R" in t.flags:
                self.resets.append(leg)
                continue
            syn, isn, _ = self.legs[leg]
            off = (t.seq - syn[TCP].seq - 1) % M
            if payload(p):
                self.server_got.setdefault(leg, {})[off] = payload(p)
            if isn is not None and "A" in t.flags:
                assert (t.ack - isn - 1) % M <= self.legs[leg][2], "ACK of unsent server bytes"

    @staticmethod
    def stream(got) -> bytes:
        out = b""
        for off in sorted(got):
            assert off <= len(out), "gap"
            out = out[:off] + got[off] + out[off + len(got[off]):]
        return out

    @staticmethod
    def to_syn(eff):
        (_, syn), = [(port, p) for port, p in pkts(eff) if p[TCP].flags == "S"]
        return syn

    def leg(self, server):
        found = [k for k in self.legs if k[0] == server]
        return found[-1]

    # the client
    def send(self, data, ack=None):
        h = self.h
        eff = h.client(h.cframe("PA", data=data, rel=self.cnt,
                                ack=(h.sisn + 1 + (self.cack if ack is None else ack)) % M))
        self.cnt += len(data)
        return self.apply(eff)

    def ack(self, n=None):
        """The client acknowledges all it has (or ``n`` bytes)."""
        h = self.h
        self.cack = len(self.stream(self.client_got)) if n is None else n
        return self.apply(h.client(h.cframe("A", rel=self.cnt, ack=(h.sisn + 1 + self.cack) % M)))

    # the servers
    def synack(self, server):
        leg = self.leg(server)
        syn = self.legs[leg][0]
        isn = self.isns[server]
        self.legs[leg][1] = isn
        return self.apply(self.h.server(self.h.sframe(syn, "SA", isn, (syn[TCP].seq + 1) % M)))

    def s(self, server, data, flags="PA", fast=False):
        """``server`` sends ``data`` after what it sent: through the entry when there is
        one and ``fast``, else as a miss."""
        leg = self.leg(server)
        syn, isn, sent = self.legs[leg]
        got = self.stream(self.server_got.get(leg, {}))
        frame = self.h.sframe(syn, flags, (isn + 1 + sent) % M, (syn[TCP].seq + 1 + len(got)) % M,
                              data)
        self.legs[leg][2] = sent + len(data)
        t = valid(frame)[TCP]
        spec = next((f for f in self.flows.values()
                     if f.key.sport == t.sport and f.key.dport == t.dport), None)
        if fast:
            assert spec is not None, "no entry for the server's packet"
            return self.apply([PacketOut(1, apply_splice(frame, spec))])
        assert spec is None, "the packet would have met an entry"
        return self.apply(self.h.server(frame))


def test_response_reader_framing():
    full = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab"
    r = ResponseReader(0, False)
    r.feed(0, full[:40])
    assert r.end is None and r.needs_bytes
    r.feed(40, full[40:])
    assert r.end == len(full) and not r.needs_bytes and r.bad is None
    ch = ResponseReader(5, False)
    body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
    ch.feed(5, body[:50])
    assert ch.end is None and ch.needs_bytes
    ch.feed(55, body[50:])
    assert ch.end == 5 + len(body)
    hd = ResponseReader(0, True)
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
    hd.feed(0, raw)
    assert hd.end == len(raw)
    for raw, why in ((b"HTTP/1.1 200 OK\r\n\r\n", "until close"),
                     (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
                      "closes"),
                     (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n"
                      b"Connection: upgrade\r\n\r\n", "upgrade"),
                     (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "closes")):
        r = ResponseReader(0, False)
        r.feed(0, raw)
        assert why in r.sticky, raw
    for raw in (b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"):
        r = ResponseReader(0, False)
        r.feed(0, raw)
        assert r.bad is not None, raw
    r = ResponseReader(0, False)
    raw = b"HTTP/1.1 204 No Content\r\n\r\n"
    r.feed(0, raw)
    assert r.end == len(raw)


def one_exchange(lab, path, server, body, cut=None, fast_from=None):
    """Request ``path``, answered by ``server`` with ``body``: the response is sent in
    segments of ``cut`` bytes (all at once by default); from offset ``fast_from`` on they
    ride the entry the engine installed.  The client then acknowledges everything."""
    r = resp(body)
    eff = lab.send(req(path))
    if any(p[TCP].flags == "S" for _, p in pkts(eff)):
        lab.synack(server)
    cut = cut or len(r)
    for off in range(0, len(r), cut):
        lab.s(server, r[off:off + cut], fast=fast_from is not None and off >= fast_from)
    lab.ack()
    return r


@settings(max_examples=12, deadline=None)
@given(cisn=st.sampled_from([1000, M - 1, M - 30, 2**31 - 5]),
       isn=st.sampled_from([5, M - 1, M - 60, 2**31]),
       mode=st.sampled_from(["transparent", "snat"]))
def test_three_requests_to_three_groups(cisn, isn, mode):
    """Three requests on one connection go to three servers; the client gets the three
    responses back to back, each server gets its request with its own sequence numbers,
    and the long body rides the entry with the right deltas."""
    lab = Lab(cisn=cisn, isns=(isn, (isn + 12345) % M, (isn - 777) % M), mode=mode)
    h = lab.h
    big = bytes(range(256)) * 400
    r1 = one_exchange(lab, "/a/1", S1, big, cut=1400, fast_from=1400)
    assert [f.key.src_ip for f in lab.flows.values()] == [0x0A000101]
    r2 = one_exchange(lab, "/b/2", S2, b"two")
    r3 = one_exchange(lab, "/c/3", S3, b"three" * 20000, cut=1400, fast_from=1400)
    assert lab.stream(lab.client_got) == r1 + r2 + r3
    # the first body's entry went with its server; the third body rides one
    assert [f.key.src_ip for f in lab.flows.values()] == [0x0A000103]
    for server, path in ((S1, "/a/1"), (S2, "/b/2"), (S3, "/c/3")):
        leg = lab.leg(server)
        assert lab.stream(lab.server_got[leg]) == req(path)
    # each server connection starts where its request starts in the client's stream
    syns = [lab.legs[lab.leg(s)][0][TCP].seq for s in (S1, S2, S3)]
    n1, n2 = len(req("/a/1")), len(req("/b/2"))
    assert [(x - cisn) % M for x in syns] == [0, n1, n1 + n2]
    assert lab.resets == [lab.leg(S1), lab.leg(S2)]   # the old legs, once each
    st_ = h.eng.stats
    assert st_.rebinds == 2 and st_.nonsticky_requests == 2 and st_.bad_responses == 0
    assert [s.active for s in lab.servers] == [0, 0, 1]
    # the client closes: its FIN reaches the last server, whose FIN closes the connection
    eff = lab.apply(h.client(h.cframe("FA", rel=lab.cnt, ack=(h.sisn + 1 + lab.cack) % M)))
    (port, fin), = pkts(eff)
    assert port == 2 and "F" in fin[TCP].flags
    assert fin[TCP].seq == (cisn + 1 + lab.cnt) % M
    (port, p), = pkts(lab.s(S3, b"", flags="FA", fast=True))
    assert port == 1 and p[TCP].seq == (h.sisn + 1 + len(r1 + r2 + r3)) % M
    leg = lab.leg(S3)
    syn = lab.legs[leg][0]
    copy = h.sframe(syn, "FA", (lab.isns[S3] + 1 + len(r3)) % M,
                    (syn[TCP].seq + 2 + len(req("/c/3"))) % M)
    eff = h.server(copy, reason=4)
    assert of(eff, RemoveFlows) and h.eng.stats.teardowns == 1


def test_next_request_to_the_same_server_removes_the_entry_first():
    """The next response's head must reach the engine: the body's entry is removed, and the
    request goes to the server once it is gone; no new server connection."""
    lab = Lab()
    body = b"x" * 100000
    r1 = one_exchange(lab, "/a/1", S1, body, cut=1000, fast_from=1000)
    eff = lab.send(req("/a/2"))
    rm, = of(eff, RemoveFlows)
    assert rm.after == 0 and len(rm.keys) == 1
    (port, p), = pkts(rm.then)
    assert port == 2 and payload(p) == req("/a/2") and p[TCP].dport == 8080
    assert not any(q[TCP].flags & 0x02 for _, q in pkts(eff)), "no new SYN"
    r2 = resp(b"second")
    lab.s(S1, r2)
    lab.ack()
    assert lab.stream(lab.client_got) == r1 + r2
    assert lab.stream(lab.server_got[lab.leg(S1)]) == req("/a/1") + req("/a/2")
    assert lab.h.eng.stats.rebinds == 0 and lab.h.eng.stats.nonsticky_requests == 1


def test_pipelined_request_waits_for_the_previous_response():
    """Two requests in one segment: the second goes to its server only once the client has
    the whole first response; it is never acknowledged by the switch."""
    lab = Lab()
    eff = lab.send(req("/a/1") + req("/b/2"))
    lab.synack(S1)
    assert lab.stream(lab.server_got[lab.leg(S1)]) == req("/a/1")
    r1 = resp(b"one" * 10)
    eff = lab.s(S1, r1[:20])
    assert not any(p[TCP].flags == "S" for _, p in pkts(eff))
    lab.ack()                                  # half of the response: nothing moves
    assert len(lab.legs) == 1
    lab.s(S1, r1[20:])
    eff = lab.ack()                            # the whole response: on to s2
    assert any(p[TCP].flags == "S" and p[IP].dst == S2 for _, p in pkts(eff))
    lab.synack(S2)
    r2 = resp(b"two")
    lab.s(S2, r2)
    lab.ack()
    assert lab.stream(lab.client_got) == r1 + r2
    assert lab.stream(lab.server_got[lab.leg(S2)]) == req("/b/2")
    # the switch never acknowledged a request byte itself
    h = lab.h
    assert all(p[TCP].ack == (h.cisn + 1) % M or port == 2 for port, p in pkts(eff))


@pytest.mark.parametrize("cuts", [[3], [10, 30], [len(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n") + 1]])
def test_response_head_split_over_segments(cuts):
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    r1 = resp(b"abcdef")
    bounds = [0] + cuts + [len(r1)]
    for a, b in zip(bounds, bounds[1:]):
        assert not of(lab.s(S1, r1[a:b]), InstallFlows), "the body ended in what was read"
    lab.ack()
    lab.send(req("/b/2"))
    lab.synack(S2)
    r2 = resp(b"z")
    lab.s(S2, r2)
    assert lab.stream(lab.client_got) == r1 + r2


def test_out_of_order_server_segment_while_reading_a_head_is_dropped():
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    r1 = resp(b"abcdef")
    leg = lab.leg(S1)
    syn, isn, _ = lab.legs[leg]
    late = lab.h.sframe(syn, "PA", (isn + 1 + 10) % M, (syn[TCP].seq + 1 + len(req("/a/1"))) % M,
                        r1[10:])
    assert pkts(lab.h.server(late)) == []
    lab.s(S1, r1)
    assert lab.stream(lab.client_got) == r1


def test_invalid_response_resets_both_sides_and_spares_others():
    lab = Lab()
    other = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    lab.s(S1, resp(b"ok"))
    lab.ack()
    lab.send(req("/b/2"))
    lab.synack(S2)
    eff = lab.s(S2, b"SSH-2.0-OpenSSH_9.6\r\n")
    h = lab.h
    rsts = [(port, p) for port, p in pkts(eff) if "R" in p[TCP].flags]
    assert sorted(port for port, _ in rsts) == [1, 2]
    to_client = next(p for port, p in rsts if port == 1)
    assert to_client[TCP].seq == (h.sisn + 1 + len(resp(b"ok"))) % M
    assert h.eng.stats.bad_responses == 1 and not h.eng.by_id
    # another connection (another engine here) goes on
    other.send(req("/a/1"))
    other.synack(S1)
    other.s(S1, resp(b"fine"))
    assert other.stream(other.client_got) == resp(b"fine")


def test_data_after_the_response_resets():
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    lab.s(S1, resp(b"ok") + b"HTTP/1.1 200 OK\r\n")
    assert lab.h.eng.stats.bad_responses == 1 and not lab.h.eng.by_id


def test_client_abort_in_the_middle_of_a_fast_body():
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    r = resp(b"y" * 100000)
    lab.s(S1, r[:1400])
    lab.s(S1, r[1400:2800], fast=True)
    lab.ack()
    h = lab.h
    eff = lab.apply(h.client(h.cframe("R", rel=lab.cnt, ack=0)))
    (port, p), = pkts(eff)
    assert port == 2 and "R" in p[TCP].flags and p[TCP].seq == (h.cisn + 1 + lab.cnt) % M
    rm, = of(eff, RemoveFlows)
    assert len(rm.keys) == 1 and h.eng.stats.teardowns == 1


def test_chunked_response_is_read_through_the_engine():
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + \
        b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (b"a" * 3000, b"b" * 10)) + b"0\r\n\r\n"
    for off in range(0, len(r), 1000):
        assert not of(lab.s(S1, r[off:off + 1000]), InstallFlows)
    lab.ack()
    lab.send(req("/b/2"))
    lab.synack(S2)
    lab.s(S2, resp(b"2"))
    assert lab.stream(lab.client_got) == r + resp(b"2")


def test_response_until_close_makes_the_connection_sticky():
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    eff = lab.h.server(lab.h.sframe(lab.legs[lab.leg(S1)][0], "PA", 7001,
                                    (1001 + len(req("/a/1"))) % M, b"HTTP/1.1 200 OK\r\n\r\nxx"))
    inst, = of(eff, InstallFlows)
    assert sorted(f.direction for f in inst.flows) == ["c2s", "s2c"]
    assert lab.h.eng.stats.nonsticky_sticky == 1 and lab.h.eng.by_id[1].ka is None


def test_later_sticky_decision_binds_the_connection():
    lab = Lab()
    one_exchange(lab, "/b/1", S2, b"one")
    eff = lab.h.client(lab.h.cframe("PA", data=req("/s/2"), rel=lab.cnt,
                                    ack=(lab.h.sisn + 1 + lab.cack) % M))
    lab.cnt += len(req("/s/2"))
    assert any(p[TCP].flags == "S" and p[IP].dst == S1 for _, p in pkts(eff))
    syn = lab.to_syn(eff)
    eff = lab.h.server(lab.h.sframe(syn, "SA", 7000, (syn[TCP].seq + 1) % M))
    inst, = of(eff, InstallFlows)
    assert sorted(f.direction for f in inst.flows) == ["c2s", "s2c"]
    (port, p), = pkts(inst.then)
    assert payload(p) == req("/s/2")


def test_later_request_rejected_is_answered_by_the_switch():
    lab = Lab(rejects=True)
    r1 = one_exchange(lab, "/a/1", S1, b"one")
    eff = lab.send(req("/x/2"))
    h = lab.h
    to_client = [p for port, p in pkts(eff) if port == 1]
    assert payload(to_client[0]).startswith(b"HTTP/1.1 403 ")
    assert to_client[0][TCP].seq == (h.sisn + 1 + len(r1)) % M
    assert lab.resets == [lab.leg(S1)]
    assert h.eng.by_id[1].state == "closing" and h.eng.stats.rejected == 1


def test_short_body_is_spliced_in_software():
    """A body of a few segments beyond the head needs no entry (its install would cost
    more than the segments)."""
    lab = Lab()
    lab.send(req("/a/1"))
    lab.synack(S1)
    r = resp(b"s" * 6000)
    for off in range(0, len(r), 1400):
        assert not of(lab.s(S1, r[off:off + 1400]), InstallFlows)
    lab.ack()
    assert lab.stream(lab.client_got) == r and not lab.flows


def test_request_body_after_the_head_is_forwarded_and_the_next_request_follows_it():
    lab = Lab()
    head = b"POST /a/1 HTTP/1.1\r\nHost: www\r\nContent-Length: 10\r\n\r\n"
    lab.send(head)
    lab.synack(S1)
    lab.send(b"01234")
    lab.send(b"56789")
    assert lab.stream(lab.server_got[lab.leg(S1)]) == head + b"0123456789"
    r1 = resp(b"stored")
    lab.s(S1, r1)
    lab.ack()
    lab.send(req("/b/2"))
    lab.synack(S2)
    assert lab.stream(lab.server_got[lab.leg(S2)]) == req("/b/2")
    assert lab.legs[lab.leg(S2)][0][TCP].seq == (1000 + len(head) + 10) % M


def test_request_with_a_chunked_body_makes_the_connection_sticky():
    lab = Lab()
    one_exchange(lab, "/a/1", S1, b"one")
    body = b"POST /a/2 HTTP/1.1\r\nHost: www\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    eff = lab.h.client(lab.h.cframe("PA", data=body, rel=lab.cnt,
                                    ack=(lab.h.sisn + 1 + lab.cack) % M))
    inst, = of(eff, InstallFlows)
    assert sorted(f.direction for f in inst.flows) == ["c2s", "s2c"]
    assert lab.h.eng.stats.nonsticky_sticky == 1 and lab.h.eng.by_id[1].ka is None


def test_server_closing_its_idle_connection_then_a_request_resets():
    """nginx closes an idle keep-alive connection: its FIN reaches the client; a request
    that comes anyway cannot be answered on it (nothing follows a FIN): RST, and the
    client retries on a new connection."""
    lab = Lab()
    r1 = one_exchange(lab, "/a/1", S1, b"one")
    (port, fin), = pkts(lab.s(S1, b"", flags="FA"))
    assert port == 1 and "F" in fin[TCP].flags
    eff = lab.send(req("/a/2"), ack=len(r1) + 1)
    assert sorted(port for port, p in pkts(eff) if "R" in p[TCP].flags) == [1, 2]
    assert not any(p[TCP].flags == "S" for _, p in pkts(eff)) and not lab.h.eng.by_id
