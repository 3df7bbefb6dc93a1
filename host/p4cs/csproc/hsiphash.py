"""HalfSipHash-2-4 with a 32-bit output (Aumasson; the reference implementation's
``halfsiphash`` with ``outlen`` 4, read as a little-endian integer): the keyed PRF of the
SYN cookies (:mod:`p4cs.csproc.cookies`), chosen because a switch can compute it (32-bit
additions, rotations and XORs: SmartCookie, USENIX Security 2024, runs it on Tofino; the P4
program of p4cs runs it on both targets).

``halfsiphash`` is the C version (``_hsiphash.c``, built with the package) when it is
available, else ``halfsiphash_py``, the same function in Python (about 100 times slower).
"""

from __future__ import annotations

import struct

_M = 0xFFFFFFFF
_W = struct.Struct("<I")


def halfsiphash_py(key: bytes, data: bytes) -> int:
    if len(key) != 8:
        raise ValueError("halfsiphash key must be 8 bytes")
    k0, k1 = struct.unpack("<II", key)
    v0, v1, v2, v3 = k0, k1, 0x6C796765 ^ k0, 0x74656462 ^ k1
    n = len(data)
    full = n - (n & 3)
    words = [_W.unpack_from(data, i)[0] for i in range(0, full, 4)]
    b = (n & 0xFF) << 24
    for i, c in enumerate(data[full:]):
        b |= c << (8 * i)
    words.append(b)
    rounds = 2
    for m in words + [None]:
        if m is None:            # finalization
            v2 ^= 0xFF
            rounds = 4
        else:
            v3 ^= m
        for _ in range(rounds):
            v0 = (v0 + v1) & _M
            v1 = ((v1 << 5) | (v1 >> 27)) & _M ^ v0
            v0 = ((v0 << 16) | (v0 >> 16)) & _M
            v2 = (v2 + v3) & _M
            v3 = ((v3 << 8) | (v3 >> 24)) & _M ^ v2
            v0 = (v0 + v3) & _M
            v3 = ((v3 << 7) | (v3 >> 25)) & _M ^ v0
            v2 = (v2 + v1) & _M
            v1 = ((v1 << 13) | (v1 >> 19)) & _M ^ v2
            v2 = ((v2 << 16) | (v2 >> 16)) & _M
        if m is not None:
            v0 ^= m
    return v1 ^ v3


try:
    from ._hsiphash import halfsiphash
except ImportError:  # the package was installed without its C part
    halfsiphash = halfsiphash_py
