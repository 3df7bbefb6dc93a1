"""Neighbour resolution: the MACs of real servers and other hosts, found with ARP.

The data plane answers ARP requests for the switch's own addresses and punts every ARP reply
to the controller (packet-in reason ``REASON_ARP``). The controller asks, through packet-outs,
for the MAC of each address it needs: every real server of every group and every host of the
configuration's ``hosts:`` section given without a MAC. A request leaves from the switch's
own address (the port's gateway) on the neighbour's port; while that is unknown, on every
port whose subnet holds the address (or on every port when none does), and the answer's
ingress port becomes the neighbour's port.

:class:`NeighbourTable` is the state machine, clock-free (``now`` is passed in), like the
kernel's neighbour table:

* ``incomplete``: asked, no answer yet; asked again every ``retrans_s``, ``probes`` times,
  then ``failed``;
* ``reachable``: answered within ``refresh_s``; then ``stale``;
* ``stale``: the MAC is still used, and asked for again (every ``retrans_s``); ``probes``
  requests without an answer make it ``failed``;
* ``failed``: no MAC (the data plane forgets it); asked again every ``retry_s``;
* ``permanent``: given in ``hosts:``; never asked for, never replaced by an answer.

Every answer refreshes the entry; an answer with another MAC or port (the host moved, or a new
card) replaces it. The table is also the CS processor's :class:`~p4cs.csproc.engine.Topology`:
a server without a MAC has no route, so a connection to it goes to another server of its
group (or is refused when none is left) and its health checks fail until it is resolved.
Every change of an address's (port, MAC) is returned to the controller, which rewrites the
host route, and the flows carrying the old MAC (:func:`rewrite_flows`).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from finsy import P4TableAction, P4TableEntry, P4TableMatch, Switch
from finsy.p4client import P4ClientError
from finsy.proto import p4r

from p4cs.constants import ARP_OPER_REPLY, ARP_OPER_REQUEST, ETHERTYPE_ARP, ETHERTYPE_IPV4
from p4cs.controller.p4rt import FlowEncoder, enc, read_entities
from p4cs.csproc.packet import ip_int, ip_str, mac_bytes

LOG = logging.getLogger("p4cs.controller")

INCOMPLETE, REACHABLE, STALE, FAILED, PERMANENT = (
    "incomplete", "reachable", "stale", "failed", "permanent")
BROADCAST = b"\xff" * 6
_ARP = struct.Struct("!6s6sHHHBBH6s4s6s4s")     # Ethernet + ARP for IPv4 over Ethernet


@dataclass(frozen=True)
class Timers:
    refresh_s: float = 60.0     # an answer is trusted this long, then asked for again
    retrans_s: float = 1.0      # between two requests for an address
    probes: int = 3             # unanswered requests before an address is failed
    retry_s: float = 10.0       # between two rounds of requests for a failed address


@dataclass
class Neighbour:
    ip: int
    port: int | None            # the port towards it (None: unknown)
    mac: bytes | None
    state: str
    due: float                  # when the next request (or state change) is due
    home: int | None = None     # the configured port (None: learnt from the answers)
    confirmed: float | None = None
    misses: int = 0             # requests unanswered since the last answer

    def as_dict(self, now: float) -> dict:
        return {"ip": ip_str(self.ip), "port": self.port,
                "mac": None if self.mac is None else self.mac.hex(":"), "state": self.state,
                "confirmed_s_ago": None if self.confirmed is None else round(now - self.confirmed, 3)}


@dataclass(frozen=True)
class Change:
    """The (port, MAC) towards ``ip`` changed from ``old`` to ``new`` (None: no MAC)."""
    ip: int
    old: tuple[int, bytes] | None
    new: tuple[int, bytes] | None


@dataclass(frozen=True)
class Request:
    """An ARP request frame to send out of ``port``."""
    port: int
    frame: bytes


def arp_request(smac: bytes, sip: int, tip: int) -> bytes:
    return _ARP.pack(BROADCAST, smac, ETHERTYPE_ARP, 1, ETHERTYPE_IPV4, 6, 4, ARP_OPER_REQUEST,
                     smac, sip.to_bytes(4, "big"), bytes(6), tip.to_bytes(4, "big"))


def parse_arp_reply(frame: bytes) -> tuple[int, bytes, int] | None:
    """(sender address, sender MAC, target address) of an ARP reply, else None."""
    if len(frame) < _ARP.size:
        return None
    (_dst, _src, etype, htype, ptype, hlen, plen, oper, sha, spa, _tha,
     tpa) = _ARP.unpack_from(frame)
    if (etype, htype, ptype, hlen, plen, oper) != (ETHERTYPE_ARP, 1, ETHERTYPE_IPV4, 6, 4,
                                                   ARP_OPER_REPLY):
        return None
    return int.from_bytes(spa, "big"), sha, int.from_bytes(tpa, "big")


class NeighbourTable:
    """The neighbours' MACs (see the module); also a CS-processor Topology."""

    def __init__(self, port_macs: dict[int, str | bytes], port_ips: dict[int, str | int],
                 subnets: dict[int, tuple[int, int]], timers: Timers = Timers()):
        self._pm = {int(p): mac_bytes(m) for p, m in port_macs.items()}
        self._pip = {int(p): ip_int(ip) for p, ip in port_ips.items()}
        self._subnets = subnets                 # port -> (network, mask)
        self.timers = timers
        self.entries: dict[int, Neighbour] = {}

    # ------------------------------------------------------------------ Topology
    def port_mac(self, port: int) -> bytes:
        return self._pm[port]

    def port_ip(self, port: int) -> int | None:
        return self._pip.get(port)

    def route(self, ip: int) -> tuple[int, bytes] | None:
        n = self.entries.get(ip)
        return _route(n)

    # ------------------------------------------------------------------ intent
    def add_static(self, ip: str | int, port: int, mac: str | bytes) -> None:
        ip = ip_int(ip)
        self.entries[ip] = Neighbour(ip, port, mac_bytes(mac), PERMANENT, due=float("inf"))

    def want(self, ip: str | int, port: int | None, now: float) -> None:
        """Resolve ``ip`` (towards ``port``; None: the port an answer comes from)."""
        ip = ip_int(ip)
        if ip not in self.entries:
            self.entries[ip] = Neighbour(ip, port, None, INCOMPLETE, due=now, home=port)

    # ------------------------------------------------------------------ events
    def learn(self, ip: int, mac: bytes, port: int, now: float) -> Change | None:
        """An ARP reply from ``ip`` with ``mac`` arrived on ``port``."""
        n = self.entries.get(ip)
        if n is None or n.state == PERMANENT:
            return None
        old = _route(n)
        n.mac, n.port, n.state = mac, port, REACHABLE
        n.confirmed, n.misses, n.due = now, 0, now + self.timers.refresh_s
        new = _route(n)
        return None if old == new else Change(ip, old, new)

    def tick(self, now: float) -> tuple[list[Request], list[Change]]:
        """The requests due now, and the addresses whose MAC is withdrawn."""
        t = self.timers
        requests: list[Request] = []
        changes: list[Change] = []
        for n in self.entries.values():
            if n.due > now:
                continue
            if n.state == REACHABLE:
                n.state, n.misses = STALE, 0
            elif n.state == FAILED:
                n.state, n.misses = INCOMPLETE, 0
            if n.misses >= t.probes:
                old = _route(n)
                n.state, n.mac, n.port, n.due = FAILED, None, n.home, now + t.retry_s
                if old is not None:
                    changes.append(Change(n.ip, old, None))
                continue
            n.misses += 1
            n.due = now + t.retrans_s
            requests.extend(self._requests(n))
        return requests, changes

    def next_deadline(self) -> float | None:
        return min((n.due for n in self.entries.values()), default=None)

    def _requests(self, n: Neighbour) -> Iterable[Request]:
        """Out of its port; when unknown, out of every port whose subnet holds the address,
        or every port when none does."""
        ports = [n.port] if n.port is not None else (
            [p for p, (net, mask) in sorted(self._subnets.items()) if n.ip & mask == net]
            or sorted(self._pm))
        for p in ports:
            sip = self._pip.get(p)
            if sip is not None and p in self._pm:
                yield Request(p, arp_request(self._pm[p], sip, n.ip))

    def as_list(self, now: float) -> list[dict]:
        return [n.as_dict(now) for _, n in sorted(self.entries.items())]


def _route(n: Neighbour | None) -> tuple[int, bytes] | None:
    if n is None or n.mac is None or n.port is None:
        return None
    return n.port, n.mac


async def rewrite_flows(sw: Switch, flows: FlowEncoder, change: Change) -> int:
    """Point the flow entries that send to ``change.old`` at ``change.new``; their number."""
    old, new = change.old, change.new
    if old is None or new is None:
        return 0
    updates = [u async for u in _moved(sw, flows, old, new)]
    if not updates:
        return 0
    try:
        await sw.write(updates)
    except P4ClientError as exc:
        if not exc.is_not_found_only:
            raise
        # Entries of closed connections expire by themselves (the data plane's short
        # profile) and may be gone by the time of the write: only the others moved.
        return len(updates) - len(exc.details)
    return len(updates)


async def _moved(sw: Switch, flows: FlowEncoder, old: tuple[int, bytes],
                 new: tuple[int, bytes]) -> AsyncIterator[p4r.Update]:
    ids = flows.splice
    pid = dict(zip(ids.param_names, (p for p, _ in ids.params)))
    width = dict(ids.params)
    old_vals = {pid["port"]: old[0], pid["dmac"]: int.from_bytes(old[1], "big")}
    new_vals = {pid["port"]: new[0], pid["dmac"]: int.from_bytes(new[1], "big")}
    probe = p4r.Entity(table_entry=p4r.TableEntry(table_id=ids.table_id))
    async for ent in read_entities(sw, [probe]):
        te = ent.table_entry
        action = te.action.action
        if action.action_id != ids.action_id:
            continue
        vals = {p.param_id: int.from_bytes(p.value, "big") for p in action.params}
        if any(vals.get(k) != v for k, v in old_vals.items()):
            continue
        for p in action.params:
            if p.param_id in new_vals:
                p.value = enc(new_vals[p.param_id], width[p.param_id])
        yield p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(table_entry=te))


def from_config(cfg, now: float) -> NeighbourTable:
    """The table a controller configuration asks for: its hosts with a MAC are permanent, its
    hosts without one and every real server are resolved."""
    ports = cfg.ports.values()
    nc = cfg.neighbours
    table = NeighbourTable({p.number: p.mac for p in ports},
                           {p.number: str(p.gateway.ip) for p in ports},
                           {p.number: (int(p.gateway.network.network_address),
                                       int(p.gateway.network.netmask)) for p in ports},
                           Timers(nc.refresh_s, nc.retrans_s, nc.probes, nc.retry_s))
    for h in cfg.hosts:
        if h.mac is not None:
            table.add_static(h.ip, h.port, h.mac)
    for h in cfg.hosts:
        table.want(h.ip, h.port, now)
    for g in cfg.groups.values():
        for s in g.servers:
            table.want(s.address, None, now)
    return table


def route_entry(ip: int, route: tuple[int, bytes], smac: bytes) -> P4TableEntry:
    """The host route towards a resolved neighbour."""
    port, mac = route
    return P4TableEntry("ipv4_route", match=P4TableMatch(dst_addr=f"{ip_str(ip)}/32"),
                        action=P4TableAction("route", port=port, dmac=int.from_bytes(mac, "big"),
                                             smac=int.from_bytes(smac, "big")))


class Resolver:
    """Runs a :class:`NeighbourTable` against a switch: sends its requests, learns from the
    replies the data plane punts, and writes every change to the host routes and flows."""

    def __init__(self, table: NeighbourTable,
                 send: Callable[[Switch, list[tuple[int, bytes]]], Awaitable[None]]):
        self.table = table
        self._send = send
        self._wake = asyncio.Event()
        self._learnt: list[Change] = []
        self.counters = {"arp_requests": 0, "arp_replies": 0, "neighbour_changes": 0,
                         "flows_moved": 0}

    def routes(self) -> list[P4TableEntry]:
        """The host routes of every neighbour with a MAC (base entries of the data plane)."""
        out = []
        for ip, n in sorted(self.table.entries.items()):
            r = _route(n)
            if r is not None:
                out.append(route_entry(ip, r, self.table.port_mac(r[0])))
        return out

    def want(self, cfg, now: float) -> None:
        """Resolve every real server of ``cfg`` not in the table yet (servers added by a
        live edit); :meth:`run` asks for them at once."""
        for g in cfg.groups.values():
            for s in g.servers:
                self.table.want(s.address, None, now)
        self._wake.set()

    def reply(self, frame: bytes, port: int, now: float) -> None:
        """A punted ARP reply: learn from it if it answers the switch (or is gratuitous);
        a change is written by :meth:`run`."""
        arp = parse_arp_reply(frame)
        if arp is None or self.table.port_ip(port) is None:
            return
        sip, smac, tip = arp
        if tip != sip and tip != self.table.port_ip(port):
            return
        self.counters["arp_replies"] += 1
        change = self.table.learn(sip, smac, port, now)
        if change is not None:
            self._learnt.append(change)
            self._wake.set()

    async def run(self, sw: Switch, flows: FlowEncoder) -> None:
        """Send the requests when due and write the changes, while the session lasts."""
        while True:
            requests, changes = self.table.tick(time.monotonic())
            changes, self._learnt = self._learnt + changes, []
            if requests:
                self.counters["arp_requests"] += len(requests)
                await self._send(sw, [(r.port, r.frame) for r in requests])
            if changes:
                await self._apply(sw, flows, changes)
            deadline = self.table.next_deadline()
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    async def _apply(self, sw: Switch, flows: FlowEncoder, changes: list[Change]) -> None:
        for c in changes:
            self.counters["neighbour_changes"] += 1
            LOG.info("neighbour %s: %s -> %s", ip_str(c.ip), _show(c.old), _show(c.new))
            try:
                if c.new is None:
                    await sw.delete([route_entry(c.ip, c.old, self.table.port_mac(c.old[0]))])
                else:
                    entry = route_entry(c.ip, c.new, self.table.port_mac(c.new[0]))
                    await (sw.insert if c.old is None else sw.modify)([entry])
                moved = await rewrite_flows(sw, flows, c)
            except P4ClientError as exc:
                LOG.warning("neighbour %s: data plane not updated: %s", ip_str(c.ip), exc)
                continue
            if moved:
                self.counters["flows_moved"] += moved
                LOG.info("neighbour %s: %d flow(s) now sent to %s", ip_str(c.ip), moved,
                         _show(c.new))


def _show(route: tuple[int, bytes] | None) -> str:
    return "none" if route is None else f"{route[1].hex(':')} on port {route[0]}"
