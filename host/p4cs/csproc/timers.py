"""The engine's connection timers: entries ``(when, conn id, generation)`` taken out in
deadline order.

A binary heap of every entry cost ~2 µs a pop at 45,000 entries (3,000 connections a second
with a 10 s request timeout pending each): the tuples' comparisons miss the cache at every
level. Here the entries wait in slots of ``GRAIN`` seconds (a dict of lists: O(1) to add);
only the slot numbers, small ints, are in a heap (one per pending slot: a few thousand at
most), and the entries of the slots that are due come out together, sorted in (deadline,
conn id) order; those of a slot only partly due wait, sorted, for the next call. Nothing
comes out before its deadline, whatever the slot; ``next_deadline`` is exact.
"""

from __future__ import annotations

import bisect
import heapq
import math

#: Seconds a slot spans.
GRAIN = 0.01

Entry = tuple  # (when: float, conn id: int, generation: int)


def wake_time(deadline: float) -> float:
    """When a loop that runs the timers (``Engine.tick``) wakes for ``deadline``: rounded up
    to ``GRAIN``, so that the timers due within one grain run together, at most that late.
    Woken at every deadline, the controller's loop ran ~650 times a second at 2,900
    connections/s, a wake-up, a tick and a sleep each."""
    if deadline == math.inf:                     # (a health monitor with nothing due)
        return deadline
    w = math.ceil(deadline / GRAIN) * GRAIN
    return w if w >= deadline else w + GRAIN     # (the division's rounding)


class Timers:
    __slots__ = ("_slots", "_first", "_heap", "_due", "_n")

    def __init__(self):
        self._slots: dict[int, list[Entry]] = {}   # slot -> its entries, in arming order
        self._first: dict[int, float] = {}         # slot -> its earliest deadline
        self._heap: list[int] = []                 # the slots that hold entries
        self._due: list[Entry] = []                # entries of drained slots not due (sorted)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def push(self, when: float, cid: int, gen: int) -> None:
        self._n += 1
        s = int(when // GRAIN)
        lst = self._slots.get(s)
        if lst is None:
            self._slots[s] = [(when, cid, gen)]
            self._first[s] = when
            heapq.heappush(self._heap, s)
            return
        lst.append((when, cid, gen))
        if when < self._first[s]:
            self._first[s] = when

    def pop_all_due(self, now: float) -> list[Entry]:
        """Every entry whose deadline is at or before ``now``, removed, in (deadline, conn id,
        generation) order. The due slots' entries are sorted together as one list (a tick at
        3,000 connections a second takes a slot or two, ~100 entries); those of the last
        slot that are not due yet wait, sorted, for the next call."""
        h, first, slots = self._heap, self._first, self._slots
        batch: list[Entry] = []
        while h and first[h[0]] <= now:
            s = heapq.heappop(h)
            del first[s]
            batch += slots.pop(s)
        due = self._due
        if not batch:
            if not due or due[0][0] > now:
                return []
        if due:
            batch += due
        batch.sort()
        i = bisect.bisect_right(batch, (now, math.inf))
        self._due = batch[i:]
        self._n -= i
        return batch[:i]

    def next_deadline(self) -> float | None:
        """The earliest deadline of an entry (None: no entry)."""
        t = self._due[0][0] if self._due else None
        if self._heap:
            f = self._first[self._heap[0]]
            if t is None or f < t:
                t = f
        return t
