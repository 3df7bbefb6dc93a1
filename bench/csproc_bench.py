#!/usr/bin/env python3
"""Micro-benchmark of the CS processor: engine CPU time per delayed-bound connection.

One connection = client SYN -> cookie SYN-ACK, client ACK+GET -> decision + server SYN,
server SYN-ACK -> InstallFlows (both entries + relayed request), plus the two FIN copies
-> RemoveFlows.  Only the time inside Engine.handle() is counted; the frames the peers
send are built outside the timed region.  The clock is the thread's CPU time
(CLOCK_THREAD_CPUTIME_ID), so time the scheduler gives to other processes on a busy host
is not counted; each reading costs about a microsecond, included in the figures.

    .venv/bin/python bench/csproc_bench.py [-n CONNECTIONS] [--snat] [--rate CONN_PER_S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host"))

from p4cs.csproc import (Config, Engine, InstallFlows, PacketOut, PrefixRouter,  # noqa: E402
                         Route, Server, ServerGroup, StaticTopology, VirtualService)
from p4cs.csproc import packet as P  # noqa: E402
from p4cs.csproc.cookies import SynCookies  # noqa: E402
from p4cs.csproc.framing import RequestFramer  # noqa: E402

GET = (b"GET /img/logo.png HTTP/1.1\r\nHost: www.example.com\r\n"
       b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
       b"Accept: image/avif,image/webp,*/*\r\nAccept-Language: en-US,en;q=0.5\r\n"
       b"Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n\r\n")

CMAC, SMAC, SW1, SW2 = b"\xaa" * 6, b"\xbb" * 6, b"\x02\0\0\0\0\x01", b"\x02\0\0\0\0\x02"
VIP = P.ip_int("10.0.0.100")


def make_engine(snat: bool) -> Engine:
    servers = [Server(f"s{i}", f"10.0.1.{i}", 8080, weight=1 + i % 3) for i in range(1, 9)]
    groups = [ServerGroup("img", servers[:4], "wrr"), ServerGroup("web", servers[4:], "wlc")]
    router = PrefixRouter([Route("img", "img", "/img/"), Route("web", "web", "/"),
                           Route("api", "web", "/api/", host="api.example.com")])
    svc = VirtualService("www", VIP, 80, router, "web", "snat" if snat else "transparent",
                         "10.0.1.254" if snat else None)
    topo = StaticTopology({1: SW1, 2: SW2}, {f"10.0.1.{i}": (2, SMAC) for i in range(1, 9)})
    return Engine([svc], groups, topo, Config(max_half_bound=10**6,
                                               snat_ports=(1024, 65535)), os.urandom(32))


def open_connection(eng: Engine, i: int, port: int, req: bytes, t: dict, now: float) -> tuple:
    """Connection ``i`` to VIP:``port`` up to the server's SYN-ACK: the client's SYN, its
    ACK with ``req`` and the server's SYN-ACK, each handled and its time inside
    Engine.handle added to ``t["syn"]``, ``t["request"]``, ``t["synack"]``.  Returns the
    client's address, port and ISN, the switch's ISN, the switch's SYN to the server
    (parsed) and the effects of the SYN-ACK."""
    pc = time.thread_time
    cip = 0xC0A80000 + (i >> 14)
    cport = 1024 + (i & 0x3FFF)
    cisn = (i * 2654435761) & 0xFFFFFFFF
    syn = P.build(CMAC, SW1, cip, VIP, cport, port, cisn, 0, P.SYN, 64240, b"",
                  P.mss_option(1460))
    t0 = pc()
    eff = eng.handle(syn, 1, 1, now)
    t["syn"] += pc() - t0
    sisn = int.from_bytes(eff[0].frame[38:42], "big")
    ack = P.build(CMAC, SW1, cip, VIP, cport, port, cisn + 1, sisn + 1, P.ACK | P.PSH, 64240,
                  req)
    t0 = pc()
    eff = eng.handle(ack, 1, 1, now)
    t["request"] += pc() - t0
    s = P.parse(next(e for e in eff if isinstance(e, PacketOut)).frame)
    synack = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77777, s.seq + 1,
                     P.SYN | P.ACK, 29200, b"", P.mss_option(1460))
    t0 = pc()
    eff = eng.handle(synack, 2, 2, now)
    t["synack"] += pc() - t0
    return cip, cport, cisn, sisn, s, eff


def run(n: int, snat: bool, rate: float = 0.0) -> dict:
    """``rate`` (connections per second of a simulated clock, 0: all at once): the engine's
    timers run as the controller runs them, every ``TICK_S`` of that clock, and are timed
    (``tick``) with the largest number of timer entries held (``timer_entries``)."""
    eng = make_engine(snat)
    now = 1000.0
    t_syn = t_req = t_synack = t_fin = t_tick = 0.0
    step = 1.0 / rate if rate else 1e-5
    next_tick = now + TICK_S
    held = 0
    pc = time.thread_time
    for i in range(n):
        cip = 0xC0A80000 + (i >> 14)
        cport = 1024 + (i & 0x3FFF)
        cisn = (i * 2654435761) & 0xFFFFFFFF
        syn = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn, 0, P.SYN, 64240, b"",
                      P.mss_option(1460))
        t = pc()
        eff = eng.handle(syn, 1, 1, now)
        t_syn += pc() - t
        sisn = int.from_bytes(eff[0].frame[38:42], "big")
        ack = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn + 1, sisn + 1,
                      P.ACK | P.PSH, 64240, GET)
        t = pc()
        eff = eng.handle(ack, 1, 1, now)
        t_req += pc() - t
        s = P.parse(next(e for e in eff if isinstance(e, PacketOut)).frame)
        synack = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77777, s.seq + 1,
                         P.SYN | P.ACK, 29200, b"", P.mss_option(1460))
        t = pc()
        eff = eng.handle(synack, 2, 2, now)
        t_synack += pc() - t
        assert isinstance(eff[0], InstallFlows), eff
        fin_c = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn + 1 + len(GET), sisn + 1,
                        P.ACK | P.FIN, 64240)
        fin_s = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77778,
                        s.seq + 1 + len(GET), P.ACK | P.FIN, 29200)
        t = pc()
        eng.handle(fin_s, 2, 4, now)
        eng.handle(fin_c, 1, 4, now)
        t_fin += pc() - t
        now += step
        if rate and now >= next_tick:
            held = max(held, len(eng._timers))       # noqa: SLF001
            t = pc()
            eng.tick(now)
            t_tick += pc() - t
            next_tick = now + TICK_S
    eng.tick(now + 60)
    assert eng.stats.spliced == n and not eng.by_id, eng.stats.as_dict()
    us = lambda x: x / n * 1e6  # noqa: E731
    out = {"syn": us(t_syn), "ack+get": us(t_req), "synack": us(t_synack),
           "setup": us(t_syn + t_req + t_synack), "teardown": us(t_fin)}
    if rate:
        out.update(tick=us(t_tick), timer_entries=held)
    return out


#: How often the simulated controller runs the engine's timers (``--rate``).
TICK_S = 0.01


def micro(n: int = 20000) -> dict:
    pc = time.thread_time
    f = P.build(CMAC, SW1, 1, VIP, 1234, 80, 1, 2, P.ACK | P.PSH, 64240, GET)
    res = {}
    t = pc()
    for _ in range(n):
        P.parse(f)
    res["parse+verify"] = (pc() - t) / n * 1e6
    t = pc()
    for _ in range(n):
        P.build(CMAC, SW1, 1, VIP, 1234, 80, 1, 2, P.ACK | P.PSH, 64240, GET)
    res["build"] = (pc() - t) / n * 1e6
    k = SynCookies(os.urandom(32))
    t = pc()
    for i in range(n):
        k.check(1, VIP, 1234, 80, i, k.make(1, VIP, 1234, 80, i, 1460, 1000.0), 1000.0)
    res["cookie make+check"] = (pc() - t) / n * 1e6
    t = pc()
    for _ in range(n):
        fr = RequestFramer(False, 8192, 65536)
        fr.feed(GET)
    res["httptools framing"] = (pc() - t) / n * 1e6
    t = pc()
    for _ in range(n):
        GET.find(b"\r\n\r\n")
    res["(bytes.find CRLFCRLF, lower bound)"] = (pc() - t) / n * 1e6
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--snat", action="store_true")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="connections per second of a simulated clock; the timers run every "
                         f"{TICK_S * 1e3:.0f} ms of it and are timed (tick, timer_entries). "
                         "Give -n for at least 40 s of it: the longest timer (half-closed) is 30 s")
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {a.n} connections x {a.rounds} rounds, "
          f"{'SNAT' if a.snat else 'transparent'}, request {len(GET)} bytes"
          + (f", {a.rate:,.0f} connections/s of a simulated clock" if a.rate else ""))
    w = time.perf_counter()
    rounds = [run(a.n, a.snat, a.rate) for _ in range(a.rounds)]
    w = time.perf_counter() - w
    for k in rounds[0]:
        vals = [r[k] for r in rounds]
        if k == "timer_entries":
            print(f"  {k:10s} {statistics.median(vals):7,.0f} at most")
            continue
        print(f"  {k:10s} {statistics.median(vals):7.1f} us/conn  (min {min(vals):.1f})")
    setup = statistics.median(r["setup"] for r in rounds)
    total = statistics.median(r["setup"] + r["teardown"] for r in rounds)
    print(f"  => {1e6 / setup:,.0f} connection setups/s, {1e6 / total:,.0f} incl. teardown,"
          f" per core")
    print(f"  (wall clock of the whole run incl. frame building: "
          f"{w / (a.n * a.rounds) * 1e6:.0f} us/conn)")
    for k, v in micro().items():
        print(f"  {k:36s} {v:6.2f} us")


if __name__ == "__main__":
    main()
