#!/usr/bin/env python3
"""Fast-path baseline: packets/s the *kernel* forwards between a client and a server namespace.

Same namespaces, veths (offloads off, IPv6 off) and addresses as the P4 content-switch topology;
the switch namespace is a Linux router instead (one bridge per subnet, gateway addresses on the
bridges, ip_forward=1). Traffic: 60-byte Ethernet/IPv4/UDP frames from c1 (10.0.1.1) to s1
(10.0.2.1) sent through an AF_PACKET TX ring (``p4cs.lab.traffic.flood``), counted on s1's veth.

It also measures the generator's own ceiling (frames into a bare switch-namespace port, where
the kernel drops them at once): a data plane cannot be measured above that rate with this
generator on this machine.

    sudo .venv/bin/python bench/netns_baseline.py [--duration 5] [--repeat 3] [--workers 1]

Prints one JSON object. To measure another data plane the same way, build its topology with
``p4cs.lab.netns.content_switch_topology`` and call ``p4cs.lab.traffic.flood(*endpoints(topo))``
with the switch running; the ratio to ``baseline.rx_pps_median`` is the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))

from p4cs.lab.netns import cleanup_prefix, content_switch_topology, direct_topology  # noqa: E402
from p4cs.lab.traffic import Endpoint, endpoints, flood  # noqa: E402


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    pps = [r["rx_pps"] for r in runs]
    per_cpu = [sum(x["frames"] for x in r["senders"]) / sum(x["cpu_s"] for x in r["senders"])
               for r in runs]
    return {"rx_pps_median": statistics.median(pps), "rx_pps_min": min(pps),
            "rx_pps_max": max(pps), "loss_max": max(r["loss"] for r in runs),
            # load-robust: frames per CPU-second of the senders (kernel forwarding included)
            "frames_per_sender_cpu_s_median": round(statistics.median(per_cpu), 1),
            "runs": [{k: r[k] for k in ("rx_pps", "tx_pps", "loss", "window_s", "rx_packets")}
                     for r in runs]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default=f"nb{os.getpid() % 10000}")
    ap.add_argument("--duration", type=float, default=5.0, help="measurement window, seconds")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1, help="sender processes")
    ap.add_argument("--flows", type=int, default=1, help="UDP source ports per sender")
    ap.add_argument("--frame-len", type=int, default=60)
    ap.add_argument("--proto", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the generator ceiling")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    opts = dict(duration=args.duration, warmup=args.warmup, workers=args.workers,
                flows=args.flows, frame_len=args.frame_len, proto=args.proto)
    out: dict[str, Any] = {
        "bench": "netns_baseline",
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                    "loadavg_1m_at_start": round(os.getloadavg()[0], 2)},
        "traffic": {**opts, "src": "c1 10.0.1.1", "dst": "s1 10.0.2.1",
                    "generator": "AF_PACKET TPACKET_V2 TX ring", "repeat": args.repeat},
    }
    try:
        with direct_topology(args.prefix, n_clients=1, n_servers=1) as topo:
            src, dst = endpoints(topo, "c1", "s1")
            runs = [flood(src, dst, **opts).as_dict() for _ in range(args.repeat)]
            out["baseline"] = {"switch": "linux bridge+router", **_summary(runs)}
        if not args.no_ceiling:
            with content_switch_topology(args.prefix, n_clients=1, n_servers=1) as topo:
                src, _ = endpoints(topo, "c1", "s1")
                port = topo.hosts["c1"].switch_port
                sink = Endpoint(topo.switch_netns, topo.switch_ifaces[port], "", "10.0.2.1", "")
                runs = [flood(src, sink, **opts).as_dict() for _ in range(args.repeat)]
                out["generator_ceiling"] = {"switch": "none (frames dropped on arrival)",
                                            **_summary(runs)}
    finally:
        cleanup_prefix(args.prefix)
    if "generator_ceiling" in out:
        out["baseline"]["fraction_of_ceiling"] = round(
            out["baseline"]["rx_pps_median"] / out["generator_ceiling"]["rx_pps_median"], 3)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
