"""SYN cookies: the switch's ISN towards the client encodes everything it needs later, so
a half-open connection costs no memory (SYN floods cannot exhaust the CS processor).

Layout (after removing a keyed per-connection offset, as Linux does)::

    isn = H1(k, 4-tuple, client_isn) + ( t:5 | mss_idx:3 | H2(k, 4-tuple, client_isn, t, mss_idx):24 )

* ``t`` is a coarse clock, ``int(now) >> SLOT_SHIFT`` (64 s slots) mod 32; a cookie is
  accepted for ``MAX_AGE_SLOTS`` slots after the slot it was issued in (64..128 s).
* ``mss_idx`` indexes ``MSS_TABLE``: the largest entry not above the client's MSS.
* ``H1``/``H2`` are keyed BLAKE2s; 24 bits of H2 means a blind forger is accepted with
  probability 2**-24 per guess, and H1 makes the ISN look random (no visible clock).
* The client's ISN is part of both hashes, so the ACK that completes the handshake must
  carry ``seq == client_isn + 1``: a later segment that overtakes the first one does not
  validate (it is dropped silently, like Linux does, and the client retransmits).

Within one time slot the cookie is a pure function of the SYN, so a retransmitted SYN is
answered with the same ISN.
"""

from __future__ import annotations

import hashlib
import struct

MSS_TABLE = (536, 1200, 1300, 1360, 1400, 1440, 1452, 1460)
SLOT_SHIFT = 6
MAX_AGE_SLOTS = 2

_KEY = struct.Struct("!IIHHI")
_KEY2 = struct.Struct("!IIHHIBB")


def mss_index(mss: int | None) -> int:
    if mss is None:
        return 0  # RFC 9293: a SYN without MSS option means 536
    idx = 0
    for i, m in enumerate(MSS_TABLE):
        if m <= mss:
            idx = i
    return idx


class SynCookies:
    __slots__ = ("_k1", "_k2")

    def __init__(self, secret: bytes):
        if len(secret) < 16:
            raise ValueError("SYN cookie secret must have at least 16 bytes")
        self._k1 = hashlib.blake2s(b"p4cs-cookie-1" + secret).digest()
        self._k2 = hashlib.blake2s(b"p4cs-cookie-2" + secret).digest()

    def _h1(self, cip: int, vip: int, cport: int, vport: int, cisn: int) -> int:
        d = hashlib.blake2s(_KEY.pack(cip, vip, cport, vport, cisn), key=self._k1,
                            digest_size=4).digest()
        return int.from_bytes(d, "big")

    def _h2(self, cip: int, vip: int, cport: int, vport: int, cisn: int, t: int,
            mi: int) -> int:
        d = hashlib.blake2s(_KEY2.pack(cip, vip, cport, vport, cisn, t, mi), key=self._k2,
                            digest_size=3).digest()
        return int.from_bytes(d, "big")

    def make(self, cip: int, vip: int, cport: int, vport: int, cisn: int, mss: int | None,
             now: float) -> int:
        t = (int(now) >> SLOT_SHIFT) & 31
        mi = mss_index(mss)
        v = (t << 27) | (mi << 24) | self._h2(cip, vip, cport, vport, cisn, t, mi)
        return (self._h1(cip, vip, cport, vport, cisn) + v) & 0xFFFFFFFF

    def check(self, cip: int, vip: int, cport: int, vport: int, cisn: int, isn: int,
              now: float) -> int | None:
        """Return the MSS encoded in a valid cookie ``isn``, or None."""
        v = (isn - self._h1(cip, vip, cport, vport, cisn)) & 0xFFFFFFFF
        t = v >> 27
        age = (((int(now) >> SLOT_SHIFT) & 31) - t) & 31
        if age > MAX_AGE_SLOTS:
            return None
        mi = (v >> 24) & 7
        if v & 0xFFFFFF != self._h2(cip, vip, cport, vport, cisn, t, mi):
            return None
        return MSS_TABLE[mi]
