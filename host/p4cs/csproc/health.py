"""Health checks of the real servers, sans-IO like the engine that runs them.

Active checks go through the data plane like the server connections: a probe is a TCP
connection from the switch's own address on the server's port (``Topology.port_ip``),
sent as packet-outs; the replies come back as packet-ins to a switch-local address.
``tcp``: the handshake succeeds (then RST).  ``http``: ``GET path HTTP/1.0`` answered with
status ``expect`` (then RST).  A probe fails on RST, on a wrong status, or when ``timeout``
passes.  ``rise`` successes in a row bring a server up, ``fall`` failures in a row take it
down (keepalived/HAProxy).  Passive checks: a server that refuses or does not answer the
switch's SYN counts as a failed check.  See docs/csproc.md section 8.

Every probe's SYN offers window scaling, so its SYN-ACK tells the server's window scale
(``on_scale``).  With ``scale_probes``, a server that no health check covers gets a ``tcp``
probe of its own until its scale is known (it changes no health state): the engine offers
clients the scale of their service's servers (Config.window_scale "auto", section 6)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from hashlib import blake2b

from . import packet as P
from .effects import PacketOut
from .packet import ACK, FIN, MOD32, PSH, RST, SYN, Segment, ip_str
from .schedulers import Server, ServerGroup

PROBE_PORTS = (60000, 65535)     # source ports of probes (above the SNAT pool's default)
MAX_STATUS_LINE = 512
PROBE_OPTIONS = P.mss_option(1460) + P.wscale_option(0)


@dataclass(frozen=True)
class HealthCheck:
    kind: str = "tcp"            # tcp | http
    interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 3
    path: str = "/"
    expect: int = 200

    def __post_init__(self):
        if self.kind not in ("tcp", "http"):
            raise ValueError("health check kind must be tcp or http")
        if not 0 < self.timeout <= self.interval or self.rise < 1 or self.fall < 1:
            raise ValueError("health check needs 0 < timeout <= interval, rise, fall >= 1")


class ServerHealth:
    """The state machine of one server: ``up`` moves after ``rise``/``fall`` results in a
    row; ``last`` is (when, ok, detail) of the latest result."""

    __slots__ = ("server", "group", "check", "oks", "fails", "last", "due", "probe",
                 "scale_only")

    def __init__(self, server: Server, group: ServerGroup, check: HealthCheck,
                 scale_only: bool = False):
        self.server, self.group, self.check = server, group, check
        self.scale_only = scale_only     # probes for the window scale, no health state
        self.oks = self.fails = 0
        self.last: tuple[float, bool, str] | None = None
        self.due = 0.0           # the first check runs at the first tick
        self.probe = None

    def result(self, ok: bool, now: float, detail: str) -> bool | None:
        """Record one check; the new state when it changes, else None."""
        self.last = (now, ok, detail)
        if ok:
            self.oks += 1
            self.fails = 0
            if not self.server.up and self.oks >= self.check.rise:
                return True
        else:
            self.fails += 1
            self.oks = 0
            if self.server.up and self.fails >= self.check.fall:
                return False
        return None

    def as_dict(self) -> dict:
        d = {"state": "up" if self.server.up else "down", "check": self.check.kind}
        if self.last is not None:
            d.update(last_check=self.last[0], last_ok=self.last[1], last_detail=self.last[2])
        return d


class Probe:
    __slots__ = ("h", "key", "src", "sport", "sw_port", "mac", "isn", "sisn", "deadline",
                 "resp", "sent")

    def __init__(self, h: ServerHealth, src: int, sport: int, route, isn: int,
                 deadline: float):
        s = h.server
        self.h = h
        self.key = (s.ip, s.port, src, sport)     # as the server's replies carry it
        self.src, self.sport = src, sport
        self.sw_port, self.mac = route[0], P.mac_bytes(route[1])
        self.isn, self.sisn = isn, None
        self.deadline = deadline
        self.resp = b""
        self.sent = 0        # bytes sent after the SYN


#: The probe of a server no health check covers, while its window scale is unknown.
SCALE_PROBE = HealthCheck(kind="tcp", interval=10.0, timeout=1.0)


class HealthMonitor:
    """Runs the checks of every group with a ``health`` check.  ``port_mac(port)`` is the
    switch's MAC on a port; ``on_change(server, group, up, now, detail)`` the engine's hook
    (scheduler, and the end of the server's connections); ``on_scale(server, scale, now)``
    its hook for the window scale a probe's SYN-ACK announced."""

    def __init__(self, groups, topology, port_mac, secret: bytes, ttl: int, on_change,
                 on_scale=None, scale_probes: bool = False):
        self.topo = topology
        self._pm = port_mac
        self.ttl = ttl
        self._secret = secret[:16]
        self.on_change = on_change
        self.on_scale = on_scale
        self.servers: dict[Server, ServerHealth] = {}
        self.probes: dict[tuple, Probe] = {}
        self._next_port = PROBE_PORTS[0]
        self.replace(groups, scale_probes)

    def replace(self, groups, scale_probes: bool = False) -> None:
        """Check the servers of ``groups`` from now on (a live edit): a server checked
        before, in the same group with the same check, keeps its state and probe."""
        old = self.servers
        self.servers = {}
        for g in groups:
            check = getattr(g, "health", None)
            for s in g.servers:
                if s in self.servers:
                    continue
                h = old.get(s)
                if check is not None:
                    keep = h is not None and h.group is g and h.check == check
                    self.servers[s] = h if keep else ServerHealth(s, g, check)
                elif scale_probes and not s.scale_known:
                    keep = h is not None and h.scale_only
                    self.servers[s] = h if keep else ServerHealth(s, g, SCALE_PROBE, True)
        kept = set(self.servers.values())
        for k in [k for k, p in self.probes.items() if p.h not in kept]:
            del self.probes[k]

    def next_deadline(self) -> float | None:
        if not self.servers:
            return None
        best = float("inf")     # (the controller asks after every batch of packet-ins)
        for h in self.servers.values():
            if h.probe is None and h.due < best:
                best = h.due
        for p in self.probes.values():
            if p.deadline < best:
                best = p.deadline
        return best

    def tick(self, now: float) -> list:
        if not self.servers:
            return []
        out: list = []
        for p in [p for p in self.probes.values() if p.deadline <= now]:
            out += self._finish(p, False, "timeout", now, reset=p.sisn is not None)
        for h in self.servers.values():
            if h.probe is None and h.due <= now:
                out += self._launch(h, now)
        return out

    def state(self, server: Server) -> dict | None:
        h = self.servers.get(server)
        return None if h is None or h.scale_only else h.as_dict()

    # ------------------------------------------------------------------ probes
    def _launch(self, h: ServerHealth, now: float) -> list:
        if h.scale_only and h.server.scale_known:   # learned from a connection meanwhile
            h.due = float("inf")
            return []
        h.due = now + h.check.interval
        s = h.server
        route = self.topo.route(s.ip)
        src = None
        if route is not None:
            port_ip = getattr(self.topo, "port_ip", None)
            src = port_ip(route[0]) if port_ip is not None else None
        if src is None:
            return self._result(h, False, "no route or no switch address on its port", now)
        sport = self._port(s.ip, s.port, src)
        if sport is None:
            return self._result(h, False, "no probe port free", now)
        isn = int.from_bytes(blake2b(struct.pack("!IHHd", s.ip, s.port, sport, now),
                                     digest_size=4, key=self._secret).digest(), "big")
        p = Probe(h, src, sport, route, isn, now + h.check.timeout)
        h.probe = p
        self.probes[p.key] = p
        return [self._send(p, isn, 0, SYN, options=PROBE_OPTIONS)]

    def _port(self, ip: int, port: int, src: int) -> int | None:
        lo, hi = PROBE_PORTS
        for _ in range(hi - lo + 1):
            sp = self._next_port
            self._next_port = lo if sp >= hi else sp + 1
            if (ip, port, src, sp) not in self.probes:
                return sp
        return None

    def _send(self, p: Probe, seq: int, ack: int, flags: int, payload: bytes = b"",
              options: bytes = b"") -> PacketOut:
        s = p.h.server
        return PacketOut(p.sw_port, P.build(self._pm(p.sw_port), p.mac, p.src, s.ip,
                                            p.sport, s.port, seq & MOD32, ack & MOD32, flags,
                                            65535, payload, options, self.ttl))

    def segment(self, seg: Segment, now: float) -> list | None:
        """A packet-in for a probe (None: not one)."""
        p = self.probes.get((seg.sip, seg.sport, seg.dip, seg.dport))
        if p is None:
            return None
        f = seg.flags
        if f & RST:
            return self._finish(p, False, "reset" if p.sisn is not None else "refused",
                                now, reset=False)
        if p.sisn is None:
            if not (f & SYN and f & ACK) or seg.ack != (p.isn + 1) & MOD32:
                return []
            p.sisn = seg.seq
            out = [] if self.on_scale is None else self.on_scale(p.h.server, seg.wscale, now)
            if p.h.check.kind == "tcp":
                return out + self._finish(p, True, "connected", now, reset=True)
            c = p.h.check
            req = (f"GET {c.path} HTTP/1.0\r\nHost: {ip_str(p.h.server.ip)}\r\n"
                   "User-Agent: p4cs-health\r\nConnection: close\r\n\r\n").encode()
            p.sent = len(req)
            return out + [self._send(p, p.isn + 1, p.sisn + 1, ACK | PSH, req)]
        if seg.payload and len(p.resp) < MAX_STATUS_LINE:
            p.resp += seg.payload[:MAX_STATUS_LINE - len(p.resp)]
        eol = p.resp.find(b"\r\n")
        if eol >= 0 or len(p.resp) >= MAX_STATUS_LINE:
            parts = p.resp[:eol if eol >= 0 else len(p.resp)].split(b" ", 2)
            code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
            ok = code == p.h.check.expect
            return self._finish(p, ok, f"status {code}" if code is not None
                                else "not an HTTP response", now, reset=True)
        if f & FIN:
            return self._finish(p, False, "closed before a status line", now, reset=True)
        return []

    def _finish(self, p: Probe, ok: bool, detail: str, now: float, reset: bool) -> list:
        del self.probes[p.key]
        p.h.probe = None
        out = []
        if reset:
            out.append(self._send(p, p.isn + 1 + p.sent, 0, RST))
        return out + self._result(p.h, ok, detail, now)

    def _result(self, h: ServerHealth, ok: bool, detail: str, now: float) -> list:
        if h.scale_only:
            if h.server.scale_known:          # learned: no more probes
                h.due = float("inf")
            return []
        change = h.result(ok, now, detail)
        if change is None:
            return []
        return self.on_change(h.server, h.group, change, now, detail)

    # ------------------------------------------------------------------ passive
    def passive(self, server: Server, now: float, detail: str) -> list:
        """The switch's own connection to ``server`` failed (refused, unanswered)."""
        h = self.servers.get(server)
        if h is None:
            return []
        return self._result(h, False, "passive: " + detail, now)


