"""lc: least connections, weights ignored (but for weight 0, which drains)."""

from __future__ import annotations

from .base import Scheduler, Server, register


@register
class LeastConnections(Scheduler):
    """Fewest active connections; ties go round-robin so that equal servers share new
    connections."""

    name = "lc"

    def __init__(self, servers: list[Server]):
        super().__init__(servers)
        self._i = 0

    def better(self, s: Server, best: Server) -> bool:
        return s.active < best.active

    def pick(self, exclude=frozenset(), src=0, dst=0):
        n = len(self.servers)
        best = None
        start = self._i
        for k in range(n):
            s = self.servers[(start + k) % n]
            if not s.usable or s in exclude:
                continue
            if best is None or self.better(s, best):
                best = s
        self._i = (start + 1) % n if n else 0
        return best
