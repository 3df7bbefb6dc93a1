"""Reassembly of a client's request before splicing: the bytes a connection holds, its
out-of-order segments, and the global buffer budget they share (``buffered_bytes``,
bounded by ``Config.max_buffered_bytes``).  See docs/csproc.md sections 4 and 7."""

from __future__ import annotations

from .stats import Stats


class RequestBuffer:
    """The request bytes one connection holds, as offsets from the client's ISN + 1."""

    __slots__ = ("buf", "ooo", "cap", "fin_at", "fin_rcvd", "acked")

    def __init__(self, cap: int):
        self.buf = bytearray()   # contiguous bytes from offset 0
        self.ooo = {}            # offset -> bytes, beyond a gap
        self.cap = cap           # right edge of the window: bytes the switch buffers
        self.fin_at = None       # offset of the client's FIN, once seen
        self.fin_rcvd = False    # every byte before the FIN is in ``buf``
        self.acked = 0           # bytes (+1 for the FIN) the switch acknowledged itself


class Reassembler:
    """Adds client segments to RequestBuffers under the global budget; every byte held
    (contiguous or out of order) is counted in ``stats.buffered_bytes``."""

    def __init__(self, stats: Stats, cfg):
        self.stats = stats
        self.cfg = cfg          # max_buffered_bytes, max_ooo_segments

    def segment(self, rb: RequestBuffer, rel: int, data: bytes,
                fin: bool) -> tuple[bool, bool]:
        """A segment at offset ``rel`` (FIN flag ``fin``); returns (gap, duplicate)."""
        buf = rb.buf
        if (not fin and rel == len(buf) and not rb.ooo and rb.fin_at is None
                and rel + len(data) <= rb.cap):
            # the common case, written out: the next bytes in order, nothing held beyond
            st = self.stats
            if st.buffered_bytes + len(data) > self.cfg.max_buffered_bytes:
                st.limit_memory += 1
                return False, False
            st.buffered_bytes += len(data)
            buf += data
            return False, False
        gap = dup = False
        if data:
            gap, dup = self._reassemble(rb, rel, data)
        if fin:
            end = rel + len(data)
            # A FIN before bytes the client already sent (in order or beyond a gap) is not
            # the end of its stream: a TCP receiver takes it for an old segment (the bytes
            # before it would otherwise be cut from the request).
            if (rb.fin_at is None and len(buf) <= end <= rb.cap
                    and all(r + len(d) <= end for r, d in rb.ooo.items())):
                rb.fin_at = end
        if rb.fin_at is not None and not rb.fin_rcvd and len(rb.buf) >= rb.fin_at:
            self.stats.buffered_bytes -= max(0, len(rb.buf) - rb.fin_at)
            del rb.buf[rb.fin_at:]
            rb.fin_rcvd = True
        return gap, dup

    def _reassemble(self, rb: RequestBuffer, rel: int, data: bytes) -> tuple[bool, bool]:
        """Add a segment at offset ``rel``; returns (gap, duplicate)."""
        buf = rb.buf
        n = len(buf)
        right = rb.cap if rb.fin_at is None else rb.fin_at
        end = rel + len(data)
        if end <= n:
            self.stats.duplicate_segments += 1
            return False, True
        if rel > n:
            self.stats.out_of_order += 1
            if rel < right and (rel in rb.ooo or len(rb.ooo) < self.cfg.max_ooo_segments):
                old = rb.ooo.get(rel)
                if old is None or len(old) < len(data):
                    d = data[:right - rel]
                    add = len(d) - (len(old) if old else 0)
                    if not self._budget(add):
                        return False, False
                    rb.ooo[rel] = d
            else:
                self.stats.limit_ooo += 1
            return True, False
        if n >= right:
            return False, True
        d = data[n - rel:right - rel]
        if not self._budget(len(d)):
            return False, False
        buf += d
        ooo = rb.ooo
        st = self.stats
        while ooo:
            r = min(ooo)
            if r > len(buf):
                break
            d = ooo.pop(r)
            st.buffered_bytes -= len(d)
            if r + len(d) > len(buf):
                tail = d[len(buf) - r:]
                buf += tail
                st.buffered_bytes += len(tail)
        return False, False

    def _budget(self, add: int) -> bool:
        """Account ``add`` buffered bytes, or refuse them (the client will retransmit)."""
        st = self.stats
        if add > 0 and st.buffered_bytes + add > self.cfg.max_buffered_bytes:
            st.limit_memory += 1
            return False
        st.buffered_bytes += add
        return True

    def drop_ooo(self, rb: RequestBuffer) -> None:
        """Forget the out-of-order segments (the request is complete or abandoned)."""
        if rb.ooo:
            self.stats.buffered_bytes -= sum(len(d) for d in rb.ooo.values())
            rb.ooo.clear()

    def release(self, rb: RequestBuffer) -> None:
        """Forget every byte held."""
        self.stats.buffered_bytes -= len(rb.buf)
        rb.buf = bytearray()
        if rb.ooo:
            self.drop_ooo(rb)
