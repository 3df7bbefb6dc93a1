"""rr: round robin, servers in turn (usable ones only)."""

from __future__ import annotations

from .base import Scheduler, Server, register


@register
class RoundRobin(Scheduler):
    name = "rr"

    def __init__(self, servers: list[Server]):
        super().__init__(servers)
        self._i = 0

    def pick(self, exclude=frozenset(), src=0, dst=0):
        n = len(self.servers)
        for _ in range(n):
            s = self.servers[self._i % n]
            self._i = (self._i + 1) % n
            if s.usable and s not in exclude:
                return s
        return None
