"""Primary and backup controllers of one switch, elected through a shared store (Redis).

Every controller of a switch is configured with the same ``ha`` section. The one that holds
the lease (a key set with ``SET NX PX``) is the primary: it connects to the switch and renews
the lease every third of its duration with a compare-and-renew script (only the holder's own
value is renewed). The others are backups: they do not connect, and try to take the lease
every fifth of its duration; when the primary dies, its lease lapses and a backup takes it.

P4Runtime arbitration fences an old primary that has not noticed yet: each takeover
increments a counter in the store and the new primary presents ``ELECTION_BASE`` plus that
count as its election id, higher than any earlier primary's, so the switch demotes the old
one at once. A primary that cannot renew (the lease was taken, or the store has not answered
for a whole lease) disconnects from the switch and becomes a backup.

Whatever else controllers share goes under the same key prefix through :class:`Store`: the
primary publishes its persistence templates every second (:class:`TemplateSync`) and a new
primary takes them over, so clients stay on their servers across a takeover. Flow ids are
not shared: a new primary adopts the flow table's entries (see
:mod:`p4cs.controller.reconcile`), which reserves their ids until they expire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

LOG = logging.getLogger("p4cs.controller")

#: Election ids of elected primaries: above finsy's default (10) and any id a controller
#: without a store steps down to, so an elected primary preempts such a controller.
ELECTION_BASE = 1 << 32

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Store:
    """The store shared by the controllers of one switch: one Redis server, every key under
    ``prefix``. ``url`` is ``redis://host:port/db``, ``unix:///path`` or a socket path."""

    def __init__(self, url: str, prefix: str, timeout_s: float):
        if url.startswith("/"):
            url = "unix://" + url
        self.url = url
        self.prefix = prefix
        self.redis = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                             socket_connect_timeout=timeout_s)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    async def close(self) -> None:
        await self.redis.aclose()


class Lease:
    """The primary's lease in ``store``, held under this controller's unique ``holder`` id."""

    def __init__(self, store: Store, lease_ms: int, holder: str | None = None):
        self.store = store
        self.lease_ms = lease_ms
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._key = store.key("lease")
        self._epoch = store.key("epoch")
        self._renew = store.redis.register_script(_RENEW)
        self._release = store.redis.register_script(_RELEASE)
        self._store_ok = True

    def _store_state(self, ok: bool, exc: Exception | None = None) -> None:
        """Log when the store stops or starts answering (not at every try)."""
        if ok != self._store_ok:
            self._store_ok = ok
            if ok:
                LOG.info("store %s answers again", self.store.url)
            else:
                LOG.warning("store %s unreachable: %s", self.store.url, exc)

    async def acquire(self, stop: asyncio.Event) -> int | None:
        """Wait until this controller holds the lease; its election id (None: stopped)."""
        poll = min(0.5, max(0.02, self.lease_ms / 5000))
        while not stop.is_set():
            try:
                if await self.store.redis.set(self._key, self.holder, nx=True, px=self.lease_ms):
                    epoch = await self.store.redis.incr(self._epoch)
                    self._store_state(True)
                    return ELECTION_BASE + epoch
                self._store_state(True)
            except (RedisError, OSError) as exc:
                self._store_state(False, exc)
            try:
                await asyncio.wait_for(stop.wait(), poll)
            except asyncio.TimeoutError:
                pass
        return None

    async def keep(self) -> str:
        """Renew the lease until it is lost; why it was."""
        every = self.lease_ms / 3000
        valid_until = time.monotonic() + self.lease_ms / 1000
        while True:
            await asyncio.sleep(every)
            sent = time.monotonic()
            try:
                renewed = await self._renew(keys=[self._key], args=[self.holder, self.lease_ms])
            except (RedisError, OSError) as exc:
                self._store_state(False, exc)
                if time.monotonic() >= valid_until:
                    return "the store did not answer for a whole lease"
                continue
            self._store_state(True)
            if not renewed:
                return "another controller holds the lease"
            valid_until = sent + self.lease_ms / 1000

    async def release(self) -> None:
        """Give the lease up (a clean stop: a backup takes over without waiting for it)."""
        try:
            await self._release(keys=[self._key], args=[self.holder])
        except (RedisError, OSError) as exc:
            LOG.warning("cannot release the lease: %s", exc)


class TemplateSync:
    """The persistence templates in the store: the primary publishes them every ``every_s``
    seconds as one JSON value (rows of ``[service, client network, server, seconds left]``,
    see ``csproc.policy.Policy.export_templates``); a new primary loads them. The value
    expires with the longest template, so a store outlives no stale template."""

    def __init__(self, store: Store, every_s: float = 1.0):
        self.store = store
        self.every_s = every_s
        self._key = store.key("templates")

    async def load(self) -> list:
        try:
            raw = await self.store.redis.get(self._key)
            rows = json.loads(raw) if raw else []
        except (RedisError, OSError, ValueError) as exc:
            LOG.warning("cannot read the persistence templates from the store: %s", exc)
            return []
        return rows if isinstance(rows, list) else []

    async def publish(self, rows: list) -> None:
        try:
            if rows:
                ttl_ms = int(1000 * max(r[3] for r in rows)) + 1
                await self.store.redis.set(self._key, json.dumps(rows), px=ttl_ms)
            else:
                await self.store.redis.delete(self._key)
        except (RedisError, OSError) as exc:
            LOG.debug("cannot publish the persistence templates: %s", exc)

    async def run(self, rows: Callable[[], list]) -> None:
        """Publish ``rows()`` every ``every_s`` seconds until cancelled."""
        while True:
            await self.publish(rows())
            await asyncio.sleep(self.every_s)
