"""Hits per rule: how many requests each rule decided, and when it last did.

The engine counts every decision under (service, rule); ``rule`` is None for a request
that no rule matched (the service's default group took it)."""

from __future__ import annotations


class RuleHits:
    __slots__ = ("_hits",)

    def __init__(self):
        self._hits: dict[tuple[str, str | None], list] = {}   # -> [hits, last hit (monotonic)]

    def hit(self, service: str, rule: str | None, now: float) -> None:
        e = self._hits.get((service, rule))
        if e is None:
            self._hits[(service, rule)] = [1, now]
        else:
            e[0] += 1
            e[1] = now

    def listing(self, now: float) -> list[dict]:
        """One entry per (service, rule) that decided at least once, sorted by service then
        rule (the no-rule entry first); ``last_hit_ago_s``: seconds since its last hit."""
        return [{"service": svc, "rule": rule, "hits": n, "last_hit_ago_s": round(now - last, 3)}
                for (svc, rule), (n, last) in sorted(self._hits.items(),
                                                     key=lambda kv: (kv[0][0], kv[0][1] or ""))]
