"""NONSTICKY connections: every request of a keep-alive connection is classified on its
own and may move the client to another server (docs/csproc.md section 17).

Such a connection has no client -> server flow entry: the client's segments miss and come
to the engine, which reads the request boundaries, forwards each request to the server it
routes to and passes the client's ACKs on.  The server's response is read from its first
byte (:class:`ResponseReader`) up to the end of its header block, which tells where the
response ends; a body that goes on beyond the segments read rides the server -> client flow
entry.  The next request is forwarded once the client has acknowledged the whole previous
response: to the same server (the server -> client entry is removed first, so that the next
response's head comes to the engine), or to another server, on a new server connection
(delayed binding, as for the first request) whose sequence spaces continue the client's;
the previous server connection is then reset.  Requests are thus answered one at a time,
in order: a pipelined request waits (not acknowledged) until the response before it is
complete.
"""

from __future__ import annotations

import httptools

from .effects import TCP, FlowKey, InstallFlows, PacketOut, RemoveFlows
from .framing import RequestFramer, length_of
from .httpcookie import MAX_RESPONSE_HEADER
from .packet import ACK, FIN, MOD32, PSH, RST, apply_splice, seq_le, seq_lt, seq_rel
from .reassembly import RequestBuffer

#: A body whose rest (after the segments read with its head) is longer rides the server ->
#: client entry; a shorter one is spliced in software by the engine.  The entry's install
#: costs more than a few segments through the engine, and it must be in place before the
#: client can have the whole body and send the next request, which removes it.
FAST_BODY = 65536


def request_end(buf: bytes | bytearray, framer: RequestFramer) -> int | None:
    """Where the request at the start of ``buf`` (whose header block ``framer`` read)
    ends, or None when its end cannot be known from its head (a chunked body, an upgrade,
    CONNECT)."""
    if framer.chunked or framer.upgrade or buf.lstrip(b"\r\n")[:8] == b"CONNECT ":
        return None
    start = 0
    while buf.startswith(b"\r\n", start):
        start += 2
    return buf.index(b"\r\n\r\n", start) + 4 + (framer.content_length or 0)


class ResponseReader:
    """One response of a NONSTICKY connection, read from its first byte (server stream
    offset ``start``), in order.  ``head`` says the request was a HEAD.

    Outcome: ``end``, the stream offset where the response ends (None while unknown: the
    head is not complete yet, or a chunked body is being read); ``bad``, why the bytes are
    not a valid response; ``sticky``, why the connection cannot go on request by request
    (an upgrade, a body that ends with the connection, a server that closes after this
    response, an over-long header block): it then becomes an ordinary spliced connection.
    ``fed``: the stream offset up to which bytes were read."""

    __slots__ = ("head", "start", "buf", "fed", "end", "bad", "sticky", "head_end",
                 "_p", "_complete", "_begun", "_length", "_chunked")

    def __init__(self, start: int, head: bool):
        self.head = head
        self.start = start          # offset of the header block being read
        self.buf = bytearray()      # header bytes from ``start``
        self.fed = start
        self.end = None
        self.bad = None
        self.sticky = None
        self.head_end = None
        self._block()

    def _block(self) -> None:
        self._p = httptools.HttpResponseParser(self)
        self._complete = False
        self._begun = 0
        self._length = None
        self._chunked = False

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._begun += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.lower()
        if n == b"content-length":
            self._length = length_of(value)
        elif n == b"transfer-encoding":
            self._chunked = value.strip().lower().endswith(b"chunked")

    def on_headers_complete(self) -> None:
        self._complete = True

    def on_message_complete(self) -> None:
        if self.head_end is not None:
            self.end = self.fed

    @property
    def needs_bytes(self) -> bool:
        """Whether the reader must see every byte in order (a head or a chunked body)."""
        return self.end is None and self.bad is None and self.sticky is None

    def feed(self, off: int, data: bytes) -> None:
        """The server's bytes ``data`` at stream offset ``off``; only those that continue
        what was read count."""
        if not self.needs_bytes or off > self.fed or off + len(data) <= self.fed:
            return
        data = data[self.fed - off:]
        if self.head_end is not None:           # a chunked body
            self.fed += len(data)
            self._parse(data)
            if self.end is not None and self._begun > 1:
                self.bad = "data after the response"
            return
        buf = self.buf
        buf += data
        while self.head_end is None:
            if len(buf) >= 5 and buf[:5] != b"HTTP/":
                self.bad = "not an HTTP response"
                return
            e = buf.find(b"\r\n\r\n")
            if e < 0:
                self.fed = self.start + len(buf)
                if len(buf) > MAX_RESPONSE_HEADER:
                    self.sticky = "response header too long"
                return
            stop = e + 4
            self.fed = self.start + stop
            if not self._parse(bytes(buf[:stop])):
                return
            if not self._complete:
                self.bad = "bad response header"
                return
            rest = bytes(buf[stop:])
            status = self._p.get_status_code()
            if 100 <= status < 200 and status != 101:   # interim: the final one follows
                self.start = self.fed
                self.buf = buf = bytearray(rest)
                self._block()
                continue
            self.head_end = self.fed
            self.buf = bytearray()
            self._framing(status)
            if rest:
                self.feed(self.fed, rest)
        return

    def _framing(self, status: int) -> None:
        p = self._p
        bodiless = self.head or status in (204, 304)
        if status == 101 or p.should_upgrade():
            self.sticky = "upgrade"
        elif not (bodiless or self._chunked or self._length is not None):
            self.sticky = "response body until close"
        elif not p.should_keep_alive():
            self.sticky = "the server closes after the response"
        elif bodiless:
            self.end = self.head_end
        elif self._chunked:
            return                               # read on: the chunks tell the end
        else:
            self.end = self.head_end + self._length
        self._p = None

    def _parse(self, data: bytes) -> bool:
        try:
            self._p.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError as e:
            self.bad = str(e) or "bad response"
            self._p = None
            return False
        return True


class Ka:
    """The NONSTICKY state of a connection.  ``reader``: the response being read (None:
    none expected); ``rend``: the client's sequence number at the end of that response,
    once known; ``cack``: the client's highest ACK; ``fack``, ``fwin``: the ACK and window
    last passed on to the server; ``s2c_in``: the server -> client entry is installed;
    ``pinned``: a STICKY decision bound the connection to its server while the rules may
    still reject a later request; ``last``: time of the last packet (the idle timeout, no
    entry counting it); ``requests``: requests forwarded.  The request waiting to be
    forwarded is the connection's ``req`` and ``framer``, its offsets counted from the
    client's ``isn`` + 1, which moves to the start of each request."""

    __slots__ = ("reader", "rend", "cack", "fack", "fwin", "s2c_in", "pinned", "last",
                 "requests")

    def __init__(self, cack: int, now: float):
        self.reader = None
        self.rend = None
        self.cack = cack
        self.fack = None
        self.fwin = None
        self.s2c_in = False
        self.pinned = False
        self.last = now
        self.requests = 0

    def response_done(self) -> bool:
        """Whether the client has the whole response to the last request forwarded."""
        return self.reader is None or (self.rend is not None and seq_le(self.rend, self.cack))


class KeepAlive:
    """The engine's side of NONSTICKY connections; ``eng`` is the Engine."""

    def __init__(self, eng):
        self.eng = eng

    # ------------------------------------------------------------------ start
    def spliced(self, c, now: float) -> list:
        """The server connection of ``c`` is up (its first, or a new one after a
        re-binding; ``c.c2s``/``c.s2c`` hold its deltas): forward the request, read the
        response.  No flow entry goes in."""
        eng = self.eng
        ka, cl, sl = c.ka, c.cl, c.sl
        ka.s2c_in = False
        ka.reader = None
        ka.fack = ka.fwin = None
        sl.nxt = (sl.isn + 1) & MOD32
        cl.nxt = (cl.isn + 1) & MOD32
        eng._arm(c, ka.last + eng.cfg.flow_idle_timeout)
        if ka.pinned and not getattr(c.svc.decider, "rejects", False):
            return self.to_sticky(c, "STICKY decision")
        return self._forward_request(c)

    def _forward_request(self, c) -> list:
        """Send the buffered request of ``c`` (up to its end) to the server, start reading
        its response, and make what follows it the next request's buffer."""
        eng = self.eng
        ka, req, cl, sl = c.ka, c.req, c.cl, c.sl
        end = request_end(req.buf, c.framer)
        head = bytes(req.buf[:8]).lstrip(b"\r\n").startswith(b"HEAD ")
        n = len(req.buf) if end is None else min(end, len(req.buf))
        out = self._relay(c, bytes(req.buf[:n]), 0, req.fin_rcvd and n == len(req.buf))
        ka.requests += 1
        r = ka.reader
        start = seq_rel(sl.nxt, (sl.isn + 1) & MOD32) if r is None else r.end
        sl.nxt = (sl.isn + 1 + start) & MOD32
        ka.reader = ResponseReader(start, head)
        ka.rend = None
        if end is None:
            eng._drop_request(c)
            return out + self.to_sticky(c, "request body of unknown length")
        rest = bytes(req.buf[end:])
        eng._drop_request(c)
        cl.isn = (cl.isn + end) & MOD32       # the next request's bytes count from here
        self._new_request(c, rest)
        return out

    def _new_request(self, c, rest: bytes) -> None:
        eng = self.eng
        c.req = RequestBuffer(eng._cap(c.svc))
        c.framer = RequestFramer(bool(getattr(c.svc.decider, "needs_body", False)),
                                 eng.cfg.max_header_bytes, eng.cfg.max_body_bytes)
        if rest:
            eng.reasm.segment(c.req, 0, rest, False)
            c.framer.feed(bytes(c.req.buf))

    def _relay(self, c, data: bytes, off: int, fin: bool = False) -> list:
        """Client bytes ``data`` at offset ``off`` (from ``cl.isn`` + 1), and a FIN after
        them when ``fin``, to the server."""
        eng = self.eng
        cl, sl, ka = c.cl, c.sl, c.ka
        size = max(64, min(sl.mss, 65495))
        seq = (cl.isn + 1 + off + c.c2s.seq_delta) & MOD32
        ack = (ka.cack + c.c2s.ack_delta) & MOD32
        out = []
        for i in range(0, max(1, len(data)), size):
            last = i + size >= len(data)
            flags = ACK | (PSH if last and data else 0) | (FIN if last and fin else 0)
            out.append(eng._to_server(c, seq + i, ack, flags, data[i:i + size]))
        end = (cl.isn + 1 + off + len(data) + (1 if fin else 0)) & MOD32
        if seq_lt(cl.nxt, end):
            cl.nxt = end
        if fin:
            cl.fin = True
        ka.fack, ka.fwin = ka.cack, cl.win
        return out

    # ------------------------------------------------------------------ client side
    def client(self, c, seg, frame: bytes, now: float) -> list:
        """A client segment of a NONSTICKY connection (no client -> server entry)."""
        eng = self.eng
        ka, cl = c.ka, c.cl
        ka.last = now
        eng.stats.sw_spliced += 1
        f = seg.flags
        if f & RST:
            return self._splice(c, frame, True) + eng._close_seen(c, seg, True, now)
        if not f & ACK:
            return []
        cl.win = seg.window
        if seq_lt(ka.cack, seg.ack):
            ka.cack = seg.ack
        rel = seq_rel(seg.seq, (cl.isn + 1) & MOD32)
        data = seg.payload
        out: list = []
        if rel < 0 and data:
            # bytes of the request forwarded last (its body, or a retransmission)
            k = min(len(data), -rel)
            if k == len(data) and not f & FIN:
                eng._advance(cl, seg)
                ka.fack, ka.fwin = seg.ack, seg.window
                out = self._splice(c, frame, True)
            else:
                out += self._relay(c, data[:k], rel)
            data, rel = data[k:], 0
        req = c.req
        fin = bool(f & FIN)
        if data or fin:
            n0 = len(req.buf)
            eng.reasm.segment(req, rel, data, fin)
            if len(req.buf) > n0:
                c.framer.feed(bytes(req.buf[n0:]))
        if req.fin_rcvd and not req.buf:
            # the client closes the connection between requests: pass its FIN on
            return out + self._relay(c, b"", 0, True) + eng._close_seen(c, seg, True, now)
        fr = c.framer
        if fr.error is not None or req.fin_rcvd and not fr.ready:
            eng.stats.bad_requests += 1
            return out + eng._abort(c, now, "bad request on a NONSTICKY connection: "
                                    + (fr.error_reason or "closed mid-request"))
        if fr.ready and ka.response_done():
            return out + self._next(c, now)
        if ka.fack != seg.ack or ka.fwin != seg.window:
            ka.fack, ka.fwin = seg.ack, seg.window
            out.append(eng._to_server(c, (cl.nxt + c.c2s.seq_delta) & MOD32,
                                      (seg.ack + c.c2s.ack_delta) & MOD32, ACK))
        return out

    @staticmethod
    def _splice(c, frame: bytes, from_client: bool) -> list:
        if from_client:
            return [PacketOut(c.sl.sw_port, apply_splice(frame, c.c2s))]
        return [PacketOut(c.cl.sw_port, apply_splice(frame, c.s2c))]

    # ------------------------------------------------------------------ the next request
    def _next(self, c, now: float) -> list:
        """The next request's head is in and the client has the previous response: classify
        it and forward it to its server."""
        eng = self.eng
        ka = c.ka
        if c.sl.fin:
            # The server closed the connection and the client has its FIN: nothing may
            # follow it.  The client retries on a new connection.
            return eng._abort(c, now, "request after the server closed the connection")
        eng.stats.nonsticky_requests += 1
        out, ch, server = eng._choose(c, now)
        if ch.status is not None or server is None:
            return out + self._local_answer(c, ch, now)
        if ka.pinned:
            server = c.choice.server
        same = server is c.choice.server
        ka.pinned = ka.pinned or ch.sticky
        if not same:
            return out + self._rebind(c, ch, server, now)
        if ka.pinned and not getattr(c.svc.decider, "rejects", False):
            return out + self.to_sticky(c, "STICKY decision")
        fwd = self._forward_request(c)
        if not ka.s2c_in:
            return out + fwd
        # The next response's head must come here: the entry goes first.
        ka.s2c_in = False
        pkts = tuple(e for e in fwd if isinstance(e, PacketOut))
        return out + [RemoveFlows([c.s2c.key], 0.0, then=pkts)] + \
            [e for e in fwd if not isinstance(e, PacketOut)]

    def _leave_server(self, c) -> list:
        """Reset the current server connection of ``c`` (the client has its whole last
        response) and remove its entry; ``c`` becomes half-bound."""
        from .engine import RECV
        eng = self.eng
        ka = c.ka
        out = [eng._to_server(c, (c.cl.isn + 1 + c.c2s.seq_delta) & MOD32, 0, RST)]
        if ka.s2c_in:
            out.append(RemoveFlows([c.s2c.key], 0.0))
            ka.s2c_in = False
        eng._release_server(c)
        eng.stats.spliced_active -= 1
        eng.admission.opened(c)
        eng.admission.busy(c)
        c.state = RECV
        eng._disarm(c)
        c.cl.snd_nxt = ka.cack
        return out

    def _rebind(self, c, ch, server, now: float) -> list:
        from .engine import ServerLeg
        eng = self.eng
        eng.stats.rebinds += 1
        was = c.choice.server.name
        out = self._leave_server(c)
        out.append(eng._log(c, "debug", "re-binding", server=server.name, was=was,
                            rule=c.rule))
        c.sl = ServerLeg()
        c.shift = 0
        c.choice = ch
        return out + eng._connect(c, server, now)

    def _local_answer(self, c, ch, now: float) -> list:
        """A later request is refused or redirected by the rules, or has no server: the
        switch answers it itself and closes the connection."""
        out = self._leave_server(c)
        c.ka = None
        return out + self.eng._answer(c, ch, now)

    # ------------------------------------------------------------------ server side
    def server(self, c, seg, frame: bytes, now: float) -> list:
        """A server segment of a NONSTICKY connection that missed (no server -> client
        entry: a response head is being read, or a chunked body)."""
        eng = self.eng
        ka, sl = c.ka, c.sl
        ka.last = now
        f = seg.flags
        if f & RST:
            return self._splice(c, frame, False) + eng._close_seen(c, seg, False, now)
        r = ka.reader
        data = seg.payload
        if data:
            off = seq_rel(seg.seq, (sl.isn + 1) & MOD32)
            if r is None or r.end is not None and off + len(data) > r.end:
                eng.stats.bad_responses += 1
                return eng._abort(c, now, "server data after its response", "warning")
            if r.needs_bytes:
                if off > r.fed:
                    return []               # out of order: the server sends it again
                r.feed(off, data)
                if r.bad is None and r.end is not None and off + len(data) > r.end:
                    r.bad = "data after the response"
                if r.bad is not None:
                    eng.stats.bad_responses += 1
                    return eng._abort(c, now, "not an HTTP response: " + r.bad, "warning")
        eng.stats.sw_spliced += 1
        eng._advance(sl, seg)
        out = self._splice(c, frame, False)
        if r is not None and r.sticky is not None:
            return out + self.to_sticky(c, r.sticky)
        if r is not None and r.end is not None and ka.rend is None:
            ka.rend = (sl.isn + 1 + r.end + c.s2c.seq_delta) & MOD32
            if seq_rel((sl.isn + 1 + r.end) & MOD32, sl.nxt) > FAST_BODY and not f & FIN:
                # a long body goes on beyond what came here: it rides the entry
                ka.s2c_in = True
                out.append(InstallFlows([c.s2c], []))
        if f & FIN:
            out += eng._close_seen(c, seg, False, now)
        return out

    def to_sticky(self, c, why: str) -> list:
        """The connection cannot go on request by request: it becomes an ordinary spliced
        connection on its current server (both entries), from now on."""
        eng = self.eng
        ka = c.ka
        eng.stats.nonsticky_sticky += 1
        flows = [c.c2s] if ka.s2c_in else [c.c2s, c.s2c]
        then = []
        if c.req is not None and c.req.buf:
            then = self._relay(c, bytes(c.req.buf), 0, c.req.fin_rcvd)
        eng._drop_request(c)
        c.framer = None
        c.ka = None
        eng._disarm(c)
        return [InstallFlows(flows, then),
                eng._log(c, "debug", "NONSTICKY connection continues STICKY", why=why)]

    def timeout(self, c, now: float) -> list:
        """The idle timer of a NONSTICKY connection (its entries do not see the client)."""
        eng = self.eng
        idle = eng.cfg.flow_idle_timeout
        if now < c.ka.last + idle:
            eng._arm(c, c.ka.last + idle)
            return []
        return eng.flow_expired(FlowKey(c.cl.ip, c.cl.vip, TCP, c.cl.port, c.cl.vport), now)
