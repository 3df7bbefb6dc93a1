"""nq: never queue (LVS ip_vs_nq): an idle server if there is one, else as sed."""

from __future__ import annotations

from .base import register
from .sed import ShortestExpectedDelay


@register
class NeverQueue(ShortestExpectedDelay):
    name = "nq"

    def pick(self, exclude=frozenset(), src=0, dst=0):
        n = len(self.servers)
        for k in range(n):
            s = self.servers[(self._i + k) % n]
            if s.usable and s not in exclude and s.active == 0:
                self._i = (self._i + k + 1) % n
                return s
        return super().pick(exclude, src, dst)
