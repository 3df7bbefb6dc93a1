"""wlc: weighted least connections, the LVS default."""

from __future__ import annotations

from .base import Server, register
from .lc import LeastConnections


@register
class WeightedLeastConnections(LeastConnections):
    """Minimise active/weight, compared as ``a.active * b.weight < b.active * a.weight``;
    ties go round-robin."""

    name = "wlc"

    def better(self, s: Server, best: Server) -> bool:
        return s.active * best.eff < best.active * s.eff
