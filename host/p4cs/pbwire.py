"""Protobuf wire format by hand, for the messages built per packet or per flow (the
controller's flow updates, the switch's Read and PacketIn responses): concatenations of
bytes instead of protobuf objects."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """Base-128 varint of a non-negative integer."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(tag: int, payload: bytes) -> bytes:
    """One length-delimited field (``tag``: field number << 3 | 2, one byte)."""
    return bytes((tag,)) + varint(len(payload)) + payload
