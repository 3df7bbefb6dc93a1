"""Admission of half-bound connections (RECV, CONNECTING, CLOSING: state, no flows).

Two limits keep one client address from taking the switch's state from everyone else:

* ``max_half_bound_per_client``: a client address holding that many gets an RST for its next
  connection (``limit_half_bound_client``);
* ``max_half_bound`` (global): when it is reached, the client address holding the most
  half-bound connections gives up its least recently active idle one (RECV: no complete
  request yet) to a client that holds at least two fewer (so that the exchange evens the
  shares out): RST to it, counted in ``evicted_idle``.  Otherwise the newcomer gets the RST
  (``limit_half_bound``).

So one address that opens idle connections up to the cap cannot lock other clients out: each
of their connections takes the place of one of its idle ones.  All operations are O(1).
The engine calls it; it emits no effects.  See docs/csproc.md section 7."""

from __future__ import annotations

from typing import Any


class Admission:
    def __init__(self, cap: int, per_client: int, stats: Any):
        self.cap = cap
        self.per_client = per_client
        self.stats = stats
        self._count: dict[int, int] = {}             # client address -> half-bound connections
        self._holders: dict[int, set[int]] = {}      # count -> addresses holding that many
        self._top = 0                                # the largest count
        self._idle: dict[int, dict[int, Any]] = {}   # address -> {conn id: conn}, LRU first

    # ------------------------------------------------------------------ admission
    def admit(self, ip: int) -> tuple[bool, Any]:
        """(admitted, connection to evict first) for a new connection from ``ip``."""
        st = self.stats
        mine = self._count.get(ip, 0)
        if mine >= self.per_client:
            st.limit_half_bound_client += 1
            return False, None
        if st.half_bound < self.cap:
            return True, None
        if self._top > mine + 1:
            for top in self._holders[self._top]:
                idle = self._idle.get(top)
                if idle:
                    st.evicted_idle += 1
                    return True, next(iter(idle.values()))
        st.limit_half_bound += 1
        return False, None

    # ------------------------------------------------------------------ bookkeeping
    def opened(self, c: Any) -> None:
        """``c`` became half-bound (RECV, idle)."""
        self.stats.half_bound += 1
        ip = c.cl.ip
        self._move(ip, +1)
        idle = self._idle.get(ip)
        if idle is None:
            self._idle[ip] = {c.id: c}
        else:
            idle[c.id] = c

    def active(self, c: Any) -> None:
        """``c`` sent request bytes: it is the most recently active idle connection."""
        idle = self._idle.get(c.cl.ip)
        if idle is not None and idle.pop(c.id, None) is not None:
            idle[c.id] = c

    def busy(self, c: Any) -> None:
        """``c`` has its request (classified): it is no longer idle."""
        idle = self._idle.get(c.cl.ip)
        if idle is not None:
            idle.pop(c.id, None)
            if not idle:
                del self._idle[c.cl.ip]

    def closed(self, c: Any) -> None:
        """``c`` is no longer half-bound (spliced, or freed)."""
        self.busy(c)
        self.stats.half_bound -= 1
        self._move(c.cl.ip, -1)

    def _move(self, ip: int, d: int) -> None:
        holders = self._holders
        n = self._count.get(ip, 0)
        if n:
            held = holders[n]
            held.discard(ip)
            if not held:
                del holders[n]
                if self._top == n and d < 0:
                    self._top = n - 1
        n += d
        if n:
            self._count[ip] = n
            held = holders.get(n)
            if held is None:
                holders[n] = {ip}
            else:
                held.add(ip)
            if n > self._top:
                self._top = n
        else:
            del self._count[ip]
