"""Struct-based Ethernet/IPv4/TCP parsing and building for the CS processor hot path.

Checksums use the fact that 2**16 == 1 (mod 0xFFFF): the one's-complement sum of 16-bit
words is congruent to the whole buffer read as one big-endian integer, modulo 0xFFFF.  So
``int.from_bytes(...) % 0xFFFF`` (both in C) replaces a Python loop over words.
"""

from __future__ import annotations

import struct

from .effects import FlowKey, FlowSpec

ETH_IPV4 = 0x0800
PROTO_TCP = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

MOD32 = 0xFFFFFFFF

_ETH = struct.Struct("!6s6sH")
_IP = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIBBHHH")
_MSS_OPT = struct.Struct("!BBH")


class BadFrame(Exception):
    """A frame the CS processor cannot use; ``args[0]`` is a short counter name."""


class Segment:
    """A parsed TCP/IPv4 frame.  Fields are host-order ints; ``payload`` is bytes."""

    __slots__ = ("dmac", "smac", "sip", "dip", "sport", "dport", "seq", "ack", "flags",
                 "window", "mss", "wscale", "payload", "ttl")

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return (f"Segment({ip_str(self.sip)}:{self.sport}->{ip_str(self.dip)}:{self.dport} "
                f"flags={flag_str(self.flags)} seq={self.seq} ack={self.ack} "
                f"win={self.window} len={len(self.payload)})")


def ip_str(ip: int) -> str:
    return f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}.{ip & 255}"


def ip_int(ip: str | int) -> int:
    if isinstance(ip, int):
        return ip
    a, b, c, d = (int(x) for x in ip.split("."))
    if not all(0 <= x <= 255 for x in (a, b, c, d)):
        raise ValueError(f"bad IPv4 address {ip!r}")
    return (a << 24) | (b << 16) | (c << 8) | d


def mac_bytes(mac: str | bytes) -> bytes:
    if isinstance(mac, bytes):
        if len(mac) != 6:
            raise ValueError("MAC must be 6 bytes")
        return mac
    b = bytes(int(x, 16) for x in mac.replace("-", ":").split(":"))
    if len(b) != 6:
        raise ValueError(f"bad MAC {mac!r}")
    return b


def flag_str(flags: int) -> str:
    return "".join(c for bit, c in ((SYN, "S"), (ACK, "A"), (FIN, "F"), (RST, "R"),
                                    (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "C"))
                   if flags & bit) or "."


def _fold(s: int) -> int:
    """Checksum field value for a buffer whose sum (with a zero checksum) is ``s``."""
    s %= 0xFFFF
    return 0xFFFF - s if s else 0


def splice_csum_deltas(key: FlowKey, sip: int, dip: int, sport: int, dport: int) -> tuple[int, int]:
    """The constants of a flow's incremental checksum update (RFC 1624) in the data plane's
    ``splice`` action: the ones'-complement sum of new minus old addresses (``ip_csum_delta``,
    IPv4 header) and of new minus old addresses and ports (``tcp_csum_delta``, TCP header and
    pseudo-header).  The old values are the flow key, which an exact match fixes."""
    addr = (sip + dip - key.src_ip - key.dst_ip) % 0xFFFF
    return addr, (addr + sport + dport - key.sport - key.dport) % 0xFFFF


def parse(frame: bytes) -> Segment:
    """Parse and validate an Ethernet/IPv4/TCP frame; raises BadFrame(kind)."""
    n = len(frame)
    if n < 54:
        raise BadFrame("truncated")
    dmac, smac, etype = _ETH.unpack_from(frame, 0)
    if etype != ETH_IPV4:
        raise BadFrame("not_ipv4")
    vihl, _tos, tot, _id, frag, ttl, proto, _ck, sip, dip = _IP.unpack_from(frame, 14)
    ihl = (vihl & 15) * 4
    if vihl >> 4 != 4 or ihl < 20:
        raise BadFrame("bad_ip_header")
    if tot < ihl + 20 or 14 + tot > n:
        raise BadFrame("truncated")
    if proto != PROTO_TCP:
        raise BadFrame("not_tcp")
    if frag & 0x3FFF:
        raise BadFrame("fragment")
    if int.from_bytes(frame[14:14 + ihl], "big") % 0xFFFF:
        raise BadFrame("bad_ip_checksum")
    t = 14 + ihl
    end = 14 + tot
    sport, dport, seq, ack, doff, flags, window, _tck, _urg = _TCP.unpack_from(frame, t)
    hl = (doff >> 4) * 4
    tcp_len = tot - ihl
    if hl < 20 or hl > tcp_len:
        raise BadFrame("bad_tcp_header")
    tcp = frame[t:end]
    if tcp_len & 1:
        tsum = int.from_bytes(tcp, "big") << 8
    else:
        tsum = int.from_bytes(tcp, "big")
    if (tsum + sip + dip + PROTO_TCP + tcp_len) % 0xFFFF:
        raise BadFrame("bad_tcp_checksum")
    seg = Segment()
    seg.dmac = dmac
    seg.smac = smac
    seg.sip = sip
    seg.dip = dip
    seg.sport = sport
    seg.dport = dport
    seg.seq = seq
    seg.ack = ack
    seg.flags = flags
    seg.window = window
    seg.ttl = ttl
    seg.payload = tcp[hl:]
    if flags & SYN and hl > 20:
        seg.mss, seg.wscale = _parse_syn_opts(tcp, hl)
    else:
        seg.mss = seg.wscale = None
    return seg


def _parse_syn_opts(tcp: bytes, hl: int) -> tuple[int | None, int | None]:
    """(MSS, window scale) options of a SYN; None when absent.  A scale above 14 is
    taken as 14 (RFC 7323 section 2.3)."""
    mss = ws = None
    i = 20
    while i < hl:
        kind = tcp[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hl:
            break
        ln = tcp[i + 1]
        if ln < 2 or i + ln > hl:
            break
        if kind == 2 and ln == 4 and mss is None:
            mss = (tcp[i + 2] << 8) | tcp[i + 3]
        elif kind == 3 and ln == 3 and ws is None:
            ws = min(tcp[i + 2], 14)
        i += ln
    return mss, ws


def mss_option(mss: int) -> bytes:
    return _MSS_OPT.pack(2, 4, mss)


def wscale_option(shift: int) -> bytes:
    """NOP + window scale (4 bytes, keeps the options 32-bit aligned)."""
    return bytes((1, 3, 3, shift))


def build(smac: bytes, dmac: bytes, sip: int, dip: int, sport: int, dport: int,
          seq: int, ack: int, flags: int, window: int, payload: bytes = b"",
          options: bytes = b"", ttl: int = 64) -> bytes:
    """Build a complete Ethernet/IPv4/TCP frame with correct checksums (DF set)."""
    if len(options) & 3:
        options += b"\x00" * (4 - (len(options) & 3))
    hl = 20 + len(options)
    plen = len(payload)
    tcp_len = hl + plen
    tot = 20 + tcp_len
    seq &= MOD32
    ack &= MOD32
    # Header words summed arithmetically (2**16 == 1 mod 0xFFFF, so 32-bit fields need
    # no splitting).  The header is followed by ``plen`` payload bytes: when plen is odd
    # every header word sits one byte off, i.e. is multiplied by 256, and the odd segment
    # is padded with a zero byte (another factor 256 on the whole).
    hsum = (sport + dport + seq + ack + ((hl << 10) | flags) + window
            + (int.from_bytes(options, "big") if options else 0))
    psum = int.from_bytes(payload, "big") if plen else 0
    if plen & 1:
        tsum = (hsum * 256 + psum) * 256
    else:
        tsum = hsum + psum
    tck = _fold(tsum + sip + dip + PROTO_TCP + tcp_len)
    ipck = _fold(0x4500 + tot + 0x4000 + (ttl << 8) + PROTO_TCP + sip + dip)
    return b"".join((dmac, smac, b"\x08\x00",
                     _IP.pack(0x45, 0, tot, 0, 0x4000, ttl, PROTO_TCP, ipck, sip, dip),
                     _TCP.pack(sport, dport, seq, ack, (hl // 4) << 4, flags, window, tck,
                               0),
                     options, payload))


def apply_splice(frame: bytes, spec: FlowSpec) -> bytes:
    """Reference model of the data plane's ``splice`` action (also the software fallback
    used while a flow is being installed).  The frame must have passed ``parse``.  Checksums
    are computed afresh; a zero checksum is written 0xFFFF, the ones'-complement zero the data
    plane's incremental update writes (both verify)."""
    vihl = frame[14]
    ihl = (vihl & 15) * 4
    tot = int.from_bytes(frame[16:18], "big")
    ip = bytearray(frame[14:14 + ihl])
    ip[10:12] = b"\x00\x00"
    ip[12:16] = spec.sip.to_bytes(4, "big")
    ip[16:20] = spec.dip.to_bytes(4, "big")
    ip[10:12] = (_fold(int.from_bytes(ip, "big")) or 0xFFFF).to_bytes(2, "big")
    tcp = bytearray(frame[14 + ihl:14 + tot])
    seq = (int.from_bytes(tcp[4:8], "big") + spec.seq_delta) & MOD32
    ack = (int.from_bytes(tcp[8:12], "big") + spec.ack_delta) & MOD32
    tcp[0:12] = struct.pack("!HHII", spec.sport, spec.dport, seq, ack)
    tcp[16:18] = b"\x00\x00"
    tcp_len = len(tcp)
    tsum = int.from_bytes(tcp, "big")
    if tcp_len & 1:
        tsum <<= 8
    tcp[16:18] = (_fold(tsum + spec.sip + spec.dip + PROTO_TCP + tcp_len) or 0xFFFF).to_bytes(2, "big")
    return b"".join((spec.dmac, spec.smac, frame[12:14], ip, tcp))


def superseded_acks(pkts: list, reason: int) -> list[tuple[int, tuple[int, int, int, int]]]:
    """The pure ACKs among the packet-ins ``pkts`` ((frame, port, reason) each) that a later
    packet-in of the same batch supersedes, as [(index, (sip, sport, dip, dport))] in index
    order. Both have the punt reason ``reason``; the ACK's flags are ACK alone and it carries
    no data; the later one is a valid segment of the same 4-tuple with the same seq and ack,
    ACK set, SYN and RST clear, that carries data. A client sends the handshake's ACK and its
    request one after the other: handled in the same batch, the request completes the
    handshake just as well (``Engine.superseded``)."""
    pending: dict[tuple, list[int]] = {}
    out: list[tuple[int, tuple[int, int, int, int]]] = []
    for i, pkt in enumerate(pkts):
        if pkt[2] != reason:
            continue
        try:
            seg = parse_py(pkt[0])
        except BadFrame:
            continue
        f = seg.flags
        key = (seg.sip, seg.sport, seg.dip, seg.dport, seg.seq, seg.ack)
        if f == ACK and not seg.payload:
            pending.setdefault(key, []).append(i)
        elif f & ACK and not f & (SYN | RST) and seg.payload:
            for j in pending.pop(key, ()):
                out.append((j, key[:4]))
    out.sort()
    return out


#: The Python versions: the reference, and what runs where ``_packet`` is not built.
parse_py, build_py, superseded_acks_py = parse, build, superseded_acks

try:        # the same three in C (setup.py builds it; optional)
    from . import _packet
except ImportError:     # pragma: no cover - the package built without a compiler
    _packet = None
else:
    _packet.setup(Segment, BadFrame, parse_py, build_py, superseded_acks_py)
    parse, build = _packet.parse, _packet.build      # noqa: F811
    superseded_acks = _packet.superseded_acks        # noqa: F811


def seq_rel(seq: int, base: int) -> int:
    """Signed offset of ``seq`` from ``base`` in 32-bit sequence space."""
    d = (seq - base) & MOD32
    return d - 0x100000000 if d & 0x80000000 else d


def seq_lt(a: int, b: int) -> bool:
    """a < b in sequence space (RFC 1982 style, 32 bits)."""
    return ((a - b) & MOD32) > 0x7FFFFFFF


def seq_le(a: int, b: int) -> bool:
    return a == b or seq_lt(a, b)
