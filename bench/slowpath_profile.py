#!/usr/bin/env python3
"""Where the time goes per new connection in p4cs (slow path).

Starts a ``p4cs.lab.stack.Lab`` (3 nginx servers), runs ``wrk -t2 -c50 -H "Connection: close"`` on
the VIP for --duration seconds (the Lab of ``http_vs_haproxy.py`` with its defaults: veths at MTU
1500, offloads off, AF_PACKET ports) and meanwhile

* ``py-spy record`` (raw collapsed stacks, 200 Hz) on the controller and on the P4Runtime
  server (``p4cs switch``),
* ``perf record -g`` on the data-plane daemon (p4cs-swxd),

then prints CPU microseconds per connection of each process, the CS processor counters of the
window, and the share of samples per top-level activity of each Python process. The
controller's packet I/O is the direct packet channel (default) or the P4Runtime stream
(``--packet-io p4runtime``). py-spy is looked for beside the Python that runs the script, then
on PATH; without it only the CPU times and the daemon's profile are taken.

    sudo .venv/bin/pip install py-spy        # once
    sudo .venv/bin/python bench/slowpath_profile.py [--duration 15] [--outdir /tmp/p4cs-prof]
                                                    [--packet-io direct|p4runtime]
                                                    [--port-type afpacket|afxdp] [--workers N]
    perf report -i /tmp/p4cs-prof/daemon.perf --children --sort sym --stdio | head -60
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_vs_haproxy as hx  # noqa: E402

ACTIVITIES = [
    "Engine.handle", "ControllerApp._install_loop", "Teardown.run",
    "PacketPath.send", "Switch._receive_until_closed", "PacketPath.hold",
    "ControllerApp._handle_packets", "ControllerApp._execute", "P4RuntimeServer._stream_reader",
    "PacketIO.packet_out",
    "P4RuntimeServer.Read", "P4RuntimeServer.Write", "PacketIO.on_packet",
    "SwxDaemon._on_cpu_readable", "SwxDaemon._on_copy_readable", "SwxDaemon._on_ctl_readable",
]


def activities(raw: Path) -> dict[str, float]:
    cats: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, cnt = line.rpartition(" ")
        n = int(cnt)
        total += n
        frames = stack.split(";")
        leaf = frames[-1]
        if "EpollSelector.select" in leaf or "_do_waitpid" in leaf:
            cats["(waiting in the event loop / child watcher)"] += n
            continue
        names = [f.split(" (")[0] for f in frames]
        key = next((a for a in ACTIVITIES if a in names), None)
        cats[key or "other (" + leaf.split(" (")[0] + ")"] += n
    return {k: round(100 * v / total, 1) for k, v in cats.most_common(16)} if total else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default=f"sp{os.getpid() % 10000}")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--outdir", default="/tmp/p4cs-prof")
    ap.add_argument("--packet-io", default="direct", choices=("direct", "p4runtime"))
    ap.add_argument("--port-type", default="afpacket", choices=("afpacket", "afxdp"))
    ap.add_argument("--workers", type=int, default=1,
                    help="CS-processor workers of the controller (p4cs controller --workers)")
    args = ap.parse_args()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    # The Lab http_vs_haproxy.py measures with its defaults (veths at MTU 1500, offloads off).
    b = hx.Bench(argparse.Namespace(prefix=args.prefix, duration=args.duration, rounds=1,
                                    target=["dpdk"], packet_io=[args.packet_io],
                                    port_type=[args.port_type], workers=[args.workers],
                                    mtu=1500, offloads=["off"], daemon_sched=[], sched=False))
    try:
        b.lab.start()
        procs = dict(b.lab._procs)  # noqa: SLF001
        pids = {"switch": procs["switch"].pid, "controller": procs["controller"].pid}
        pids["daemon"] = next(p for p in hx.tree(pids["switch"])
                              if Path(f"/proc/{p}/comm").read_text().strip() == "p4cs-swxd")
        d = args.duration
        for n in ("switch", "controller"):
            (out / f"{n}.txt").unlink(missing_ok=True)      # a previous run's
        profilers = [subprocess.Popen([spy, "record", "-r", "200", "-d", str(d), "-f", "raw",
                                       "-o", str(out / f"{n}.txt"), "-p", str(pids[n])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for n in ("switch", "controller") if spy]
        profilers.append(subprocess.Popen(["perf", "record", "-g", "-o", str(out / "daemon.perf"),
                                           "-p", str(pids["daemon"]), "--", "sleep", str(d)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        c0 = {n: hx.cpu_s(p) for n, p in pids.items()}
        st0 = b.lab.status()["csproc"]
        r = b.lab.client_exec(["wrk", "-t2", "-c50", f"-d{d}s", "-H", "Connection: close",
                               "--latency", f"http://{b.lab.vip}/"], timeout=d + 120)
        c1 = {n: hx.cpu_s(p) for n, p in pids.items()}
        st1 = b.lab.status()["csproc"]
        for p in profilers:
            p.wait()
    finally:
        b.lab.stop()
    w = hx.parse_wrk(r.stdout)
    n = max(1, w["requests"])
    res = {"load": hx.load(), "packet_io": args.packet_io, "wrk": w,
           "cpu_us_per_connection": {k: round((c1[k] - c0[k]) / n * 1e6) for k in c0},
           "csproc_delta": {k: st1[k] - st0.get(k, 0) for k in st1
                            if isinstance(st1[k], (int, float)) and st1[k] != st0.get(k, 0)},
           "samples_percent": {k: activities(out / f"{k}.txt") for k in ("controller", "switch")
                               if (out / f"{k}.txt").exists()}}
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
