"""The switch's side of the dialogue of server-speaks-first services: SMTP, POP3, IMAP.

A front talks to the client until the command that names what the rules decide on (SMTP
``RCPT TO``, POP3 ``USER``, IMAP ``LOGIN`` or ``AUTHENTICATE PLAIN``), then tells the
engine which of the client's bytes to replay to the chosen server before the splice, and
what the server has to answer to each.  Fronts see byte strings only: the engine
(``dialogue.py``) owns TCP.  See docs/csproc.md section 13.

``step(buf, pos)`` reads the client's stream from offset ``pos`` and returns ``None`` (more
bytes needed) or ``(kind, reply, end)``:

* ``REPLY``: send ``reply``; the command ends at ``end``.
* ``CLOSE``: send ``reply`` and close the connection.
* ``DECIDE``: the command ending at ``end`` is the decision command: classify
  ``decider_input(buf)``, then connect and ``replay`` (list of ``(start, end, expect)``)
  before relaying the client's stream from ``dec`` on.  ``refusal()`` answers it when the
  rules refuse; the command is then skipped and the dialogue goes on.

``server_reply(expect, data)`` reads one answer of a server: ``None`` (incomplete), or
``(length, ok, text)``, ``ok`` being None for an informational part to absorb before the
answer itself.
"""

from __future__ import annotations

import re

REPLY, CLOSE, DECIDE = "reply", "close", "decide"

MAX_LINE = 1000           # client command line, CRLF included (RFC 5321 text line limit)
MAX_SERVER_REPLY = 8192   # an answer of a server the switch absorbs


def _line(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """The next line (without its line end) and the offset after it; a line longer than
    MAX_LINE comes back as ``(None, -1)``."""
    eol = buf.find(b"\n", pos, pos + MAX_LINE)
    if eol < 0:
        if len(buf) - pos >= MAX_LINE:
            return None, -1
        return None
    end = eol + 1
    return bytes(buf[pos:eol]).rstrip(b"\r"), end


class Front:
    """What the three protocols share.  A subclass defines ``greeting()``, ``replay()``
    (client-stream slices to replay, with the answer each needs), ``command(line, start,
    end)``, ``server_reply(expect, data)``, ``closing(status)``, and the answers
    ``REJECT``, ``REDIRECT`` (formatted with ``loc`` and ``tag``) and ``TOO_LONG``."""

    proto = ""
    greeting_expect = ""
    REJECT = REDIRECT = ""
    TOO_LONG = b""

    def __init__(self, name: str):
        self.name = name
        self.tag = b""             # IMAP: the tag of the open command
        self.pos = 0               # next unread offset of the client's stream
        self.dec = None            # (start, end) of the decision command
        self.deadline = 0.0        # end of the dialogue (request_timeout)

    def skip(self) -> int:
        """Client bytes before the decision command that the server never sees: the
        switch's ISN towards the server is the client's plus this, so that the client's
        later bytes keep their sequence numbers."""
        return self.dec[0] - sum(e - s for s, e, _ in self.replay())

    def decider_input(self, buf: bytearray) -> bytes:
        return b"".join(bytes(buf[s:e]) for s, e, _ in self.replay()) + \
            bytes(buf[self.dec[0]:self.dec[1]])

    def skip_decision(self) -> None:
        """The rules refused the decision command: forget it, read on."""
        self.pos = self.dec[1]
        self.dec = None

    def refusal(self, status: int | None, location: str | None) -> tuple[bytes, bool]:
        """(answer, close): ``reject`` (403) and ``redirect`` (302) answer the decision
        command and the dialogue goes on; otherwise the closing reply (None: none)."""
        if status == 403 or status == 302:
            loc = (location or "").replace("\r", "").replace("\n", "")
            text = self.REJECT if status == 403 else self.REDIRECT
            return text.format(loc=loc, tag=self.tag.decode("latin-1")).encode(), False
        if status is None:
            return b"", True
        return self.closing(status), True

    def step(self, buf: bytearray, pos: int):
        got = _line(buf, pos)
        if got is None:
            return None
        line, end = got
        if end < 0:
            return CLOSE, self.TOO_LONG, len(buf)
        return self.command(line, pos, end)


# ------------------------------------------------------------------------------ SMTP
def _smtp_reply(data: bytes) -> tuple[int, bool, str] | None:
    """One (possibly multi-line) SMTP reply: ``ddd-text`` lines, then ``ddd text``."""
    pos = 0
    while True:
        eol = data.find(b"\n", pos)
        if eol < 0:
            return None
        line = data[pos:eol].rstrip(b"\r")
        pos = eol + 1
        if len(line) < 3 or not line[:3].isdigit():
            return pos, False, line.decode("latin-1")
        if line[3:4] != b"-":
            return pos, line[:1] == b"2", line.decode("latin-1")


_SIZE = re.compile(rb"^SIZE=(\d{1,20})$", re.I)
_BODY = re.compile(rb"^BODY=(7BIT|8BITMIME)$", re.I)


class SmtpFront(Front):
    """ESMTP (RFC 5321) up to the first RCPT TO.  Advertised: SIZE and 8BITMIME only (no
    PIPELINING, STARTTLS, AUTH, DSN, SMTPUTF8); the servers must support both."""

    proto = "smtp"
    greeting_expect = "smtp"

    def __init__(self, name: str, max_size: int):
        super().__init__(name)
        self.max_size = max_size
        self.hello = None          # (start, end) of the last HELO/EHLO
        self.mail = None           # (start, end) of MAIL FROM in the open transaction

    def greeting(self) -> bytes:
        return f"220 {self.name} ESMTP\r\n".encode()

    def replay(self) -> list:
        return [(*self.hello, "smtp"), (*self.mail, "smtp")]

    REJECT = "550 5.7.1 Recipient rejected by policy\r\n"
    REDIRECT = "551 5.1.6 User not local; please try <{loc}>\r\n"
    TOO_LONG = b"421 4.7.0 Line too long, closing transmission channel\r\n"

    @staticmethod
    def closing(status: int) -> bytes:
        text = {408: "4.4.2 Timeout", 431: "4.7.0 Too many commands"}.get(
            status, "4.3.0 Service not available")
        return f"421 {text}, closing transmission channel\r\n".encode()

    def command(self, line: bytes, start: int, end: int) -> tuple:
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        arg = arg.strip()
        if verb in (b"EHLO", b"HELO"):
            if not arg:
                return REPLY, b"501 5.5.4 Syntax: " + verb + b" hostname\r\n", end
            self.hello, self.mail = (start, end), None
            if verb == b"HELO":
                return REPLY, f"250 {self.name}\r\n".encode(), end
            return REPLY, (f"250-{self.name}\r\n250-SIZE {self.max_size}\r\n"
                           "250 8BITMIME\r\n").encode(), end
        if verb == b"MAIL":
            if self.hello is None:
                return REPLY, b"503 5.5.1 Send HELO/EHLO first\r\n", end
            if self.mail is not None:
                return REPLY, b"503 5.5.1 Nested MAIL command\r\n", end
            if not line[5:10].upper() == b"FROM:":
                return REPLY, b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n", end
            params = line[10:].split()[1:]
            for p in params:
                m = _SIZE.match(p)
                if m:
                    if int(m.group(1)) > self.max_size:
                        return REPLY, b"552 5.3.4 Message size exceeds fixed maximum\r\n", end
                elif not _BODY.match(p):
                    return REPLY, b"555 5.5.4 Unsupported MAIL parameter\r\n", end
            self.mail = (start, end)
            return REPLY, b"250 2.1.0 OK\r\n", end
        if verb == b"RCPT":
            if self.mail is None:
                return REPLY, b"503 5.5.1 Need MAIL command\r\n", end
            if not line[5:8].upper() == b"TO:":
                return REPLY, b"501 5.5.4 Syntax: RCPT TO:<address>\r\n", end
            if len(line[8:].split()) > 1:
                return REPLY, b"555 5.5.4 Unsupported RCPT parameter\r\n", end
            self.dec = (start, end)
            return DECIDE, b"", end
        if verb == b"RSET":
            self.mail = None
            return REPLY, b"250 2.0.0 OK\r\n", end
        if verb == b"NOOP":
            return REPLY, b"250 2.0.0 OK\r\n", end
        if verb == b"QUIT":
            return CLOSE, b"221 2.0.0 Bye\r\n", end
        if verb in (b"DATA", b"BDAT"):
            need = b"MAIL" if self.mail is None else b"RCPT"
            return REPLY, b"503 5.5.1 Need " + need + b" command\r\n", end
        if verb == b"VRFY":
            return REPLY, b"252 2.5.0 Cannot VRFY user\r\n", end
        if verb == b"STARTTLS":
            return REPLY, b"502 5.5.1 STARTTLS not available\r\n", end
        if verb in (b"AUTH", b"EXPN", b"HELP", b"ETRN", b"TURN"):
            return REPLY, b"502 5.5.1 Command not implemented\r\n", end
        return REPLY, b"500 5.5.2 Command unrecognized\r\n", end

    @staticmethod
    def server_reply(expect: str, data: bytes):
        return _smtp_reply(data)


# ------------------------------------------------------------------------------ POP3
def _server_line(data: bytes) -> tuple[bytes, int] | None:
    """A server's first line (without its line end) and its length, once complete."""
    eol = data.find(b"\n")
    return None if eol < 0 else (data[:eol].rstrip(b"\r"), eol + 1)


def _unavailable(status: int) -> bytes:
    return b"timeout" if status == 408 else b"service not available"


class Pop3Front(Front):
    """POP3 (RFC 1939) AUTHORIZATION state up to USER.  CAPA lists USER only."""

    proto = "pop3"
    greeting_expect = "pop3"

    def greeting(self) -> bytes:
        return f"+OK {self.name} POP3 ready\r\n".encode()

    def replay(self) -> list:
        return []

    REJECT = "-ERR [AUTH] access denied\r\n"
    REDIRECT = "-ERR [SYS/PERM] mailbox served at {loc}\r\n"
    TOO_LONG = b"-ERR line too long\r\n"

    @staticmethod
    def closing(status: int) -> bytes:
        return b"-ERR [SYS/TEMP] " + _unavailable(status) + b"\r\n"

    def command(self, line: bytes, start: int, end: int) -> tuple:
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"USER":
            if not arg.strip():
                return REPLY, b"-ERR missing user name\r\n", end
            self.dec = (start, end)
            return DECIDE, b"", end
        if verb == b"CAPA":
            return REPLY, b"+OK Capability list follows\r\nUSER\r\n.\r\n", end
        if verb == b"QUIT":
            return CLOSE, b"+OK bye\r\n", end
        if verb == b"STLS":
            return REPLY, b"-ERR STLS not available\r\n", end
        if verb in (b"PASS", b"APOP", b"AUTH"):
            return REPLY, b"-ERR use USER first\r\n", end
        return REPLY, b"-ERR not authenticated\r\n", end

    @staticmethod
    def server_reply(expect: str, data: bytes):
        got = _server_line(data)
        if got is None:
            return None
        line, n = got
        return n, line[:3] == b"+OK", line.decode("latin-1")


# ------------------------------------------------------------------------------ IMAP
_TAG = re.compile(rb"^[!#$&'+,\-./0-9:;<=>?@A-Z\[^_`a-z|}~]+$")
_LITERAL = re.compile(rb"\{(\d{1,6})\}$")


class ImapFront(Front):
    """IMAP4rev1 (RFC 3501) not-authenticated state up to LOGIN or AUTHENTICATE PLAIN.
    CAPABILITY lists IMAP4rev1 and AUTH=PLAIN; literals get a continuation request."""

    proto = "imap"
    greeting_expect = "imap"

    def __init__(self, name: str):
        super().__init__(name)
        self.parts = []      # (start, end, "cont") of the open command, before its last line
        self.lit = 0         # bytes of a literal still to read
        self.auth = False    # the open command is AUTHENTICATE PLAIN awaiting its response

    def greeting(self) -> bytes:
        return f"* OK {self.name} IMAP4rev1 ready\r\n".encode()

    def replay(self) -> list:
        return self.parts

    REJECT = "{tag} NO [AUTHORIZATIONFAILED] access denied\r\n"
    REDIRECT = "{tag} NO [REFERRAL {loc}] try another server\r\n"
    TOO_LONG = b"* BYE line too long\r\n"

    @staticmethod
    def closing(status: int) -> bytes:
        return b"* BYE " + _unavailable(status) + b"\r\n"

    def skip_decision(self) -> None:
        super().skip_decision()
        self.parts = []
        self.auth = False

    def step(self, buf: bytearray, pos: int):
        start = self.parts[0][0] if self.parts else pos
        if self.lit:
            if len(buf) - pos < self.lit:
                return None
            pos += self.lit
        got = _line(buf, pos)
        if got is None:
            return None
        self.lit = 0
        line, end = got
        if end < 0:
            return CLOSE, self.TOO_LONG, len(buf)
        if self.auth:                        # the client's SASL PLAIN response
            return self._auth_response(line, start, end)
        if self.parts:                       # a line continuing a command after a literal
            return self._more(line, start, end)
        tag, _, rest = line.partition(b" ")
        verb, _, args = rest.partition(b" ")
        verb = verb.upper()
        if not _TAG.match(tag) or not verb:
            return REPLY, b"* BAD invalid command\r\n", end
        self.tag = tag
        t = tag
        if verb == b"CAPABILITY":
            return REPLY, (b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + t +
                           b" OK CAPABILITY completed\r\n"), end
        if verb == b"NOOP":
            return REPLY, t + b" OK NOOP completed\r\n", end
        if verb == b"LOGOUT":
            return CLOSE, (f"* BYE {self.name} logging out\r\n".encode() + t +
                           b" OK LOGOUT completed\r\n"), end
        if verb == b"LOGIN":
            return self._more(line, start, end)
        if verb == b"AUTHENTICATE":
            mech, _, ir = args.partition(b" ")
            if mech.upper() != b"PLAIN":
                return REPLY, t + b" NO unsupported authentication mechanism\r\n", end
            if ir:                           # initial response (RFC 4959)
                self.dec = (start, end)
                return DECIDE, b"", end
            self.parts = [(start, end, "cont")]
            self.auth = True
            return REPLY, b"+ \r\n", end
        if verb == b"STARTTLS":
            return REPLY, t + b" BAD STARTTLS not available\r\n", end
        return REPLY, t + b" BAD command unknown or not allowed before login\r\n", end

    def _more(self, line: bytes, start: int, end: int):
        m = _LITERAL.search(line)
        if m:
            if int(m.group(1)) > MAX_LINE:
                self.parts = []
                return REPLY, self.tag + b" BAD literal too large\r\n", end
            self.lit = int(m.group(1))
            self.parts.append((self.parts[-1][1] if self.parts else start, end, "cont"))
            return REPLY, b"+ Ready for literal data\r\n", end
        self.dec = (self.parts[-1][1] if self.parts else start, end)
        return DECIDE, b"", end

    def _auth_response(self, line: bytes, start: int, end: int):
        if line.strip() == b"*":
            self.parts = []
            self.auth = False
            return REPLY, self.tag + b" BAD AUTHENTICATE cancelled\r\n", end
        self.dec = (self.parts[-1][1], end)
        return DECIDE, b"", end

    @staticmethod
    def server_reply(expect: str, data: bytes):
        got = _server_line(data)
        if got is None:
            return None
        line, n = got
        text = line.decode("latin-1")
        if expect == "imap":                 # the greeting
            return n, line[:5].upper() == b"* OK ", text
        if line[:1] == b"+":                 # continuation request
            return n, True, text
        if line[:2] == b"* ":                # untagged data before it: absorb
            if _LITERAL.search(line):
                return n, False, text        # a literal in untagged data: not expected here
            return n, None, text
        return n, False, text


def make_front(protocol: str, name: str, cfg) -> Front:
    if protocol == "smtp":
        return SmtpFront(name, cfg.smtp_max_size)
    if protocol == "pop3":
        return Pop3Front(name)
    return ImapFront(name)
