"""HTTP cookie persistence (docs/csproc.md section 15): the cookie a request carries, the
opaque server id of ``cookie-insert``, and :class:`ResponseWatch`, which reads a
connection's first response up to the end of its header block (the Set-Cookie values
``cookie-learn`` learns, where ``cookie-insert`` inserts its header line)."""

from __future__ import annotations

import hashlib
import re

import httptools

#: RFC 6265 cookie-name: an RFC 9110 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")

#: Stream bytes of the first response's header blocks (1xx included) read at most.
MAX_RESPONSE_HEADER = 16384


def valid_name(name: object) -> bool:
    """Whether ``name`` can name a cookie (an RFC 9110 token)."""
    return isinstance(name, str) and _TOKEN.match(name) is not None


def server_id(name: str, key: str | None = None) -> str:
    """The value of an inserted cookie for the server called ``name``: a 64-bit BLAKE2b of
    the name, keyed with ``key`` when given (then nobody without the key can tell the
    server, or its address, from the value); the same on every controller that has the
    same key, and across restarts."""
    k = hashlib.blake2b(key.encode(), digest_size=32).digest() if key else b""
    return hashlib.blake2b(name.encode(), key=k, person=b"p4cs-server",
                           digest_size=8).hexdigest()


def session_key(value: bytes) -> str:
    """The template key of a learned cookie value (a 128-bit hash: the value is a
    credential, and the templates are listed and published)."""
    return "cookie:" + hashlib.blake2b(value, digest_size=16).hexdigest()


def request_cookie(request: bytes, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in the Cookie header(s) of ``request`` (whose header
    block is complete), or None."""
    head = request[:request.find(b"\r\n\r\n")]
    found = None
    for line in head.split(b"\r\n")[1:]:
        if line[:7].lower() != b"cookie:":
            continue
        for pair in line[7:].split(b";"):
            k, eq, v = pair.strip().partition(b"=")
            if eq and k == name:
                found = v.strip(b' "')
                if found:
                    return found
    return found or None


def set_cookie_value(header: bytes, name: bytes) -> bytes | None:
    """The value a Set-Cookie header value ``header`` gives cookie ``name``, or None."""
    k, eq, rest = header.partition(b"=")
    if not eq or k.strip() != name:
        return None
    v = rest.split(b";", 1)[0].strip(b' "')
    return v or None


class ResponseWatch:
    """The server's first response, read from its first byte to the end of the header
    block of the first final (non-1xx, or 101) response.  ``line``: the header line to
    insert before that block's final CRLF (None: read only).

    Outcome once ``settled``: ``point``, the stream offset where ``line`` goes (None: the
    bytes pass unchanged: no insertion, more than ``limit`` header bytes, or the server
    closed first), ``learned`` (the value the block's Set-Cookie gives cookie ``name``),
    ``bad`` (why the bytes are not an HTTP response; ``oversize`` when too long).  The
    engine sets ``acked`` once the client acknowledged the inserted line, and ``deadline``,
    the time by which that must have happened."""

    __slots__ = ("name", "line", "limit", "buf", "start", "fed", "settled", "point",
                 "learned", "bad", "oversize", "acked", "deadline", "_p", "_complete")

    def __init__(self, name: bytes, line: bytes | None, limit: int = MAX_RESPONSE_HEADER):
        self.name, self.line, self.limit = name, line, limit
        self.buf = bytearray()
        self.start = 0          # offset of the header block being read
        self.fed = 0            # bytes given to the parser
        self.settled = False
        self.point = None
        self.learned = None
        self.bad = None
        self.oversize = False
        self.acked = False
        self.deadline = 0.0
        self._p = None
        self._block()

    def _block(self) -> None:
        self._p = httptools.HttpResponseParser(self)
        self._complete = False
        self.learned = None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"set-cookie":
            v = set_cookie_value(value, self.name)
            if v is not None:
                self.learned = v

    def on_headers_complete(self) -> None:
        self._complete = True

    @property
    def safe(self) -> int:
        """While not settled: the stream bytes known to lie before the insertion point
        (a block that ends in CR LF CR may be one LF from its end: that CR is the point)."""
        n = len(self.buf)
        if self.line is not None and self.buf.endswith(b"\r\n\r"):
            return n - 1
        return n

    def feed(self, off: int, data: bytes) -> None:
        """The server's bytes ``data`` at stream offset ``off``.  Only the bytes that
        continue the contiguous stream are read (out-of-order ones are not)."""
        buf = self.buf
        n0 = len(buf)
        if self.settled or off > n0 or off + len(data) <= n0:
            return
        buf += data[n0 - off:]
        while True:
            if len(buf) - self.start >= 5 and buf[self.start:self.start + 5] != b"HTTP/":
                return self._settle(bad="not an HTTP response")
            end = buf.find(b"\r\n\r\n", max(self.start, self.fed - 3))
            stop = len(buf) if end < 0 else end + 4
            try:
                self._p.feed_data(bytes(buf[self.fed:stop]))
            except httptools.HttpParserError as e:
                return self._settle(bad=str(e) or "bad response header")
            except httptools.HttpParserUpgrade:
                pass                    # 101: its header block is the one read
            self.fed = stop
            if end < 0:
                if len(buf) > self.limit:
                    self.oversize = True
                    self._settle()
                return
            if not self._complete:
                return self._settle(bad="bad response header")
            status = self._p.get_status_code()
            if 100 <= status < 200 and status != 101:
                self.start = stop       # an interim response: the final one follows
                self._block()
                continue
            self._settle(point=end + 2 if self.line is not None else None)
            return

    def close(self) -> None:
        """The server finished its stream before the end of the header block: nothing
        is inserted or learned."""
        if not self.settled:
            self.learned = None
            self._settle()

    def _settle(self, point: int | None = None, bad: str | None = None) -> None:
        self.settled = True
        self.point = point
        self.bad = bad
        if bad is not None or self.oversize:
            self.learned = None
        self._p = None
