"""wrr: smooth weighted round robin (nginx ngx_http_upstream_get_peer)."""

from __future__ import annotations

from .base import Scheduler, register


@register
class WeightedRoundRobin(Scheduler):
    """Every pick adds each weight to its current weight, takes the largest and subtracts
    the total.  Weights 5,1,1 give a a b a c a a: no bursts, exact shares over every cycle
    of sum(weights) picks."""

    name = "wrr"

    def pick(self, exclude=frozenset(), src=0, dst=0):
        best = None
        total = 0
        for s in self.servers:
            # Server.usable and Server.eff written out: this loop is the hot path
            if not s.up or s.weight <= 0 or s.overloaded or s in exclude:
                continue
            w = s.weight * s.ramp
            s._cw += w
            total += w
            if best is None or s._cw > best._cw:
                best = s
        if best is not None:
            best._cw -= total
        return best
