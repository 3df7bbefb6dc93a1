"""Maglev disruption: the fraction of client addresses that change server when one of N
servers is removed (ideal: 1/N, the removed server's own share), and the imbalance of the
lookup table.  Writes a Markdown table (docs/benchmarks.md, "Maglev hashing").

    PYTHONPATH=host python bench/maglev.py [--keys 100000]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from p4cs.csproc.schedulers import Server, ServerGroup


def measure(n: int, keys: list[int]) -> tuple[float, float, float, float]:
    servers = [Server(f"s{i}", f"10.0.{i // 250}.{i % 250 + 1}", 80) for i in range(n)]
    g = ServerGroup("g", servers, "maglev")
    before = [g.pick(src=k) for k in keys]
    load = Counter(before)
    imbalance = max(load.values()) / (len(keys) / n)
    t0 = time.perf_counter()
    g.set_up(servers[n // 2], False, 0.0)          # rebuilds the table
    build_ms = (time.perf_counter() - t0) * 1e3
    after = [g.pick(src=k) for k in keys]
    moved = sum(a is not b for a, b in zip(after, before)) / len(keys)
    return moved, 1 / n, imbalance, build_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    keys = [rnd.getrandbits(32) for _ in range(a.keys)]
    print(f"{a.keys} random client addresses, table size M = 4093\n")
    print("| N servers | moved on removal of one | 1/N | max load / mean | table rebuild |")
    print("|---:|---:|---:|---:|---:|")
    for n in (3, 5, 10, 20, 50):
        moved, ideal, imb, ms = measure(n, keys)
        print(f"| {n} | {moved:.4f} | {ideal:.4f} | {imb:.3f} | {ms:.1f} ms |")


if __name__ == "__main__":
    main()
