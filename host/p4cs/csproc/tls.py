"""TLS services without terminating TLS: the ClientHello framing of the first request,
the wire parser of ClientHello and ServerHello (the rules' ``tls.*`` fields read the same
parser: ``p4cs.rules.extract.parse_client_hello``), the alerts the switch answers with, and
the session keys of TLS session persistence (docs/csproc.md section 14).  Dependency-free:
nothing here decrypts or answers a handshake."""

from __future__ import annotations

import hashlib
import struct

HANDSHAKE, ALERT, CCS = 22, 21, 20
CLIENT_HELLO, SERVER_HELLO = 1, 2
MAX_RECORD = 1 << 14           # plaintext record limit (RFC 8446 section 5.1)
EXT_SESSION_TICKET, EXT_PRE_SHARED_KEY, EXT_SUPPORTED_VERSIONS = 35, 41, 43
TLS13 = 0x0304
# The random of a ServerHello that is a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

#: Fatal alerts the switch sends instead of an HTTP answer: a rule's reject or redirect
#: (access_denied), no usable server (internal_error).
_ALERTS = {403: 49, 302: 49, 503: 80}


def alert(status: int) -> bytes:
    """The fatal alert record standing for local answer ``status``; sent in the clear,
    before any ServerHello, as a server refusing the handshake would."""
    return bytes((ALERT, 3, 3, 0, 2, 2, _ALERTS.get(status, 80)))


class Hello:
    """A parsed ClientHello or ServerHello: ``version`` (legacy_version), ``random``,
    ``session_id`` (bytes), ``exts`` ([(type, data)], in order)."""

    __slots__ = ("version", "random", "session_id", "exts")

    def __init__(self, version: int, random: bytes, session_id: bytes, exts: list):
        self.version, self.random, self.session_id, self.exts = version, random, session_id, exts

    def ext(self, etype: int) -> bytes | None:
        for t, data in self.exts:
            if t == etype:
                return data
        return None


def handshake_bytes(raw: bytes) -> bytes:
    """The handshake-layer bytes of the leading handshake records of ``raw`` (change cipher
    spec records, which TLS 1.3 servers send between their messages, are skipped)."""
    hs = bytearray()
    pos = 0
    while pos + 5 <= len(raw) and raw[pos] in (HANDSHAKE, CCS):
        rlen = int.from_bytes(raw[pos + 3:pos + 5], "big")
        if raw[pos] == HANDSHAKE:
            hs += raw[pos + 5:pos + 5 + rlen]
        pos += 5 + rlen
    return bytes(hs)


_U16 = struct.Struct(">H").unpack_from
_U16X2 = struct.Struct(">HH").unpack_from


def parse_hello(body: bytes, client: bool) -> Hello | None:
    """The body of a ClientHello (``client``) or ServerHello handshake message; None when
    it is malformed."""
    n = len(body)
    if n < 35:
        return None
    sid_len = body[34]
    i = 35 + sid_len
    if sid_len > 32 or i > n:
        return None
    sid = body[35:i]
    try:
        if client:
            i += 2 + _U16(body, i)[0]                         # cipher suites
            i += 1 + body[i]                                  # compression methods
        else:
            i += 3                                            # cipher suite, compression
    except (IndexError, struct.error):
        return None
    exts: list = []
    hello = Hello(_U16(body, 0)[0], body[2:34], sid, exts)
    if i + 2 > n:
        return hello if i <= n else None
    end = i + 2 + _U16(body, i)[0]
    if end > n:
        return None
    i += 2
    while i + 4 <= end:
        etype, elen = _U16X2(body, i)
        j = i + 4 + elen
        if j > n:
            return None
        exts.append((etype, body[i + 4:j]))
        i = j
    return hello


def hello_message(hs: bytes, pos: int = 0) -> tuple[int, bytes] | None:
    """(type, body) of the handshake message at ``pos`` of ``hs``, or None if it is not
    all there."""
    if len(hs) < pos + 4:
        return None
    hlen = int.from_bytes(hs[pos + 1:pos + 4], "big")
    if len(hs) < pos + 4 + hlen:
        return None
    return hs[pos], hs[pos + 4:pos + 4 + hlen]


def client_hello(raw: bytes) -> Hello | None:
    """The ClientHello at the start of ``raw`` (possibly spread over several handshake
    records); None if ``raw`` does not start with a complete, well-formed one."""
    msg = hello_message(handshake_bytes(raw))
    if msg is None or msg[0] != CLIENT_HELLO:
        return None
    return parse_hello(msg[1], True)


class HelloFramer:
    """Tells when the whole ClientHello of a TLS service's client has arrived, with the
    interface of ``framing.RequestFramer``: ``ready``, ``error`` (400: not TLS or a
    malformed ClientHello; 431: above ``max_bytes``), ``error_reason``; ``hello`` is the
    parsed ClientHello once ready."""

    __slots__ = ("max_bytes", "buf", "hello", "error", "error_reason")

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.hello: Hello | None = None
        self.error: int | None = None
        self.error_reason = ""

    @property
    def ready(self) -> bool:
        return self.hello is not None

    def _fail(self, status: int, reason: str) -> None:
        self.error, self.error_reason = status, reason

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.hello is not None:
            return          # bytes after the ClientHello are relayed, not parsed
        buf = self.buf
        buf += data
        pos, hs = 0, bytearray()
        while pos + 5 <= len(buf):
            if buf[pos] != HANDSHAKE or buf[pos + 1] != 3 or buf[pos + 2] > 4:
                return self._fail(400, "not a TLS handshake record")
            rlen = int.from_bytes(buf[pos + 3:pos + 5], "big")
            if not 0 < rlen <= MAX_RECORD:
                return self._fail(400, "bad TLS record length")
            hs += buf[pos + 5:pos + 5 + rlen]
            if hs and hs[0] != CLIENT_HELLO:
                return self._fail(400, "first handshake message is not a ClientHello")
            if len(hs) >= 4:
                need = 4 + int.from_bytes(hs[1:4], "big")
                if need + 5 > self.max_bytes:
                    return self._fail(431, "ClientHello above max_header_bytes")
                if len(hs) >= need:
                    self.hello = parse_hello(bytes(hs[4:need]), True)
                    if self.hello is None:
                        self._fail(400, "malformed ClientHello")
                    self.buf = None
                    return
            pos += 5 + rlen
        if pos < len(buf) and buf[pos] != HANDSHAKE:
            return self._fail(400, "not a TLS handshake record")
        if len(buf) >= self.max_bytes:
            self._fail(431, "ClientHello above max_header_bytes")


# ---------------------------------------------------------------------------------------
# TLS session persistence

def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def psk_identities(ext: bytes | None) -> list[bytes]:
    """The identities of a ClientHello's pre_shared_key extension (TLS 1.3 tickets)."""
    out = []
    if ext is None or len(ext) < 2:
        return out
    end = 2 + int.from_bytes(ext[0:2], "big")
    i = 2
    while i + 2 <= min(end, len(ext)):
        n = int.from_bytes(ext[i:i + 2], "big")
        ident = ext[i + 2:i + 2 + n]
        if len(ident) != n:
            break
        out.append(ident)
        i += 2 + n + 4                  # identity, obfuscated_ticket_age
    return out


class Offer:
    """What a ClientHello offers to resume: its session id, TLS 1.2 ticket and TLS 1.3 PSK
    identities; ``keys`` are the template keys they map to, the most specific first."""

    __slots__ = ("session_id", "ticket", "psks", "keys")

    def __init__(self, hello: Hello):
        self.session_id = hello.session_id
        self.ticket = hello.ext(EXT_SESSION_TICKET) or b""
        self.psks = psk_identities(hello.ext(EXT_PRE_SHARED_KEY))
        keys = ["psk:" + _digest(p) for p in self.psks]
        if self.ticket:
            keys.append("ticket:" + _digest(self.ticket))
        if self.session_id:
            keys.append("id:" + self.session_id.hex())
        self.keys = keys

    def learned(self, sh: Hello) -> str | None:
        """The template key the server's ServerHello ``sh`` proves it holds: the PSK
        identity it selected (TLS 1.3), the ticket it resumed (TLS 1.2: it echoes the
        client's session id), else the session id it assigned or resumed (TLS 1.2)."""
        sv = sh.ext(EXT_SUPPORTED_VERSIONS)
        if sv is not None and len(sv) == 2 and int.from_bytes(sv, "big") >= TLS13:
            sel = sh.ext(EXT_PRE_SHARED_KEY)
            if sel is not None and len(sel) == 2:
                i = int.from_bytes(sel, "big")
                if i < len(self.psks):
                    return "psk:" + _digest(self.psks[i])
            return None                 # a full handshake: its tickets are encrypted
        sid = sh.session_id
        if not sid:
            return None                 # no session id: the session is not resumable by id
        if self.ticket and sid == self.session_id:
            return "ticket:" + _digest(self.ticket)
        return "id:" + sid.hex()


class ServerHelloWatch:
    """Reads the server's first bytes of a connection up to its ServerHello (past a
    HelloRetryRequest) to learn which session it holds (``Offer.learned``)."""

    __slots__ = ("offer", "buf", "limit")

    def __init__(self, offer: Offer, limit: int = 4 * (MAX_RECORD + 5)):
        self.offer = offer
        self.buf = bytearray()
        self.limit = limit

    def feed(self, off: int, data: bytes) -> tuple[bool, str | None]:
        """The server's bytes ``data`` at stream offset ``off`` (0: its first byte): (done,
        the key learned or None).  Out-of-order bytes are ignored (the server resends
        them); anything but handshake records, or too many bytes, ends the watch."""
        buf = self.buf
        if off > len(buf) or off + len(data) <= len(buf):
            return False, None
        buf += data[len(buf) - off:]
        hs = handshake_bytes(bytes(buf))
        at = 0
        while True:
            msg = hello_message(hs, at)
            if msg is None:
                break
            if msg[0] != SERVER_HELLO:
                return True, None
            sh = parse_hello(msg[1], False)
            if sh is None:
                return True, None
            if sh.random != HRR_RANDOM:
                return True, self.offer.learned(sh)
            at += 4 + len(msg[1])       # a HelloRetryRequest: the ServerHello follows
        pos = 0
        while pos + 5 <= len(buf) and buf[pos] in (HANDSHAKE, CCS):
            pos += 5 + int.from_bytes(buf[pos + 3:pos + 5], "big")
        # an alert (or not TLS) before the ServerHello, or too much without one: give up
        return pos + 5 <= len(buf) or len(buf) >= self.limit, None
