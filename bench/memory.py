#!/usr/bin/env python3
"""Memory per flow of p4cs: the data plane's learner flow table, its counters, the daemon's
resident memory with N flows installed, and the CS processor's Python memory per spliced
connection.

    sudo .venv/bin/python bench/memory.py [--flows 1000,1000000] [--conns 20000] [--json FILE]

* learner: ``rte_swx_table_learner_footprint_get()`` (librte_table, called through ctypes) for
  the key / action-data sizes and size of the spec's flow learner as the daemon reports them
  (``info``), also at the sizes of --flows (one bucket of 4 keys per configured entry, rounded
  up to a power of two).
* counters: the spec's per-flow register arrays (``regarray``, 8 bytes per element).
* daemon RSS: p4cs-swxd with the real spec (sink ports only), VmRSS before and after installing
  N splice entries through the control socket (``learner add``, batches of 1000 lines), and the
  growth per installed flow. The daemon is restarted for every N.
* CS processor: tracemalloc of ``p4cs.csproc.Engine`` holding --conns spliced (bound,
  flow-installed) connections, per connection; the connections are driven exactly as in
  bench/csproc_bench.py (SYN, ACK+GET, server SYN-ACK), without teardown.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAEMON = REPO / "dataplane" / "build" / "p4cs-swxd"
SPEC = REPO / "p4src" / "build" / "dpdk" / "p4cs.spec"
sys.path.insert(0, str(REPO / "host"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MB = 1 << 20


class LearnerParams(ctypes.Structure):
    _fields_ = [("key_size", ctypes.c_uint32), ("key_offset", ctypes.c_uint32),
                ("key_mask0", ctypes.c_void_p), ("action_data_size", ctypes.c_uint32),
                ("hash_func", ctypes.c_void_p), ("n_keys_max", ctypes.c_uint32),
                ("key_timeout", ctypes.POINTER(ctypes.c_uint32)),
                ("n_key_timeouts", ctypes.c_uint32)]


def learner_footprint(key_size: int, action_data_size: int, n_keys_max: int,
                      timeouts: list[int]) -> int:
    lib = ctypes.CDLL("librte_table.so.23")
    fn = lib.rte_swx_table_learner_footprint_get
    fn.restype = ctypes.c_uint64
    fn.argtypes = [ctypes.POINTER(LearnerParams)]
    tos = (ctypes.c_uint32 * len(timeouts))(*timeouts)
    p = LearnerParams(key_size, 0, None, action_data_size, None, n_keys_max, tos, len(timeouts))
    return int(fn(ctypes.byref(p)))


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Daemon:
    def __init__(self, workdir: Path, mem_mb: int):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, 32, 8 << 20)  # SO_SNDBUFFORCE
        cmd = [str(DAEMON), "--spec", str(SPEC), "--workdir", str(workdir), "--ctl-fd",
               str(b.fileno()), "--port", "0=sink", "--port", "1=sink", "--port", "2=sink",
               "--learner-timeouts", "3600",
               "--eal", f"-l 0 --no-huge --no-pci --no-shconf -m {mem_mb} --log-level=*:warning"]
        self.proc = subprocess.Popen(cmd, pass_fds=[b.fileno()], stderr=subprocess.DEVNULL)
        b.close()
        self.sock = a
        self.sock.settimeout(600)
        assert self.req(["ping"]) == ["ok pong"]

    def req(self, lines: list[str]) -> list[str]:
        self.sock.send("\n".join(lines).encode())
        while True:
            msg = self.sock.recv(16 << 20).decode()
            if not msg.startswith("expired"):
                return msg.split("\n")

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def splice_line(i: int) -> str:
    src, sport = 0x0A000000 | (i >> 14), 1024 + (i & 0x3FFF)
    return (f"learner add _flow_table_0 match {src} 167772260 6 {sport} 80 action _splice port 2 "
            f"dmac 0x020000000201 smac 0x0200000000fe sip 167772260 dip 167772673 sport 40000 "
            f"dport 80 seq_delta 12345 ack_delta 0 ip_csum_delta 0 tcp_csum_delta 0 "
            f"flow_id {i & 0x1FFFFF} timeout 0")


def daemon_rss(flows: list[int], mem_mb: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    tmp = Path(tempfile.mkdtemp(prefix="p4cs-memory-"))
    info: dict[str, Any] = {}
    out = []
    for n in flows:
        d = Daemon(tmp / "w", mem_mb)
        try:
            if not info:
                info = json.loads(d.req(["info"])[0][3:])
            time.sleep(0.5)
            before = rss_kb(d.proc.pid)
            t0 = time.monotonic()
            for b in range(0, n, 1000):
                rep = d.req([splice_line(i) for i in range(b, min(n, b + 1000))])
                bad = [r for r in rep if r != "ok"]
                if bad:
                    raise RuntimeError(f"install failed at {b}: {bad[:2]}")
            dt = time.monotonic() - t0
            time.sleep(0.5)
            after = rss_kb(d.proc.pid)
            out.append({"flows": n, "rss_before_mb": round(before / 1024, 1),
                        "rss_after_mb": round(after / 1024, 1),
                        "growth_bytes_per_flow": round((after - before) * 1024 / n, 1),
                        "install_s": round(dt, 2)})
            print(f"daemon: {n} flows: RSS {before / 1024:.1f} -> {after / 1024:.1f} MB",
                  file=sys.stderr)
        finally:
            d.close()
    return info, out


def engine_memory(n: int) -> dict[str, Any]:
    from csproc_bench import CMAC, GET, SMAC, SW1, SW2, VIP, make_engine
    from p4cs.csproc import InstallFlows, PacketOut
    from p4cs.csproc import packet as P

    eng = make_engine(False)
    now = 1000.0

    def one(i: int) -> None:
        cip, cport = 0xC0A80000 + (i >> 14), 1024 + (i & 0x3FFF)
        cisn = (i * 2654435761) & 0xFFFFFFFF
        syn = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn, 0, P.SYN, 64240, b"",
                      P.mss_option(1460))
        eff = eng.handle(syn, 1, 1, now)
        sisn = int.from_bytes(eff[0].frame[38:42], "big")
        ack = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn + 1, sisn + 1, P.ACK | P.PSH, 64240,
                      GET)
        eff = eng.handle(ack, 1, 1, now)
        s = P.parse(next(e for e in eff if isinstance(e, PacketOut)).frame)
        synack = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77777, s.seq + 1,
                         P.SYN | P.ACK, 29200, b"", P.mss_option(1460))
        eff = eng.handle(synack, 2, 2, now)
        assert isinstance(eff[0], InstallFlows), eff

    for i in range(100):  # warm caches / interned objects outside the measurement
        one(10**7 + i)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        one(i)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"connections": n, "spliced": eng.stats.spliced, "bytes": used,
            "bytes_per_connection": round(used / n)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", default="1000,1000000")
    ap.add_argument("--conns", type=int, default=20000)
    ap.add_argument("--mem-mb", type=int, default=2048, help="EAL -m of the daemon")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    flows = [int(x) for x in args.flows.split(",") if x]

    info, rss = daemon_rss(flows, args.mem_mb)
    lr = next(x for x in info["learners"] if "flow_table" in x["name"])
    res: dict[str, Any] = {"learner_name": lr["name"]}
    # key and action data sizes as the pipeline sizes them: the key fields are contiguous
    # metadata bytes; the action data is the largest action's arguments
    key_size = sum(f["bits"] for f in lr["key"]) // 8
    ad = max(sum(a["bits"] for a in act["args"]) // 8 for act in lr["actions"])
    timeouts = lr["timeouts"]
    size = lr["size"]
    fp = learner_footprint(key_size, ad, size, timeouts)
    res["learner"] = {"size": size, "key_bytes": key_size, "action_data_bytes": ad,
                      "footprint_bytes": fp, "footprint_mb": round(fp / MB, 1),
                      "bytes_per_configured_entry": round(fp / size, 1),
                      "footprint_at": {str(n): learner_footprint(key_size, ad, n, timeouts)
                                       for n in flows}}
    regs = [r for r in info.get("regarrays", [])]
    res["regarrays"] = [{"name": r["name"], "size": r["size"], "bytes": r["size"] * 8} for r in regs]
    res["per_flow_counter_bytes"] = sum(8 for r in regs if r["size"] == size)
    res["daemon_rss"] = rss
    res["csproc"] = engine_memory(args.conns)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
