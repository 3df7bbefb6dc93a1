#!/usr/bin/env python3
"""Micro-benchmark of TLS services in the CS processor: engine CPU time per connection routed
on its ClientHello's SNI, with and without TLS session persistence, against an HTTP
connection routed on its Host header by the same kind of rule set (the peer, same run).

One connection = client SYN -> cookie SYN-ACK; client ACK + request (a 265-byte GET, or a
real ClientHello made by Python's ssl) -> rules decision + server SYN; server SYN-ACK ->
InstallFlows; with tls-session persistence also the server's first segment (a real
ServerHello of a TLS 1.2 server without tickets, each connection with its own session id)
-> software splice, session learned, InstallFlows of the return flow; then the two FIN
copies -> RemoveFlows.  As bench/csproc_bench.py: only the time inside Engine.handle() is
counted, on the thread's CPU clock.

    .venv/bin/python bench/tls_bench.py [-n CONNECTIONS] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "host"))

from p4cs.csproc import (Config, Engine, InstallFlows, RuleSetDecider,  # noqa: E402
                         Server, ServerGroup, StaticTopology, VirtualService)
from p4cs.csproc import packet as P  # noqa: E402
from p4cs.csproc.policy import Persistence  # noqa: E402
from p4cs.rules import parse_rules  # noqa: E402
from p4cs.rules.store import RuleStore  # noqa: E402

from csproc_bench import (CMAC, GET, SMAC, SW1, SW2, VIP,  # noqa: E402  (the same peer request)
                          open_connection)

HTTP_RULES = """
img: if (host == "img.example.com") { routeTo(img); }
api: if (host == "api.example.com") { routeTo(api); }
www: if (host == "www.example.com") { routeTo(web); }
"""
TLS_RULES = """
img: if (tls.sni == "img.example.com") { routeTo(img); }
api: if (tls.sni == "api.example.com") { routeTo(api); }
www: if (tls.sni == "www.example.com") { routeTo(web); }
"""
SID_AT = 5 + 4 + 2 + 32 + 1     # the session id in the ServerHello record


def handshake_bytes() -> tuple[bytes, bytes]:
    """A real ClientHello (SNI www.example.com) and the first 1400 bytes of the answer of a
    TLS 1.2 server without tickets (ServerHello with a 32-byte session id, certificate)."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", "/CN=www.example.com", "-keyout", f"{d}/k", "-out",
                        f"{d}/c"], check=True, capture_output=True)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(f"{d}/c", f"{d}/k")
    sctx.maximum_version = ssl.TLSVersion.TLSv1_2
    sctx.options |= ssl.OP_NO_TICKET
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname, cctx.verify_mode = False, ssl.CERT_NONE
    cin, cout, sin, sout = (ssl.MemoryBIO() for _ in range(4))
    c = cctx.wrap_bio(cin, cout, server_hostname="www.example.com")
    s = sctx.wrap_bio(sin, sout, server_side=True)
    for obj in (c, s):
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        if obj is c:
            hello = cout.read()
            sin.write(hello)
    flight = sout.read()[:1400]
    assert flight[SID_AT - 1] == 32
    return hello, flight


def make_engine(kind: str) -> Engine:
    servers = [Server(f"s{i}", f"10.0.1.{i}", 443, weight=1 + i % 3) for i in range(1, 9)]
    groups = [ServerGroup("img", servers[:3], "wrr"), ServerGroup("api", servers[3:5], "wlc"),
              ServerGroup("web", servers[5:], "wlc")]
    rules = HTTP_RULES if kind == "http" else TLS_RULES
    svc = VirtualService("svc", VIP, 443, RuleSetDecider(RuleStore(parse_rules(rules))), "web",
                         protocol="http" if kind == "http" else "tls",
                         persistence=(Persistence(300, kind="tls-session")
                                      if kind == "tls+session" else None))
    topo = StaticTopology({1: SW1, 2: SW2}, {f"10.0.1.{i}": (2, SMAC) for i in range(1, 9)})
    return Engine([svc], groups, topo, Config(max_half_bound=10**6), os.urandom(32))


def run(kind: str, n: int, hello: bytes, flight: bytes) -> dict:
    eng = make_engine(kind)
    req = GET if kind == "http" else hello
    now = 1000.0
    t = {"syn": 0.0, "request": 0.0, "synack": 0.0, "server hello": 0.0, "teardown": 0.0}
    pc = time.thread_time
    for i in range(n):
        cip, cport, cisn, sisn, s, eff = open_connection(eng, i, 443, req, t, now)
        assert isinstance(eff[0], InstallFlows), eff
        sent = 0
        if kind == "tls+session":
            sid = i.to_bytes(32, "big")
            data = flight[:SID_AT] + sid + flight[SID_AT + 32:]
            first = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77778,
                            s.seq + 1 + len(req), P.ACK | P.PSH, 29200, data)
            t0 = pc()
            eff = eng.handle(first, 2, 2, now)
            t["server hello"] += pc() - t0
            assert isinstance(eff[-1], InstallFlows), eff
            sent = len(data)
        fin_c = P.build(CMAC, SW1, cip, VIP, cport, 443, cisn + 1 + len(req), sisn + 1 + sent,
                        P.ACK | P.FIN, 64240)
        fin_s = P.build(SMAC, SW2, s.dip, s.sip, s.dport, s.sport, 77778 + sent,
                        s.seq + 1 + len(req), P.ACK | P.FIN, 29200)
        t0 = pc()
        eng.handle(fin_s, 2, 4, now)
        eng.handle(fin_c, 1, 4, now)
        t["teardown"] += pc() - t0
        now += 1e-5
    eng.tick(now + 10)
    assert eng.stats.spliced == n and not eng.by_id, eng.stats.as_dict()
    if kind == "tls+session":
        assert len(eng.policy.templates) == n
    out = {k: v / n * 1e6 for k, v in t.items()}
    out["setup"] = sum(out[k] for k in ("syn", "request", "synack", "server hello"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    hello, flight = handshake_bytes()
    print(f"python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}, {a.n} connections x "
          f"{a.rounds} rounds; GET {len(GET)} bytes, ClientHello {len(hello)} bytes")
    kinds = ("http", "tls", "tls+session")
    res = {k: [] for k in kinds}
    for _ in range(a.rounds):          # interleaved, so that load hits every kind alike
        for k in kinds:
            res[k].append(run(k, a.n, hello, flight))
    med = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in res.items()}
    steps = ("syn", "request", "synack", "server hello", "setup", "teardown")
    print(f"  {'us/conn':14s}" + "".join(f"{k:>13s}" for k in kinds))
    for m in steps:
        print(f"  {m:14s}" + "".join(f"{med[k][m]:13.1f}" for k in kinds))
    for k in kinds[1:]:
        print(f"  {k} setup / http setup: {med[k]['setup'] / med['http']['setup']:.2f}x"
              f"  (incl. teardown {(med[k]['setup'] + med[k]['teardown']) / (med['http']['setup'] + med['http']['teardown']):.2f}x)")


if __name__ == "__main__":
    main()
