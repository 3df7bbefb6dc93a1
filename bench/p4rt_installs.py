#!/usr/bin/env python3
"""P4Runtime flow-install rate into the learner flow table of the embedded DPDK target.

Starts `p4cs switch` (P4Runtime server + p4cs-swxd, no data-plane ports) in its own process,
connects with finsy as the primary controller, and INSERTs flow entries in WriteRequests of
--batch updates each. The rate is measured over a window of --window installs at several
table occupancies (default: 1k and 1M installed flows), so a rate that depends on the table
size shows up as a difference between the windows.

The Update protobufs of a measured window are built before its clock starts: building
protobufs is the controller's cost, not the switch's (finsy's entity classes build them at
roughly 30k/s; the p4cs controller builds them directly from P4Info ids). The fill between
windows is timed too, protobuf building included, and reported separately.

    sudo .venv/bin/python bench/p4rt_installs.py                      # 1k and 1M
    sudo .venv/bin/python bench/p4rt_installs.py --at 1000,100000,1000000 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from finsy import Switch, SwitchOptions
from finsy.proto import p4r

ROOT = Path(__file__).resolve().parents[1]
MINI_SPEC = ROOT / "tests" / "switch" / "data" / "mini.spec"
MINI_P4INFO = ROOT / "tests" / "switch" / "data" / "mini.p4info.txtpb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (0 if gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def bench_pipeline(size: int, workdir: Path) -> tuple[Path, Path]:
    """The test pipeline with a learner flow table large enough for `size` flows."""
    text = MINI_SPEC.read_text()
    learner_size = 1 << max(16, (2 * size - 1).bit_length())  # keep the load factor <= 50%
    text = re.sub(r"(learner flow_table \{.*?size )\d+", rf"\g<1>{learner_size}", text, flags=re.S)
    # long timeout profiles: nothing may age out while the bench runs
    text = re.sub(r"timeout \{[^}]*\}", "timeout {\n\t\t3600\n\t\t43200\n\t}", text)
    spec = workdir / "bench.spec"
    spec.write_text(text)
    p4info = workdir / "bench.p4info.txtpb"
    p4info.write_text(
        MINI_P4INFO.read_text().replace("size: 65536", f"size: {learner_size}")
    )
    return spec, p4info


class Flows:
    """Pre-built INSERT updates for the flow table, from P4Info ids (no per-field reflection)."""

    def __init__(self, schema, idle_timeout_ns: int = 0):
        self.idle_timeout_ns = idle_timeout_ns
        t = schema.tables["flow_table"]
        self.table_id = t.id
        self.f_src = t.match_fields["meta.k_src"].id
        self.f_dst = t.match_fields["meta.k_dst"].id
        a = schema.actions["flow_fwd"]
        self.action_id = a.id
        self.p_port = a.params["port"].id
        self.p_flow = a.params["flow_id"].id

    def update(self, i: int, kind=p4r.Update.INSERT) -> p4r.Update:
        src = 0x0A000000 | (i >> 16)
        dst = 0x0B000000 | (i & 0xFFFF)
        te = p4r.TableEntry(
            table_id=self.table_id,
            idle_timeout_ns=self.idle_timeout_ns,
            match=[
                p4r.FieldMatch(field_id=self.f_src, exact=p4r.FieldMatch.Exact(value=src.to_bytes(4, "big"))),
                p4r.FieldMatch(field_id=self.f_dst, exact=p4r.FieldMatch.Exact(value=dst.to_bytes(4, "big"))),
            ],
            action=p4r.TableAction(
                action=p4r.Action(
                    action_id=self.action_id,
                    params=[
                        p4r.Action.Param(param_id=self.p_port, value=b"\x01"),
                        p4r.Action.Param(param_id=self.p_flow, value=(i & 0x3FF).to_bytes(2, "big")),
                    ],
                )
            ),
        )
        return p4r.Update(type=kind, entity=p4r.Entity(table_entry=te))

    def batches(self, start: int, count: int, batch: int, kind=p4r.Update.INSERT):
        out = []
        for b in range(start, start + count, batch):
            out.append([self.update(i, kind) for i in range(b, min(b + batch, start + count))])
        return out


class SpliceFlows(Flows):
    """The real pipeline's flow table: the `splice` updates the controller writes, built by its
    own encoder (``p4cs.controller.p4rt.FlowEncoder``, ~190 bytes each)."""

    def __init__(self, schema, idle_timeout_ns: int = 0):
        from p4cs.controller.p4rt import FlowEncoder

        self.idle_timeout_ns = idle_timeout_ns
        self.enc = FlowEncoder(schema)
        self.table_id = self.enc.splice.table_id

    def update(self, i: int, kind=p4r.Update.INSERT) -> p4r.Update:
        from p4cs.controller.p4rt import Splice
        from p4cs.csproc.effects import FlowKey

        key = FlowKey(0x0A000000 | (i >> 16), 0x0B000000, 6, i & 0xFFFF, 80)
        if kind == p4r.Update.DELETE:
            return p4r.Update.FromString(self.enc.delete_raw(key))
        s = Splice(1, 0x020000000001, 0x020000000002, 0x0C000001, 0x0B000000, 40000 + (i & 0x3FFF),
                   80, i * 7919 & 0xFFFFFFFF, i * 104729 & 0xFFFFFFFF, i & 0xFFFF)
        return p4r.Update.FromString(self.enc.insert_raw(key, s, self.idle_timeout_ns / 1e9, kind))


async def write_all(sw: Switch, batches, inflight: int) -> None:
    if inflight <= 1:
        for b in batches:
            await sw.write(b)
        return
    sem = asyncio.Semaphore(inflight)

    async def one(b):
        async with sem:
            await sw.write(b)

    await asyncio.gather(*(one(b) for b in batches))


async def run(args) -> dict:
    at = sorted(int(x) for x in args.at.split(","))
    results: dict = {"batch": args.batch, "window": args.window, "inflight": args.inflight,
                     "idle_timeout": not args.permanent, "points": []}
    tmp = Path(tempfile.mkdtemp(prefix="p4cs-bench-"))
    if args.spec and args.p4info:
        spec, p4info = Path(args.spec), Path(args.p4info)
    else:
        spec, p4info = bench_pipeline(at[-1] + args.window, tmp)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    env = dict(os.environ)
    server = subprocess.Popen(
        [sys.executable, "-m", "p4cs.cli", "switch", "--spec", str(spec), "--p4info", str(p4info),
         "--grpc-addr", addr, "--device-id", "1"],
        env=env, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()  # "p4cs switch: P4Runtime on ..." once ready
        if "P4Runtime on" not in line:
            raise SystemExit(f"switch did not start: {line!r}")
        opts = SwitchOptions(p4info=p4info, p4blob=spec, device_id=1)
        async with Switch("sw", addr, opts) as sw:
            idle = 0 if args.permanent else 3600 * 10**9
            flows = (SpliceFlows(sw.p4info, idle) if "splice" in {a.name for a in sw.p4info.actions}
                     else Flows(sw.p4info, idle))
            if args.warmup:
                # warm up both processes (first-touch of the learner buckets, dict growth,
                # gRPC), then remove the warm-up flows again: occupancy is back to 0
                base = 1 << 30
                await write_all(sw, flows.batches(base, args.warmup, args.batch), args.inflight)
                await write_all(sw, flows.batches(base, args.warmup, args.batch, p4r.Update.DELETE),
                                args.inflight)
            installed = 0
            for target in at:
                if target > installed:
                    before = installed
                    t0 = time.perf_counter()
                    step = 50 * args.batch
                    while installed < target:
                        n = min(step, target - installed)
                        await write_all(sw, flows.batches(installed, n, args.batch), args.inflight)
                        installed += n
                    fill = time.perf_counter() - t0
                    results.setdefault("fills", []).append(
                        {"from": before, "to": target, "seconds": round(fill, 2),
                         "per_s_incl_build": round((target - before) / fill)}
                    )
                batches = flows.batches(installed, args.window, args.batch)
                daemons = children(server.pid)
                c0 = [cpu_seconds(server.pid), sum(cpu_seconds(p) for p in daemons), time.process_time()]
                t0 = time.perf_counter()
                await write_all(sw, batches, args.inflight)
                dt = time.perf_counter() - t0
                c1 = [cpu_seconds(server.pid), sum(cpu_seconds(p) for p in daemons), time.process_time()]
                cpu_us = [round((b - a) / args.window * 1e6, 1) for a, b in zip(c0, c1)]
                installed += args.window
                rate = args.window / dt
                results["points"].append({"installed_before": target, "installs": args.window,
                                          "seconds": round(dt, 3), "per_s": round(rate),
                                          "cpu_us_per_install": {"server": cpu_us[0], "daemon": cpu_us[1],
                                                                 "client": cpu_us[2]}})
                print(f"at {target:>9,} flows: {args.window:,} installs in {dt:.2f} s = {rate:,.0f}/s"
                      f"  (CPU µs/install: server {cpu_us[0]}, daemon {cpu_us[1]}, client {cpu_us[2]})",
                      flush=True)
            # read back the whole table once (streamed Read)
            t0 = time.perf_counter()
            n = 0
            req = p4r.ReadRequest(device_id=1, entities=[p4r.Entity(table_entry=p4r.TableEntry(table_id=flows.table_id))])
            async for reply in sw._p4client.request_iter(req):  # noqa: SLF001 - raw read, no decoding
                n += len(reply.entities)
            dt = time.perf_counter() - t0
            results["read_all"] = {"entries": n, "seconds": round(dt, 2), "per_s": round(n / dt)}
            print(f"read back {n:,} entries in {dt:.2f} s = {n / dt:,.0f}/s", flush=True)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--at", default="1000,1000000", help="occupancies to measure at")
    ap.add_argument("--batch", type=int, default=500, help="updates per WriteRequest")
    ap.add_argument("--window", type=int, default=50000, help="installs per measurement")
    ap.add_argument("--inflight", type=int, default=1, help="WriteRequests in flight")
    ap.add_argument("--warmup", type=int, default=50000,
                    help="install and delete this many flows before measuring")
    ap.add_argument("--permanent", action="store_true",
                    help="install without idle timeout (each install is then add + keep)")
    ap.add_argument("--spec", help="SWX spec (default: the test pipeline, resized; with the "
                    "real one, p4src/build/dpdk/p4cs.spec, the updates are the controller's "
                    "`splice` installs)")
    ap.add_argument("--p4info", help="P4Info of --spec")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("finsy").setLevel(logging.ERROR)
    res = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
