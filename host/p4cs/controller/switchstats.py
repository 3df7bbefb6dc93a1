"""The switch's own counters: per port (packets, bytes, drops, errors) and per table of the
pipeline, for `p4cs status` and the metrics.

The DPDK target answers ``{"op": "stats"}`` on the socket it advertises in its Capabilities
answer (:mod:`p4cs.switch.dpdk.statsreq`) with its data-plane daemon's counters. The
controller asks at every traffic sample (a controller on the same host: a switch on another
host, or in another mount namespace, cannot be asked). BMv2's simple_switch has no port
counters over P4Runtime: the status says they are not available on this target, and the
metrics have none.
"""

from __future__ import annotations

import asyncio
import json
import socket

from finsy import Switch
from finsy.p4client import P4ClientError

from p4cs.controller.packetchan import advertised_channel
from p4cs.switch.dpdk.statsreq import MAX_ANSWER, REQUEST

NOT_AVAILABLE = "not available on this target"
#: Seconds to wait for the answer.
TIMEOUT_S = 2.0
#: The per-port counters shown and exported, as the daemon names them.
PORT_COUNTERS = ("rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "rx_drops", "rx_errors",
                 "tx_drops")


class StatsUnavailable(Exception):
    """The switch's counters cannot be read (the message says why)."""


async def ask(path: str) -> dict:
    """The counters of the switch whose socket is ``path``; StatsUnavailable, OSError."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as conn:
        conn.setblocking(False)
        await loop.sock_connect(conn, path)
        await loop.sock_sendall(conn, json.dumps(REQUEST).encode())
        try:
            data = await asyncio.wait_for(loop.sock_recv(conn, MAX_ANSWER), TIMEOUT_S)
        except asyncio.TimeoutError:
            raise StatsUnavailable(f"no answer within {TIMEOUT_S:.0f} s") from None
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or not (answer.get("ok") is False
                                            or isinstance(answer.get("stats"), dict)):
        raise StatsUnavailable("the answer is not the expected JSON")
    if not answer["ok"]:
        raise StatsUnavailable(str(answer.get("error", "refused")))
    return answer["stats"]


class SwitchStats:
    """The latest counters of the switch (``latest``: the status's ``dataplane`` section)."""

    def __init__(self, target: str):
        self.target = target
        self.latest: dict = self._unavailable(NOT_AVAILABLE if target == "bmv2"
                                              else "not read yet")
        self._sw: Switch | None = None
        self._path: str | None = None

    @staticmethod
    def _unavailable(why: str) -> dict:
        return {"available": False, "reason": why}

    async def sample(self, sw: Switch | None) -> dict:
        """Read the counters of ``sw`` (None: no session) into ``latest``."""
        if self.target == "bmv2":
            return self.latest      # simple_switch: no port counters over P4Runtime
        if sw is None:
            self.latest = self._unavailable("no session with the switch")
            return self.latest
        try:
            if sw is not self._sw:
                self._sw, self._path = sw, await advertised_channel(sw)
            if self._path is None:
                raise StatsUnavailable("the switch offers no stats socket (no channel socket)")
            st = await ask(self._path)
        except P4ClientError as exc:
            self._sw = None
            self.latest = self._unavailable(f"Capabilities failed: {exc.message or exc}")
            return self.latest
        except (StatsUnavailable, OSError) as exc:
            why = str(exc) if isinstance(exc, StatsUnavailable) else \
                f"the switch's stats socket {self._path} cannot be used from here " \
                f"({exc.strerror or exc})"
            self.latest = self._unavailable(why)
            return self.latest
        self.latest = {"available": True, "reason": None,
                       "ports": [{k: p.get(k) for k in ("port", "type", "name", *PORT_COUNTERS)}
                                 for p in st.get("ports") or ()],
                       "drop_pkts": st.get("drop_pkts", 0),
                       "learners": st.get("learners") or [],
                       "tables": st.get("tables") or []}
        return self.latest
