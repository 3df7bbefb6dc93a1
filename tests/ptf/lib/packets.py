"""Packet builders and checks for the PTF suite (scapy).

Checksums are checked by scapy itself: a received frame is parsed, its IPv4/TCP/UDP checksums
are deleted and the frame is rebuilt; scapy recomputes them from scratch and the rebuilt bytes
must equal the received bytes.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Padding, Raw

M32 = 0xFFFFFFFF


def tcp_frame(
    eth_src: str,
    eth_dst: str,
    ip_src: str,
    ip_dst: str,
    sport: int,
    dport: int,
    *,
    seq: int = 1000,
    ack: int = 2000,
    flags: str = "A",
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 1,
    options: list | None = None,
) -> Ether:
    ip = IP(src=ip_src, dst=ip_dst, ttl=ttl, id=ip_id)
    if options:
        ip.options = options
    return Ether(src=eth_src, dst=eth_dst) / ip / TCP(
        sport=sport, dport=dport, seq=seq & M32, ack=ack & M32, flags=flags, window=8192
    ) / Raw(payload)


def sized_tcp_frame(size: int, *args, **kw) -> Ether:
    """A TCP frame of exactly `size` bytes (payload fills the rest)."""
    base = len(tcp_frame(*args, **kw))
    pad = size - base
    if pad < 0:
        raise ValueError(f"frame of {size} bytes too small for the headers ({base})")
    kw = dict(kw)
    kw["payload"] = kw.get("payload", b"") + bytes((i * 7) & 0xFF for i in range(pad))
    return tcp_frame(*args, **kw)


def udp_frame(eth_src: str, eth_dst: str, ip_src: str, ip_dst: str, sport: int, dport: int, payload: bytes = b"x" * 32) -> Ether:
    return Ether(src=eth_src, dst=eth_dst) / IP(src=ip_src, dst=ip_dst, id=7) / UDP(sport=sport, dport=dport) / Raw(payload)


def icmp_echo(eth_src: str, eth_dst: str, ip_src: str, ip_dst: str) -> Ether:
    return Ether(src=eth_src, dst=eth_dst) / IP(src=ip_src, dst=ip_dst, id=9) / ICMP(id=1, seq=1) / Raw(b"p4cs-ptf" * 4)


def arp_request(eth_src: str, ip_src: str, ip_target: str) -> Ether:
    f = Ether(src=eth_src, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=eth_src, psrc=ip_src, hwdst="00:00:00:00:00:00", pdst=ip_target)
    return f / Padding(b"\x00" * (60 - len(f)))


def arp_reply_expected(switch_mac: str, ip_answered: str, req_mac: str, req_ip: str) -> Ether:
    f = Ether(src=switch_mac, dst=req_mac) / ARP(op=2, hwsrc=switch_mac, psrc=ip_answered, hwdst=req_mac, pdst=req_ip)
    return f / Padding(b"\x00" * (60 - len(f)))


def checksum_problems(frame: bytes) -> list[str]:
    """Empty if every IPv4/TCP/UDP checksum of the frame is what scapy computes from scratch."""
    pkt = Ether(frame)
    problems = []
    if IP not in pkt:
        return ["not an IPv4 frame"]
    rebuilt = pkt.copy()
    del rebuilt[IP].chksum
    for layer in (TCP, UDP):
        if layer in rebuilt:
            del rebuilt[layer].chksum
    rebuilt = Ether(bytes(rebuilt))
    if rebuilt[IP].chksum != pkt[IP].chksum:
        problems.append(f"IPv4 checksum {pkt[IP].chksum:#06x}, scapy computes {rebuilt[IP].chksum:#06x}")
    for layer in (TCP, UDP):
        if layer in pkt and layer in rebuilt and rebuilt[layer].chksum != pkt[layer].chksum:
            problems.append(f"{layer.__name__} checksum {pkt[layer].chksum:#06x}, scapy computes {rebuilt[layer].chksum:#06x}")
    if not problems and bytes(rebuilt) != bytes(frame):
        problems.append("frame rebuilt by scapy differs from the received bytes")
    return problems


def frame_diff(got: bytes, want: bytes) -> str:
    """A readable field-by-field difference of two Ethernet frames."""
    g, w = Ether(got), Ether(want)
    out = []
    if len(got) != len(want):
        out.append(f"length {len(got)} != expected {len(want)}")
    layers = [(Ether, ("src", "dst", "type")), (IP, ("src", "dst", "ttl", "len", "id", "flags", "frag", "chksum")),
              (TCP, ("sport", "dport", "seq", "ack", "flags", "window", "chksum")), (UDP, ("sport", "dport", "len", "chksum")),
              (ARP, ("op", "hwsrc", "psrc", "hwdst", "pdst"))]
    for layer, fields in layers:
        if (layer in g) != (layer in w):
            out.append(f"{layer.__name__}: present={layer in g}, expected {layer in w}")
            continue
        if layer not in g:
            continue
        for f in fields:
            gv, wv = getattr(g[layer], f), getattr(w[layer], f)
            if gv != wv:
                fmt = (lambda v: f"{v:#x}") if isinstance(gv, int) and f in ("seq", "ack", "chksum") else repr
                out.append(f"{layer.__name__}.{f} = {fmt(gv)}, expected {fmt(wv)}")
    if not out and got != want:
        i = next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) if got[: len(want)] != want[: len(got)] else min(len(got), len(want))
        out.append(f"bytes differ from offset {i}")
    return "; ".join(out)
