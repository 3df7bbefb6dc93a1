"""dh: destination hashing (LVS ip_vs_dh): the virtual address chooses the server."""

from __future__ import annotations

from .base import register
from .sh import SourceHash


@register
class DestinationHash(SourceHash):
    name = "dh"

    def key(self, src: int, dst: int) -> int:
        return dst
