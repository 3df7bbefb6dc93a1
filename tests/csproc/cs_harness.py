"""Harness for the CS processor tests: scapy plays the client and the servers."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from p4cs.csproc import (Config, Decision, Engine, InstallFlows, Log, PacketOut,  # noqa: E402
                         PrefixRouter, RemoveFlows, Route, Server, ServerGroup,
                         StaticTopology, VirtualService)
from p4cs.csproc.packet import ip_int  # noqa: E402

SW_C = "02:00:00:00:00:01"     # switch MAC on the client port (1)
SW_S = "02:00:00:00:00:02"     # switch MAC on the server port (2)
CLI_MAC = "aa:00:00:00:00:01"
S1_MAC = "bb:00:00:00:00:01"
S2_MAC = "bb:00:00:00:00:02"
S3_MAC = "bb:00:00:00:00:03"
CLIENT = "192.168.1.10"
VIP = "10.0.0.100"
S1 = "10.0.1.1"
S2 = "10.0.1.2"
S3 = "10.0.1.3"
SNAT = "10.0.1.254"
SW_IP = "10.0.1.253"            # the switch's address on the server port (health probes)
CPORT = 40000
SECRET = b"0123456789abcdef0123456789abcdef"
T0 = 1000.0


def valid(frame: bytes) -> Ether:
    """Dissect ``frame`` and assert scapy computes the same IPv4 and TCP checksums."""
    p = Ether(frame)
    q = Ether(frame)
    del q[IP].chksum
    del q[TCP].chksum
    q = Ether(bytes(q))
    assert p[IP].chksum == q[IP].chksum, "bad IPv4 checksum"
    assert p[TCP].chksum == q[TCP].chksum, "bad TCP checksum"
    assert p[IP].len == len(frame) - 14
    return p


def pkts(effects) -> list[tuple[int, Ether]]:
    return [(e.port, valid(e.frame)) for e in effects if isinstance(e, PacketOut)]


def of(effects, cls):
    return [e for e in effects if isinstance(e, cls)]


def errors(effects):
    return [e for e in effects if isinstance(e, Log) and e.level == "error"]


def opts(p: Ether) -> dict:
    return {k: v for k, v in p[TCP].options}


def payload(p: Ether) -> bytes:
    return bytes(p[TCP].payload)


class EveryRequest:
    """A NONSTICKY decider: every request classified on its own, all to the default group
    ``web``."""

    needs_body = False

    def decide(self, raw, client=None, vip=None):
        return Decision("each", "routeTo", "web", sticky=False)


class Harness:
    def __init__(self, mode="transparent", routes=None, router=None, config=None,
                 cport=CPORT, cisn=1000, groups=None, protocol="http", servers=None,
                 persistence=None, server_pool=None):
        self.servers = servers or [Server("s1", S1, 8080), Server("s2", S2, 8080)]
        self.groups = groups or [ServerGroup("web", self.servers, "rr")]
        router = router or PrefixRouter(routes or [Route("all", "web", "/")])
        self.svc = VirtualService("www", VIP, 80, router, default_group="web", mode=mode,
                                  snat_ip=SNAT if mode == "snat" else None,
                                  protocol=protocol, persistence=persistence,
                                  server_pool=server_pool)
        topo = StaticTopology({1: SW_C, 2: SW_S},
                              {S1: (2, S1_MAC), S2: (2, S2_MAC), S3: (2, S3_MAC)},
                              port_ips={2: SW_IP})
        # A fixed scale by default: with "auto" (Config's default) the first tick also sends
        # window-scale probes to the servers (test_engine_wscale.py tests them).
        self.cfg = config or Config(window_scale=7)
        self.eng = Engine([self.svc], self.groups, topo, self.cfg, secret=SECRET)
        self.cport = cport
        self.cisn = cisn
        self.sisn = None
        self.now = T0

    # client -> VIP ----------------------------------------------------------------
    def cframe(self, flags="A", seq=None, ack=None, data=b"", window=64240, options=None,
               rel=0):
        seq = (self.cisn + 1 + rel) & 0xFFFFFFFF if seq is None else seq
        ack = ((self.sisn or 0) + 1) & 0xFFFFFFFF if ack is None else ack
        t = TCP(sport=self.cport, dport=80, seq=seq, ack=ack, flags=flags, window=window,
                options=options or [])
        p = Ether(src=CLI_MAC, dst=SW_C) / IP(src=CLIENT, dst=VIP) / t
        if data:
            p = p / Raw(data)
        return bytes(p)

    def check(self):
        """Accounting invariants, checked after every call into the engine."""
        eng = self.eng
        st = eng.stats
        conns = list(eng.by_id.values())
        assert st.buffered_bytes == sum(len(c.req.buf) + sum(map(len, c.req.ooo.values()))
                                        for c in conns if c.req is not None)
        assert st.half_bound == sum(
            c.state in ("recv", "connecting", "closing", "dialog", "replay") for c in conns)
        assert st.spliced_active == sum(c.state in ("spliced", "relaying") for c in conns)
        assert len(eng.conns_c) == len(conns)
        assert all(eng.conns_s[c.sl.key] is c for c in conns if c.sl.key is not None)
        assert not eng.conns_s.keys() & eng.pools.by_key.keys()
        for ip, free in eng.policy._snat.items():    # each SNAT port is in one place
            lo, hi = self.cfg.snat_ports
            held = [c.sl.src_port for c in conns if c.sl.src_port is not None] + \
                [p.sport for p in eng.pools.by_key.values()]
            assert len(set(held)) == len(held) and len(free) + len(held) == hi - lo + 1
        assert st.pooled_idle == sum(p.state == "idle" for p in eng.pools.by_key.values())
        for s in self.servers:
            assert s.active == sum(c.choice is not None and c.choice.counted
                                   and c.choice.server is s for c in conns)

    def client(self, frame, reason=1, port=1):
        eff = self.eng.handle(frame, port, reason, self.now)
        assert not errors(eff), errors(eff)
        self.check()
        return eff

    def syn(self, mss=1460, extra=()):
        options = [("MSS", mss)] if mss is not None else []
        options += list(extra)
        return self.client(self.cframe("S", seq=self.cisn, ack=0, options=options))

    def handshake(self, mss=1460):
        eff = self.syn(mss)
        (port, p), = pkts(eff)
        assert port == 1
        self.sisn = p[TCP].seq
        return p

    def send(self, data, rel=0, flags="PA"):
        return self.client(self.cframe(flags, data=data, rel=rel))

    # server -> client / SNAT ------------------------------------------------------
    def sframe(self, syn_pkt, flags, seq, ack, data=b"", mss=1460, src=None):
        """A server packet answering the switch's SYN ``syn_pkt`` (scapy)."""
        ip, tcp = syn_pkt[IP], syn_pkt[TCP]
        t = TCP(sport=tcp.dport, dport=tcp.sport, seq=seq, ack=ack, flags=flags,
                window=29200, options=[("MSS", mss)] if "S" in flags else [])
        mac = {S1: S1_MAC, S2: S2_MAC, S3: S3_MAC}[ip.dst]
        p = Ether(src=mac, dst=SW_S) / IP(src=src or ip.dst, dst=ip.src) / t
        if data:
            p = p / Raw(data)
        return bytes(p)

    def server(self, frame, reason=2, port=2):
        eff = self.eng.handle(frame, port, reason, self.now)
        assert not errors(eff), errors(eff)
        self.check()
        return eff

    def tick(self, dt):
        self.now += dt
        eff = self.eng.tick(self.now)
        assert not errors(eff), errors(eff)
        self.check()
        return eff

    def to_server_syn(self, eff):
        out = [(port, p) for port, p in pkts(eff) if p[TCP].flags == "S"]
        assert len(out) == 1, eff
        return out[0][1]


__all__ = ["EveryRequest", "Harness", "valid", "pkts", "of", "opts", "payload", "ip_int", "InstallFlows",
           "RemoveFlows", "Log", "PacketOut"]
