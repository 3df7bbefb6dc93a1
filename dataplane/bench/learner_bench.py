#!/usr/bin/env python3
"""Learner install rate and load factor of p4cs-swxd, through the control socket.

  # install rate: is it flat between an almost empty table and a table with 1M entries?
  sudo python3 dataplane/bench/learner_bench.py rate --size 2097152 --count 1000000

  # load factor: random 5-tuples into a learner of SIZE until buckets overflow
  sudo python3 dataplane/bench/learner_bench.py fill --size 1048576 --attempts 1.5

The daemon runs with sink ports only; the learner size of tests/dataplane/data/flow.spec is
replaced by --size. Lines are sent in batches (--batch per message), as the P4Runtime server does.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DAEMON = REPO / "dataplane" / "build" / "p4cs-swxd"
SPEC = REPO / "tests" / "dataplane" / "data" / "flow.spec"

ACTION = ("action splice dmac 0x020000000011 smac 0x0200000000fe new_src 167772516 "
          "new_dst 167772418 new_sport 50000 new_dport 8080 seq_delta 1000 ack_delta 0 "
          "port 1 counter_idx 7 timeout 2")


class Daemon:
    def __init__(self, size: int, workdir: Path):
        spec = workdir / f"flow-{size}.spec"
        text = SPEC.read_text()
        text = re.sub(r"(learner flow_table \{.*?\n\tsize )\d+", rf"\g<1>{size}", text, flags=re.S)
        spec.write_text(text)
        # learner memory: size buckets of 512 bytes (4 keys each) + headroom
        mem = max(1024, size * 512 // (1 << 20) + 768)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (a, b):
            try:
                s.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
            except OSError:
                pass
        cmd = [str(DAEMON), "--spec", str(spec), "--workdir", str(workdir / "w"),
               "--ctl-fd", str(b.fileno()), "--port", "0=sink", "--port", "1=sink",
               # profile 2 (used by ACTION) long enough that nothing expires during a run
               "--learner-timeouts", "3,30,3600",
               "--eal", f"-l 0 --no-huge --no-pci --no-shconf -m {mem} --log-level=*:warning"]
        self.proc = subprocess.Popen(cmd, pass_fds=[b.fileno()])
        b.close()
        self.sock = a
        self.sock.settimeout(300)
        assert self.req(["ping"]) == ["ok pong"]

    def req(self, lines: list[str]) -> list[str]:
        self.sock.send("\n".join(lines).encode())
        while True:
            msg = self.sock.recv(16 << 20).decode()
            if not msg.startswith("expired"):
                return msg.split("\n")

    def close(self):
        self.sock.close()
        self.proc.wait(30)


def key_line(src: int, dst: int, proto: int, sport: int, dport: int) -> str:
    return f"learner add flow_table match {src} {dst} {proto} {sport} {dport} {ACTION}"


def sequential_keys(n: int):
    base = 0x0A000000
    for i in range(n):
        yield key_line(base + (i >> 16), 0x0A000164, 6, i & 0xFFFF, 80)


def random_keys(n: int, seed: int = 1):
    rnd = random.Random(seed)
    seen = set()
    while len(seen) < n:
        k = (rnd.getrandbits(32), rnd.getrandbits(32), 6, rnd.getrandbits(16), rnd.getrandbits(16))
        if k in seen:
            continue
        seen.add(k)
        yield key_line(*k)


def cmd_rate(args):
    with tempfile.TemporaryDirectory() as td:
        d = Daemon(args.size, Path(td))
        try:
            lines = list(sequential_keys(args.count))
            marks = {}
            t0 = time.perf_counter()
            done = 0
            window = []  # (entries before, seconds) per batch
            for i in range(0, len(lines), args.batch):
                chunk = lines[i:i + args.batch]
                t = time.perf_counter()
                out = d.req(chunk)
                window.append((done, time.perf_counter() - t, len(chunk)))
                bad = [o for o in out if o != "ok"]
                if bad:
                    print("errors:", bad[:3], file=sys.stderr)
                done += len(chunk)
            total = time.perf_counter() - t0

            def rate(lo, hi):
                sel = [(s, n) for (e, s, n) in window if lo <= e < hi]
                return sum(n for _, n in sel) / sum(s for s, _ in sel) if sel else None

            res = {
                "size": args.size, "count": args.count, "batch": args.batch,
                "installs_per_s_total": round(args.count / total),
                "installs_per_s_first_10k": round(rate(0, 10_000) or 0),
                "installs_per_s_at_1k": round(rate(0, 2_000) or 0),
                "installs_per_s_last_50k": round(rate(args.count - 50_000, args.count) or 0),
            }
            print(json.dumps(res))
        finally:
            d.close()


def cmd_fill(args):
    with tempfile.TemporaryDirectory() as td:
        d = Daemon(args.size, Path(td))
        try:
            attempts = int(args.size * args.attempts)
            n_ok = n_full = 0
            first_full = None
            at_size = None
            t0 = time.perf_counter()
            batch = []
            for i, line in enumerate(random_keys(attempts), 1):
                batch.append(line)
                if len(batch) == args.batch or i == attempts:
                    for o in d.req(batch):
                        if o == "ok":
                            n_ok += 1
                        elif o.startswith("err ENOSPC"):
                            n_full += 1
                            if first_full is None:
                                first_full = n_ok
                        else:
                            raise SystemExit(f"unexpected reply {o}")
                    batch = []
                    if at_size is None and i >= args.size:
                        at_size = {"attempted": i, "installed": n_ok, "enospc": n_full}
            res = {
                "size": args.size, "attempted": attempts, "installed": n_ok, "enospc": n_full,
                "first_enospc_at_load": round(first_full / args.size, 4) if first_full else None,
                "at_size": at_size,
                "load_factor_final": round(n_ok / args.size, 4),
                "seconds": round(time.perf_counter() - t0, 1),
            }
            print(json.dumps(res))
        finally:
            d.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("rate")
    r.add_argument("--size", type=int, default=2 * 1048576)
    r.add_argument("--count", type=int, default=1_000_000)
    r.add_argument("--batch", type=int, default=500)
    f = sub.add_parser("fill")
    f.add_argument("--size", type=int, default=1048576)
    f.add_argument("--attempts", type=float, default=1.5, help="keys to try, in units of size")
    f.add_argument("--batch", type=int, default=500)
    args = ap.parse_args()
    if not DAEMON.exists():
        subprocess.run(["make", "-s", "-C", str(REPO / "dataplane")], check=True)
    {"rate": cmd_rate, "fill": cmd_fill}[args.cmd](args)


if __name__ == "__main__":
    main()
