"""A client and a server of a server-speaks-first service, played through the engine."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from p4cs.csproc import InstallFlows, RuleSetDecider, Server, ServerGroup, StaticTopology
from p4cs.csproc.packet import apply_splice
from p4cs.rules import parse_rules
from p4cs.rules.store import RuleStore

from cs_harness import S1, S1_MAC, S2, S2_MAC, SW_C, SW_S, Harness, of, payload, pkts, valid

M = 2**32


def mail_harness(protocol: str, rules: str, cisn: int = 1000, mode: str = "transparent",
                 config=None) -> Harness:
    """Groups ``a`` (s1) and ``b`` (s2), both in the default group ``web``."""
    s1, s2 = Server("s1", S1, 25), Server("s2", S2, 25)
    groups = [ServerGroup("web", [s1, s2], "rr"), ServerGroup("a", [s1]),
              ServerGroup("b", [s2])]
    h = Harness(router=RuleSetDecider(RuleStore(parse_rules(rules))), groups=groups,
                protocol=protocol, cisn=cisn, mode=mode, config=config)
    h.servers = [s1, s2]
    h.eng.topo = StaticTopology({1: SW_C, 2: SW_S}, {S1: (2, S1_MAC), S2: (2, S2_MAC)})
    return h


class Client:
    """The client's side: what it sent (``rel``) and what it received from the switch."""

    def __init__(self, h: Harness):
        self.h = h
        self.rel = 0
        self.rcvd = b""

    def connect(self) -> bytes:
        """Handshake and the handshake's ACK; returns the greeting."""
        self.h.handshake()
        return self.take(self.h.client(self.h.cframe("A", ack=self.ack())))

    def ack(self) -> int:
        return (self.h.sisn + 1 + len(self.rcvd)) % M

    def take(self, eff) -> bytes:
        """The in-order payload the switch sent the client in ``eff``."""
        got = b""
        for port, p in pkts(eff):
            if port != 1 or not payload(p):
                continue
            off = (p[TCP].seq - self.h.sisn - 1) % M
            if off == len(self.rcvd) + len(got):
                got += payload(p)
        self.rcvd += got
        return got

    def send(self, data: bytes, ack: bool = True):
        eff = self.h.client(self.h.cframe("PA", data=data, rel=self.rel,
                                          ack=self.ack() if ack else None))
        self.rel += len(data)
        return eff

    def say(self, data: bytes) -> bytes:
        """Send a command, return the switch's reply."""
        return self.take(self.send(data))


class Srv:
    """The chosen server's side, from the switch's SYN on."""

    def __init__(self, h: Harness, syn, isn: int):
        self.h, self.syn, self.isn = h, syn, isn
        self.sent = 0          # bytes the server sent
        self.rcvd = b""        # bytes the server received, in its order

    def frame(self, flags, data=b""):
        ack = (self.syn[TCP].seq + 1 + len(self.rcvd)) % M
        seq = self.isn if "S" in flags else (self.isn + 1 + self.sent) % M
        return self.h.sframe(self.syn, flags, seq, ack, data)

    def synack(self):
        return self.take(self.h.server(self.frame("SA")))

    def say(self, data: bytes):
        eff = self.h.server(self.frame("PA", data))
        self.sent += len(data)
        return self.take(eff)

    def take(self, eff):
        for port, p in pkts(eff):
            if port == 2 and payload(p):
                off = (p[TCP].seq - self.syn[TCP].seq - 1) % M
                if off == len(self.rcvd):
                    self.rcvd += payload(p)
        for inst in of(eff, InstallFlows):
            for p in inst.then:
                q = valid(p.frame)
                off = (q[TCP].seq - self.syn[TCP].seq - 1) % M
                if off == len(self.rcvd):
                    self.rcvd += payload(q)
        return eff


def check_splice(h: Harness, cl: Client, srv: Srv, inst: InstallFlows):
    """Both directions of the installed flows continue both legs exactly."""
    c2s, s2c = inst.flows
    s_frame = srv.frame("PA", b"250 next\r\n")
    to_client = valid(apply_splice(s_frame, s2c))
    assert to_client[TCP].seq == cl.ack()                      # after the switch's replies
    assert to_client[TCP].ack == (h.cisn + 1 + cl.rel) % M     # everything the client sent
    assert to_client[IP].dst == "192.168.1.10"
    c_frame = h.cframe("PA", data=b"DATA\r\n", rel=cl.rel, ack=(cl.ack() + 5) % M)
    to_server = valid(apply_splice(c_frame, c2s))
    assert to_server[TCP].seq == (srv.syn[TCP].seq + 1 + len(srv.rcvd)) % M
    assert to_server[TCP].ack == (srv.isn + 1 + srv.sent + 5) % M
    assert to_server[IP].dst in (S1, S2)
