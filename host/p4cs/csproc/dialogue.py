"""TCP for server-speaks-first services: the switch's own greeting and replies to the
client, and the replay of the client's commands to the chosen server before the splice.
The protocol dialogue itself is a front of ``mail.py``; this module is the part of the
engine that drives it (docs/csproc.md section 13).

Sequence spaces.  The client sees the switch's greeting and replies; the server sees the
replayed commands only.  The switch's ISN towards the server is the client's ISN plus the
bytes it does not replay (``Front.skip``), so the client's bytes from the decision command
on keep their sequence numbers (c2s ``seq_delta`` stays 0).  The server's greeting and
replies the switch absorbs move its ISN as the splice sees it (``ServerLeg.isn``) by their
length, so ``seq_delta (s2c) = client's view after the switch's last reply - server's
sequence after its last absorbed reply``.
"""

from __future__ import annotations

from .mail import CLOSE, DECIDE, MAX_SERVER_REPLY
from .packet import ACK, FIN, MOD32, PSH, RST, SYN, seq_rel

DIALOG = "dialog"   # the switch talks to the client itself, up to the decision command
REPLAY = "replay"   # server connected: absorbing its greeting, replaying the commands


class Dialogues:
    """The engine's side of the fronts; ``eng`` is the Engine (its packet builders,
    timers, decision and splice)."""

    def __init__(self, eng):
        self.eng = eng

    # ------------------------------------------------------------------ client side
    def start(self, c, now: float) -> list:
        """The client's handshake completed: greet it."""
        c.front.deadline = now + self.eng.cfg.request_timeout
        return self._say(c, c.front.greeting(), now)

    def _say(self, c, data: bytes, now: float) -> list:
        cl = c.cl
        c.resp = data
        c.resp_seq = cl.snd_nxt
        cl.snd_nxt = (cl.snd_nxt + len(data)) & MOD32
        c.relay_tries = 0
        self._arm(c, now)
        return self._send(c)

    def _send(self, c) -> list:
        """The switch's unacknowledged output to the client, in client-MSS segments."""
        eng = self.eng
        ack = (c.cl.isn + 1 + c.req.acked) & MOD32
        resp, size = c.resp, c.cl.mss
        return [eng._to_client(c, c.resp_seq + off, ack, ACK | PSH, resp[off:off + size])
                for off in range(0, len(resp), size)]

    def _arm(self, c, now: float) -> None:
        fr = c.front
        if c.resp:
            rto = self.eng.cfg.relay_rto * (1 << c.relay_tries)
            self.eng._arm(c, min(fr.deadline, now + rto))
        else:
            self.eng._arm(c, fr.deadline)

    def client_segment(self, c, seg, new: bool, gap: bool, dup: bool, now: float) -> list:
        """A client segment in DIALOG, already reassembled into ``c.req``.  Commands are
        answered one at a time: the next is read once the client acknowledged the
        previous reply, so a pipelining client is served in order."""
        eng = self.eng
        cl, req, fr = c.cl, c.req, c.front
        out: list = []
        if c.resp and seg.flags & ACK:
            n = seq_rel(seg.ack, c.resp_seq)
            if 0 < n <= len(c.resp):
                c.resp = c.resp[n:]
                c.resp_seq = seg.ack
                c.relay_tries = 0
                self._arm(c, now)
        partial = False
        while not c.resp:
            step = fr.step(req.buf, fr.pos)
            if step is None:
                partial = fr.pos < len(req.buf)
                break
            kind, reply, end = step
            if kind == DECIDE:
                c.tail = fr.dec[0]
                return out + eng._decide(c, now)
            fr.pos = end
            req.acked = max(req.acked, end)
            if kind == CLOSE:
                return out + eng._close_resp(c, reply, now, {"why": "client ended the dialogue"})
            out += self._say(c, reply, now)
        if not c.resp:
            if req.fin_rcvd:
                eng.stats.client_early_close += 1
                return out + eng._close_with(c, None, now, "client closed the dialogue")
            if len(req.buf) >= req.cap:
                return out + eng._refuse(c, 431, "dialogue above max_header_bytes", now)
        if partial:
            # An incomplete command: acknowledge it so that the client sends the rest
            # (these bytes are then the switch's to deliver, as for HTTP).
            req.acked = len(req.buf)
        if not out and (gap or dup or partial):
            out.append(eng._to_client(c, cl.snd_nxt, (cl.isn + 1 + req.acked) & MOD32, ACK))
        return out

    def refused(self, c, reply: bytes, now: float, fields: dict) -> list:
        """The rules refused the decision command: answer it and read on."""
        fr, req = c.front, c.req
        fr.skip_decision()
        req.acked = max(req.acked, fr.pos)
        return self._say(c, reply, now) + [self.eng._log(c, "info", "command refused",
                                                         **fields)]

    def dialog_timeout(self, c, now: float) -> list:
        if now >= c.front.deadline:
            return self.eng._refuse(c, 408, "dialogue timeout", now)
        c.relay_tries += 1
        self._arm(c, now)
        return self._send(c)

    # ------------------------------------------------------------------ server side
    def server_up(self, c, now: float) -> list:
        """The server answered the SYN: complete its handshake, wait for its greeting."""
        fr, sl = c.front, c.sl
        c.state = REPLAY
        fr.rx = bytearray()
        fr.step_i = -1
        fr.sent = 0
        fr.cur = None
        fr.absorbed = 0
        sl.nxt = (sl.isn + 1) & MOD32
        c.relay_tries = 0
        self.eng._arm(c, now + self.eng.cfg.relay_rto)
        return [self._ack(c)]

    def _ack(self, c):
        fr, sl = c.front, c.sl
        return self.eng._to_server(c, (sl.our_isn + 1 + fr.sent) & MOD32, sl.nxt, ACK)

    def _segments(self, c, seq: int, data: bytes) -> list:
        size = max(64, min(c.sl.mss, 65495))
        eng, nxt = self.eng, c.sl.nxt
        return [eng._to_server(c, (seq + off) & MOD32, nxt, ACK | PSH, data[off:off + size])
                for off in range(0, len(data), size)]

    def _next_step(self, c, now: float) -> list:
        fr, sl = c.front, c.sl
        s, e, _ = fr.replay()[fr.step_i]
        data = bytes(c.req.buf[s:e])
        fr.cur = ((sl.our_isn + 1 + fr.sent) & MOD32, data)
        fr.sent += len(data)
        c.relay_tries = 0
        self.eng._arm(c, now + self.eng.cfg.relay_rto)
        return self._segments(c, *fr.cur)

    def _resend(self, c) -> list:
        cur = c.front.cur
        return [self._ack(c)] if cur is None else self._segments(c, *cur)

    def server_segment(self, c, seg, now: float) -> list:
        """A server segment in REPLAY."""
        f = seg.flags
        fr, sl = c.front, c.sl
        if f & RST:
            return self._server_failed(c, now, "server reset", rst=False)
        if f & SYN:
            return self._resend(c) if f & ACK else []   # our ACK of its SYN-ACK was lost
        if seg.payload:
            if seg.seq != sl.nxt:
                return [self._ack(c)]      # a retransmission or out of order: re-ACK
            fr.rx += seg.payload
            sl.nxt = (sl.nxt + len(seg.payload)) & MOD32
        elif not f & FIN:
            return []
        replay = fr.replay()
        while True:
            expect = fr.greeting_expect if fr.step_i < 0 else replay[fr.step_i][2]
            r = fr.server_reply(expect, bytes(fr.rx))
            if r is None:
                break
            n, ok, text = r
            del fr.rx[:n]
            fr.absorbed += n
            if ok is None:
                continue
            if not ok:
                return self._server_failed(c, now, "server refused", reply=text)
            if fr.rx:
                return self._server_failed(c, now, "server sent more than its reply")
            fr.step_i += 1
            if fr.step_i < len(replay):
                return self._next_step(c, now)
            # Everything replayed: the server's stream, as the client will see it,
            # starts after its last absorbed reply.
            sl.isn = (sl.isn + fr.absorbed) & MOD32
            return self.eng._splice(c, now)
        if f & FIN:
            return self._server_failed(c, now, "server closed")
        if len(fr.rx) > MAX_SERVER_REPLY:
            return self._server_failed(c, now, "server reply too long")
        return [self._ack(c)]

    def server_rst(self, c):
        fr, sl = c.front, c.sl
        return self.eng._to_server(c, (sl.our_isn + 1 + fr.sent) & MOD32, 0, RST)

    def _server_failed(self, c, now: float, why: str, rst: bool = True,
                       reply: str | None = None) -> list:
        """The server cannot take the connection: reset it, try another or refuse."""
        eng = self.eng
        out = [self.server_rst(c)] if rst else []
        eng.stats.server_refused += 1
        fields = {"server": c.choice.server.name, "why": why}
        if reply is not None:
            fields["reply"] = reply[:200]
        out.append(eng._log(c, "warning", "server failed the replay", **fields))
        return out + eng._next_server(c, c.choice.server, now, why)

    def replay_timeout(self, c, now: float) -> list:
        eng = self.eng
        cfg = eng.cfg
        if c.relay_tries >= cfg.relay_retries:
            eng.stats.server_timeouts += 1
            return self._server_failed(c, now, "server did not answer")
        c.relay_tries += 1
        eng._arm(c, now + cfg.relay_rto * (1 << c.relay_tries))
        return self._resend(c)
