"""Effects returned by the CS processor; the controller executes them in list order.

Every effect is a plain dataclass so that tests can compare them and the controller can log
them; none is changed once made (not frozen: a frozen dataclass costs 2.5 times as much to
make, and the engine makes several per connection; equal effects hash alike as frozen ones
did). Addresses are host-order integers (IPv4) and 6-byte MACs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

TCP = 6


class FlowKey(NamedTuple):
    """Exact-match key of the data-plane flow table (IPv4 5-tuple, as seen on ingress)."""

    src_ip: int
    dst_ip: int
    proto: int
    sport: int
    dport: int


@dataclass(slots=True, unsafe_hash=True)
class FlowSpec:
    """One flow-table entry with action ``splice``.

    A packet matching ``key`` is rewritten to ``smac -> dmac``, ``sip:sport -> dip:dport``,
    ``seq += seq_delta``, ``ack += ack_delta`` (both mod 2**32; the ack field is rewritten
    even when the ACK flag is clear, receivers ignore it then), IPv4 and TCP checksums are
    fixed and the packet leaves on ``port``.  ``direction`` is ``"c2s"`` (client -> server)
    or ``"s2c"``; ``conn_id`` identifies the connection in ``Engine.install_failed``.
    """

    key: FlowKey
    port: int
    dmac: bytes
    smac: bytes
    sip: int
    dip: int
    sport: int
    dport: int
    seq_delta: int
    ack_delta: int
    idle_timeout_s: float
    conn_id: int
    direction: str


@dataclass(slots=True, unsafe_hash=True)
class PacketOut:
    """Send ``frame`` (a complete Ethernet frame) out of data-plane port ``port``."""

    port: int
    frame: bytes


@dataclass(slots=True, unsafe_hash=True)
class InstallFlows:
    """Write ``flows`` (one P4Runtime batch); only if the write succeeded, send ``then``.

    If the write fails the controller must call ``Engine.install_failed(conn_id, now)`` and
    execute the effects it returns (the ``then`` packets are dropped).
    """

    flows: list[FlowSpec]
    then: list[PacketOut] = field(default_factory=list)


@dataclass(slots=True, unsafe_hash=True)
class RemoveFlows:
    """Delete the entries with these keys ``after`` seconds from now (0 = at once).

    A NOT_FOUND answer is not an error: the entry may have aged out in the data plane.
    ``ended``: those of the keys whose entry a FIN or RST hit in the data plane (the copy came
    with ``REASON_FLOW_END``); a data plane that moves such entries to a short expiry profile
    removes them by itself.
    ``then``: packets to send once the deletion is done (with ``after`` 0): the SYN-ACK of a
    new connection on the 4-tuple of a closed one must not let the client's next segment meet
    the closed connection's entry.
    """

    keys: list[FlowKey]
    after: float = 0.0
    ended: tuple[FlowKey, ...] = ()
    then: tuple[PacketOut, ...] = ()


@dataclass(slots=True, unsafe_hash=True)
class CountFlows:
    """Read the packet counts of the entries ``keys`` (one connection's) and call
    ``Engine.flows_counted((keys[0], packets), now)`` with their sum, or with None when they
    cannot be read. The engine asks this of a half-closed connection now and then."""

    keys: tuple[FlowKey, ...]


@dataclass(slots=True, unsafe_hash=True)
class Log:
    """A structured log record (``level`` is a ``logging`` level name, lower case)."""

    level: str
    msg: str
    fields: dict = field(default_factory=dict)

    @staticmethod
    def make(level: str, msg: str, **fields) -> "Log":
        return Log(level, msg, fields)


Effect = PacketOut | InstallFlows | RemoveFlows | CountFlows | Log
