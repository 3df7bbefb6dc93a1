"""Teardown.expired: which expired entries reach the CS processor. An entry that no
connection of this controller holds any more (its removal came first, or it is a previous
controller's) must not end a new connection that took its 4-tuple and has not installed its
own flows yet (the engine matches expiries by 4-tuple)."""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

from finsy import P4Schema
from finsy.proto import p4r

from p4cs.controller.p4rt import FlowEncoder, Splice
from p4cs.controller.teardown import Teardown
from p4cs.csproc import effects as fx
from p4cs.csproc.effects import FlowKey

P4INFO = Path(__file__).resolve().parents[2] / "p4src" / "build" / "dpdk" / "p4cs.p4info.txtpb"
KEY = FlowKey(0x0A000101, 0x0A000064, 6, 40001, 80)


class _Ids:
    def __init__(self, adopted=()):
        self.adopted, self.freed = set(adopted), []

    def is_adopted(self, fid: int) -> bool:
        return fid in self.adopted

    def put(self, fid: int) -> None:
        self.freed.append(fid)


class _Book:
    def __init__(self):
        self.done_ = []

    def done(self, fid, packets, nbytes):
        self.done_.append((fid, packets, nbytes))


class _Packets:
    async def flush_copies(self) -> None:
        return None


class _App:
    def __init__(self, adopted=()):
        self.enc = FlowEncoder(P4Schema(P4INFO))
        self.flow_of: dict = {}
        self.counters = collections.Counter()
        self.flow_ids = _Ids(adopted)
        self.book = _Book()
        self.packets = _Packets()
        self.told: list = []

    async def to_engine(self, key, call, arg, now) -> None:
        self.told.append((call, tuple(key)))


def entry(app: _App, fid: int, packets: int = 5) -> p4r.TableEntry:
    upd = p4r.Update.FromString(app.enc.insert_raw(
        KEY, Splice(2, 0x020000000001, 0x020000000002, 0x0A000101, 0x0A000002, 40001, 8080,
                    1, 2, fid), 3.0))
    te = upd.entity.table_entry
    te.counter_data.packet_count, te.counter_data.byte_count = packets, packets * 100
    return te


def expire(app: _App, entries) -> Teardown:
    t = Teardown(app)
    t.remove = lambda keys, *a, **k: app.told.append(("remove", [tuple(x) for x in keys]))
    asyncio.run(t.expired(None, 0, p4r.IdleTimeoutNotification(table_entry=entries)))
    return t


def test_the_key_connections_own_entry_ends_it():
    app = _App()
    app.flow_of[tuple(KEY)] = 7
    expire(app, [entry(app, 7)])
    assert app.told == [("flow_expired", tuple(KEY))]
    assert app.book.done_ == [(7, 5, 500)] and app.flow_ids.freed == [7]
    assert tuple(KEY) not in app.flow_of


def test_an_entry_left_to_expire_after_a_fin_is_counted_not_told():
    """The engine closed its connection already (both FINs: RemoveFlows with ``ended``), its
    tombstone on a timer of its own: the expiry counts the flow as removed, and the engine
    hears nothing."""
    app = _App()
    app.flow_of[tuple(KEY)] = 7

    async def run():
        t = Teardown(app)
        t.end_expiry = True
        t.flows_ended(fx.RemoveFlows([KEY], 3.0, (KEY,)))
        await t.expired(None, 0, p4r.IdleTimeoutNotification(table_entry=[entry(app, 7)]))
        return t

    t = asyncio.run(run())
    assert app.told == [] and app.counters["flows_removed"] == 1
    assert app.counters["idle_timeouts"] == 0 and 7 not in t.ending
    assert app.book.done_ == [(7, 5, 500)] and app.flow_ids.freed == [7]


def test_an_entry_no_connection_holds_is_not_told_to_the_engine():
    """Its removal (or a takeover of the key) came first: flow_of has no entry for the key,
    and a new connection on the 4-tuple may be about to install its own."""
    app = _App()
    expire(app, [entry(app, 7)])
    assert app.told == [] and app.counters["idle_timeouts"] == 1


def test_a_stale_entry_of_a_key_a_new_connection_holds_is_skipped():
    app = _App()
    app.flow_of[tuple(KEY)] = 9            # the new connection's entry
    expire(app, [entry(app, 7)])
    assert app.told == [] and app.flow_of[tuple(KEY)] == 9


def test_a_previous_controllers_entry_is_harvested_and_removed_not_told():
    app = _App(adopted={7})
    expire(app, [entry(app, 7)])
    assert app.told == [("remove", [tuple(KEY)])]
    assert app.book.done_ == [(7, 5, 500)] and app.flow_ids.freed == [7]


def test_superseded_flow_ids_are_harvested_together(monkeypatch):
    """Flow ids of closed connections whose keys new connections took, handed over by
    successive install Writes, are read in one Read SUPERSEDED_S after the first, then freed."""
    import p4cs.controller.teardown as td

    monkeypatch.setattr(td, "SUPERSEDED_S", 0.05)
    app = _App()
    reads: list[list[int]] = []

    async def counters(sw, fids):
        reads.append(list(fids))
        return {f: (f, 100 * f) for f in fids}

    app._flow_counters = counters

    async def main():
        t = Teardown(app)
        t.end_expiry = True
        runner = asyncio.ensure_future(t.run(None))
        for fids in ([3], [4, 5], [6]):
            t.superseded(fids)
            await asyncio.sleep(0.01)
        assert reads == [] and app.flow_ids.freed == []     # not before SUPERSEDED_S
        await asyncio.sleep(0.08)
        t.superseded([9])                                    # a later one: the next batch
        await asyncio.sleep(0.02)
        assert reads == [[3, 4, 5, 6]]
        await asyncio.sleep(0.06)
        runner.cancel()
        return t

    asyncio.run(main())
    assert reads == [[3, 4, 5, 6], [9]]
    assert app.flow_ids.freed == [3, 4, 5, 6, 9]
    assert app.book.done_ == [(f, f, 100 * f) for f in (3, 4, 5, 6, 9)]
    assert app.counters["teardown_rpcs"] == 2
