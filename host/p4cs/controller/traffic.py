"""Traffic per server and per service, from the switch's per-flow counters.

Every installed flow has a counter cell in the switch (its flow id is the index). The
controller records, for each flow id, the connection it carries (:class:`FlowMeta`); when a
flow ends its counts are added to its server's and service's totals (:meth:`FlowBook.done`),
and a sample adds the counts of the flows installed now (:meth:`FlowBook.totals`). ``in``
is the client-to-server direction, ``out`` the server-to-client one (as in ``ipvsadm
--stats``). Rates are differences between successive samples (:class:`Rates`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p4cs.csproc.packet import ip_str

#: Totals of one server or service, as sampled.
TOTALS = ("conns", "in_packets", "out_packets", "in_bytes", "out_bytes")
#: Rates per second derived from ``TOTALS`` (ipvsadm --rate: CPS InPPS OutPPS InBPS OutBPS).
RATES = {"cps": "conns", "in_pps": "in_packets", "out_pps": "out_packets",
         "in_bps": "in_bytes", "out_bps": "out_bytes"}


@dataclass(slots=True)      # not frozen: built twice per connection, a frozen init costs 3x
class FlowMeta:
    service: str
    server: str          # the server's name, as in the status listing
    direction: str       # c2s (in) | s2c (out)
    client: str          # ip:port
    conn_id: int


def meta_of(engine: Any, flow: Any) -> FlowMeta | None:
    """What the flow ``flow`` (an effects.FlowSpec) carries, from the engine's connection."""
    c = engine.by_id.get(flow.conn_id)
    if c is None or c.choice is None or c.choice.server is None:
        return None
    return FlowMeta(c.svc.name, c.choice.server.name, flow.direction,
                    f"{ip_str(c.cl.ip)}:{c.cl.port}", flow.conn_id)


#: The packets and bytes totals of each side.
_FIELDS = {side: (f"{side}_packets", f"{side}_bytes") for side in ("in", "out")}


def _zero() -> dict[str, int]:
    return dict.fromkeys(TOTALS, 0)


def _totals(into: dict, key: tuple[str, str]) -> dict[str, int]:
    """The totals of ``key`` in ``into``, zero ones added if there are none (setdefault
    without building a zero record each time)."""
    t = into.get(key)
    if t is None:
        t = into[key] = _zero()
    return t


class FlowBook:
    def __init__(self):
        self.meta: dict[int, FlowMeta] = {}
        self._done: dict[tuple[str, str], dict[str, int]] = {}   # (kind, name) -> totals

    def add(self, fid: int, meta: FlowMeta | None) -> None:
        if meta is None:
            self.meta.pop(fid, None)
            return
        self.meta[fid] = meta
        if meta.direction == "c2s":
            for key in (("server", meta.server), ("service", meta.service)):
                _totals(self._done, key)["conns"] += 1

    def drop(self, fid: int) -> None:
        self.meta.pop(fid, None)

    def done(self, fid: int, packets: int, nbytes: int) -> None:
        """The flow ``fid`` ended having carried these counts."""
        meta = self.meta.pop(fid, None)
        if meta is not None:
            self._account(self._done, meta, packets, nbytes)

    @staticmethod
    def _account(into: dict, meta: FlowMeta, packets: int, nbytes: int) -> None:
        pk, by = _FIELDS["in" if meta.direction == "c2s" else "out"]
        for key in (("server", meta.server), ("service", meta.service)):
            t = _totals(into, key)
            t[pk] += packets
            t[by] += nbytes

    def totals(self, live: dict[int, tuple[int, int]]) -> dict[str, dict[str, dict[str, int]]]:
        """Totals per server and per service: ended flows plus ``live`` (flow id ->
        (packets, bytes) of the flows installed now)."""
        acc = {k: dict(v) for k, v in self._done.items()}
        for fid, (p, b) in live.items():
            meta = self.meta.get(fid)
            if meta is not None:
                self._account(acc, meta, p, b)
        out: dict[str, dict[str, dict[str, int]]] = {"servers": {}, "services": {}}
        for (kind, name), t in sorted(acc.items()):
            out[kind + "s"][name] = t
        return out

    def flows_of(self, client: str) -> list[tuple[int, FlowMeta]]:
        """The flows of the connection(s) of ``client`` (ip:port), both directions."""
        conns = {m.conn_id for m in self.meta.values() if m.client == client}
        return sorted((fid, m) for fid, m in self.meta.items() if m.conn_id in conns)


class Rates:
    """Rates per second between successive samples of totals (per kind and name)."""

    def __init__(self):
        self._prev: dict[str, dict[str, dict[str, int]]] | None = None
        self._at = 0.0

    def update(self, sample: dict[str, dict[str, dict[str, int]]], now: float) -> dict:
        """``sample`` with a ``RATES`` entry added to every server and service; the first
        sample (and a sample taken at the same instant) gives rates of 0."""
        prev, dt = self._prev, now - self._at
        out: dict[str, dict[str, dict[str, float]]] = {}
        for kind, entries in sample.items():
            out[kind] = {}
            for name, t in entries.items():
                p = (prev or {}).get(kind, {}).get(name, _zero())
                r = {rate: round(max(0, t[total] - p[total]) / dt, 3) if prev is not None
                     and dt > 0 else 0.0 for rate, total in RATES.items()}
                out[kind][name] = {**t, **r}
        self._prev, self._at = sample, now
        return out

    def age(self, now: float) -> float:
        """Seconds since the latest sample (infinite before the first)."""
        return now - self._at if self._prev is not None else float("inf")


#: Connection states that count as inactive (ipvsadm's InActConn): torn down or closing.
INACTIVE_STATES = ("closing", "time_wait", "resetting")


def inactive_per_server(engine: Any) -> dict[str, int]:
    """Server name -> connections bound to it that are closing or torn down."""
    out: dict[str, int] = {}
    for c in engine.by_id.values():
        if c.state in INACTIVE_STATES and c.choice is not None and c.choice.server is not None:
            out[c.choice.server.name] = out.get(c.choice.server.name, 0) + 1
    return out
