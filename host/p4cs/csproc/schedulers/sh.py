"""sh: source hashing (LVS ip_vs_sh, with its fallback): a client address maps to the
same server as long as the server set and weights stay the same."""

from __future__ import annotations

from .base import Scheduler, Server, register

TAB_SIZE = 256      # buckets (IP_VS_SH_TAB_SIZE)


def hash32(addr: int, bits: int = 8) -> int:
    """The kernel's hash_32: multiplicative (golden ratio) hashing to ``bits`` bits."""
    return ((addr * 0x61C88647) & 0xFFFFFFFF) >> (32 - bits)


@register
class SourceHash(Scheduler):
    """The buckets are dealt to the servers in turn, ``weight`` buckets at a time (at least
    one); a bucket whose server is unusable or excluded falls back to the next buckets."""

    name = "sh"

    def __init__(self, servers: list[Server]):
        super().__init__(servers)
        self.changed()

    def changed(self) -> None:
        table: list[Server] = []
        while len(table) < TAB_SIZE:
            for s in self.servers:
                table.extend([s] * max(1, s.weight))
        self.table = table[:TAB_SIZE]

    def key(self, src: int, dst: int) -> int:
        return src

    def pick(self, exclude=frozenset(), src=0, dst=0):
        h = hash32(self.key(src, dst))
        for off in range(TAB_SIZE):
            s = self.table[(h + off) % TAB_SIZE]
            if s.usable and s not in exclude:
                return s
        return None
