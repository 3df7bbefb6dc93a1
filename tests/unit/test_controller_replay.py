"""The controller's whole connection lifecycle in-process (bench/controller_replay.py): the
requests, the servers' SYN-ACKs, the install Write, the FIN/RST copies, the timers and the
expiry notification, as the DPDK target brings them. Every connection is bound and closed, and
nothing stays behind: no connection in the engine, no flow id taken, no key in flow_of, no
flow in the traffic book; the expiry's counts reach the totals."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import controller_replay  # noqa: E402


def test_replay_binds_and_frees_every_connection():
    out = asyncio.run(controller_replay.replay(300, 22))
    assert set(out) == {*controller_replay.PHASES, "total"}
    assert all(v > 0 for v in out.values())


def test_replay_leaves_the_write_call_in_place():
    before = controller_replay.appmod.write_raw
    asyncio.run(controller_replay.replay(30, 22))
    assert controller_replay.appmod.write_raw is before


def test_replay_with_reused_ports_reincarnates_the_tombstones():
    """Clients that reuse their ports (wrk does) meet their previous connection's tombstone:
    a new incarnation each time, and still nothing left behind."""
    out = asyncio.run(controller_replay.replay(300, 22, ports=44))
    assert out["total"] > 0


def test_replay_on_a_simulated_clock_keeps_and_then_frees_the_tombstones():
    """At 200 connections a second of a simulated clock the tombstones of the last 5 s stay
    in the engine (the replay's checks: freed when due, nothing behind at the end), and the
    controller's own clock is the real one again afterwards."""
    out = asyncio.run(controller_replay.replay(2000, 22, rate=200))
    assert out["timers"] > 0
    assert controller_replay.appmod.time is controller_replay.time


def test_channel_cost_reads_and_sends_every_frame():
    out = controller_replay.channel_cost(300)
    assert len(out) == 6 and all(v > 0 for v in out.values())
