"""SYN cookies: the switch's ISN towards the client encodes everything it needs later, so
a half-open connection costs no memory (SYN floods cannot exhaust the CS processor).

Layout (after removing a keyed per-connection offset, as Linux does)::

    isn = H1(k, 4-tuple, client_isn)
          + ( t:5 | mss_idx:3 | ws:4 | H2(k, 4-tuple, client_isn, t, mss_idx, ws):20 )

* ``t`` is a coarse clock, ``int(now) >> SLOT_SHIFT`` (64 s slots) mod 32; a cookie is
  accepted for ``MAX_AGE_SLOTS`` slots after the slot it was issued in (64..128 s).
* ``mss_idx`` indexes ``MSS_TABLE``: the largest entry not above the client's MSS.
* ``ws`` is the window scale the client offered in its SYN (0..14, RFC 7323 caps larger
  values at 14), or 15 when its SYN carried no window-scale option.
* ``H1``/``H2`` are keyed BLAKE2s; 20 bits of H2 means a blind forger is accepted with
  probability 2**-20 per guess (one forged ACK each; a success only buys a half-bound
  connection, bounded by ``max_half_bound`` and the request timeout), and H1 makes the
  ISN look random (no visible clock).  Bit budget: 32 = 5 (t) + 3 (mss) + 4 (ws) + 20.
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
_KEY2 = struct.Struct("!IIHHIBBB")
WS_NONE = 15                 # ``ws`` field value: the SYN had no window-scale option
MAX_WSCALE = 14


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
            mi: int, ws: int) -> int:
        d = hashlib.blake2s(_KEY2.pack(cip, vip, cport, vport, cisn, t, mi, ws),
                            key=self._k2, digest_size=3).digest()
        return int.from_bytes(d, "big") >> 4

    def make(self, cip: int, vip: int, cport: int, vport: int, cisn: int, mss: int | None,
             now: float, wscale: int | None = None) -> int:
        """The ISN for a SYN; ``wscale`` is the client's window-scale option (None: the
        SYN had none)."""
        t = (int(now) >> SLOT_SHIFT) & 31
        mi = mss_index(mss)
        ws = WS_NONE if wscale is None else min(wscale, MAX_WSCALE)
        v = ((t << 27) | (mi << 24) | (ws << 20)
             | self._h2(cip, vip, cport, vport, cisn, t, mi, ws))
        return (self._h1(cip, vip, cport, vport, cisn) + v) & 0xFFFFFFFF

    def check_opts(self, cip: int, vip: int, cport: int, vport: int, cisn: int, isn: int,
                   now: float) -> tuple[int, int | None] | None:
        """Return (MSS, client window scale or None) of a valid cookie ``isn``, or None."""
        v = (isn - self._h1(cip, vip, cport, vport, cisn)) & 0xFFFFFFFF
        t = v >> 27
        age = (((int(now) >> SLOT_SHIFT) & 31) - t) & 31
        if age > MAX_AGE_SLOTS:
            return None
        mi = (v >> 24) & 7
        ws = (v >> 20) & 15
        if v & 0xFFFFF != self._h2(cip, vip, cport, vport, cisn, t, mi, ws):
            return None
        return MSS_TABLE[mi], (None if ws == WS_NONE else ws)

    def check(self, cip: int, vip: int, cport: int, vport: int, cisn: int, isn: int,
              now: float) -> int | None:
        """Return the MSS encoded in a valid cookie ``isn``, or None."""
        r = self.check_opts(cip, vip, cport, vport, cisn, isn, now)
        return None if r is None else r[0]
