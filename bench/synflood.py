#!/usr/bin/env python3
"""A SYN flood at the VIP while a client fetches, through the lab (embedded DPDK target).

    sudo .venv/bin/python bench/synflood.py [--syns 100000] [--fetches 200] [--json FILE]

One lab (client, switch, three servers). The client fetches ``/`` through the VIP
``--fetches`` times in a row (curl, one connection each) twice: alone (the peer, same run), then
while a raw socket in the client's namespace sends ``--syns`` SYNs to VIP:80 from random source
ports 1024-19999 and random ISNs, as fast as Python sends them (the client's kernel would
answer the switch's SYN-ACKs with RSTs: an nftables rule drops those, as a spoofing attacker's
SYN-ACKs go nowhere). Reported: the controller's packet-ins per phase and those the flood
caused (its packet-ins beyond the fetches' own per-fetch count of the peer phase), the CS
processor's SYN counter, legitimate fetches' success rate and p50 / p99 latency, as ratios to
the peer phase.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "host"))

from p4cs.lab.stack import Lab  # noqa: E402

FLOOD = r"""
import random, socket, struct, sys, time
vip, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
base = sum(struct.unpack("!4H", socket.inet_aton(src) + socket.inet_aton(vip))) + 6 + 24
rnd = random.Random(1)
t0 = time.monotonic()
for _ in range(n):
    sport, isn = rnd.randrange(1024, 20000), rnd.randrange(1 << 32)
    hdr = struct.pack("!HHIIBBHHH4B", sport, 80, isn, 0, 6 << 4, 0x02, 64240, 0, 0, 2, 4, 5, 180)
    t = base + sum(struct.unpack("!12H", hdr))
    while t >> 16:
        t = (t & 0xFFFF) + (t >> 16)
    s.sendto(hdr[:16] + struct.pack("!H", ~t & 0xFFFF) + hdr[18:], (vip, 0))
print(time.monotonic() - t0)
"""

NFT = """table ip p4cs_flood {
    chain out {
        type filter hook output priority 0;
        tcp flags & rst == rst tcp sport 1024-19999 drop
    }
}
"""


def fetches(lab: Lab, n: int, until: subprocess.Popen | None = None) -> list[float | None]:
    """Latencies (s) of ``n`` fetches (None: failed); with ``until``, at least until it ends."""
    out: list[float | None] = []
    while len(out) < n or (until is not None and until.poll() is None):
        r = lab.curl("/", args=["-o", "/dev/null", "-w", "%{http_code} %{time_total}"], timeout=5)
        code, _, t = r.stdout.partition(" ")
        out.append(float(t) if r.returncode == 0 and code == "200" else None)
    return out


def summary(lat: list[float | None]) -> dict:
    ok = sorted(x for x in lat if x is not None)
    q = statistics.quantiles(ok, n=100) if len(ok) >= 2 else [float("nan")] * 99
    return {"fetches": len(lat), "success": round(len(ok) / len(lat), 4),
            "p50_ms": round(q[49] * 1e3, 2), "p99_ms": round(q[98] * 1e3, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--syns", type=int, default=100_000)
    ap.add_argument("--fetches", type=int, default=200)
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args()
    res: dict = {"syns": args.syns, "load_before": os.getloadavg()}
    with Lab(f"sf{os.getpid() % 1000}", target="dpdk") as lab:
        lab.wait_ready()
        client = lab.clients[0]
        lab.topo.exec(client.name, ["nft", "-f", "-"], input=NFT)
        pin = lambda: lab.status()["counters"]["packet_in"]  # noqa: E731
        p0 = pin()
        peer = fetches(lab, args.fetches)
        p1 = pin()
        flood = subprocess.Popen(lab.topo.cmd(client.name, [sys.executable, "-c", FLOOD, lab.vip,
                                                            client.ip, str(args.syns)]),
                                 stdout=subprocess.PIPE, text=True)
        during = fetches(lab, args.fetches, until=flood)
        secs = float(flood.communicate()[0].strip() or "nan")
        time.sleep(1.0)
        p2 = pin()
        st = lab.status()["csproc"]
    per_fetch = (p1 - p0) / len(peer)
    res.update({
        "flood_seconds": round(secs, 2), "flood_syns_per_s": round(args.syns / secs),
        "peer": summary(peer), "under_flood": summary(during),
        "packet_in_peer": p1 - p0, "packet_in_under_flood": p2 - p1,
        "packet_in_from_flood": round((p2 - p1) - per_fetch * len(during)),
        "csproc_syn_received": st["syn_received"], "load_after": os.getloadavg(),
    })
    res["ratio_under_flood_to_peer"] = {
        k: round(res["under_flood"][k] / res["peer"][k], 3) for k in ("success", "p50_ms", "p99_ms")}
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
