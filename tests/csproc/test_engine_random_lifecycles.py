"""Many connections through the engine at once, in random interleavings: handshakes answered
by the engine or by the data plane's cookie, requests cut and reordered and retransmitted,
the handshake ACK superseded by its request, servers that answer, refuse, answer early or
never, installs that fail, FIN and RST copies from either side, SYNs on the 4-tuple of a
spliced connection (a client reusing its port), idle expiries, mangled frames and time
jumps over every timer; plain, SNAT, pooled server connections, client-IP persistence,
NONSTICKY (every request classified), TLS (routed on the ClientHello) and an SMTP front (the switch greets first; the
driver's client does not wait for the replies).

After every call: the accounting invariants (``Harness.check``), no error log, every frame
sent well formed (checksums) and addressed as its side expects, every flow entry keyed by
the connection's own 4-tuples. At the end, once every flow has expired and the timers have
run out: no connection, no half-bound or spliced count, no buffered byte and no active
connection on a server is left (nothing leaks, whatever the order of events)."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import ssl

import pytest

from p4cs.csproc import (Config, CountFlows, InstallFlows, PacketOut, RemoveFlows, Server,
                         ServerGroup)
from p4cs.csproc import packet as P
from p4cs.csproc.effects import FlowKey
from p4cs.csproc.health import HealthCheck
from p4cs.csproc.policy import Persistence
from p4cs.csproc.routing import Decision
from p4cs.csproc import RuleSetDecider
from p4cs.rules import parse_rules
from p4cs.rules.store import RuleStore
from p4cs.csproc.serverpool import ServerPool

from cs_harness import (CLI_MAC, CLIENT, S1, S1_MAC, S2, S2_MAC, SNAT, SW_C, SW_IP, SW_S, VIP,
                        EveryRequest, Harness, errors)

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
M32 = 0xFFFFFFFF
GET = b"GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: t\r\n\r\n"
SERVER_MAC = {P.ip_int(S1): P.mac_bytes(S1_MAC), P.ip_int(S2): P.mac_bytes(S2_MAC)}
CIP, VIP_I, SNAT_I = P.ip_int(CLIENT), P.ip_int(VIP), P.ip_int(SNAT)
SW_IP_I = P.ip_int(SW_IP)
CMAC, SWC, SWS = P.mac_bytes(CLI_MAC), P.mac_bytes(SW_C), P.mac_bytes(SW_S)
SMTP = b"EHLO c\r\nMAIL FROM:<x@c.example>\r\nRCPT TO:<u@a.example>\r\nDATA\r\n"
VARIANTS = [("transparent", "plain"), ("snat", "plain"), ("snat", "pool"),
            ("transparent", "persistence"), ("transparent", "nonsticky"), ("snat", "smtp"),
            ("transparent", "tls"), ("transparent", "cookie-learn"),
            ("transparent", "answers"), ("snat", "health")]


def _client_hello() -> bytes:
    """A TLS 1.3 ClientHello for a.example, as Python's ssl writes it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="a.example")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


HELLO = _client_hello()
RESPONSES = [b"HTTP/1.1 200 OK\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nSet-Cookie: SID=abc; Path=/\r\nContent-Length: 0\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nSet-Cookie: SID=x\r\n"]


def _cframe(port: int, seq: int, ack: int, flags: int, data: bytes = b"",
            opts: bytes = b"") -> bytes:
    """A frame of the client from ``port`` to the virtual service."""
    return P.build(CMAC, SWC, CIP, VIP_I, port, 80, seq, ack, flags, 64240, data, opts)


class Sometimes:
    """A decider that routes, rejects, redirects, names a group that does not exist or
    fails, at random: the switch answers many requests itself."""

    needs_body = False

    def __init__(self, seed: int):
        self.rnd = random.Random(seed)

    def decide(self, raw, client, vip):
        x = self.rnd.random()
        if x < 0.4:
            return Decision("ok", "routeTo", "web")
        if x < 0.6:
            return Decision("no", "reject")
        if x < 0.8:
            return Decision("moved", "redirect", "http://elsewhere.example/")
        if x < 0.9:
            return Decision("gone", "routeTo", "nogroup")
        raise RuntimeError("the decider failed")


class Client:
    """What the test knows of one client connection."""

    def __init__(self, port: int, isn: int):
        self.port, self.isn = port, isn
        self.cookie: int | None = None    # the switch's ISN towards the client
        self.sent = 0                     # request bytes sent in order
        self.syn = None                   # the switch's SYN to the server (Segment)
        self.server_isn: int | None = None
        self.resp = 0                     # bytes the client has from the switch or server
        self.srv_rcvd = 0                 # bytes the switch sent the server, in order
        self.srv_lines = 0                # ... the command lines among them (SMTP)
        self.srv_sent = 0                 # bytes the server sent (SMTP: greeting, replies)
        self.srv_reqs = 0                 # requests the server received (HTTP)
        self.srv_answers = 0              # responses it sent


class Run:
    def __init__(self, seed: int, mode: str, variant: str):
        self.rnd = rnd = random.Random(seed)
        # the window scale fixed, or learned from the servers' SYN-ACKs (probes of their own)
        cfg = Config(window_scale=rnd.choice([7, "auto"]),
                     request_timeout=rnd.choice([2.0, 10.0]), time_wait=rnd.choice([0.5, 2.0]))
        kw: dict = {}
        if variant == "pool":
            kw["server_pool"] = ServerPool(idle=2, max_age=rnd.choice([5.0, 30.0]))
        elif variant == "persistence":
            kw["persistence"] = Persistence(timeout=rnd.choice([5.0, 300.0]))
        elif variant == "cookie-learn":
            kw["persistence"] = Persistence(30.0, kind="cookie-learn", name="SID")
        elif variant == "health":       # active checks, and the servers' scale learned
            servers = [Server("s1", S1, 8080), Server("s2", S2, 8080)]
            kw["servers"] = servers
            kw["groups"] = [ServerGroup("web", servers, "rr", slow_start=rnd.choice([0, 5.0]),
                                        health=HealthCheck(rnd.choice(["tcp", "http"]),
                                                           interval=1.0, timeout=0.5,
                                                           rise=2, fall=2))]
            cfg = Config(request_timeout=cfg.request_timeout, time_wait=cfg.time_wait)
        elif variant == "answers":
            kw["router"] = Sometimes(seed)
        elif variant == "nonsticky":
            kw["router"] = EveryRequest()
        elif variant == "tls":
            kw["protocol"] = "tls"
            kw["router"] = RuleSetDecider(RuleStore(parse_rules(
                'a: if (tls.sni == "a.example") { routeTo(web); }')))
        elif variant == "smtp":
            kw["protocol"] = "smtp"
            kw["router"] = RuleSetDecider(RuleStore(parse_rules(
                'a: if (suffix(smtp.to, "@a.example")) { routeTo(web); }')))
        self.h = Harness(mode=mode, config=cfg, **kw)
        self.req = {"smtp": SMTP, "tls": HELLO}.get(variant, GET)
        self.mode, self.variant = mode, variant
        self.eng = self.h.eng
        self.clients: list[Client] = []
        self.by_isn: dict[int, Client] = {}
        self.by_port: dict[int, Client] = {}     # the latest client on each port
        self.by_leg: dict[tuple, Client] = {}    # (server, source port) -> its client
        self.smtp = variant == "smtp"
        self.watch = variant in ("cookie-learn", "nonsticky")
        self.installed: dict[tuple, int] = {}     # flow key -> connection id
        self.pending: list[int] = []              # connection ids of unwritten installs
        self.pool_syns: list = []                 # SYNs to servers no client caused
        self.ports = [40000 + i for i in range(rnd.choice([3, 8, 30]))]

    # -- the engine's answers -----------------------------------------------------------
    def effects(self, eff: list) -> list:
        # (a decider that raises is logged as an error by design: "answers" makes it fail)
        bad = [e for e in errors(eff) if e.msg != "decider raised"]
        assert not bad, bad
        self.h.check()
        self._check_templates()
        self._check_timers()
        for e in eff:
            if isinstance(e, PacketOut):
                self._packet_out(e)
            elif isinstance(e, InstallFlows):
                for f in e.flows:
                    self._check_key(f.key)
                    self.installed[tuple(f.key)] = f.conn_id
                self.pending.append(e.flows[0].conn_id)
                for p in e.then:
                    self._packet_out(p)
            elif isinstance(e, RemoveFlows):
                for k in e.keys:
                    self.installed.pop(tuple(k), None)
            elif isinstance(e, CountFlows):
                for k in e.keys:
                    self.effects(self.eng.flows_counted((k, self.rnd.choice([None, 0, 5])),
                                                        self.h.now))
        return eff

    def _check_timers(self) -> None:
        """Every connection but a spliced one waits for a timer of its own (a spliced one
        ends by its FINs, an RST or its entries' expiry), and a timer armed has its entry in
        the timers, due no later than it."""
        for c in self.eng.by_id.values():
            # (a connection that reads its server's first response, or its ServerHello, has
            # its client -> server entry in: that entry's expiry ends it, as a spliced one)
            reads = c.state == "relaying" and (c.watch is not None or c.hello is not None)
            if c.state != "spliced" and not reads:
                assert c.deadline is not None, (c.id, c.state)
            if c.deadline is not None:
                assert c.queued is not None and c.queued <= c.deadline, \
                    (c.id, c.state, c.queued, c.deadline)

    def _check_templates(self) -> None:
        """A persistence template counts the connections bound to its server through it."""
        held: dict = {}
        for c in self.eng.by_id.values():
            ch = c.choice
            if ch is not None and ch.counted and ch.template is not None:
                held[(ch.template, ch.server)] = held.get((ch.template, ch.server), 0) + 1
        policy = self.eng.policy
        for key, t in policy.templates.items():
            n = policy.template_conns(t)
            assert n == held.get((key, t.server), 0), (key, n, held)

    def _packet_out(self, e: PacketOut) -> None:
        s = P.parse(e.frame)        # raises on a bad checksum or a malformed frame
        if e.port == 1:             # to the client, from the virtual service
            assert (s.sip, s.sport, s.dip) == (VIP_I, 80, CIP), s
            c = self.by_port.get(s.dport)
            if c is not None and c.cookie is not None and s.payload:
                # what the switch says itself (an SMTP front's replies): the client acks it
                got = (s.seq + len(s.payload) - c.cookie - 1) & M32
                if got < 1 << 20:
                    c.resp = max(c.resp, got)
        else:                       # to a server, as the client or the SNAT address
            assert e.port == 2 and s.dip in SERVER_MAC, s
            assert s.sip in ((CIP if self.mode == "transparent" else SNAT_I), SW_IP_I), s
            if s.flags & SYN and not s.flags & ACK:
                c = self.by_isn.get(s.seq)
                if c is not None:
                    c.syn = s
                    self.by_leg[(s.dip, s.sport)] = c
                else:
                    self.pool_syns.append(s)
            elif s.payload:
                c = self.by_leg.get((s.dip, s.sport))
                if c is not None and c.syn is not None and \
                        (s.seq - c.syn.seq - 1) & M32 == c.srv_rcvd:
                    c.srv_rcvd += len(s.payload)
                    c.srv_lines += s.payload.count(b"\n")
                    c.srv_reqs += s.payload.count(b"\r\n\r\n")

    def _check_key(self, k: FlowKey) -> None:
        if k.src_ip == CIP:         # client -> VIP
            assert (k.dst_ip, k.proto, k.dport) == (VIP_I, 6, 80), k
        else:                       # server -> client (or the SNAT address)
            assert k.src_ip in SERVER_MAC and k.proto == 6, k
            assert k.dst_ip == (CIP if self.mode == "transparent" else SNAT_I), k

    # -- frames -------------------------------------------------------------------------
    def client(self, c: Client, flags: int, data: bytes = b"", seq: int | None = None,
               reason: int = 1) -> list:
        seq = c.isn + 1 + c.sent if seq is None else seq
        f = _cframe(c.port, seq, (c.cookie or 0) + 1 + c.resp, flags, data)
        return self.effects(self.eng.handle(f, 1, reason, self.h.now))

    def server(self, c: Client, flags: int, data: bytes = b"", seq: int | None = None,
               ack: int | None = None, reason: int = 2) -> list:
        s = c.syn
        seq = c.server_isn if seq is None else seq
        if ack is None:             # a SYN-ACK acknowledges the SYN, the rest the request
            ack = s.seq + 1 + (0 if flags & SYN else c.sent)
        f = P.build(SERVER_MAC[s.dip], SWS, s.dip, s.sip, s.dport, s.sport, seq, ack, flags,
                    29200, data, P.mss_option(1460) if flags & SYN else b"")
        return self.effects(self.eng.handle(f, 2, reason, self.h.now))

    # -- one random step ----------------------------------------------------------------
    def step(self) -> None:
        rnd, h, eng = self.rnd, self.h, self.eng
        r = rnd.random()
        live = [c for c in self.clients if c.cookie is not None]
        answered = [c for c in self.clients if c.syn is not None and c.server_isn is not None]
        if r < 0.12 or not self.clients:
            self.new_client()
        elif r < 0.45:
            self.progress(rnd.choice(self.clients[-12:]))
        elif r < 0.50 and live:
            self.client(rnd.choice(live), ACK)
        elif r < 0.62 and live:
            self.request_bytes(rnd.choice(live))
        elif r < 0.70:
            asked = [c for c in self.clients if c.syn is not None]
            if asked:
                c = rnd.choice(asked)
                if c.server_isn is None:
                    c.server_isn = rnd.randrange(1 << 32)
                if rnd.random() < 0.08:
                    self.server(c, RST | ACK, seq=0, ack=c.syn.seq + 1)   # refused
                else:
                    self.server(c, SYN | ACK)                    # (again, sometimes)
        elif r < 0.74 and self.pending:
            cid = self.pending.pop(rnd.randrange(len(self.pending)))
            if rnd.random() < 0.1:
                self.effects(eng.install_failed(cid, h.now))
        elif r < 0.81 and answered:
            self.close(rnd.choice(answered))
        elif r < 0.84 and self.pool_syns:
            s = self.pool_syns.pop(rnd.randrange(len(self.pool_syns)))
            fl = SYN | ACK if rnd.random() < 0.9 else RST | ACK
            f = P.build(SERVER_MAC[s.dip], SWS, s.dip, s.sip, s.dport, s.sport,
                        rnd.randrange(1 << 32), s.seq + 1, fl, 29200, b"",
                        P.mss_option(1460) if fl & SYN else b"")
            self.effects(eng.handle(f, 2, 2, h.now))
        elif r < 0.86 and live:
            # the handshake ACK and the whole request, read in one batch
            c = rnd.choice(live)
            a = _cframe(c.port, c.isn + 1, c.cookie + 1, ACK)
            d = _cframe(c.port, c.isn + 1, c.cookie + 1, PSH | ACK, self.req)
            for fr, port, reason in eng.superseded([(a, 1, 1), (d, 1, 1)]):
                self.effects(eng.handle(fr, port, reason, h.now))
            c.sent = len(self.req)
        elif r < 0.87 and answered:
            c = rnd.choice(answered)
            if rnd.random() < 0.5:      # the server answers before its flow is written
                self.server(c, PSH | ACK, rnd.choice(RESPONSES), seq=(c.server_isn + 1) & M32)
            else:                       # a new SYN on the 4-tuple (a reused client port)
                f = _cframe(c.port, rnd.randrange(1 << 32), 0, SYN, opts=P.mss_option(1460))
                self.effects(eng.handle(f, 1, 1, h.now))
        elif r < 0.89:
            h.now += rnd.choice([0.01, 0.2, 1.0, 3.0, 12.0])
            self.effects(eng.tick(h.now))
        elif r < 0.93 and self.installed:
            k = rnd.choice(list(self.installed))
            del self.installed[k]
            self.effects(eng.flow_expired(FlowKey(*k), h.now))
        elif r < 0.94:
            self.operator()
        elif r < 0.95 and live:
            c = rnd.choice(live)
            f = bytearray(_cframe(c.port, c.isn + 1, c.cookie + 1,
                                  rnd.choice([ACK, PSH | ACK, FIN | ACK, SYN]),
                                  self.req[:rnd.randrange(len(self.req))]))
            if rnd.random() < 0.5:      # a bit flipped: dropped as malformed
                f[rnd.randrange(14, len(f))] ^= 1 << rnd.randrange(8)
            self.effects(eng.handle(bytes(f), 1, rnd.choice([1, 4]), h.now))

    def operator(self) -> None:
        """What happens around the connections: a server goes down or comes back (health
        checks), is drained or weighted again, the switch loses a flow entry (a restart),
        a listing is taken."""
        rnd, h, eng = self.rnd, self.h, self.eng
        x = rnd.random()
        group = eng.groups["web"]
        server = rnd.choice(group.servers)
        if x < 0.3:
            self.effects(eng._health_change(server, group, rnd.random() < 0.5, h.now,
                                            "test"))
        elif x < 0.5:
            eng.set_weight(group.name, server.name, rnd.choice([0, 1, 3]), h.now)
        elif x < 0.65 and self.installed:
            k = rnd.choice(list(self.installed))
            self.effects(eng.flow_lost(FlowKey(*k), h.now))
        elif x < 0.85:
            self.live_edit()
        else:
            listing = eng.connections()
            assert len(listing) == len(eng.by_id)

    def live_edit(self) -> None:
        """The group's servers, scheduler and weights change, and maybe the service's
        persistence; a server taken out has its connections reset or not (``server.del``
        with and without ``reset``)."""
        rnd, h, eng = self.rnd, self.h, self.eng
        names = sorted(rnd.sample(["s1", "s2"], rnd.randint(1, 2)))
        servers = [Server(n, {"s1": S1, "s2": S2}[n], 8080, weight=rnd.choice([1, 2, 5]))
                   for n in names]
        group = ServerGroup("web", servers, rnd.choice(["rr", "wrr", "lc", "wlc", "sh", "maglev"]),
                            slow_start=rnd.choice([0, 0, 5.0]),
                            health=rnd.choice([None, None, HealthCheck(
                                rnd.choice(["tcp", "http"]), interval=1.0, timeout=0.5,
                                rise=rnd.randint(1, 3), fall=rnd.randint(1, 3))]))
        svc = h.svc
        if self.variant in ("persistence", "plain") and rnd.random() < 0.3:
            svc = dataclasses.replace(svc, persistence=rnd.choice(
                [None, Persistence(timeout=5.0), Persistence(timeout=60.0)]))
        before = list(eng.groups["web"].servers)
        self.effects(eng.reconfigure([svc], {"web": group}, h.cfg, h.now))
        h.svc = svc
        now_in = eng.groups["web"].servers
        for s in now_in:
            if all(s is not o for o in h.servers):
                h.servers.append(s)
        for s in before:
            if all(s is not o for o in now_in) and rnd.random() < 0.5:
                self.effects(eng.reset_server(s, h.now, "server deleted"))

    def progress(self, c: Client) -> None:
        """The next step of ``c``'s ordinary life: handshake, request, the server's
        answer, the install written, the close."""
        if c.cookie is None:
            return
        if c.sent < len(self.req):
            if self.rnd.random() < 0.3:
                self.client(c, ACK)
            self.client(c, PSH | ACK, self.req[c.sent:])
            c.sent = len(self.req)
        elif c.syn is None:
            return
        elif c.server_isn is None:
            c.server_isn = self.rnd.randrange(1 << 32)
            self.server(c, SYN | ACK)
        elif self.watch and c.srv_answers < max(1, c.srv_reqs):
            # the server's response, read by the engine (a NONSTICKY service reads every one,
            # to know when the next request may go)
            said = self.rnd.choice(RESPONSES if self.variant == "cookie-learn" else
                                   [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
            self.server(c, PSH | ACK, said, seq=(c.server_isn + 1 + c.srv_sent) & M32,
                        ack=(c.syn.seq + 1 + c.srv_rcvd) & M32)
            c.srv_sent += len(said)
            c.srv_answers += 1
        elif self.smtp and (c.srv_sent == 0 or c.srv_lines > c.srv_sent // 8):
            # the server greets first, then answers each command the switch replays
            said = b"220 s\r\n" if c.srv_sent == 0 else b"250 ok\r\n"
            self.server(c, PSH | ACK, said, seq=(c.server_isn + 1 + c.srv_sent) & M32,
                        ack=(c.syn.seq + 1 + c.srv_rcvd) & M32)
            c.srv_sent += len(said)
        elif self.rnd.random() < 0.15 and not self.smtp:
            # the client's next request on the same connection (keep-alive): spliced in
            # software while its flow is not in, classified again on a NONSTICKY service
            more = b"GET /y HTTP/1.1\r\nHost: a\r\n\r\n"
            self.client(c, PSH | ACK, more)
            c.sent += len(more)
        elif self.pending and self.rnd.random() < 0.5:
            cid = self.pending.pop()
            if self.rnd.random() < 0.15:
                self.effects(self.eng.install_failed(cid, self.h.now))
        else:
            self.close(c)

    def new_client(self) -> None:
        rnd, h = self.rnd, self.h
        c = Client(rnd.choice(self.ports), rnd.randrange(1 << 32))
        self.clients.append(c)
        self.by_isn[c.isn] = c
        self.by_port[c.port] = c
        if rnd.random() < 0.5:          # the engine answers the SYN
            opts = P.mss_option(1460) + (P.wscale_option(7) if rnd.random() < 0.5 else b"")
            f = _cframe(c.port, c.isn, 0, SYN, opts=opts)
            for e in self.effects(self.eng.handle(f, 1, 1, h.now)):
                if isinstance(e, PacketOut):
                    s = P.parse(e.frame)
                    if s.flags == SYN | ACK:
                        c.cookie = s.seq
        else:                           # the data plane answered it with a cookie
            c.cookie = self.eng.cookies.make(CIP, VIP_I, c.port, 80, c.isn, 1460, h.now, None)

    def request_bytes(self, c: Client) -> None:
        rnd = self.rnd
        if c.sent >= len(self.req):          # a retransmission
            self.client(c, PSH | ACK, self.req, seq=c.isn + 1)
            return
        n = rnd.randint(1, len(self.req) - c.sent)
        if rnd.random() < 0.15 and c.sent + n < len(self.req):   # a later piece first
            self.client(c, PSH | ACK, self.req[c.sent + n:], seq=c.isn + 1 + c.sent + n)
        else:
            self.client(c, PSH | ACK, self.req[c.sent:c.sent + n])
            c.sent += n

    def close(self, c: Client) -> None:
        x = self.rnd.random()
        if x < 0.4:                     # the client's FIN as it hit its flow (a copy)
            self.client(c, FIN | ACK, reason=4)
        elif x < 0.8:                   # the server's, after its response
            c.resp = self.rnd.choice([0, 100, 5000])
            self.server(c, FIN | PSH | ACK, seq=(c.server_isn + 1 + c.resp) & M32,
                        ack=(c.syn.seq + 1 + len(self.req)) & M32, reason=4)
        elif x < 0.9:
            self.client(c, RST | ACK, reason=self.rnd.choice([1, 4]))
        else:
            self.server(c, RST | ACK, seq=(c.server_isn + 1 + c.resp) & M32,
                        reason=self.rnd.choice([2, 4]))

    def finish(self) -> None:
        """Every flow expires, every timer runs out: nothing may be left."""
        h, eng = self.h, self.eng
        for _ in range(3):
            for k in list(self.installed):
                if self.installed.pop(k, None) is not None:
                    self.effects(eng.flow_expired(FlowKey(*k), h.now))
            for _ in range(6):
                h.now += 40.0
                self.effects(eng.tick(h.now))
        st = eng.stats
        assert not eng.by_id, [(c.id, c.state) for c in eng.by_id.values()]
        assert (st.half_bound, st.spliced_active, st.buffered_bytes) == (0, 0, 0), st.as_dict()
        assert [s.active for s in h.servers] == [0] * len(h.servers)


@pytest.mark.parametrize("mode,variant", VARIANTS)
@pytest.mark.parametrize("seed", range(6))
def test_random_lifecycles_keep_the_books_and_leak_nothing(seed, mode, variant):
    run = Run(seed, mode, variant)
    for _ in range(500):
        run.step()
    run.finish()
    st = run.eng.stats
    assert st.accepted > 0 and st.packets > 0


def test_the_random_lifecycles_reach_every_phase():
    """The interleavings above bind, splice, tear down, reincarnate and fail connections
    (a guard against a driver that never gets past the handshake)."""
    total: dict[str, int] = {}
    for seed in range(6):
        for mode, variant in VARIANTS:
            run = Run(seed, mode, variant)
            for _ in range(500):
                run.step()
            run.finish()
            for k, v in run.eng.stats.as_dict().items():
                total[k] = total.get(k, 0) + v
    for k in ("spliced", "teardowns", "reincarnations", "install_failures", "server_refused",
              "acks_superseded", "flows_expired", "pooled_used", "sw_spliced"):
        assert total.get(k, 0) > 0, (k, total)
