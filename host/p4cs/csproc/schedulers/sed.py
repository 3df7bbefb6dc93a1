"""sed: shortest expected delay, (active + 1) / weight (LVS ip_vs_sed)."""

from __future__ import annotations

from .base import Server, register
from .lc import LeastConnections


@register
class ShortestExpectedDelay(LeastConnections):
    """The delay a new connection expects on a server is (active + 1) / weight: an idle
    heavy server wins over an idle light one, unlike wlc."""

    name = "sed"

    def better(self, s: Server, best: Server) -> bool:
        return (s.active + 1) * best.eff < (best.active + 1) * s.eff
