"""SYN cookies: the switch's ISN towards the client encodes everything it needs later, so
a half-open connection costs no memory (SYN floods cannot exhaust the CS processor).

Layout (after removing a keyed per-connection offset, as Linux does)::

    isn = H1(4-tuple, client_isn)
          + ( t:5 | mss_idx:3 | ws:4 | H2(4-tuple, client_isn, t, mss_idx, ws):20 )

* ``t`` is a coarse clock, ``int(now) >> SLOT_SHIFT`` (64 s slots) mod 32; a cookie is
  accepted for ``MAX_AGE_SLOTS`` slots after the slot it was issued in (64..128 s).
* ``mss_idx`` indexes ``MSS_TABLE``: the largest entry not above the client's MSS.
* ``ws`` is the window scale the client offered in its SYN (0..14, RFC 7323 caps larger
  values at 14), or 15 when its SYN carried no window-scale option.
* ``H1``/``H2`` are HalfSipHash-2-4 (32-bit output) under two 64-bit keys derived from the
  secret; the data plane computes the same function (p4src/include/syn_cookie.p4), so a
  cookie it issues validates here.  20 bits of H2 means a blind forger is accepted with
  probability 2**-20 per guess (one forged ACK each; a success only buys a half-bound
  connection, bounded by ``max_half_bound`` and the request timeout), and H1 makes the
  ISN look random (no visible clock).  Bit budget: 32 = 5 (t) + 3 (mss) + 4 (ws) + 20.
* Messages, as the 32-bit little-endian words HalfSipHash reads: H1 hashes the 16 bytes
  ``cip, vip, cport << 16 | vport, client_isn``; H2 the same 16 bytes followed by the
  three bytes ``t, mss_idx, ws``.
* The client's ISN is part of both hashes, so the ACK that completes the handshake must
  carry ``seq == client_isn + 1``: a later segment that overtakes the first one does not
  validate (it is dropped silently, like Linux does, and the client retransmits).

Within one time slot the cookie is a pure function of the SYN, so a retransmitted SYN is
answered with the same ISN.
"""

from __future__ import annotations

import hashlib
import struct

from .hsiphash import halfsiphash

#: The MSS values a cookie can carry: the common Internet ones, and 8960 for jumbo frames
#: (MTU 9000), so that a client on a jumbo link keeps its segment size through the switch.
MSS_TABLE = (536, 1200, 1300, 1400, 1440, 1452, 1460, 8960)
SLOT_SHIFT = 6
MAX_AGE_SLOTS = 2

_MSG = struct.Struct("<IIII")
_KEY = struct.Struct("<II")
WS_NONE = 15                 # ``ws`` field value: the SYN had no window-scale option
MAX_WSCALE = 14
_M32 = 0xFFFFFFFF


def mss_index(mss: int | None) -> int:
    if mss is None:
        return 0  # RFC 9293: a SYN without MSS option means 536
    idx = 0
    for i, m in enumerate(MSS_TABLE):
        if m <= mss:
            idx = i
    return idx


def slot(now: float) -> int:
    """The coarse clock ``t`` of a cookie issued at ``now``."""
    return (int(now) >> SLOT_SHIFT) & 31


def _derive(secret: bytes) -> tuple[bytes, bytes]:
    if len(secret) < 16:
        raise ValueError("SYN cookie secret must have at least 16 bytes")
    return (hashlib.blake2s(b"p4cs-cookie-1" + secret, digest_size=8).digest(),
            hashlib.blake2s(b"p4cs-cookie-2" + secret, digest_size=8).digest())


def _h1(k1: bytes, cip: int, vip: int, cport: int, vport: int, cisn: int) -> int:
    return halfsiphash(k1, _MSG.pack(cip, vip, cport << 16 | vport, cisn))


def _h2(k2: bytes, cip: int, vip: int, cport: int, vport: int, cisn: int, t: int, mi: int,
        ws: int) -> int:
    msg = _MSG.pack(cip, vip, cport << 16 | vport, cisn) + bytes((t, mi, ws))
    return halfsiphash(k2, msg) & 0xFFFFF


def _check(keys: tuple[bytes, bytes], cip: int, vip: int, cport: int, vport: int, cisn: int,
           isn: int, now: float) -> tuple[int, int | None] | None:
    v = (isn - _h1(keys[0], cip, vip, cport, vport, cisn)) & _M32
    t = v >> 27
    age = (slot(now) - t) & 31
    if age > MAX_AGE_SLOTS:
        return None
    mi = (v >> 24) & 7
    ws = (v >> 20) & 15
    if v & 0xFFFFF != _h2(keys[1], cip, vip, cport, vport, cisn, t, mi, ws):
        return None
    return MSS_TABLE[mi], (None if ws == WS_NONE else ws)


class SynCookies:
    """Cookies under the keys of a secret; :meth:`rotate` changes the secret, and the cookies
    of the previous one stay valid as long as any cookie can (``MAX_AGE_SLOTS``)."""

    __slots__ = ("_keys", "_prev", "_rotated")

    def __init__(self, secret: bytes):
        self._keys = _derive(secret)
        self._prev: tuple[bytes, bytes] | None = None
        self._rotated = 0           # absolute slot (int(now) >> SLOT_SHIFT) of the rotation

    def rotate(self, secret: bytes, now: float) -> None:
        """Issue cookies under ``secret`` from ``now`` on."""
        keys = _derive(secret)
        self._prev, self._rotated = self._keys, int(now) >> SLOT_SHIFT
        self._keys = keys

    def keep_previous(self, words: tuple[int, int, int, int], now: float) -> None:
        """Validate, as if they were this object's previous keys, cookies issued until ``now``
        under the keys ``words`` (in :meth:`key_words` form): those another controller
        wrote into the data plane."""
        self._prev = (_KEY.pack(*words[:2]), _KEY.pack(*words[2:]))
        self._rotated = int(now) >> SLOT_SHIFT

    def key_words(self) -> tuple[int, int, int, int]:
        """The two HalfSipHash keys as the data plane takes them: H1's key words k0, k1,
        then H2's."""
        return _KEY.unpack(self._keys[0]) + _KEY.unpack(self._keys[1])

    def make(self, cip: int, vip: int, cport: int, vport: int, cisn: int, mss: int | None,
             now: float, wscale: int | None = None) -> int:
        """The ISN for a SYN; ``wscale`` is the client's window-scale option (None: the
        SYN had none)."""
        k1, k2 = self._keys
        t = slot(now)
        mi = mss_index(mss)
        ws = WS_NONE if wscale is None else min(wscale, MAX_WSCALE)
        v = ((t << 27) | (mi << 24) | (ws << 20)
             | _h2(k2, cip, vip, cport, vport, cisn, t, mi, ws))
        return (_h1(k1, cip, vip, cport, vport, cisn) + v) & _M32

    def check_opts(self, cip: int, vip: int, cport: int, vport: int, cisn: int, isn: int,
                   now: float) -> tuple[int, int | None] | None:
        """Return (MSS, client window scale or None) of a valid cookie ``isn``, or None."""
        r = _check(self._keys, cip, vip, cport, vport, cisn, isn, now)
        if (r is None and self._prev is not None
                and (int(now) >> SLOT_SHIFT) - self._rotated <= MAX_AGE_SLOTS):
            r = _check(self._prev, cip, vip, cport, vport, cisn, isn, now)
        return r

    def check(self, cip: int, vip: int, cport: int, vport: int, cisn: int, isn: int,
              now: float) -> int | None:
        """Return the MSS encoded in a valid cookie ``isn``, or None."""
        r = self.check_opts(cip, vip, cport, vport, cisn, isn, now)
        return None if r is None else r[0]
