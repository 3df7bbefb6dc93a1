"""Packet-rate traffic generator for namespace topologies (no external tool needed).

A sender process inside the source namespace fills an AF_PACKET ``PACKET_TX_RING`` (TPACKET_V2)
with pre-built frames once and then only flips frame status words and calls ``send()``: one
system call moves thousands of frames, so a Python sender is not the bottleneck of a kernel
or software data plane. The rate that counts is measured on the *receiving* veth: its
``rx_packets`` counter (a veth's RX counter is its peer's successful transmissions), read at the
start and the end of a fixed window after a warm-up. No receiver process is needed; frames to
UDP port 9 with no listener die in the receiver's UDP demultiplexer (ICMP errors are rate
limited by the kernel).

Reusable across data planes: ``flood(src, dst, ...)`` only needs two ``Endpoint``s — a namespace,
an interface, addresses, and the MAC of the next hop the frames are sent to (the gateway MAC of
the switch under test: the Linux router's bridge, the P4 switch's port).

    src, dst = endpoints(topo, "c1", "s1")
    result = flood(src, dst, duration=5.0)        # -> FloodResult (rx_pps, tx_pps, loss, ...)
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import mmap
import resource
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from p4cs import paths

if TYPE_CHECKING:
    from p4cs.lab.netns import Topology

SOL_PACKET = 263
PACKET_LOSS = 14
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_QDISC_BYPASS = 20
TPACKET_V2 = 1
TP_STATUS_AVAILABLE = 0
TP_STATUS_SEND_REQUEST = 1
TPACKET2_DATA_OFFSET = 32  # TPACKET_ALIGN(sizeof(struct tpacket2_hdr)); TX data starts here
FRAME_SIZE = 2048          # ring slot
BLOCK_SIZE = 1 << 16       # 32 slots per block
MIN_FRAME = 60             # Ethernet minimum without FCS


@dataclass(frozen=True)
class Endpoint:
    """One end of a measurement: where frames leave or arrive."""

    netns: str
    ifname: str
    mac: str
    ip: str
    next_hop_mac: str
    """Destination MAC for frames sent *from* this endpoint (its gateway)."""


def endpoints(topo: Topology, src: str = "c1", dst: str = "s1") -> tuple[Endpoint, Endpoint]:
    """Endpoints for two hosts of a ``p4cs.lab.netns.Topology`` (``src`` needs a gateway:
    frames are sent to it; ``dst``'s next hop is only filled in when it has one)."""
    from p4cs.lab.netns import HOST_IFNAME

    if not topo.hosts[src].gateway:
        raise ValueError(f"{src} has no gateway: no next hop to send frames to")
    out = []
    for name in (src, dst):
        h = topo.hosts[name]
        out.append(Endpoint(topo.netns(name), HOST_IFNAME, str(h.mac), h.ip,
                            topo.gateway_mac(h.switch_port) if h.gateway else ""))
    return out[0], out[1]


# ---- frames ---------------------------------------------------------------------------------
def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def build_frame(src: Endpoint, dst: Endpoint, *, proto: Literal["udp", "tcp"] = "udp",
                sport: int = 10000, dport: int = 9, frame_len: int = MIN_FRAME,
                ttl: int = 64) -> bytes:
    """Ethernet/IPv4/UDP or TCP (ACK) frame of exactly ``frame_len`` bytes (no FCS), from
    ``src`` to ``dst`` via ``src.next_hop_mac``, with correct IP and L4 checksums."""
    l4_hdr = 8 if proto == "udp" else 20
    payload_len = frame_len - 14 - 20 - l4_hdr
    if payload_len < 0 or frame_len > FRAME_SIZE - TPACKET2_DATA_OFFSET:
        raise ValueError(f"frame_len {frame_len} out of range for {proto}")
    sip, dip = ipaddress.IPv4Address(src.ip).packed, ipaddress.IPv4Address(dst.ip).packed
    payload = bytes(payload_len)
    l4_len = l4_hdr + payload_len
    pseudo = sip + dip + struct.pack("!BBH", 0, 6 if proto == "tcp" else 17, l4_len)
    if proto == "udp":
        l4 = struct.pack("!HHHH", sport, dport, l4_len, 0) + payload
        ck = _csum(pseudo + l4) or 0xFFFF
        l4 = l4[:6] + struct.pack("!H", ck) + l4[8:]
    else:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x10, 65535, 0, 0) + payload
        l4 = l4[:16] + struct.pack("!H", _csum(pseudo + l4)) + l4[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4_len, 0, 0x4000, ttl,
                     6 if proto == "tcp" else 17, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    eth = bytes.fromhex(src.next_hop_mac.replace(":", "")) + \
        bytes.fromhex(src.mac.replace(":", "")) + b"\x08\x00"
    return eth + ip + l4


# ---- sender (runs inside the source namespace) ----------------------------------------------
def send_ring(ifname: str, frames: Sequence[bytes], seconds: float,
              ring_frames: int = 4096) -> dict[str, Any]:
    """Send ``frames`` round-robin on ``ifname`` as fast as possible for ``seconds``."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: never receives
    try:
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        s.setsockopt(SOL_PACKET, PACKET_LOSS, 1)  # skip malformed slots instead of stalling
        try:
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        except OSError:
            pass
        s.bind((ifname, 0))
        per_block = BLOCK_SIZE // FRAME_SIZE
        blocks = max(1, ring_frames // per_block)
        n = blocks * per_block
        s.setsockopt(SOL_PACKET, PACKET_TX_RING,
                     struct.pack("IIII", BLOCK_SIZE, blocks, FRAME_SIZE, n))
        ring = mmap.mmap(s.fileno(), BLOCK_SIZE * blocks, mmap.MAP_SHARED,
                         mmap.PROT_READ | mmap.PROT_WRITE)
        for i in range(n):  # frames are written once; only status words change afterwards
            f = frames[i % len(frames)]
            off = i * FRAME_SIZE
            struct.pack_into("III", ring, off, TP_STATUS_AVAILABLE, len(f), len(f))
            ring[off + TPACKET2_DATA_OFFSET: off + TPACKET2_DATA_OFFSET + len(f)] = f
        status = memoryview(ring).cast("I")
        stride = FRAME_SIZE // 4
        request = memoryview(struct.pack(f"{n}I", *([TP_STATUS_SEND_REQUEST] * n))).cast("I")
        sent = calls = 0
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end:
            # A blocking send() returns once every requested slot has been handed to the
            # device and released, so the whole ring is free again here.
            status[::stride] = request
            sent += s.send(b"")
            calls += 1
        elapsed = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        del status, request
        ring.close()
    finally:
        s.close()
    bytes_per_frame = sum(map(len, frames)) / len(frames)
    # CPU time of this process: with a kernel data plane the forwarding runs in the sender's
    # system calls (softirq on return), so frames per CPU-second is robust to a busy machine.
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    frames_sent = round(sent / bytes_per_frame)
    return {"frames": frames_sent, "send_calls": calls, "seconds": round(elapsed, 4),
            "cpu_s": round(cpu, 4), "frames_per_cpu_s": round(frames_sent / cpu, 1) if cpu else None}


# ---- measurement (runs in the caller's namespace) -------------------------------------------
@dataclass
class FloodResult:
    frame_len: int
    proto: str
    flows: int
    workers: int
    window_s: float
    tx_packets: int
    rx_packets: int
    tx_pps: float
    rx_pps: float
    loss: float
    src: dict[str, str]
    dst: dict[str, str]
    senders: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class LinkCounters:
    """Reads an interface's packet counters in another namespace over a netlink socket opened
    there once (sub-millisecond per reading, so the measurement window is accurate)."""

    def __init__(self, netns: str, ifname: str) -> None:
        from pyroute2 import IPRoute

        self.ifname = ifname
        self._ipr = IPRoute(netns=netns)

    def read(self) -> tuple[int, int, float]:
        """(rx_packets, tx_packets, monotonic time of the reading)."""
        t0 = time.monotonic()
        st = self._ipr.link("get", ifname=self.ifname)[0].get("IFLA_STATS64")
        t1 = time.monotonic()
        return int(st["rx_packets"]), int(st["tx_packets"]), (t0 + t1) / 2

    def close(self) -> None:
        self._ipr.close()


def flood(src: Endpoint, dst: Endpoint, *, duration: float = 5.0, warmup: float = 1.0,
          frame_len: int = MIN_FRAME, proto: Literal["udp", "tcp"] = "udp", flows: int = 1,
          workers: int = 1, dport: int = 9, python: str = sys.executable) -> FloodResult:
    """Flood frames from ``src`` to ``dst`` through whatever switch joins them and measure the
    forwarding rate over ``duration`` seconds after ``warmup`` (ARP, learning, caches).

    ``flows`` distinct source ports per worker, ``workers`` sender processes (each with its own
    ring; they share the source interface). ``rx_pps`` is the forwarded rate in the window;
    ``loss`` is the fraction of all frames that left ``src`` during the run (warm-up included,
    counted after the queues drained) that never arrived at ``dst``.
    """
    if duration <= 0 or warmup < 0 or workers < 1 or flows < 1:
        raise ValueError("duration > 0, warmup >= 0, workers >= 1, flows >= 1")
    env = paths.subprocess_env()
    procs = []
    rxc, txc = LinkCounters(dst.netns, dst.ifname), LinkCounters(src.netns, src.ifname)
    rx_base, tx_base = rxc.read()[0], txc.read()[1]
    try:
        for w in range(workers):
            frames = [build_frame(src, dst, proto=proto, sport=10000 + w * flows + f,
                                  dport=dport, frame_len=frame_len).hex() for f in range(flows)]
            spec = json.dumps({"ifname": src.ifname, "frames": frames,
                               "seconds": warmup + duration + 0.5})
            p = subprocess.Popen(["ip", "netns", "exec", src.netns, python, "-m",
                                  "p4cs.lab.traffic", "_send"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
            assert p.stdin is not None
            p.stdin.write(spec)
            p.stdin.close()
            procs.append(p)
        time.sleep(warmup)
        _, tx0, t_tx0 = txc.read()
        rx0, _, t_rx0 = rxc.read()
        time.sleep(duration)
        _, tx1, t_tx1 = txc.read()
        rx1, _, t_rx1 = rxc.read()
        senders = []
        for p in procs:
            assert p.stdout is not None and p.stderr is not None
            out, err = p.stdout.read(), p.stderr.read()  # stdin is closed: no communicate()
            p.wait(timeout=30)
            if p.returncode != 0:
                raise RuntimeError(f"sender failed ({p.returncode}): {err.strip()}")
            senders.append(json.loads(out))
        time.sleep(0.2)  # let queued frames drain before the totals are read
        rx_total, tx_total = rxc.read()[0] - rx_base, txc.read()[1] - tx_base
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        rxc.close()
        txc.close()
    rx, tx = rx1 - rx0, tx1 - tx0
    return FloodResult(
        frame_len=frame_len, proto=proto, flows=flows, workers=workers,
        window_s=round(t_rx1 - t_rx0, 4), tx_packets=tx, rx_packets=rx,
        tx_pps=round(tx / (t_tx1 - t_tx0), 1), rx_pps=round(rx / (t_rx1 - t_rx0), 1),
        # over the whole run: a window's edges cut through frames still queued in backlogs
        loss=round(max(0.0, 1 - rx_total / tx_total), 6) if tx_total else 0.0,
        src=dataclasses.asdict(src), dst=dataclasses.asdict(dst), senders=senders)


def _main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m p4cs.lab.traffic")
    ap.add_argument("command", choices=["_send"],
                    help="_send: sender process (reads its JSON job on stdin); see flood()")
    args = ap.parse_args(argv)
    if args.command == "_send":
        job = json.load(sys.stdin)
        res = send_ring(job["ifname"], [bytes.fromhex(f) for f in job["frames"]],
                        float(job["seconds"]))
        print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
