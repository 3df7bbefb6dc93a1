"""Server groups and their schedulers (ipvsadm ``-s``), one module per scheduler,
registered by name: rr, wrr, lc, wlc, sed, nq, sh, dh, maglev (the list and what each
does: ``p4cs.capabilities.SCHEDULERS``).  A server with weight 0 or marked down is never
picked (weight 0 drains: established connections stay, no new ones, as in LVS); nor is one
over its upper connection threshold.  Weight and health changes go through the group
(``set_weight``, ``set_up``), which tells the schedulers and starts the slow start."""

from __future__ import annotations

from p4cs import capabilities

from . import dh, lc, maglev, nq, rr, sed, sh, wlc, wrr  # noqa: F401 - they register
from .base import REGISTRY, Scheduler, Server


def make_scheduler(name: str, servers: list[Server]) -> Scheduler:
    try:
        return REGISTRY[name.lower()](servers)
    except KeyError:
        raise ValueError(f"unknown scheduler {name!r} "
                         f"(known: {', '.join(capabilities.SCHEDULERS)})") from None


class ServerGroup:
    """``algorithm`` is the group's scheduler; ``slow_start`` (seconds, 0: none) the time
    over which the weight of a server that comes back (up again, or weight from 0) ramps
    from 1% to all of it; ``health`` the group's ``health.HealthCheck``, or None."""

    def __init__(self, name: str, servers: list[Server], algorithm: str = "rr",
                 slow_start: float = 0.0, health=None):
        if not servers:
            raise ValueError(f"group {name}: no servers")
        if slow_start < 0:
            raise ValueError(f"group {name}: negative slow start")
        self.name = name
        self.servers = servers
        self.algorithm = algorithm.lower()
        self.slow_start = slow_start
        self.health = health
        self.scheduler = make_scheduler(self.algorithm, servers)
        self._alt: dict[str, Scheduler] = {}
        self._ramping: dict[Server, float] = {}    # server -> when it came back

    def pick(self, scheduler: str | None = None, exclude: frozenset = frozenset(),
             src: int = 0, dst: int = 0, now: float | None = None) -> Server | None:
        """Pick a server; ``scheduler`` (from a loadBalance rule) overrides the group's."""
        if self._ramping and now is not None:
            self._ramp(now)
        if scheduler is None or scheduler == self.algorithm:
            sch = self.scheduler
        else:
            sch = self._alt.get(scheduler)
            if sch is None:
                sch = self._alt[scheduler] = make_scheduler(scheduler, self.servers)
        return sch.pick(exclude, src, dst)

    def _ramp(self, now: float) -> None:
        for s, since in list(self._ramping.items()):
            f = (now - since) / self.slow_start
            if f >= 1.0:
                s.ramp = 1.0
                del self._ramping[s]
            else:
                s.ramp = max(0.01, f)

    def _changed(self) -> None:
        self.scheduler.changed()
        for sch in self._alt.values():
            sch.changed()

    def set_weight(self, server: Server, weight: int, now: float) -> None:
        """New weight (0 drains); a server coming back from 0 starts its slow start."""
        if weight < 0:
            raise ValueError(f"server {server.name}: negative weight")
        back = server.weight == 0 and weight > 0 and server.up
        server.weight = weight
        if back:
            self._start(server, now)
        self._changed()

    def set_up(self, server: Server, up: bool, now: float) -> None:
        """Health change: a server going up starts its slow start."""
        if server.up == up:
            return
        server.up = up
        if up and server.weight > 0:
            self._start(server, now)
        else:
            self._ramping.pop(server, None)
            server.ramp = 1.0
        self._changed()

    def update(self, new: "ServerGroup", now: float) -> None:
        """Take the scheduler, slow start, health check and servers of ``new`` (a live
        edit): a server of the same name stays the same object (its connections and
        counters carry on) with the new weight and thresholds."""
        old = {s.name: s for s in self.servers}
        servers, weights = [], []
        for s in new.servers:
            o = old.get(s.name)
            if o is None:
                servers.append(s)
                continue
            o.upper, o.lower = s.upper, s.lower
            servers.append(o)
            weights.append((o, s.weight))
        self.servers = servers
        self.algorithm, self.slow_start, self.health = new.algorithm, new.slow_start, new.health
        self.scheduler = make_scheduler(self.algorithm, servers)
        self._alt = {}
        self._ramping = {s: t for s, t in self._ramping.items() if s in servers}
        if self.slow_start <= 0:        # slow start turned off: the ramps end now
            for s in self._ramping:
                s.ramp = 1.0
            self._ramping = {}
        for s, w in weights:
            if s.weight != w:
                self.set_weight(s, w, now)

    def _start(self, server: Server, now: float) -> None:
        if self.slow_start > 0:
            self._ramping[server] = now
            server.ramp = 0.01
