"""The controller's timer loop sleeps until the engine's earliest deadline: a batch of
packet-ins (or an engine call) wakes it only when it armed an earlier timer. And the engine
builds no log effect the controller would drop ("spliced" without an access log, debug ones
below debug level)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import p4cs.controller.app as appmod
from p4cs.controller.config import load_config
from p4cs.controller.operator import ACCESS, quiet_engine

LCS = Path(__file__).resolve().parents[2] / "examples" / "lcs.yaml"


class _Engine:
    """What the timer loop asks of an engine: tick() and next_deadline()."""

    def __init__(self):
        self.deadline: float | None = None
        self.ticks: list[float] = []

    def tick(self, now: float) -> list:
        self.ticks.append(now)
        if self.deadline is not None and self.deadline <= now:
            self.deadline = None
        return []

    def next_deadline(self) -> float | None:
        return self.deadline


def test_timer_loop_wakes_only_for_an_earlier_deadline(monkeypatch):
    monkeypatch.setattr(appmod, "TIMER_IDLE_S", 0.4)
    app = appmod.ControllerApp(load_config(LCS), Path("unused"))
    eng = app.engine = _Engine()

    async def main():
        loop = asyncio.ensure_future(app._timer_loop())
        await asyncio.sleep(0.02)
        assert len(eng.ticks) == 1                  # asleep for TIMER_IDLE_S
        eng.deadline = time.monotonic() + 10        # a later timer: no wake-up
        for _ in range(20):
            app._timers_changed()
            await asyncio.sleep(0.002)
        assert len(eng.ticks) == 1
        t = time.monotonic()
        eng.deadline = t + 0.05                     # an earlier one: woken, then due
        app._timers_changed()
        await asyncio.sleep(0.01)
        assert len(eng.ticks) == 2                  # woken to sleep until it
        await asyncio.sleep(0.08)
        assert len(eng.ticks) == 3 and eng.ticks[-1] >= t + 0.05
        eng.deadline = None
        await asyncio.sleep(0.5)                    # nothing armed: TIMER_IDLE_S
        assert len(eng.ticks) == 4
        loop.cancel()

    asyncio.run(main())


def test_quiet_engine_follows_the_logs(monkeypatch):
    from p4cs.csproc.engine import Engine

    logger = logging.getLogger("p4cs.controller")
    monkeypatch.setattr(ACCESS, "handlers", [])          # no access log
    monkeypatch.setattr(logger, "level", logging.INFO)
    app = appmod.ControllerApp(load_config(LCS), Path("unused"))
    eng = app.engine
    assert isinstance(eng, Engine)
    assert not eng.log_spliced and not eng.log_debug
    monkeypatch.setattr(ACCESS, "handlers", [logging.NullHandler()])
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    logger.manager._clear_cache()
    quiet_engine(eng)
    assert eng.log_spliced and eng.log_debug
