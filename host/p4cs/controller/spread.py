"""Which CS-processor worker a punted frame belongs to (``p4cs controller --workers N``).

Both legs of a connection must reach the worker whose engine holds it. The client leg is
addressed to a virtual service (VIP:port), the server leg comes back

* in transparent mode to the client's own address and port (the switch connects to the
  server with the client's source address): both legs are spread by a hash of the client's
  address and port — the source of the client leg, the destination of the server leg;
* in SNAT mode to a switch address and a port of the SNAT pool: the pool is partitioned,
  worker ``w`` takes the ports ``p`` with ``p % N == w`` (``snat_share`` of the engine's
  configuration), so the destination port names the worker.

With a service whose persistence keeps templates (client-ip, tls-session, cookie-learn), the
hash takes the client's address alone, under the broadest netmask of the client-ip services:
every connection a template may apply to reaches the worker that holds it (templates are per
worker). The spread is coarser then (one client address, one worker).

The switch's data plane spreads the punts by the same function over one packet channel per
worker where it can (the embedded DPDK target, dataplane/src/spread.c: ``request`` is what it
is told); the FIN/RST copies it mirrors after the splice's rewrite, and ``copy_worker`` reads
those from the other end.

Everything else goes to worker 0, the controller's own engine: ARP replies (neighbour
resolution), the replies to health probes (they are addressed to a switch address and a port
above the SNAT pool), and frames too short or not TCP over IPv4 (the engine counts them as
malformed). A FIN/RST copy of a spliced flow may come rewritten (client → server after the
splice): the controller finds its owner by the flow's key first (``ControllerApp``), and only
falls back on this function.
"""

from __future__ import annotations

import ipaddress
import struct

from p4cs.constants import REASON_ARP

_ETH_IPV4 = 0x0800
_TCP = 6
_IP = struct.Struct("!9xB2xII")      # protocol, source, destination (IPv4 header)
_PORTS = struct.Struct("!HH")


def segment_tuple(frame: bytes) -> tuple[int, int, int, int] | None:
    """(source, destination, source port, destination port) of a TCP over IPv4 Ethernet frame;
    None for any other frame or one too short to tell."""
    if len(frame) < 38 or frame[12] << 8 | frame[13] != _ETH_IPV4:
        return None
    proto, sip, dip = _IP.unpack_from(frame, 14)
    ihl = (frame[14] & 0x0F) * 4
    if proto != _TCP or ihl < 20 or len(frame) < 14 + ihl + 4:
        return None
    sport, dport = _PORTS.unpack_from(frame, 14 + ihl)
    return sip, dip, sport, dport


def pure_syn_tuple(frame: bytes) -> tuple[int, int, int, int] | None:
    """``segment_tuple`` of a TCP SYN without ACK, RST or FIN; None for any other frame."""
    t = segment_tuple(frame)
    if t is None:
        return None
    off = 14 + (frame[14] & 0x0F) * 4 + 13
    if len(frame) <= off or frame[off] & 0x17 != 0x02:
        return None
    return t


def client_hash(ip: int, port: int) -> int:
    """A 32-bit mix of a client's address and port (Knuth's multiplicative hash of both)."""
    h = ((ip * 0x9E3779B1) ^ (port * 0x85EBCA6B)) & 0xFFFFFFFF
    return (h ^ (h >> 15)) & 0xFFFFFFFF


class Spreader:
    """The worker of each frame, for ``n`` workers, the content services' ``vips``
    ((address, port) pairs, host-order addresses), their SNAT ``snat_addresses``, the SNAT
    pool ``snat_ports`` (lo, hi) and the switch's other addresses ``local`` (health probes).
    ``client_mask``: None to spread by the client's address and port, else by its address
    under this mask."""

    def __init__(self, n: int, vips, snat_addresses, snat_ports: tuple[int, int],
                 local=(), client_mask: int | None = None):
        if n < 1:
            raise ValueError("at least one worker")
        self.n = n
        self.vips = frozenset(vips)
        self.snat = frozenset(snat_addresses)
        self.local = frozenset(local) - self.snat
        self.lo, self.hi = snat_ports
        self.mask = client_mask

    def worker(self, frame: bytes, reason: int) -> int:
        """The worker of a punted Ethernet frame (payload of a packet-in of ``reason``)."""
        if self.n == 1 or reason == REASON_ARP:
            return 0
        t = segment_tuple(frame)
        return 0 if t is None else self.key_worker(*t)

    def key_worker(self, sip: int, dip: int, sport: int, dport: int) -> int:
        """The worker of a TCP segment ``sip:sport -> dip:dport`` (also of the flow entry
        with that key: a flow key is the 5-tuple as the segment arrives)."""
        n = self.n
        if (dip, dport) in self.vips:
            return self._client(sip, sport) % n         # client leg
        if dip in self.snat:
            return dport % n if self.lo <= dport <= self.hi else 0
        if dip in self.local:
            return 0
        return self._client(dip, dport) % n             # transparent server leg

    def copy_worker(self, sip: int, dip: int, sport: int, dport: int) -> int:
        """The worker of a FIN/RST copy ``sip:sport -> dip:dport`` as the splice rewrote it
        (the DPDK pipeline mirrors the emitted segment): the server's answer goes from the
        virtual service to the client, the client's segment to the server from the client
        (transparent) or from a SNAT address and port."""
        n = self.n
        if n == 1:
            return 0
        if (sip, sport) in self.vips:
            return self._client(dip, dport) % n          # to the client
        if sip in self.snat:
            return sport % n if self.lo <= sport <= self.hi else 0
        if sip in self.local:
            return 0
        return self._client(sip, sport) % n              # from the client

    def snat_source(self, frame: bytes) -> tuple[int, int] | None:
        """(address, port) of a segment the switch sends from its SNAT pool (to a server);
        None for any other frame."""
        t = segment_tuple(frame)
        if t is None or t[0] not in self.snat or not self.lo <= t[2] <= self.hi:
            return None
        return t[0], t[2]

    def request(self) -> dict:
        """What the switch's data plane needs to spread the punts the same way (the direct
        packet channel's ``spread`` object, p4cs.switch.dpdk.pktchan)."""
        def q(ip: int) -> str:
            return str(ipaddress.IPv4Address(ip))
        return {"vips": sorted([q(a), p] for a, p in self.vips),
                "snat": sorted(q(a) for a in self.snat),
                "local": sorted(q(a) for a in self.local),
                "ports": [self.lo, self.hi],
                "mask": None if self.mask is None else q(self.mask)}

    def _client(self, ip: int, port: int) -> int:
        return client_hash(ip, port) if self.mask is None else client_hash(ip & self.mask, 0)
