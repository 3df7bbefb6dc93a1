"""Client arbitration: per-role primary election over the StreamChannel connections.

Per role name, the stream that presented the highest election id ever seen for the role is
primary while it stays connected. Every arbitrated stream learns the outcome through a
MasterArbitrationUpdate (OK = primary, ALREADY_EXISTS = backup, NOT_FOUND = no primary);
when the primary changes, every stream of the role is told.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from finsy.proto import p4r, rpc_code

from .errors import SC, P4RTError, unknown_device

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

# PacketIn messages queued per stream before we drop (a slow controller must not grow memory).
STREAM_QUEUE_MAX = 8192


def _u128(v: p4r.Uint128) -> int:
    return (v.high << 64) | v.low


def _to_u128(x: int) -> p4r.Uint128:
    return p4r.Uint128(high=x >> 64, low=x & 0xFFFFFFFFFFFFFFFF)


class StreamConn:
    """One StreamChannel: its outgoing queue and what it presented in arbitration."""

    __slots__ = ("queue", "role", "election_id", "peer", "arbitrated", "dropped")

    def __init__(self, peer: str):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.role: str = ""
        self.election_id: int | None = None
        self.peer = peer
        self.arbitrated = False
        self.dropped = 0

    def put(self, msg: Any) -> None:
        if self.queue.qsize() >= STREAM_QUEUE_MAX:
            self.dropped += 1
            return
        self.queue.put_nowait(msg)


@dataclass
class RoleState:
    highest: int | None = None  # highest election id ever seen for this role
    conns: dict[StreamConn, int | None] = field(default_factory=dict)
    primary: StreamConn | None = None


def _role_name(role: str) -> str:
    return role or "<default>"


class Arbiter:
    """The roles of one device and their primaries."""

    def __init__(self, device_id: int):
        self.device_id = device_id
        self.roles: dict[str, RoleState] = {}

    def arbitrate(self, conn: StreamConn, arb: p4r.MasterArbitrationUpdate) -> P4RTError | None:
        """Apply a MasterArbitrationUpdate of `conn`; the error that ends the stream, if any."""
        if arb.device_id != self.device_id:
            return unknown_device(arb.device_id, self.device_id)
        role = arb.role.name if arb.HasField("role") else ""
        if arb.HasField("role") and arb.role.HasField("config"):
            return P4RTError(SC.UNIMPLEMENTED, "role configurations are not supported")
        if conn.arbitrated and role != conn.role:
            return P4RTError(SC.FAILED_PRECONDITION, "a stream cannot change its role")
        eid = _u128(arb.election_id) if arb.HasField("election_id") else None
        st = self.roles.setdefault(role, RoleState())
        if eid is not None:
            for other, oeid in st.conns.items():
                if other is not conn and oeid == eid:
                    return P4RTError(
                        SC.INVALID_ARGUMENT,
                        f"election id {eid} is already used by another client of role {_role_name(role)!r}",
                    )
        conn.role = role
        conn.election_id = eid
        conn.arbitrated = True
        st.conns[conn] = eid
        old = st.primary
        if eid is not None and (st.highest is None or eid >= st.highest):
            st.highest = eid
            st.primary = conn
        elif st.primary is conn:
            st.primary = None  # the primary lowered its election id: it is a backup now
        if st.primary is not old:
            LOG.info(
                "role %r: primary is now %s (election id %s)",
                _role_name(role),
                st.primary.peer if st.primary else "none",
                st.highest,
            )
            for c in st.conns:
                c.put(self._update(st, c, role))
        else:
            conn.put(self._update(st, conn, role))
        return None

    def _update(self, st: RoleState, conn: StreamConn, role: str) -> p4r.StreamMessageResponse:
        u = p4r.MasterArbitrationUpdate(device_id=self.device_id)
        if role:
            u.role.name = role
        if st.highest is not None:
            u.election_id.CopyFrom(_to_u128(st.highest))
        if st.primary is conn:
            u.status.code = rpc_code.OK
            u.status.message = "primary"
        elif st.primary is not None:
            u.status.code = rpc_code.ALREADY_EXISTS
            u.status.message = "backup: another client is primary"
        else:
            u.status.code = rpc_code.NOT_FOUND
            u.status.message = "backup: no primary for this role"
        return p4r.StreamMessageResponse(arbitration=u)

    def disconnect(self, conn: StreamConn) -> None:
        """`conn` closed: if it was primary, its role has none until a client re-arbitrates."""
        st = self.roles.get(conn.role)
        if st is None or conn not in st.conns:
            return
        del st.conns[conn]
        if st.primary is conn:
            st.primary = None
            LOG.info("role %r: primary disconnected", _role_name(conn.role))
            for c in st.conns:
                c.put(self._update(st, c, conn.role))

    def primaries(self) -> Iterable[StreamConn]:
        for st in self.roles.values():
            if st.primary is not None:
                yield st.primary

    def is_primary(self, conn: StreamConn) -> bool:
        st = self.roles.get(conn.role)
        return conn.arbitrated and st is not None and st.primary is conn

    def check_primary(self, role: str, election: p4r.Uint128 | None, has_eid: bool) -> None:
        """Raise PERMISSION_DENIED unless (role, election id) is the role's primary's."""
        st = self.roles.get(role)
        if st is None or st.primary is None:
            raise P4RTError(
                SC.PERMISSION_DENIED, f"not primary: role {_role_name(role)!r} has no primary client"
            )
        if not has_eid or _u128(election) != st.primary.election_id:
            got = _u128(election) if has_eid else "unset"
            raise P4RTError(
                SC.PERMISSION_DENIED,
                f"not primary: election id {got} is not the primary's for role {_role_name(role)!r}",
            )
