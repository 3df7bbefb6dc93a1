"""The engine's connection timers (Engine._arm / tick): a timer runs at the first tick at or
after its deadline, never before, the timers of one tick run in deadline order, a re-armed or
disarmed timer does not run, and next_deadline is never after the earliest one."""

import random
from types import SimpleNamespace

from cs_harness import Harness


def engine_with(n: int):
    eng = Harness().eng
    ran: list[tuple[int, float]] = []

    def timeout(c, now):
        ran.append((c.id, now))
        return []

    eng._timeout = timeout
    conns = []
    for i in range(n):
        c = SimpleNamespace(id=10_000 + i, tgen=0, deadline=None, queued=None)
        eng.by_id[c.id] = c
        conns.append(c)
    return eng, conns, ran


def test_a_timer_runs_at_its_deadline_not_before():
    eng, (c,), ran = engine_with(1)
    eng._arm(c, 1000.123)
    assert eng.next_deadline() == 1000.123
    eng.tick(1000.1229)
    assert ran == [] and c.deadline == 1000.123
    eng.tick(1000.123)
    assert ran == [(c.id, 1000.123)] and c.deadline is None
    eng.tick(2000.0)
    assert len(ran) == 1


def test_timers_run_in_deadline_order_and_rearming_wins():
    rnd = random.Random(3)
    eng, conns, ran = engine_with(300)
    want = {}
    for c in conns:
        for _ in range(rnd.randrange(1, 4)):         # re-armed: only the last one counts
            when = 1000.0 + rnd.random() * 3
            eng._arm(c, when)
        want[c.id] = when
    for c in conns[:40]:
        eng._disarm(c)
        del want[c.id]
    assert eng.next_deadline() <= min(want.values())
    t = 1000.0
    while t < 1004.0:
        t += rnd.random() * 0.2
        eng.tick(t)
        assert all(want[cid] <= now for cid, now in ran)
        # everything due by now has run, nothing else
        assert {cid for cid, _ in ran} == {cid for cid, w in want.items() if w <= t}
    assert [cid for cid, _ in ran] == sorted(want, key=lambda cid: (want[cid], cid))


def test_a_timer_armed_while_timers_run_at_or_before_now_runs_in_the_same_tick():
    eng, (a, b), ran = engine_with(2)

    def timeout(c, now):
        ran.append((c.id, now))
        if c is a:
            eng._arm(b, now)            # due at once
        return []

    eng._timeout = timeout
    eng._arm(a, 1000.5)
    eng.tick(1000.5)
    assert ran == [(a.id, 1000.5), (b.id, 1000.5)]
    assert eng.next_deadline() is None or eng.next_deadline() > 1000.5


def test_a_later_rearm_waits_behind_the_queued_entry():
    """A connection's typical arms (request timeout, server SYN, half-close, tombstone): a
    later deadline adds no heap entry, it goes in when the queued one comes out, and runs at
    its own time, once."""
    eng, (c,), ran = engine_with(1)
    eng._arm(c, 1010.0)             # request timeout
    eng._arm(c, 1001.0)             # the server's SYN: earlier, a second entry
    eng._disarm(c)                  # spliced
    eng._arm(c, 1030.0)             # half-closed: later, no entry
    eng._arm(c, 1005.0)             # closed: tombstone, later than the queued one
    assert len(eng._timers) == 2
    assert eng.next_deadline() <= 1005.0
    eng.tick(1001.0)
    assert ran == [] and c.deadline == 1005.0
    eng.tick(1004.999)
    assert ran == []
    eng.tick(1005.0)
    assert ran == [(c.id, 1005.0)]
    eng.tick(1100.0)                # the request timeout's entry comes out: nothing runs
    assert ran == [(c.id, 1005.0)] and not eng._timers


def test_a_rearm_due_within_the_same_tick_keeps_the_order():
    """An entry that comes out for a connection armed later, still before now, runs in
    deadline order with the others of that tick."""
    eng, (a, b), ran = engine_with(2)
    eng._arm(a, 1000.0)
    eng._arm(a, 1000.4)             # later: waits behind the entry at 1000.0
    eng._arm(b, 1000.2)
    eng.tick(1001.0)
    assert ran == [(b.id, 1001.0), (a.id, 1001.0)]
