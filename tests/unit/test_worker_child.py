"""A CS-processor worker's side (controller/workers.py): the message framing, malformed frames
counted and dropped, the RSTs of a restarted worker, the controller's state taken over."""

from __future__ import annotations

import time
from pathlib import Path

from p4cs.constants import REASON_VIP_MISS
from p4cs.controller.config import load_config
from p4cs.controller.neighbours import from_config
from p4cs.controller.workers import _Child, pack, unpack
from p4cs.csproc import effects as fx
from p4cs.csproc import packet as P
from p4cs.csproc.cookies import SynCookies
from p4cs.csproc.packet import ip_int

CONFIG = Path(__file__).resolve().parents[2] / "examples" / "lcs.yaml"
VIP = ip_int("10.0.0.100")
CLIENT = ip_int("10.0.1.1")


def child(restarted: bool = False, cookies: SynCookies | None = None, snat: dict | None = None,
          held: list | None = None) -> _Child:
    snat, held = snat or {}, held or []
    cfg = load_config(CONFIG)
    return _Child({"cfg": cfg, "index": 1, "n": 2, "restarted": restarted, "snat": snat,
                   "held": held,
                   "cookies": cookies or SynCookies(b"k" * 32), "servers": [],
                   "neighbours": from_config(cfg, time.monotonic()).entries, "rules": {},
                   "access_log": None})


def ack(flags: int = P.ACK, sport: int = 40001) -> bytes:
    return P.build(b"\x02" * 6, b"\x04" * 6, CLIENT, VIP, sport, 80, 1000, 2000, flags, 1000)


def test_framing_across_partial_reads():
    msgs = [("pkts", [(b"x" * 3000, 1, 1)]), ("ask", 7, "status"), ("cookies", None)]
    data = b"".join(pack(m) for m in msgs)
    buf, got = bytearray(), []
    for i in range(0, len(data), 777):
        buf.extend(data[i:i + 777])
        got += unpack(buf)
    assert got == msgs and not buf


def test_malformed_frames_are_counted_and_dropped():
    c = child()
    now = time.monotonic()
    frames = [b"", b"\x00", b"\xff" * 13, ack()[:40], b"\x08\x00" * 40, ack()[:-3]]
    effects, answer = c.handle(("pkts", [(f, 1, REASON_VIP_MISS) for f in frames]), now)
    assert answer is None
    assert not [e for e in effects if isinstance(e, fx.PacketOut)]
    assert c.engine.stats.bad_frames >= 4
    # still working: a SYN is answered
    effects, _ = c.handle(("pkts", [(ack(P.SYN), 1, REASON_VIP_MISS)]), now)
    assert any(isinstance(e, fx.PacketOut) for e in effects)


def test_restarted_worker_resets_unknown_connections():
    now = time.monotonic()
    fresh = child()
    effects, _ = fresh.handle(("pkts", [(ack(P.ACK | P.PSH), 1, REASON_VIP_MISS)]), now)
    assert not [e for e in effects if isinstance(e, fx.PacketOut)]
    again = child(restarted=True)
    effects, _ = again.handle(("pkts", [(ack(P.ACK | P.PSH), 1, REASON_VIP_MISS)]), now)
    rst = [P.parse(e.frame) for e in effects if isinstance(e, fx.PacketOut)]
    assert len(rst) == 1 and rst[0].flags & P.RST and rst[0].dport == 40001
    # a client RST is not answered
    effects, _ = again.handle(("pkts", [(ack(P.RST), 1, REASON_VIP_MISS)]), now)
    assert not [e for e in effects if isinstance(e, fx.PacketOut)]


def test_cookies_and_servers_follow_the_controller():
    keys = SynCookies(b"s" * 32)
    c = child(cookies=keys)
    assert c.engine.cookies.key_words() == keys.key_words()
    keys.rotate(b"t" * 32, time.monotonic())
    c.handle(("cookies", keys), time.monotonic())
    assert c.engine.cookies.key_words() == keys.key_words()
    srv = c.engine.groups["ace"].servers[0]
    assert srv.up
    effects, _ = c.handle(("sync", [("ace", srv.name, False, True, 7, 3)],
                           c.topo.entries), time.monotonic())
    assert not srv.up and srv.scale_known and srv.scale == 7 and srv.weight == 3
    answer = c.handle(("ask", 1, "status"), time.monotonic())[1]
    assert answer[0] == "answer" and answer[1] == 1 and "csproc" in answer[2]
    assert c.handle(("ask", 2, "templates"), time.monotonic())[1] == ("answer", 2, [])


def test_effects_travel_as_tuples():
    from p4cs.controller.workers import decode, encode
    key = fx.FlowKey(CLIENT, VIP, 6, 40001, 80)
    spec = fx.FlowSpec(key, 2, b"\x01" * 6, b"\x02" * 6, 5, 6, 7, 8, 9, 10, 300.0, 4, "c2s")
    effects = [fx.PacketOut(1, b"abc"),
               fx.InstallFlows([spec], [fx.PacketOut(2, b"req")]),
               fx.RemoveFlows([key], 2.0, (key,), (fx.PacketOut(1, b"syn-ack"),)),
               fx.CountFlows((key, fx.FlowKey(VIP, CLIENT, 6, 80, 40001))),
               fx.Log("info", "not sent", {})]

    class Engine:       # meta_of reads the connection by id: none here
        by_id: dict = {}

    got, metas = decode(encode(effects, Engine()))
    assert got == effects[:4] and metas == [[None]]
    # with a worker's base: its connection ids, unique among workers and restarts
    got, _ = decode(encode(effects, Engine()), 3 << 32)
    assert got[1].flows[0].conn_id == 3 << 32 | 4 and got[1].flows[0].key == key


def test_restarted_worker_snat_ports():
    """A restarted worker hands out first the SNAT ports its predecessor did not use, the
    ones it used last at the very end, and none of a flow still installed until it ends."""
    from types import SimpleNamespace

    from p4cs.controller.spread import Spreader
    from p4cs.controller.workers import Workers
    snat, server = ip_int("10.0.2.253"), ip_int("10.0.2.1")
    app = SimpleNamespace(cfg=load_config(CONFIG),
                          flow_of={(server, snat, 6, 80, 20005): 7, (CLIENT, VIP, 6, 4000, 80): 8})
    pool = Workers(app, 2)
    pool.spread = Spreader(2, {(VIP, 80)}, {snat}, (20000, 59999))
    w = pool.pool[0]
    pool._note_snat(w, [fx.PacketOut(2, P.build(b"\x02" * 6, b"\x04" * 6, snat, server, p, 80,
                                                1, 0, P.SYN, 1000)) for p in (20003, 20001, 20003)])
    assert list(w.snat_used) == [(snat, 20001), (snat, 20003)]
    order, held = pool._snat_order(w)
    assert held == [(snat, 20005)]
    assert order[snat][:3] == [20007, 20009, 20011] and order[snat][-2:] == [20001, 20003]
    assert 20005 not in order[snat] and all(p % 2 == 1 for p in order[snat])
    assert len(order[snat]) == 20000 - 1
    # the worker takes its predecessor's held port back when that flow ends
    c = child(restarted=True, snat={}, held=held)
    c.held.add((snat, 20005))
    c.handle(("flow_expired", fx.FlowKey(server, snat, 6, 80, 20005)), time.monotonic())
    assert not c.held


def test_dead_workers_entries_index():
    """The controller's index of a dead worker's flow entries: both keys of a connection of
    that incarnation (not another worker's, not the next incarnation's), taken once; entries
    that left the table meanwhile are forgotten."""
    from types import SimpleNamespace

    from p4cs.controller.workers import CONN_ID_BITS, Worker, Workers

    w = Worker(1)
    old = w.base
    app = SimpleNamespace(flow_of={}, flow_conn={})
    ws = Workers.__new__(Workers)
    ws.app, ws.orphan_of, ws._orphans = app, {}, {}
    ws.counters = {"worker_orphan_flows_removed": 0}

    def flow(fid: int, key: tuple, cid: int) -> None:
        app.flow_of[key] = fid
        app.flow_conn[fid] = cid

    a1, a2 = (1, 100, 6, 5000, 80), (10, 1, 6, 80, 5000)     # connection 7 of worker 1
    b1 = (1, 100, 6, 5001, 80)                               # connection 8: expires first
    flow(1, a1, old | 7)
    flow(2, a2, old | 7)
    flow(3, b1, old | 8)
    flow(4, (2, 100, 6, 5000, 80), (2 << 16) << CONN_ID_BITS | 7)    # worker 2's
    ws._orphan(w)
    w.restarts += 1
    flow(5, (1, 100, 6, 5002, 80), w.base | 1)               # the new incarnation's
    assert set(ws.orphan_of) == {a1, a2, b1}
    del app.flow_of[b1]                                      # expired
    ws._prune_orphans()
    assert set(ws.orphan_of) == {a1, a2} and ws.orphan_keys(b1) is None
    assert sorted(ws.orphan_keys(a1)) == sorted([a1, a2])
    assert ws.orphan_keys(a2) is None and not ws.orphan_of and not ws._orphans
    assert ws.counters["worker_orphan_flows_removed"] == 2


def test_worker_reads_and_writes_its_own_channel():
    """child_main with its pair of the direct packet channel (the sockets a switch would
    hand out, here socketpairs whose other ends play the data plane): a punted SYN is
    answered on the CPU port itself, malformed frames are counted, a SYN comes back to the
    controller while SYNs are held, the channel's end leaves the worker on its controller
    socket alone, and closing that socket ends the worker."""
    import gc
    import pickle
    import select
    import socket
    import threading

    from p4cs.controller.packetchan import FrameCodec
    from p4cs.controller.workers import child_main

    codec = FrameCodec(4, (16, 0xFFFF), (0, 0xFFFF), 4, 16)     # like the lab's headers
    ctl_ours, ctl_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fds_ours, fds_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cpu_dp, cpu_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    copy_dp, copy_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    tx_dp, tx_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    thresholds = gc.get_threshold()
    cfg = load_config(CONFIG)
    ctl_ours.sendall(pack(("init", {
        "cfg": cfg, "index": 1, "n": 2, "restarted": False, "snat": {}, "held": [],
        "cookies": SynCookies(b"k" * 32), "servers": [],
        "neighbours": from_config(cfg, time.monotonic()).entries, "rules": {},
        "log_level": 30, "access_log": None})))
    t = threading.Thread(target=child_main, args=(ctl_theirs.fileno(), fds_theirs.fileno()),
                         daemon=True)
    t.start()
    buf = bytearray()

    def from_worker(kind: str, timeout: float = 5.0) -> tuple:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in unpack(buf):
                if m[0] == kind:
                    return m
            if select.select([ctl_ours], [], [], 0.1)[0]:
                buf.extend(ctl_ours.recv(1 << 16))
        raise AssertionError(f"no {kind} message")

    try:
        socket.send_fds(fds_ours, [pickle.dumps(("channel", codec, False))],
                        [cpu_w.fileno(), copy_w.fileno(), tx_w.fileno()])
        for s in (cpu_w, copy_w, tx_w):
            s.close()      # the worker holds its own copies now
        header = (1 << 16 | REASON_VIP_MISS).to_bytes(4, "big")
        cpu_dp.sendall(b"\x00")                    # shorter than the header: counted, dropped
        cpu_dp.sendall(header + ack(P.SYN))
        tx_dp.settimeout(5)
        sent = 0
        while True:         # (the worker may probe a server's window scale first)
            out = tx_dp.recv(65536)
            sent += 1
            seg = P.parse(out[4:])
            if seg.dip == CLIENT:
                break
        port = from_config(cfg, time.monotonic()).route(CLIENT)[0]    # the client's port
        assert int.from_bytes(out[:4], "big") >> 16 == port
        assert seg.flags & (P.SYN | P.ACK) == P.SYN | P.ACK and seg.dport == 40001
        # the status answer counts what the worker read and wrote itself
        ctl_ours.sendall(pack(("ask", 1, "status")))
        answer = from_worker("answer")[2]
        assert answer["channel"]["packet_in"] == 1
        assert answer["channel"]["packet_in_malformed"] == 1
        assert answer["channel"]["packet_out"] >= sent
        # SYNs held: this one goes to the controller, not to the engine
        fds_ours.send(pickle.dumps(("hold", True)))
        time.sleep(0.2)
        cpu_dp.sendall(header + ack(P.SYN, sport=40002))
        back = from_worker("back")[1]
        assert [(p[1], p[2]) for p in back] == [(1, REASON_VIP_MISS)]
        assert P.parse(back[0][0]).sport == 40002
        # the channel ends: the worker closes its sockets (the data plane's ends see EOF)
        fds_ours.send(pickle.dumps(("channel_end",)))
        cpu_dp.settimeout(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                cpu_dp.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the worker kept its CPU-port socket")
    finally:
        ctl_ours.close()
        t.join(10)
        for s in (fds_ours, cpu_dp, copy_dp, tx_dp):
            s.close()
        gc.set_threshold(*thresholds)
    assert not t.is_alive()
