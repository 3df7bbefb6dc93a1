"""SYN cookies answered by the data plane (p4src/include/syn_cookie.p4).

The controller writes two things and the switch answers every SYN to a virtual service itself:

* ``syn_table``: one entry per virtual service (VIP, port) -> ``answer_syn(mss, wscale,
  window)``, what the CS processor's own SYN-ACK announces (its MSS, the window scale the
  service offers or 15 for none, the service's receive window); part of the base tables,
  reconciled like them, and rewritten when the offered scale changes (``follow_scales``);
* ``syn_cookie_params``' default action ``syn_cookie_keys``: the CS processor's two
  HalfSipHash keys, the current time slot and the SYN-ACK's TTL, written when the controller
  becomes primary and again at every slot change (every 64 s, :data:`cookies.SLOT_SHIFT`).
  Every :data:`ROTATE_SLOTS` slot changes the keys come from a new random secret; the CS
  processor keeps validating the previous keys' cookies as long as they can be valid. A
  controller that becomes primary first reads the keys the switch holds (those of the
  previous primary, which issued the cookies of the handshakes in flight) and validates their
  cookies the same way.

The CS processor validates the cookie on the ACK that completes the handshake with the same
keys and clock (``time.monotonic``), so a connection whose SYN never reached the controller
continues exactly as one whose SYN did.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from finsy import P4TableAction, P4TableEntry, P4TableMatch, Switch
from finsy.p4client import P4ClientError

from p4cs.csproc.cookies import SLOT_SHIFT, WS_NONE, slot
from p4cs.csproc.engine import Engine

LOG = logging.getLogger("p4cs.controller")

#: Slot changes between two new secrets (16 x 64 s: about 17 minutes).
ROTATE_SLOTS = 16
#: How often the window scale the services offer is compared with the syn_table entries.
SCALE_POLL_S = 0.5


def _offered_scale(engine: Engine, svc) -> int:
    ws = engine.svc_window_scale(svc)
    return WS_NONE if ws is None else ws


def service_entries(engine: Engine) -> list[P4TableEntry]:
    """The syn_table entries of the engine's virtual services: what the CS processor's own
    SYN-ACK announces, including the window scale the service offers now (learned from its
    servers with ``window_scale: auto``)."""
    cfg = engine.cfg
    return [P4TableEntry("syn_table", match=P4TableMatch(vip_addr=svc.vip, vip_port=svc.port),
                         action=P4TableAction("answer_syn", synack_mss=cfg.mss,
                                              synack_wscale=_offered_scale(engine, svc),
                                              synack_window=engine.synack_window(svc)))
            for svc in engine.services.values()]


def offers(engine: Engine) -> tuple[int, ...]:
    """The window scale every service offers now, as the syn_table entries carry it."""
    return tuple(_offered_scale(engine, svc) for svc in engine.services.values())


async def adopt_scales(sw: Switch, engine: Engine) -> None:
    """A new primary takes the window scales the switch's syn_table entries carry (those the
    previous primary learned) for the services whose scale it does not know yet, so that the
    data plane's SYN answers keep offering them until its own probes have answered."""
    by_key = {(svc.vip, svc.port): svc for svc in engine.services.values()}
    try:
        async for e in sw.read(P4TableEntry("syn_table")):
            svc = by_key.get((int(e.match["vip_addr"]), int(e.match["vip_port"])))
            act = e.action
            if svc is not None and act is not None and act.name == "answer_syn":
                ws = int(act.args["synack_wscale"])
                if ws != WS_NONE:
                    engine.seed_window_scale(svc, ws)
    except P4ClientError as exc:
        LOG.warning("cannot read the SYN answers of the switch: %s", exc.message or exc)


async def follow_scales(sw: Switch, engine: Engine, written: tuple[int, ...] | None,
                        interval: float = SCALE_POLL_S) -> None:
    """Keep the window scale of the syn_table entries equal to what each service offers: it
    changes when the CS processor learns its servers' scale (a primary's loop; ``written``:
    the scales the base entries carried, None: unknown, rewrite them all)."""
    last = written
    while True:
        now = offers(engine)
        if now != last:
            try:
                await sw.write([~e for e in service_entries(engine)])
            except P4ClientError as exc:
                LOG.warning("cannot update the SYN answers' window scale: %s", exc.message or exc)
            else:
                last = now
        await asyncio.sleep(interval)


def params_entry(engine: Engine, now: float) -> P4TableEntry:
    """The default action of syn_cookie_params for the time slot of ``now``."""
    k0, k1, k2, k3 = engine.cookies.key_words()
    return P4TableEntry("syn_cookie_params", is_default_action=True,
                        action=P4TableAction("syn_cookie_keys", key0=k0, key1=k1, key2=k2, key3=k3,
                                             time_slot=slot(now), synack_ttl=engine.cfg.ttl))


async def switch_keys(sw: Switch) -> tuple[int, int, int, int] | None:
    """The keys the data plane issues cookies with (None: none written yet)."""
    async for e in sw.read(P4TableEntry("syn_cookie_params", is_default_action=True)):
        act = e.action
        if act is not None and act.name == "syn_cookie_keys":
            return tuple(int(act.args[f"key{i}"]) for i in range(4))
    return None


def next_change(now: float) -> float:
    """When the time slot after the one of ``now`` begins."""
    return float(((int(now) >> SLOT_SHIFT) + 1) << SLOT_SHIFT)


async def run(sw: Switch, engine: Engine, clock: Callable[[], float] = time.monotonic,
              keys_changed: Callable[[], None] = lambda: None) -> None:
    """Write the keys and the time slot now and at every slot change, with new keys every
    ROTATE_SLOTS changes (a primary's loop). A write the switch refuses is logged and retried
    a second later: until it succeeds, the data plane keeps the previous slot and keys (their
    cookies stay valid for MAX_AGE_SLOTS) or, before the first one, sends SYNs to the
    controller. ``keys_changed`` is called when the engine's keys change, before the data
    plane has them (the workers of the controller take them then)."""
    try:
        held = await switch_keys(sw)
    except P4ClientError as exc:
        LOG.warning("cannot read the SYN cookie keys of the switch: %s", exc.message or exc)
        held = None
    if held is not None and held != engine.cookies.key_words():
        engine.cookies.keep_previous(held, clock())
        keys_changed()
    changes = 0
    while True:
        now = clock()
        if changes == ROTATE_SLOTS:
            engine.cookies.rotate(os.urandom(32), now)
            keys_changed()
            changes = 0
        try:
            await sw.write([~params_entry(engine, now)])
        except P4ClientError as exc:
            LOG.warning("cannot write the SYN cookie keys: %s", exc.message or exc)
            await asyncio.sleep(1.0)
            continue
        await asyncio.sleep(max(0.0, next_change(now) - clock()) + 0.01)
        changes += 1
