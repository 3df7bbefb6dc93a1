"""Incremental HTTP/1.x request framing over the reassembled client byte stream.

Uses httptools (llhttp), which keeps its own state across ``feed`` calls, so a header
name or value split across TCP segments (slide 71: ``Content-length: 7`` | ``53``) needs
no special handling.  llhttp is strict: a request with both Content-Length and
Transfer-Encoding, duplicate Content-Length values or bare-LF line ends is rejected (400),
which closes the usual request-smuggling doors before anything reaches a server.
"""

from __future__ import annotations

import httptools

#: Asks the server to close the connection after its response (RFC 9112 section 9.6).
CLOSE = b"Connection: close\r\n"


def length_of(value: bytes) -> int | None:
    """A Content-Length value as a number; None when it is not one (llhttp refuses such a
    message itself)."""
    try:
        return int(value)
    except ValueError:
        return None


class _FirstMessageDone(Exception):
    """Raised from the parser's callback to stop it after the first request."""


class RequestFramer:
    """Tells when enough of the first request has arrived for the rules to decide.

    ``ready`` becomes true when the header block is complete, or, with ``need_body``, when
    the whole message (Content-Length or chunked body) is complete.  ``error`` becomes an
    HTTP status (400, 413, 431) when the request must be refused.
    """

    __slots__ = ("_p", "need_body", "max_header", "max_body", "header_fed",
                 "headers_done", "message_done", "body_bytes", "content_length",
                 "chunked", "expect_continue", "upgrade", "error", "error_reason",
                 "_ends_here")

    def __init__(self, need_body: bool, max_header: int, max_body: int):
        self._p = httptools.HttpRequestParser(self)
        self.need_body = need_body
        self.max_header = max_header
        self.max_body = max_body
        self.header_fed = 0
        self.headers_done = False
        self.message_done = False
        self.body_bytes = 0
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.upgrade = False
        self.error: int | None = None
        self.error_reason = ""
        self._ends_here = False

    # httptools callbacks -------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-length":
            self.content_length = length_of(value)
        elif n == b"transfer-encoding":
            self.chunked = b"chunked" in value.lower()
        elif n == b"expect":
            self.expect_continue = value.strip().lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if (self.need_body and self.content_length is not None
                and self.content_length > self.max_body):
            self._fail(413, "content-length above max_body")

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.need_body and self.body_bytes > self.max_body:
            self._fail(413, "body above max_body")

    def on_message_complete(self) -> None:
        self.message_done = True
        if not self._ends_here and not self._p.should_upgrade():
            # Stop llhttp here (an upgrade stops it by itself): bytes after the first request
            # in the same piece are pipelined data, relayed and not parsed (parsing them as a
            # request could refuse a good one).
            raise _FirstMessageDone

    # ---------------------------------------------------------------------------------
    def _fail(self, status: int, reason: str) -> None:
        if self.error is None:
            self.error = status
            self.error_reason = reason

    @property
    def ready(self) -> bool:
        return self.error is None and self.headers_done and (
            self.message_done or not self.need_body or self.upgrade)

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.message_done or self.upgrade:
            return  # pipelined data after the first request is relayed, not parsed
        if not self.headers_done:
            room = self.max_header - self.header_fed
            part = data if len(data) <= room else data[:room]
            # The usual request, whole in its first piece with nothing after it: its header
            # block ends at the piece's only blank line, so the message cannot end before
            # the piece does and the parser need not be stopped (raising costs microseconds).
            self._ends_here = (not self.header_fed and part.find(b"\r\n\r\n") == len(part) - 4
                               and b"\n\n" not in part)
            self._feed(part)
            self._ends_here = False
            self.header_fed += len(part)
            if self.error is not None:
                return
            if not self.headers_done:
                if self.header_fed >= self.max_header:
                    self._fail(431, "header block above max_header")
                return
            data = data[len(part):]
            if not data or self.message_done or self.upgrade:
                return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.headers_done = True
            self.upgrade = True
        except httptools.HttpParserError as e:
            if not (self.message_done and isinstance(e.__context__, _FirstMessageDone)):
                self._fail(400, f"bad request: {e}")
        if self.message_done or self.upgrade or self.error is not None:
            # Parsing is over (feed() takes nothing more). The parser refers back to this
            # object: dropping it breaks the cycle, so both are freed without the garbage
            # collector.
            self._p = None


def one_request(raw: bytes) -> bytes:
    """``raw`` (a buffered request the framer accepted, perhaps followed by more bytes) with
    its first request asking the server to close after answering it: ``Connection: close``
    after the request line, and every ``Connection`` header of the request blanked in place
    (renamed ``X-Dropped``, value spaces) so that no keep-alive or upgrade option survives.
    The result is ``len(CLOSE)`` bytes longer; the header block starts at the same offset."""
    start = 0
    while raw.startswith(b"\r\n", start):
        start += 2
    line_end = raw.index(b"\r\n", start) + 2
    head_end = raw.index(b"\r\n\r\n", line_end - 2) + 2
    lines = raw[line_end:head_end].split(b"\r\n")
    for i, ln in enumerate(lines):
        if ln.split(b":", 1)[0].strip().lower() == b"connection":
            lines[i] = b"X-Dropped:".ljust(len(ln))
    return raw[:line_end] + CLOSE + b"\r\n".join(lines) + raw[head_end:]
