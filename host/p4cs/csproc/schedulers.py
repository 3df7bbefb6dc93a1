"""Server groups and schedulers (ipvsadm ``-s``): rr, wrr (nginx's smooth weighted
round-robin), lc and wlc.  A server with weight 0 or marked down is never picked (weight 0
drains: established connections stay, no new ones, as in LVS)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .packet import ip_int


@dataclass(eq=False, slots=True)
class Server:
    name: str
    ip: int
    port: int
    weight: int = 1
    up: bool = True
    active: int = 0          # connections bound and not yet torn down
    total: int = 0           # connections ever bound
    _cw: int = field(default=0, repr=False)   # smooth-WRR current weight

    def __post_init__(self):
        self.ip = ip_int(self.ip)
        if not 0 < self.port < 65536:
            raise ValueError(f"server {self.name}: bad port {self.port}")
        if self.weight < 0:
            raise ValueError(f"server {self.name}: negative weight")

    @property
    def usable(self) -> bool:
        return self.up and self.weight > 0


class RoundRobin:
    name = "rr"

    def __init__(self, servers: list[Server]):
        self.servers = servers
        self._i = 0

    def pick(self, exclude: frozenset = frozenset()) -> Server | None:
        n = len(self.servers)
        for _ in range(n):
            s = self.servers[self._i % n]
            self._i = (self._i + 1) % n
            if s.usable and s not in exclude:
                return s
        return None


class WeightedRoundRobin:
    """Smooth WRR (nginx ngx_http_upstream_get_peer): every pick adds each weight to its
    current weight, takes the largest and subtracts the total.  Weights 5,1,1 give
    a a b a c a a — no bursts, exact shares over every cycle of sum(weights) picks."""

    name = "wrr"

    def __init__(self, servers: list[Server]):
        self.servers = servers

    def pick(self, exclude: frozenset = frozenset()) -> Server | None:
        best = None
        total = 0
        for s in self.servers:
            if not s.usable or s in exclude:
                continue
            s._cw += s.weight
            total += s.weight
            if best is None or s._cw > best._cw:
                best = s
        if best is not None:
            best._cw -= total
        return best


class LeastConnections:
    """Weighted least-connections (wlc): minimise active/weight, compared as
    ``a.active * b.weight < b.active * a.weight``; ties go round-robin so that equal
    servers share new connections.  With all weights equal this is plain lc."""

    name = "wlc"

    def __init__(self, servers: list[Server]):
        self.servers = servers
        self._i = 0

    def pick(self, exclude: frozenset = frozenset()) -> Server | None:
        n = len(self.servers)
        best = None
        start = self._i
        for k in range(n):
            s = self.servers[(start + k) % n]
            if not s.usable or s in exclude:
                continue
            if best is None or s.active * best.weight < best.active * s.weight:
                best = s
        self._i = (start + 1) % n if n else 0
        return best


SCHEDULERS = {"rr": RoundRobin, "wrr": WeightedRoundRobin, "lc": LeastConnections,
              "wlc": LeastConnections, "roundrobin": RoundRobin,
              "weightedroundrobin": WeightedRoundRobin, "leastconn": LeastConnections}


def make_scheduler(algorithm: str, servers: list[Server]):
    try:
        return SCHEDULERS[algorithm.lower()](servers)
    except KeyError:
        raise ValueError(f"unknown scheduler {algorithm!r} "
                         f"(known: {', '.join(sorted(SCHEDULERS))})") from None


class ServerGroup:
    def __init__(self, name: str, servers: list[Server], algorithm: str = "rr"):
        if not servers:
            raise ValueError(f"group {name}: no servers")
        self.name = name
        self.servers = servers
        self.algorithm = algorithm
        self.scheduler = make_scheduler(algorithm, servers)
        self._alt: dict[str, object] = {}

    def pick(self, algorithm: str | None = None,
             exclude: frozenset = frozenset()) -> Server | None:
        """Pick a server; ``algorithm`` (from a loadBalance rule) overrides the group's."""
        if algorithm is None or algorithm.lower() == self.algorithm.lower():
            return self.scheduler.pick(exclude)
        sch = self._alt.get(algorithm)
        if sch is None:
            sch = self._alt[algorithm] = make_scheduler(algorithm, self.servers)
        return sch.pick(exclude)
