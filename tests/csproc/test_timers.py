"""csproc.timers.Timers against a sorted list: entries come out in (deadline, id, gen) order,
none before its deadline, and next_deadline is the earliest one held, whatever the slots."""

import random

from p4cs.csproc.timers import GRAIN, Timers


def test_entries_come_out_in_order_and_never_early():
    """pop_all_due against a sorted list, with entries of one id armed again, deadlines
    already past and calls at the same instant: every due entry, in order, none early, and
    the same entries held."""
    for seed, shared, past, steps in ((5, 0.0, 1, [GRAIN / 3, GRAIN, 2.0]),
                                      (11, 0.1, 3, [0.0, GRAIN / 3, GRAIN, 2.0])):
        rnd = random.Random(seed)
        for _ in range(200):
            tm, ref = Timers(), []
            now = 1000.0 + rnd.random()
            cid = 0
            for _ in range(rnd.randrange(1, 300)):
                if rnd.random() < 0.6:
                    # near the clock (same slot, the next ones), far, or already due
                    when = now + rnd.choice([rnd.random() * GRAIN, rnd.random() * 3 * GRAIN,
                                             rnd.random() * 40, -rnd.random() * past * GRAIN,
                                             0.0])
                    cid += 1
                    e = (when, 1 if rnd.random() < shared else cid, rnd.randrange(3))
                    tm.push(*e)
                    ref.append(e)
                else:
                    now += rnd.random() * rnd.choice(steps)
                    got = tm.pop_all_due(now)
                    for e in got:
                        ref.sort()
                        assert e == ref.pop(0) and e[0] <= now
                    assert not [r for r in ref if r[0] <= now]
                assert len(tm) == len(ref)
                assert tm.next_deadline() == (min(ref)[0] if ref else None)
            assert tm.pop_all_due(1e12) == sorted(ref)


def test_a_deadline_on_a_slot_boundary():
    tm = Timers()
    tm.push(1000.12, 1, 0)
    tm.push(1000.1299, 2, 0)
    assert tm.next_deadline() == 1000.12
    assert tm.pop_all_due(1000.1199999) == []
    assert tm.pop_all_due(1000.125) == [(1000.12, 1, 0)]
    assert tm.next_deadline() == 1000.1299
    tm.push(1000.121, 3, 0)          # into a slot already taken out: still in order
    assert tm.pop_all_due(1000.2) == [(1000.121, 3, 0), (1000.1299, 2, 0)]
    assert tm.pop_all_due(1e9) == [] and len(tm) == 0 and tm.next_deadline() is None


def test_wake_time_runs_a_grain_together_never_early():
    """The timer loops wake at ``wake_time(deadline)``: never before the deadline, at most one
    grain after it, and every deadline of one grain wakes them once."""
    import random

    from p4cs.csproc.timers import GRAIN, wake_time
    rng = random.Random(5)
    for _ in range(20000):
        d = rng.uniform(0, 1e6)
        w = wake_time(d)
        assert d <= w < d + GRAIN + 1e-9, (d, w)
    base = 12345.0
    assert len({wake_time(base + GRAIN * k / 10 + 1e-7) for k in range(9)}) == 1
    assert wake_time(float("inf")) == float("inf")      # Engine.next_deadline may say so
