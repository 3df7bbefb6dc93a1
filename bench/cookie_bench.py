#!/usr/bin/env python3
"""Micro-benchmark of cookie persistence in the CS processor: engine CPU time per connection
of an http service with cookie-learn, with cookie-insert (a request without the cookie, and
one with a valid one), against the same service without persistence (the peer, same run).

One connection = client SYN -> cookie SYN-ACK; client ACK + a 265-byte GET (with a Cookie
header for the cookie kinds) -> decision + server SYN; server SYN-ACK ->
InstallFlows (cookie-learn: the client -> server flow; cookie-insert without a valid cookie:
none); the server's first segment, 1,400 bytes starting with a 190-byte response header
(cookie-learn: with its own Set-Cookie value per connection) -> read, software splice
(cookie-insert: the line inserted), cookie-learn: the template learned and the return flow
installed; cookie-insert: the client's ACK of it -> both flows installed; then the two FIN
copies -> RemoveFlows.  As bench/csproc_bench.py: only the time inside Engine.handle() is
counted, on the thread's CPU clock.

    .venv/bin/python bench/cookie_bench.py [-n CONNECTIONS] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host"))

from p4cs.csproc import (Config, Engine, InstallFlows, PacketOut, PrefixRouter, Route,  # noqa: E402
                         Server, ServerGroup, StaticTopology, VirtualService)
from p4cs.csproc import packet as P  # noqa: E402
from p4cs.csproc.policy import Persistence  # noqa: E402

from csproc_bench import (CMAC, GET, SMAC, SW1, SW2, VIP,  # noqa: E402  (the same peer request)
                          open_connection)

HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Sat, 05 Dec 2026 00:00:00 GMT\r\n"
        b"Content-Type: text/html\r\nContent-Length: 100000\r\nConnection: keep-alive\r\n")
KINDS = ("http", "learn", "insert", "insert+valid")


def make_engine(kind: str) -> Engine:
    servers = [Server(f"s{i}", f"10.0.1.{i}", 8080, weight=1 + i % 3) for i in range(1, 9)]
    groups = [ServerGroup("img", servers[:4], "wrr"), ServerGroup("web", servers[4:], "wlc")]
    router = PrefixRouter([Route("img", "img", "/img/"), Route("web", "web", "/"),
                           Route("api", "web", "/api/", host="api.example.com")])
    pers = None
    if kind == "learn":
        pers = Persistence(300, kind="cookie-learn", name="SESSIONID")
    elif kind.startswith("insert"):
        pers = Persistence(kind="cookie-insert", name="SRV", key="bench")
    svc = VirtualService("www", VIP, 80, router, "web", persistence=pers)
    topo = StaticTopology({1: SW1, 2: SW2}, {f"10.0.1.{i}": (2, SMAC) for i in range(1, 9)})
    return Engine([svc], groups, topo, Config(max_half_bound=10**6), os.urandom(32))


def request(kind: str, i: int, eng: Engine) -> bytes:
    if kind == "http":
        return GET
    if kind == "insert+valid":      # the server the scheduler would not pick for this one
        value = eng.services[(VIP, 80)].persistence.server_id(eng.groups["img"].servers[i % 4])
    else:
        value = f"{i:032x}"
    name = "SESSIONID" if kind == "learn" else "SRV"
    return GET[:-2] + f"Cookie: lang=en; {name}={value}\r\n\r\n".encode()


def run(kind: str, n: int) -> dict:
    eng = make_engine(kind)
    now = 1000.0
    t = {"syn": 0.0, "request": 0.0, "synack": 0.0, "response": 0.0, "client ack": 0.0,
         "teardown": 0.0}
    pc = time.thread_time
    for i in range(n):
        req = request(kind, i, eng)
        cip, cport, cisn, sisn, s, eff = open_connection(eng, i, 80, req, t, now)
        assert (kind == "insert") != isinstance(eff[0], InstallFlows), eff
        got = 0
        if kind in ("learn", "insert"):
            head = HEAD + (f"Set-Cookie: SESSIONID={i:032x}; Path=/\r\n".encode()
                           if kind == "learn" else b"") + b"\r\n"
            data = head + b"x" * (1400 - len(head))
            first = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77778,
                            s.seq + 1 + len(req), P.ACK | P.PSH, 29200, data)
            t0 = pc()
            eff = eng.handle(first, 2, 2, now)
            t["response"] += pc() - t0
            got = sum(len(P.parse(e.frame).payload) for e in eff if isinstance(e, PacketOut))
            assert got > len(data) if kind == "insert" else isinstance(eff[-1], InstallFlows)
        if kind == "insert":
            cack = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn + 1 + len(req), sisn + 1 + got,
                           P.ACK, 64240)
            t0 = pc()
            eff = eng.handle(cack, 1, 1, now)
            t["client ack"] += pc() - t0
            assert len(eff[-1].flows) == 2, eff
        fin_c = P.build(CMAC, SW1, cip, VIP, cport, 80, cisn + 1 + len(req), sisn + 1 + got,
                        P.ACK | P.FIN, 64240)
        fin_s = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77778 + 1400,
                        s.seq + 1 + len(req), P.ACK | P.FIN, 29200)
        t0 = pc()
        eng.handle(fin_s, 2, 4, now)
        eng.handle(fin_c, 1, 4, now)
        t["teardown"] += pc() - t0
        now += 1e-5
    eng.tick(now + 10)
    assert eng.stats.spliced == n and not eng.by_id, eng.stats.as_dict()
    if kind == "learn":
        assert len(eng.policy.templates) == n
    if kind == "insert":
        assert eng.stats.cookies_inserted == n
    out = {k: v / n * 1e6 for k, v in t.items()}
    out["setup"] = sum(out[k] for k in ("syn", "request", "synack", "response", "client ack"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {a.n} connections x {a.rounds} rounds")
    res = {k: [] for k in KINDS}
    for _ in range(a.rounds):          # interleaved, so that load hits every kind alike
        for k in KINDS:
            res[k].append(run(k, a.n))
    med = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in res.items()}
    steps = ("syn", "request", "synack", "response", "client ack", "setup", "teardown")
    print(f"  {'us/conn':14s}" + "".join(f"{k:>14s}" for k in KINDS))
    for m in steps:
        print(f"  {m:14s}" + "".join(f"{med[k][m]:14.1f}" for k in KINDS))
    for k in KINDS[1:]:
        print(f"  {k} setup / http setup: {med[k]['setup'] / med['http']['setup']:.2f}x")


if __name__ == "__main__":
    main()
