"""Per-stage CPU probe for ``bench/slowpath_profile.py --stages`` (not part of p4cs).

``slowpath_profile.py`` puts this directory on PYTHONPATH and sets ``P4CS_STAGE_PROBE`` to an
output directory before it starts its Lab, so every Python process of the Lab imports this
module at start-up; it does something only in ``p4cs controller`` and ``p4cs switch``. There it
counts the thread CPU time (``time.thread_time_ns``) of:

* every asyncio callback the event loop runs (``Handle._run``), by the coroutine of the task it
  steps (``task:<qualname>``) or by the callback's name: the event loop's stages, which add up
  to the loop thread's CPU (gRPC's own threads are not in it);
* the event loop's ``select`` calls (wake-ups);
* the cyclic garbage collector's collections, by generation (inside whatever stage allocated);
* in the controller, ``Engine.handle`` by the kind of frame (packet-in reason, TCP flags, with
  or without payload) and ``ControllerApp._handle_packets`` by the number of packet-ins handled
  together: both run inside the ``PacketPath.run`` task's steps.

Every half second the totals are written to ``$P4CS_STAGE_PROBE/<role>-<pid>.json``
(``{key: [calls, ns]}``); the bench takes the difference over its window. Each measured call
costs two more clock reads (~0.2 µs each).
"""

from __future__ import annotations

import os
import sys

_OUT = os.environ.get("P4CS_STAGE_PROBE")
_ROLE = next((r for r in ("controller", "switch") if r in sys.argv[1:]), None)


def _install(out: str, role: str) -> None:
    import asyncio.events
    import collections
    import json
    import selectors
    import threading
    import time

    clock = time.thread_time_ns
    totals: dict = collections.defaultdict(lambda: [0, 0])

    def add(k: str, dt: int) -> None:
        t = totals[k]
        t[0] += 1
        t[1] += dt

    def key(handle) -> str:
        cb = handle._callback                              # noqa: SLF001
        owner = getattr(cb, "__self__", None)
        if owner is not None and hasattr(owner, "get_coro"):
            coro = owner.get_coro()
            return "task:" + str(getattr(coro, "__qualname__", None) or type(coro).__name__)
        return str(getattr(cb, "__qualname__", None) or type(cb).__name__)

    run = asyncio.events.Handle._run                       # noqa: SLF001

    def timed_run(self) -> None:
        t0 = clock()
        run(self)
        dt = clock() - t0
        add("loop " + key(self), dt)

    asyncio.events.Handle._run = timed_run                 # noqa: SLF001
    select = selectors.EpollSelector.select

    def timed_select(self, timeout=None):
        t0 = clock()
        try:
            return select(self, timeout)
        finally:
            add("select", clock() - t0)

    selectors.EpollSelector.select = timed_select
    import gc
    started = [0]

    def timed_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = clock()
        else:
            add(f"gc generation {info['generation']}", clock() - started[0])

    gc.callbacks.append(timed_gc)
    if role == "controller":
        from p4cs.controller import app as appmod
        from p4cs.csproc import engine as enmod

        def kind(frame: bytes, reason: int) -> str:
            try:
                ihl = (frame[14] & 15) * 4
                tcp = 14 + ihl
                flags = frame[tcp + 13]
                data = ((frame[16] << 8) | frame[17]) - ihl - (frame[tcp + 12] >> 4) * 4 > 0
            except IndexError:
                return f"frame reason {reason}: short"
            names = "".join(n for bit, n in ((2, "SYN"), (16, "ACK"), (1, "FIN"), (4, "RST"))
                            if flags & bit)
            return f"frame reason {reason}: {names} {'data' if data else 'bare'}"

        handle = enmod.Engine.handle

        def timed_handle(self, frame, port, reason, now):
            t0 = clock()
            out = handle(self, frame, port, reason, now)
            add(kind(frame, reason), clock() - t0)
            return out

        enmod.Engine.handle = timed_handle
        packets = appmod.ControllerApp._handle_packets      # noqa: SLF001

        async def timed_packets(self, pkts, *a, **kw):
            t0 = clock()
            try:
                return await packets(self, pkts, *a, **kw)
            finally:
                dt = clock() - t0
                n = len(pkts)
                size = 1
                while size < n:
                    size *= 2
                add(f"batch <={size}", dt)
                totals[f"batch <={size} frames"][0] += n

        appmod.ControllerApp._handle_packets = timed_packets  # noqa: SLF001
    path = os.path.join(out, f"{role}-{os.getpid()}.json")

    def dump() -> None:
        while True:
            time.sleep(0.5)
            snap = {k: list(v) for k, v in list(totals.items())}
            with open(path + ".tmp", "w") as f:
                json.dump(snap, f)
            os.replace(path + ".tmp", path)

    threading.Thread(target=dump, name="stage-probe", daemon=True).start()


if _OUT and _ROLE:
    _install(_OUT, _ROLE)
