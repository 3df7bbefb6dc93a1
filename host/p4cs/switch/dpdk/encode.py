"""Protobuf fields encoded by hand: responses built per entry or per packet (Read, PacketIn)
are concatenations of stored or computed bytes, not protobuf objects; the Write fast path
(`wire.FlowFastPath`) matches requests against precomputed byte headers."""

from __future__ import annotations


from p4cs.pbwire import ld, varint

__all__ = ["ld", "varint"]
