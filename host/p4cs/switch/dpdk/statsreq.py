"""The data plane's own counters, asked for on the channel socket (:mod:`.pktchan`).

A connection whose one message is ``{"op": "stats"}`` (JSON) gets the data-plane daemon's
`stats` (:meth:`p4cs.switch.dpdk.daemon.Daemon.stats`: per port packets, bytes, drops and
errors; per learner table hits, learned and live entries; per table hits and misses; tables
named as in the P4Info) as
``{"ok": true, "stats": {...}}``, or ``{"ok": false, "error": "..."}``, and is closed. It
asks for nothing else: any process that may open the socket (mode 0600) may read them, a
primary or not, and the packet channel's lease is not touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket

from .daemon import DaemonError

LOG = logging.getLogger("p4cs.switch.dpdk.p4rt")

#: The request, as sent.
REQUEST = {"op": "stats"}
#: Largest answer (the daemon's stats of a pipeline with many ports and tables).
MAX_ANSWER = 1 << 20

_answering: set[asyncio.Task] = set()


def p4_names(pipe, st: dict) -> dict:
    """The daemon's stats with its tables and learners named as in the P4Info."""
    names = {t.dname: t.name for t in pipe.schema.tables.values()}
    for kind in ("learners", "tables"):
        for t in st.get(kind) or ():
            t["name"] = names.get(t["name"], t["name"])
    return st


def answer(conn: socket.socket, pipe) -> None:
    """Answer ``conn`` with the stats of the running pipeline ``pipe`` (None: none runs),
    in the background, then close it."""
    task = asyncio.ensure_future(_answer(conn, pipe))
    _answering.add(task)
    task.add_done_callback(_answering.discard)


async def _answer(conn: socket.socket, pipe) -> None:
    try:
        if pipe is None:
            reply = {"ok": False, "error": "no running pipeline"}
        else:
            try:
                reply = {"ok": True, "stats": p4_names(pipe, await pipe.daemon.stats())}
            except DaemonError as e:      # DaemonDead too
                reply = {"ok": False, "error": str(e)}
        await asyncio.get_running_loop().sock_sendall(conn, json.dumps(reply).encode())
    except OSError as e:
        LOG.info("stats request: the answer could not be sent: %s", e)
    finally:
        conn.close()
