"""A real server as the schedulers see it, and the registry of schedulers by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..packet import ip_int

#: name -> scheduler class; filled by the ``register`` decorator of each module.
REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    REGISTRY[cls.name] = cls
    return cls


@dataclass(eq=False, slots=True)
class Server:
    """``weight`` 0 drains (bound connections stay, no new ones, as in LVS); ``up`` is the
    health state.  ``upper``/``lower`` are the connection thresholds of ipvsadm -x/-y: at
    ``upper`` active connections the server is overloaded and gets no new ones until it is
    back under ``lower`` (0: three quarters of ``upper``).  ``ramp`` is the slow-start
    factor (0, 1] of the weight after the server came back."""

    name: str
    ip: int
    port: int
    weight: int = 1
    up: bool = True
    upper: int = 0
    lower: int = 0
    active: int = 0          # connections bound and not yet torn down
    total: int = 0           # connections ever bound
    overloaded: bool = False
    ramp: float = 1.0
    _cw: float = field(default=0, repr=False)   # smooth-WRR current weight
    # The window scale the server announced in its latest SYN-ACK (None: none), once seen
    scale: int | None = field(default=None, repr=False)
    scale_known: bool = field(default=False, repr=False)

    def __post_init__(self):
        self.ip = ip_int(self.ip)
        if not 0 < self.port < 65536:
            raise ValueError(f"server {self.name}: bad port {self.port}")
        if self.weight < 0:
            raise ValueError(f"server {self.name}: negative weight")
        if self.upper < 0 or self.lower < 0 or (self.upper and self.lower > self.upper):
            raise ValueError(f"server {self.name}: thresholds need 0 <= lower <= upper")

    @property
    def usable(self) -> bool:
        return self.up and self.weight > 0 and not self.overloaded

    @property
    def eff(self) -> float:
        """The weight the weighted schedulers use: ``weight`` during slow start scaled."""
        return self.weight * self.ramp

    def bind(self) -> None:
        """One more connection (ip_vs_bind_dest)."""
        self.active += 1
        self.total += 1
        if self.upper and self.active >= self.upper:
            self.overloaded = True

    def unbind(self) -> None:
        """One connection less (ip_vs_unbind_dest)."""
        self.active -= 1
        if self.overloaded:
            if self.lower:
                self.overloaded = self.active >= self.lower
            else:
                self.overloaded = self.active * 4 >= self.upper * 3


class Scheduler:
    """Picks a usable server of ``servers`` not in ``exclude``; ``src`` and ``dst`` are the
    client's and the virtual service's addresses (the hashing schedulers' keys).
    ``changed()`` is called after a weight or health change."""

    name = ""

    def __init__(self, servers: list[Server]):
        self.servers = servers

    def pick(self, exclude: frozenset = frozenset(), src: int = 0,
             dst: int = 0) -> Server | None:
        raise NotImplementedError

    def changed(self) -> None:
        pass

