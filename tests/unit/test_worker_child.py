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


def child(restarted: bool = False, cookies: SynCookies | None = None) -> _Child:
    cfg = load_config(CONFIG)
    return _Child({"cfg": cfg, "index": 1, "n": 2, "restarted": restarted,
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


def test_effects_travel_as_tuples():
    from p4cs.controller.workers import decode, encode
    key = fx.FlowKey(CLIENT, VIP, 6, 40001, 80)
    spec = fx.FlowSpec(key, 2, b"\x01" * 6, b"\x02" * 6, 5, 6, 7, 8, 9, 10, 300.0, 4, "c2s")
    effects = [fx.PacketOut(1, b"abc"),
               fx.InstallFlows([spec], [fx.PacketOut(2, b"req")]),
               fx.RemoveFlows([key], 2.0, (key,), (fx.PacketOut(1, b"syn-ack"),)),
               fx.Log("info", "not sent", {})]

    class Engine:       # meta_of reads the connection by id: none here
        by_id: dict = {}

    got, metas = decode(encode(effects, Engine()))
    assert got == effects[:3] and metas == [[None]]
