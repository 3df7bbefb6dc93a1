#!/usr/bin/env python3
"""Where the time goes per new connection in p4cs (slow path).

Starts a ``p4cs.lab.stack.Lab`` (3 nginx servers), runs ``wrk -t2 -c50 -H "Connection: close"`` on
the VIP for --duration seconds (the Lab of ``http_vs_haproxy.py`` with its defaults: veths at MTU
1500, offloads off, AF_PACKET ports) and meanwhile

* ``py-spy record`` (raw collapsed stacks, 200 Hz) on the controller and on the P4Runtime
  server (``p4cs switch``),
* ``perf record -g`` on the data-plane daemon (p4cs-swxd),

then prints CPU microseconds per connection of each process, the CS processor counters of the
window, and the share of samples per top-level activity of each Python process. With
``--sched S`` it profiles nothing but takes ``perf sched record -a`` for S seconds in the middle
of the run instead, and prints where the CPUs were idle: each CPU's idle share, the share of the
time both were idle at once, the lengths of the idle gaps, what the other CPU runs while one is
idle (``alone``: the controller, the P4Runtime server, the daemon, or another command), and per
command its CPU time and its average wait from wake-up to running. With ``--stages`` it
profiles nothing either: ``bench/stageprobe`` is loaded in the controller and the P4Runtime
server (PYTHONPATH) and it prints, per connection, the thread CPU of every stage of their event
loops (each task's steps, each callback), of the CS engine per kind of frame, of the garbage
collector's collections, and the controller's CPU per frame by the number of packet-ins handled
at one wake-up. The controller's packet I/O is the direct packet channel (default) or the
P4Runtime stream (``--packet-io p4runtime``). py-spy is looked for beside the Python that runs
the script, then on PATH; without it only the CPU times and the daemon's profile are taken.

    sudo .venv/bin/pip install py-spy        # once
    sudo .venv/bin/python bench/slowpath_profile.py [--duration 15] [--outdir /tmp/p4cs-prof]
                                                    [--packet-io direct|p4runtime]
                                                    [--port-type afpacket|afxdp] [--workers N]
                                                    [--sched 3 | --stages]
    perf report -i /tmp/p4cs-prof/daemon.perf --children --sort sym --stdio | head -60
"""

from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
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


def sched_summary(perf: str, data: Path, roles: dict[int, str]) -> dict:
    """Idle time and scheduling of a ``perf sched record -a`` file (``perf sched timehist``).
    ``alone``: while one CPU is idle, what the other runs (share of that time; the processes
    of ``roles``, pid -> name, by name, the others by command)."""
    text = subprocess.run([perf, "sched", "timehist", "-i", str(data)],
                          capture_output=True, text=True, check=True).stdout
    idle: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    busy: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)
    run: collections.Counter = collections.Counter()
    delays: dict[str, list[float]] = collections.defaultdict(list)
    for line in text.splitlines():
        p = line.split()
        if len(p) < 6 or not p[1].startswith("["):
            continue
        try:
            t, cpu = float(p[0]), int(p[1].strip("[]"))
            delay, ran = float(p[-2]) / 1e3, float(p[-1]) / 1e3
        except ValueError:
            continue
        task = " ".join(p[2:-3])
        if task == "<idle>":
            idle[cpu].append((t - ran, t))
        else:
            cmd = task.split("[")[0]
            run[cmd] += ran
            delays[cmd].append(delay)
            m = re.search(r"\[(\d+)(?:/(\d+))?\]$", task)
            pid = int(m.group(2) or m.group(1)) if m else 0
            busy[cpu].append((t - ran, t, roles.get(pid, cmd)))
    spans = [iv for ivs in idle.values() for iv in ivs]
    if not spans:
        return {}
    t0, t1 = min(s for s, _ in spans), max(e for _, e in spans)
    window = t1 - t0

    def merged(ivs):
        out: list[list[float]] = []
        for s, e in sorted(ivs):
            if out and s <= out[-1][1]:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
        return out

    per_cpu = {c: merged(v) for c, v in sorted(idle.items())}
    both = 0.0
    if len(per_cpu) == 2:
        a, b = per_cpu.values()
        i = j = 0
        while i < len(a) and j < len(b):
            both += max(0.0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
    gaps = sorted(e - s for ivs in per_cpu.values() for s, e in ivs)
    alone: collections.Counter = collections.Counter()
    if len(per_cpu) == 2:
        for c, other in zip(per_cpu, reversed(list(per_cpu))):
            runs = sorted(busy[other])
            starts = [r[0] for r in runs]
            for s, e in per_cpu[c]:
                k = max(0, bisect.bisect_right(starts, s) - 1)
                while k < len(runs) and runs[k][0] < e:
                    alone[runs[k][2]] += max(0.0, min(e, runs[k][1]) - max(s, runs[k][0]))
                    k += 1
    idle_total = sum(e - s for ivs in per_cpu.values() for s, e in ivs) or 1.0

    def q(x: float) -> float:
        return round(gaps[min(len(gaps) - 1, int(len(gaps) * x))] * 1e3, 3)

    busiest = [c for c, _ in run.most_common(8)]
    return {"window_s": round(window, 3),
            "cpu_idle": {c: round(sum(e - s for s, e in v) / window, 3)
                         for c, v in per_cpu.items()},
            "both_idle": round(both / window, 4) if len(per_cpu) == 2 else None,
            "idle_gaps_ms": {"n": len(gaps), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
                             "max": q(1.0)},
            "cpu_s": {c: round(run[c], 3) for c in busiest},
            "wake_to_run_ms": {c: round(sum(delays[c]) / max(1, len(delays[c])) * 1e3, 3)
                               for c in busiest},
            "alone": {k: round(v / idle_total, 3) for k, v in alone.most_common(6)}}


def stage_totals(probe: Path, pids: dict[str, int]) -> dict[str, dict]:
    """The stage probe's latest totals of the controller and the P4Runtime server
    (bench/stageprobe: ``{key: [calls, ns]}``)."""
    out = {}
    for role, name in (("controller", "controller"), ("switch", "p4runtime_server")):
        f = probe / f"{role}-{pids[role]}.json"
        if f.exists():
            out[name] = json.loads(f.read_text())
    return out


def stage_report(before: dict, after: dict, conns: int) -> dict:
    """Per process, each stage's thread CPU µs and calls per connection over the window
    (largest first); the controller's packet-in batches by size, with the CPU per frame."""
    res: dict = {}
    for proc, tot in after.items():
        old = before.get(proc, {})
        diff = {k: (v[0] - old.get(k, [0, 0])[0], v[1] - old.get(k, [0, 0])[1])
                for k, v in tot.items()}
        stages = {k: {"us_per_conn": round(ns / 1e3 / conns, 2),
                      "calls_per_conn": round(c / conns, 3),
                      "us_per_call": round(ns / 1e3 / c, 1) if c else None}
                  for k, (c, ns) in diff.items()
                  if not k.startswith("batch") and c > 0}
        res[proc] = dict(sorted(stages.items(), key=lambda kv: -kv[1]["us_per_conn"]))
        batches = {}
        for k, (c, ns) in diff.items():
            if k.startswith("batch") and not k.endswith("frames") and c > 0:
                frames = diff.get(k + " frames", (0, 0))[0]
                batches[k.split()[1]] = {"calls": c, "frames": frames,
                                         "us_per_frame": round(ns / 1e3 / max(1, frames), 1)}
        if batches:
            res[proc + "_batches"] = dict(sorted(batches.items(), key=lambda kv: int(kv[0][2:])))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default=f"sp{os.getpid() % 10000}")
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--outdir", default="/tmp/p4cs-prof")
    ap.add_argument("--packet-io", default="direct", choices=("direct", "p4runtime"))
    ap.add_argument("--port-type", default="afpacket", choices=("afpacket", "afxdp"))
    ap.add_argument("--workers", type=int, default=1,
                    help="CS-processor workers of the controller (p4cs controller --workers)")
    ap.add_argument("--sched", type=float, default=0.0, metavar="S",
                    help="no profilers: `perf sched record -a` for S seconds mid-run instead")
    ap.add_argument("--stages", action="store_true",
                    help="no profilers: the thread CPU of each event-loop stage of the "
                         "controller and the P4Runtime server (bench/stageprobe) instead")
    args = ap.parse_args()
    if args.stages and args.sched:
        ap.error("--stages and --sched measure apart")
    if args.sched and not 0 < args.sched < args.duration:
        ap.error("--sched must be shorter than --duration")
    perf = shutil.which("perf")
    if args.sched and perf is None:
        ap.error("--sched needs perf (Debian: apt install linux-perf)")
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    # The Lab http_vs_haproxy.py measures with its defaults (veths at MTU 1500, offloads off).
    probe = out / "stages"
    if args.stages:
        shutil.rmtree(probe, ignore_errors=True)
        probe.mkdir()
        # the Lab's processes inherit these: bench/stageprobe/sitecustomize.py loads in each
        os.environ["P4CS_STAGE_PROBE"] = str(probe)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).resolve().parent / "stageprobe")]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
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
        if args.stages:
            profilers = []
        elif args.sched:
            # from a third into the run, for S seconds, every CPU
            profilers = [subprocess.Popen(
                ["sh", "-c", f'sleep {d / 3:.1f} && exec "$0" sched record -a -o "$1" -- '
                 f"sleep {args.sched}", perf, str(out / "sched.data")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
        else:
            profilers = [subprocess.Popen([spy, "record", "-r", "200", "-d", str(d), "-f", "raw",
                                           "-o", str(out / f"{n}.txt"), "-p", str(pids[n])],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                         for n in ("switch", "controller") if spy]
            if perf is not None:
                profilers.append(subprocess.Popen(
                    [perf, "record", "-g", "-o", str(out / "daemon.perf"), "-p",
                     str(pids["daemon"]), "--", "sleep", str(d)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if args.stages:
            time.sleep(1.0)                 # a dump of the idle Lab, after its start
        s0 = stage_totals(probe, pids) if args.stages else {}
        c0 = {n: hx.cpu_s(p) for n, p in pids.items()}
        st0 = b.lab.status()["csproc"]
        r = b.lab.client_exec(["wrk", "-t2", "-c50", f"-d{d}s", "-H", "Connection: close",
                               "--latency", f"http://{b.lab.vip}/"], timeout=d + 120)
        c1 = {n: hx.cpu_s(p) for n, p in pids.items()}
        st1 = b.lab.status()["csproc"]
        if args.stages:
            time.sleep(1.0)                 # the dump after the run (its last expiries in it)
        s1 = stage_totals(probe, pids) if args.stages else {}
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
    if args.stages:
        res["stages"] = stage_report(s0, s1, n)
    if args.sched:
        res["sched"] = sched_summary(perf, out / "sched.data",
                                     {pid: {"switch": "p4runtime-server"}.get(name, name)
                                      for name, pid in pids.items()})
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
