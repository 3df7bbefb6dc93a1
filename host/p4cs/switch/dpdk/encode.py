"""Protobuf fields encoded by hand: responses built per entry or per packet (Read, PacketIn)
are concatenations of stored or computed bytes, not protobuf objects; the Write fast path
(`wire.FlowFastPath`) matches requests against precomputed byte headers."""

from __future__ import annotations


def varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(tag: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (tag byte already includes the wire type)."""
    return bytes((tag,)) + varint(len(payload)) + payload
