"""Pooled server connections: idle connections the switch opened to a service's servers
in advance, onto which a new client connection is spliced instead of opening one
(docs/csproc.md section 16; HAProxy's ``http-reuse``, the pre-allocated connections of
the LCS, slides 52-53).

A pooled connection is a TCP connection from the service's SNAT address and a port of
its pool, with the switch's own ISN ``P``.  Its SYN carries the MSS and window scale of
the client whose connection caused it to be opened; a later client takes it only if its
own options are compatible (same window scale, MSS not smaller).  Like the engine, this
is a pure state machine: the caller passes ``now`` and carries out the effects."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from hashlib import blake2b

from . import packet as P
from .effects import PacketOut
from .packet import ACK, FIN, MOD32, RST, SYN, Segment

OPENING, IDLE = "opening", "idle"


@dataclass(frozen=True)
class ServerPool:
    """A service's pool: up to ``idle`` connections per server, each closed ``max_age``
    seconds after its handshake if no client took it (keep it below the servers' idle
    timeout for a connection without a request: nginx's ``client_header_timeout``, 60 s)."""

    idle: int = 4
    max_age: float = 30.0

    def __post_init__(self):
        if type(self.idle) is not int or self.idle < 0:
            raise ValueError("server pool: idle must be an integer >= 0")
        if not self.max_age > 0:
            raise ValueError("server pool: max_age must be positive")


class Pooled:
    """One pooled connection: ``key`` is its 4-tuple as the server's packets carry it."""

    __slots__ = ("svc", "server", "key", "src", "sport", "sw_port", "mac", "isn", "sisn",
                 "mss", "ws", "smss", "sws", "state", "syn_tries", "syn_sent", "deadline")
    # mss, ws: the options of its SYN (the server sends segments of at most mss); smss, sws:
    # those of the server's SYN-ACK


class Pools:
    """The pooled connections of every service with a ``server_pool``.  ``policy`` lends
    the SNAT ports, ``topo`` routes to the servers, ``port_mac`` is the switch's MAC on a
    port, ``on_scale(server, scale, now)`` learns a server's window scale."""

    def __init__(self, cfg, topo, policy, port_mac, stats, secret: bytes, on_scale):
        self.cfg, self.topo, self.policy, self._pm = cfg, topo, policy, port_mac
        self.stats = stats
        self._secret = secret[16:32] or secret[:16]
        self.on_scale = on_scale
        self.by_key: dict[tuple, Pooled] = {}
        self._of: dict[tuple, list[Pooled]] = {}     # (service name, server) -> conns

    # ------------------------------------------------------------------ clients
    def take(self, svc, server, mss: int, ws: int | None) -> Pooled | None:
        """An idle connection of ``svc`` to ``server`` whose options fit a client with MSS
        ``mss`` and window scale ``ws`` (None: none); it leaves the pool."""
        for p in self._of.get((svc.name, server), ()):
            if p.state == IDLE and p.ws == ws and p.mss <= mss:
                self._forget(p, release=False)
                self.stats.pooled_used += 1
                return p
        return None

    def fill(self, svc, server, mss: int, ws: int | None, now: float) -> list:
        """Open connections of ``svc`` to ``server`` with these options up to its pool's
        size (connections being opened count).  A full pool with no connection that fits
        these options gives up its oldest idle one that does not: the pool follows its
        clients' options (the learned window scale of the service changes them; clients
        differ), one connection per such client."""
        size = svc.server_pool.idle
        out: list = []
        route = self.topo.route(server.ip)
        if route is None:
            return out
        conns = self._of.get((svc.name, server), [])
        if len(conns) >= size > 0 and not any(p.ws == ws and p.mss <= mss for p in conns):
            old = next((p for p in conns if p.state == IDLE), None)
            if old is not None:
                out += self._close(old)
        for _ in range(size - len(self._of.get((svc.name, server), ()))):
            src = self.policy.source(svc, 0, 0)
            if src is None:                      # the SNAT pool is exhausted
                break
            p = Pooled()
            p.svc, p.server = svc, server
            p.src, p.sport = src
            p.key = (server.ip, server.port, p.src, p.sport)
            p.sw_port, p.mac = route[0], P.mac_bytes(route[1])
            p.isn = self.isn(p.key, now)
            p.sisn = p.sws = p.smss = None
            p.mss, p.ws = mss, ws
            p.state = OPENING
            p.syn_tries = 0
            p.syn_sent = now
            self.by_key[p.key] = p
            self._of.setdefault((svc.name, server), []).append(p)
            out.append(self._syn(p))
        return out

    def isn(self, key: tuple, now: float) -> int:
        """The ISN of a pooled connection with 4-tuple ``key`` opened at ``now``: RFC 6528,
        a 4 µs clock plus a keyed hash of the 4-tuple.  SNAT ports come back while the
        server may still hold the previous connection on the same 4-tuple in TIME_WAIT,
        and a server accepts a SYN there only if its ISN lies beyond that connection's
        last sequence number, which a clock-driven ISN does (the previous one carried a
        request, far less than 4 bytes per µs since)."""
        h = blake2b(struct.pack("!IHIH", *key), digest_size=4, key=self._secret).digest()
        return (int.from_bytes(h, "big") + int(now * 250_000)) & MOD32

    # ------------------------------------------------------------------ servers
    def segment(self, seg: Segment, now: float) -> list | None:
        """A packet from a server to a pooled connection (None: not one)."""
        p = self.by_key.get((seg.sip, seg.sport, seg.dip, seg.dport))
        if p is None:
            return None
        f = seg.flags
        if p.state == OPENING:
            if seg.ack != (p.isn + 1) & MOD32 or not f & ACK:
                return []
            if f & RST:
                self.stats.pooled_failed += 1
                self._forget(p)
                return []
            if not f & SYN:
                return []
            p.sisn, p.sws = seg.seq, seg.wscale
            p.smss = seg.mss or 536
            p.state = IDLE
            p.deadline = now + p.svc.server_pool.max_age
            self.stats.pooled_opened += 1
            self.stats.pooled_idle += 1
            out = self.on_scale(p.server, seg.wscale, now) if p.ws is not None else []
            return out + [self._send(p, p.isn + 1, p.sisn + 1, ACK)]
        if f & RST:
            if seg.seq == (p.sisn + 1) & MOD32:
                self._forget(p)
                self.stats.pooled_closed += 1
            return []
        if f & SYN:                              # our ACK was lost
            return [self._send(p, p.isn + 1, p.sisn + 1, ACK)] if f & ACK else []
        if seg.payload or f & FIN:               # the server closes it, or speaks: not ours
            return self._close(p)
        return []

    def drop_server(self, server) -> list:
        """``server`` went down: reset its pooled connections."""
        out: list = []
        for (_, s), conns in list(self._of.items()):
            if s is server:
                for p in list(conns):
                    out += self._close(p)
        return out

    def replace(self, services, servers_of) -> list:
        """A live edit: the pooled connections of a service that no longer exists, changed
        its pool or its source address, or of a server it no longer uses, are reset.
        ``servers_of(svc)`` yields the servers of a service."""
        now = {s.name: s for s in services}
        out: list = []
        for (name, server), conns in list(self._of.items()):
            svc = now.get(name)
            keep = svc is not None and conns and svc.server_pool == conns[0].svc.server_pool \
                and svc.mode == "snat" and svc.snat_ip == conns[0].svc.snat_ip \
                and server in set(servers_of(svc))
            for p in list(conns):
                if keep:
                    p.svc = svc
                else:
                    out += self._close(p)
        return out

    # ------------------------------------------------------------------ timers
    def next_deadline(self) -> float | None:
        return min((self._due(p) for p in self.by_key.values()), default=None)

    def _due(self, p: Pooled) -> float:
        if p.state == IDLE:
            return p.deadline
        cfg = self.cfg
        return min(p.syn_sent + cfg.server_syn_rto * ((1 << p.syn_tries) - 1),
                   p.syn_sent + cfg.server_connect_timeout)

    def tick(self, now: float) -> list:
        out: list = []
        cfg = self.cfg
        for p in [p for p in self.by_key.values() if self._due(p) <= now]:
            if p.state == IDLE:
                out += self._close(p)           # max_age: nobody took it
            elif p.syn_tries <= cfg.server_syn_retries \
                    and now < p.syn_sent + cfg.server_connect_timeout:
                out.append(self._syn(p))
            else:                                # the server does not answer
                self.stats.pooled_failed += 1
                self._forget(p)
        return out

    def sizes(self) -> dict:
        """{server: {"idle": n, "opening": n}} over all services."""
        out: dict = {}
        for p in self.by_key.values():
            d = out.setdefault(p.server, {IDLE: 0, OPENING: 0})
            d[p.state] += 1
        return out

    # ------------------------------------------------------------------ helpers
    def _syn(self, p: Pooled) -> PacketOut:
        p.syn_tries += 1
        opts = P.mss_option(p.mss)
        if p.ws is not None:
            opts += P.wscale_option(p.ws)
        return self._send(p, p.isn, 0, SYN, opts)

    def _close(self, p: Pooled) -> list:
        """Reset ``p`` (the server forgets it at once and keeps no TIME_WAIT, so its SNAT
        port is free again) and forget it."""
        out = [self._send(p, p.isn + 1, 0, RST)]
        if p.state == IDLE:
            self.stats.pooled_closed += 1
        self._forget(p)
        return out

    def _forget(self, p: Pooled, release: bool = True) -> None:
        """``p`` leaves the pool; ``release``: its SNAT port too (not when a client
        connection takes it over with the connection)."""
        if self.by_key.pop(p.key, None) is None:
            return
        conns = self._of[(p.svc.name, p.server)]
        conns.remove(p)
        if not conns:
            del self._of[(p.svc.name, p.server)]
        if p.state == IDLE:
            self.stats.pooled_idle -= 1
        if release:
            self.policy.release_source(p.svc, p.sport)

    def _send(self, p: Pooled, seq: int, ack: int, flags: int,
              options: bytes = b"") -> PacketOut:
        s = p.server
        win = 65535 if flags & SYN or not p.ws else 65535 >> p.ws
        return PacketOut(p.sw_port, P.build(self._pm(p.sw_port), p.mac, p.src, s.ip, p.sport,
                                            s.port, seq & MOD32, ack & MOD32, flags, win, b"",
                                            options, self.cfg.ttl))
