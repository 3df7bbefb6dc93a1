"""maglev: Maglev consistent hashing of the client address (Eisenbud et al., NSDI 2016;
LVS ip_vs_mh).  Every server has a permutation of the ``M`` slots of a lookup table (M a
prime here; the data plane's tables of L4 services have a power of two, and a skip is
kept coprime with M), from ``offset`` and ``skip`` hashes of its address; the servers take turns filling
their next preferred free slot, ``weight`` slots a turn.  When a server goes, only its
slots change owner, plus a few others: about 1/N of the clients move (bench/maglev.py)."""

from __future__ import annotations

from hashlib import blake2b
from math import gcd

from .base import Scheduler, Server, register

M = 4093            # lookup table size, a prime (LVS's default)


def _h(data: bytes, salt: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8, salt=salt).digest(), "big")


def build_table(servers: list[Server], m: int = M) -> list[Server | None]:
    """The lookup table of ``servers`` (those with weight > 0 and up take part)."""
    live = [s for s in servers if s.up and s.weight > 0]
    table: list[Server | None] = [None] * m
    if not live:
        return table
    g = 0
    for s in live:
        g = gcd(g, s.weight)
    turns = [s.weight // g for s in live]
    perm = []
    for s in live:
        key = f"{s.ip}:{s.port}".encode()
        skip = _h(key, b"skip") % (m - 1) + 1
        while gcd(skip, m) != 1:       # never for a prime m
            skip = skip % (m - 1) + 1
        perm.append((_h(key, b"offset") % m, skip))
    nxt = [0] * len(live)
    filled = 0
    while True:
        for i, s in enumerate(live):
            off, skip = perm[i]
            for _ in range(turns[i]):
                c = (off + nxt[i] * skip) % m
                while table[c] is not None:
                    nxt[i] += 1
                    c = (off + nxt[i] * skip) % m
                table[c] = s
                nxt[i] += 1
                filled += 1
                if filled == m:
                    return table


@register
class Maglev(Scheduler):
    name = "maglev"

    def __init__(self, servers: list[Server], m: int = M):
        super().__init__(servers)
        self.m = m
        self.changed()

    def changed(self) -> None:
        self.table = build_table(self.servers, self.m)

    def lookup(self, src: int) -> int:
        """The table slot of client address ``src``."""
        return _h(src.to_bytes(4, "big"), b"client") % self.m

    def pick(self, exclude=frozenset(), src=0, dst=0):
        i = self.lookup(src)
        for off in range(self.m):     # fallback: the next slots, as LVS's mh-fallback
            s = self.table[(i + off) % self.m]
            if s is not None and s.usable and s not in exclude:
                return s
        return None
