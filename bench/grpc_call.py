#!/usr/bin/env python3
"""CPU time of one unary gRPC call on this machine, client and server, for each mix of the
asyncio and the synchronous gRPC Python APIs: what a P4Runtime Write or Read costs the
controller and the P4Runtime server whatever it carries.

A server process (forked) answers a generic unary method with two bytes; the client calls it
--n times, one call in flight, with a --size byte request (3,400: a flow-install Write of ~18
updates). CPU seconds of each process over the calls / calls.

    .venv/bin/python bench/grpc_call.py [--n 3000] [--size 3400] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import time
from concurrent import futures

import grpc

MODES = ("aio-server/aio-client", "sync-server/sync-client", "aio-server/sync-client",
         "sync-server/aio-client")


def _serve(mode: str, w: int) -> None:
    if mode.startswith("sync"):
        h = grpc.method_handlers_generic_handler(
            "t.T", {"W": grpc.unary_unary_rpc_method_handler(lambda req, ctx: b"ok")})
        s = grpc.server(futures.ThreadPoolExecutor(2))
        s.add_generic_rpc_handlers((h,))
        port = s.add_insecure_port("127.0.0.1:0")
        s.start()
        os.write(w, str(port).encode())
        s.wait_for_termination()
        return

    async def main() -> None:
        async def echo(req, ctx):
            return b"ok"
        h = grpc.method_handlers_generic_handler(
            "t.T", {"W": grpc.unary_unary_rpc_method_handler(echo)})
        s = grpc.aio.server()
        s.add_generic_rpc_handlers((h,))
        port = s.add_insecure_port("127.0.0.1:0")
        await s.start()
        os.write(w, str(port).encode())
        await s.wait_for_termination()
    asyncio.run(main())


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _proc_cpu(pid: int) -> float:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def measure(mode: str, n: int, size: int) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _serve(mode, w)
        finally:
            os._exit(0)
    os.close(w)
    port = int(os.read(r, 16))
    os.close(r)
    payload = b"x" * size
    try:
        if mode.endswith("sync-client"):
            ch = grpc.insecure_channel(f"127.0.0.1:{port}")
            call = ch.unary_unary("/t.T/W")
            for _ in range(200):
                call(payload)
            c0, s0, t0 = _cpu(), _proc_cpu(pid), time.monotonic()
            for _ in range(n):
                call(payload)
            c1, s1, t1 = _cpu(), _proc_cpu(pid), time.monotonic()
            ch.close()
        else:
            async def client():
                ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                call = ch.unary_unary("/t.T/W")
                for _ in range(200):
                    await call(payload)
                c0, s0, t0 = _cpu(), _proc_cpu(pid), time.monotonic()
                for _ in range(n):
                    await call(payload)
                out = (c0, s0, t0, _cpu(), _proc_cpu(pid), time.monotonic())
                await ch.close()
                return out
            c0, s0, t0, c1, s1, t1 = asyncio.run(client())
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {"mode": mode, "calls_per_s": round(n / (t1 - t0)),
            "client_us_per_call": round(1e6 * (c1 - c0) / n),
            "server_us_per_call": round(1e6 * (s1 - s0) / n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--size", type=int, default=3400)
    ap.add_argument("--json")
    args = ap.parse_args()
    out = {"grpcio": grpc.__version__, "size": args.size, "n": args.n,
           "load_before": " ".join(open("/proc/loadavg").read().split()[:3]), "modes": []}
    for mode in MODES:
        m = measure(mode, args.n, args.size)
        out["modes"].append(m)
        print(f"{mode:26s} {m['calls_per_s']:6d} calls/s  client {m['client_us_per_call']:4d} µs"
              f"  server {m['server_us_per_call']:4d} µs per call", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
