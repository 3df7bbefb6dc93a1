#!/usr/bin/env python3
"""The controller's CPU per new connection, in-process: the CS engine and everything the
controller does around it, without the switch, the system calls or the machine's noise.

The live benchmark (`http_vs_haproxy.py --tests newconn`) spreads ±10 % from run to run on this
machine, which hides changes of a few percent in the controller; `csproc_bench.py` times the
engine alone (~50 µs of the controller's ~160 µs per connection). This script runs the
controller's own code paths (`ControllerApp` of `examples/lcs.yaml`, the DPDK target's P4Info)
on connections replayed in batches as the live controller sees them at ~4,000 connections/s:

* ``request``: each client's handshake ACK, then its GET (the data plane answered their SYNs
  with cookies), one batch of packet-ins (`_handle_packets`: the engine, its effects, the SYNs
  to the servers); with ``--ports N`` the clients use N ports over and over, as wrk does, and
  a new connection takes over the tombstone of the previous one on its 4-tuple;
* ``synack``: the servers' SYN-ACKs, one batch (the flow installs queued);
* ``install``: the batch's install Write built and answered (`_install`; the Write itself is
  not sent: ``write_raw`` returns at once) and the requests sent on;
* ``fin``: the FIN/RST copies of both sides, one batch;
* ``timers``: the engine's timers once the tombstones are due (`Engine.tick` and its effects);
* ``expiry``: the idle-timeout notification of the connections' entries, with their counts
  (`Teardown.expired`), as the DPDK target sends it.

Packet-outs go nowhere (the channel's send is replaced: ``send``, the system call, is not in
the figures), nor does the Write. ``--channel`` measures the direct packet channel's own CPU
per frame apart (its Python and system calls on a socket pair). The clock is the thread's CPU time; the frames and the
notification are built outside the timed parts.

    .venv/bin/python bench/controller_replay.py [-n 20000] [--batch 22] [--rounds 3] [--ports N]
                                                [--rate R] [--channel] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "host"))

from finsy import P4Schema  # noqa: E402
from finsy.proto import p4r  # noqa: E402

import p4cs.controller.app as appmod  # noqa: E402
from p4cs.constants import REASON_BACKEND_MISS, REASON_FLOW_END, REASON_VIP_MISS  # noqa: E402
from p4cs.controller.config import load_config  # noqa: E402
from p4cs.controller.p4rt import FlowEncoder  # noqa: E402
from p4cs.controller.workers import tune_gc  # noqa: E402
from p4cs.csproc import packet as P  # noqa: E402
from p4cs.csproc.effects import InstallFlows  # noqa: E402

LCS = ROOT / "examples" / "lcs.yaml"
P4INFO = ROOT / "p4src" / "build" / "dpdk" / "p4cs.p4info.txtpb"
GET = (b"GET / HTTP/1.1\r\nHost: 10.0.0.100\r\nConnection: close\r\n\r\n")
CMAC = bytes.fromhex("020000000101")      # the client (examples/lcs.yaml)
SMAC = bytes.fromhex("020000000201")      # a server
SWMAC = bytes.fromhex("0200000001fe")     # the switch's port 1
PHASES = ("request", "synack", "install", "fin", "timers", "expiry")


class _Sink:
    """The packet channel's send, for packet-outs that go nowhere."""

    def __init__(self):
        self.frames: list[tuple[int, bytes]] = []

    async def send(self, sw, enc, frames) -> None:
        self.frames.extend(frames)


async def _no_write(sw, updates) -> None:
    return None


def make_app() -> appmod.ControllerApp:
    app = appmod.ControllerApp(load_config(LCS), Path("/nonexistent"))
    app.enc = FlowEncoder(P4Schema(P4INFO))
    app.teardown.end_expiry = True        # the DPDK target: FIN/RST-hit entries expire
    app._deletes = []                     # noqa: SLF001  (as while the install loop runs)
    return app


class _Clock:
    """The controller's clock (``time.monotonic`` of the app module): real, or ``rate``
    connections a second of a simulated one that ``advance`` moves."""

    def __init__(self, rate: float):
        self.rate = rate
        self.t = time.monotonic()

    def monotonic(self) -> float:
        return self.t if self.rate else time.monotonic()

    def advance(self, connections: int) -> None:
        if self.rate:
            self.t += connections / self.rate

    def __getattr__(self, name):        # the rest of the time module
        return getattr(time, name)


async def replay(n: int, batch: int, ports: int = 0, rate: float = 0.0) -> dict[str, float]:
    """CPU µs per connection of each phase (and ``total``) for ``n`` connections in batches
    of ``batch``; ``ports``: the clients use that many ports over and over (0: a new one each
    time), so that a new connection meets the previous one's tombstone; ``rate``: connections
    a second of a simulated clock (0: the real one, the tombstones let go after every batch),
    so that as many connections stay in the engine as at that rate."""
    clock = _Clock(rate)
    write_raw, appmod.write_raw = appmod.write_raw, _no_write
    appmod.time = clock
    try:
        return await _replay(n, batch, ports, clock)
    finally:
        appmod.write_raw = write_raw
        appmod.time = time


async def _replay(n: int, batch: int, ports: int, clock: _Clock) -> dict[str, float]:
    app = make_app()
    eng = app.engine
    sink = _Sink()
    app.packets.send = sink.send          # packet-outs go nowhere
    sw = object()                         # passed through to the replaced calls only
    svc = next(iter(eng.services.values()))
    vip, vport = svc.vip, svc.port
    cookies = eng.cookies
    t = dict.fromkeys(PHASES, 0.0)
    pc = time.thread_time
    done = 0
    base = 0
    while done < n:
        k = min(batch, n - done)
        now = clock.monotonic()
        conns = []
        for i in range(base, base + k):
            j = i % ports if ports else i
            cip = P.ip_int("10.0.1.1") + (j >> 15)
            cport = 1024 + (j & 0x7FFF)
            cisn = (i * 2654435761) & 0xFFFFFFFF
            # the data plane's cookie (the engine makes the same one)
            sisn = cookies.make(cip, vip, cport, vport, cisn, 1460, now)
            # the handshake's ACK, then the request, as a client sends them
            ack = P.build(CMAC, SWMAC, cip, vip, cport, vport, cisn + 1, sisn + 1, P.ACK,
                          64240)
            req = P.build(CMAC, SWMAC, cip, vip, cport, vport, cisn + 1, sisn + 1,
                          P.ACK | P.PSH, 64240, GET)
            conns.append((cip, cport, cisn, sisn, ack, req))
        base += k
        sink.frames.clear()
        t0 = pc()
        await app._handle_packets([(f, 1, REASON_VIP_MISS) for c in conns  # noqa: SLF001
                                   for f in c[4:]])
        t["request"] += pc() - t0
        syns = [P.parse(f) for _port, f in sink.frames]
        syns = [s for s in syns if s is not None and s.flags & P.SYN]
        assert len(syns) == k, f"{len(syns)} SYNs to servers for {k} requests"
        synacks = []
        for (port, _f), s in zip(sink.frames, syns):
            synacks.append((P.build(SMAC, SWMAC, s.dip, s.sip, s.dport, s.sport, 77777,
                                    s.seq + 1, P.SYN | P.ACK, 29200, b"", P.mss_option(1460)),
                            port, REASON_BACKEND_MISS))
        sink.frames.clear()
        t0 = pc()
        await app._handle_packets(synacks)  # noqa: SLF001
        t["synack"] += pc() - t0
        installs, app._installs = app._installs, []  # noqa: SLF001
        assert len(installs) == k and all(isinstance(e, InstallFlows) for e, _m in installs)
        t0 = pc()
        await app._install(sw, installs, [])  # noqa: SLF001
        t["install"] += pc() - t0
        flows = [f for e, _m in installs for f in e.flows]
        fins = []
        isn = {(c[0], c[1]): c[2] for c in conns}
        for e, _m in installs:
            # as the DPDK target mirrors them: the frame the splice emitted, behind the
            # port it came in on; each side's FIN after its data
            c2s, s2c = e.flows
            client_seq = isn[(c2s.key.src_ip, c2s.key.sport)] + 1 + len(GET)
            for f, seq, port in ((s2c, 77778, c2s.port), (c2s, client_seq, s2c.port)):
                fins.append((P.build(f.smac, f.dmac, f.sip, f.dip, f.sport, f.dport,
                                     (seq + f.seq_delta) & 0xFFFFFFFF, 0, P.ACK | P.FIN, 29200),
                             port, REASON_FLOW_END))
        t0 = pc()
        await app._handle_packets(fins)  # noqa: SLF001
        t["fin"] += pc() - t0
        # the entries' expiry notification (as the DPDK target's server builds it)
        entries = []
        for f in flows:
            fid = app.flow_of.get(tuple(f.key))
            assert fid is not None, f"no flow id for {f.key}"
            u = p4r.Update.FromString(app._splice_update(f, fid, p4r.Update.INSERT))  # noqa: SLF001
            te = u.entity.table_entry
            te.counter_data.packet_count = 5
            te.counter_data.byte_count = 700
            entries.append(te)
        t0 = pc()
        await app.teardown.expired(sw, 0, p4r.IdleTimeoutNotification(table_entry=entries))
        t["expiry"] += pc() - t0
        # the tombstones' timers, due later
        t0 = pc()
        await app._execute(eng.tick(  # noqa: SLF001
            clock.monotonic() + (0 if ports or clock.rate else 3600)))
        t["timers"] += pc() - t0
        done += k
        clock.advance(k)
    if ports or clock.rate:       # the last tombstones
        t0 = pc()
        await app._execute(eng.tick(clock.monotonic() + 3600))  # noqa: SLF001
        t["timers"] += pc() - t0
    # every connection bound, and nothing left behind once its entries expired
    assert eng.stats.spliced == n and eng.stats.teardowns == n, eng.stats.as_dict()
    assert not eng.by_id and not app.flow_of and not app.book.meta, \
        (len(eng.by_id), len(app.flow_of), len(app.book.meta))
    assert app.flow_ids.available() == app.flow_ids.size - 1, "flow ids not all freed"
    assert app.counters["fastpath_packets"] == 5 * 2 * n
    assert (eng.stats.reincarnations > 0) == (0 < ports < n), eng.stats.reincarnations
    out = {p: t[p] / n * 1e6 for p in PHASES}
    out["total"] = sum(out.values())
    return out


def channel_cost(frames: int = 20000) -> dict[str, float]:
    """CPU µs per frame of the direct packet channel's Python and system calls, alone: frames
    read from a socket pair as the controller reads its CPU port (``read_port``: ``recvmmsg``
    and the packet_in header), and packet-outs encoded and written (``sendmmsg``), in batches
    of 5, 14 and 50 frames. The peer's writes and reads are not counted."""
    from p4cs.controller.packetchan import Headers, _mmsg, read_port
    codec = Headers(P4Schema(P4INFO)).codec()     # the packet_in / packet_out of the P4Info
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    out: dict[str, float] = {}
    try:
        for s in (a, b):
            s.setblocking(False)
        frame = bytes(124)
        for batch in (5, 14, 50):
            rounds = frames // batch
            t_read = t_send = 0.0
            for _ in range(rounds):
                for _ in range(batch):
                    a.send(frame)
                t0 = time.thread_time()
                got, _bad, _closed = read_port(b, codec, False, 256)
                t_read += time.thread_time() - t0
                assert len(got) == batch
                t0 = time.thread_time()
                datas = [codec.encode(2, frame) for _ in range(batch)]
                sent = _mmsg.send_many(b.fileno(), datas) if _mmsg else \
                    sum(b.send(d) > 0 for d in datas)
                t_send += time.thread_time() - t0
                assert sent == batch
                for _ in range(batch):
                    a.recv(2048)
            out[f"read, batches of {batch}"] = t_read / (rounds * batch) * 1e6
            out[f"send, batches of {batch}"] = t_send / (rounds * batch) * 1e6
    finally:
        a.close()
        b.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000, help="connections per round")
    ap.add_argument("--batch", type=int, default=22,
                    help="connections per batch of packet-ins and per install Write")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ports", type=int, default=0,
                    help="client ports used over and over (wrk -c50 reuses ~50 ports; 0: a new "
                         "port for every connection)")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="connections a second of a simulated clock: the tombstones stay as "
                         "long as at that rate (0: the real clock, each batch's let go)")
    ap.add_argument("--channel", action="store_true",
                    help="also the direct packet channel's CPU per frame read and sent, alone")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.n < 1 or a.batch < 1 or a.rounds < 1 or a.ports < 0 or 0 < a.ports < a.batch:
        ap.error("-n, --batch and --rounds must be positive, --ports 0 or at least --batch")
    if a.rate < 0:
        ap.error("--rate must not be negative")
    tune_gc()       # the garbage collector's setting of the controller process
    logging.getLogger("p4cs").setLevel(logging.WARNING)   # no log effects printed
    rounds = [asyncio.run(replay(a.n, a.batch, a.ports, a.rate)) for _ in range(a.rounds)]
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"python {sys.version.split()[0]}, {a.n} connections x {a.rounds} rounds, "
          f"batches of {a.batch}, " + (f"{a.ports} client ports" if a.ports else "new ports")
          + (f", {a.rate:,.0f} connections/s simulated" if a.rate else "")
          + ": controller CPU per connection (median of rounds)")
    for k, v in med.items():
        print(f"  {k:8s} {v:7.1f} us  (min {min(r[k] for r in rounds):.1f})")
    chan = channel_cost() if a.channel else {}
    for k, v in chan.items():
        print(f"  channel {k}: {v:.2f} us per frame")
    if a.json:
        a.json.write_text(json.dumps({"n": a.n, "batch": a.batch, "ports": a.ports,
                                      "rate": a.rate, "channel_us_per_frame": chan,
                                      "rounds": rounds,
                                      "median_us": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
