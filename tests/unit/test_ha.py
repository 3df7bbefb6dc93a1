"""Primary/backup election through Redis: the ``ha`` configuration section, and the lease
against a real ``redis-server`` (started here on a unix socket, stopped by PID)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import pytest

from p4cs.controller.config import ConfigError, parse_config
from test_config import BASE


def test_ha_section_defaults_and_values():
    assert parse_config(BASE, "x.yaml").ha is None
    cfg = parse_config(BASE + "ha: {store: /run/redis.sock}\n", "x.yaml")
    assert (cfg.ha.store, cfg.ha.prefix, cfg.ha.lease_ms) == (
        "/run/redis.sock", "p4cs:127.0.0.1:9559:1", 1000)
    cfg = parse_config(BASE + "ha:\n  store: redis://10.0.0.1:6379/2\n  prefix: sw1\n"
                       "  lease_ms: 500\n", "x.yaml")
    assert (cfg.ha.store, cfg.ha.prefix, cfg.ha.lease_ms) == ("redis://10.0.0.1:6379/2", "sw1", 500)


@pytest.mark.parametrize("section,line,words", [
    ("ha: {store: redis.example:6379}\n", 12, "expected redis://host:port[/db]"),
    ("ha: {prefix: x}\n", 12, "missing 'store'"),
    ("ha:\n  store: /r.sock\n  lease_ms: 50\n", 14, "[100, 60000]"),
    ("ha:\n  store: /r.sock\n  leases: 1\n", 14, "unknown key 'leases' in ha"),
    ("ha:\n  store: /r.sock\n  prefix: ''\n", 14, "must not be empty"),
    ("ha: [1]\n", 12, "'ha' must be a mapping"),
])
def test_ha_errors_point_at_the_line(section, line, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(BASE + section, "cfg.yaml")
    msg = str(ei.value)
    assert msg.startswith(f"cfg.yaml:{line}: "), msg
    assert words in msg


@pytest.fixture
def redis_socket(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    sock = tmp_path / "redis.sock"
    p = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(sock),
                          "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                          "--dir", str(tmp_path)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.is_socket():
            assert p.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        yield str(sock)
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_lease_one_holder_increasing_ids_takeover_and_release(redis_socket):
    from p4cs.controller.ha import ELECTION_BASE, Lease, Store

    async def scenario():
        stores = [Store(redis_socket, "t", 0.5) for _ in range(2)]
        a, b = (Lease(s, 300) for s in stores)
        stop = asyncio.Event()
        try:
            first = await a.acquire(stop)
            assert first == ELECTION_BASE + 1
            # b waits while a renews (well past one lease)
            keep_a = asyncio.ensure_future(a.keep())
            wait_b = asyncio.ensure_future(b.acquire(stop))
            await asyncio.sleep(1.0)
            assert not wait_b.done() and not keep_a.done()
            # a stops renewing (dies): b takes over within about one lease, with a higher id
            keep_a.cancel()
            t0 = time.monotonic()
            second = await asyncio.wait_for(wait_b, 2)
            assert second == first + 1 and time.monotonic() - t0 < 0.5
            # a finds out on its next renewal
            assert await asyncio.wait_for(a.keep(), 2) == "another controller holds the lease"
            # b gives the lease up: a takes it at its next try, with a higher id again
            await b.release()
            assert await asyncio.wait_for(a.acquire(stop), 1) == second + 1
            stop.set()
            assert await b.acquire(stop) is None
        finally:
            for s in stores:
                await s.close()

    asyncio.run(scenario())


def test_lease_lost_when_the_store_is_gone(tmp_path):
    from p4cs.controller.ha import Lease, Store

    async def scenario():
        store = Store(str(tmp_path / "nothing.sock"), "t", 0.1)
        lease = Lease(store, 300)
        t0 = time.monotonic()
        try:
            assert await asyncio.wait_for(lease.keep(), 2) == \
                "the store did not answer for a whole lease"
            assert 0.3 <= time.monotonic() - t0 < 1.0
        finally:
            await store.close()

    asyncio.run(scenario())


def test_templates_published_and_loaded_through_the_store(redis_socket):
    """The primary's persistence templates reach the next primary through the store, and
    the value expires with the longest template."""
    from p4cs.controller.ha import Store, TemplateSync

    rows = [["web", 3232235776, "web/10.0.1.2:80", 300], ["web", 3232235777, "web/10.0.1.3:80", 0.5]]

    async def scenario():
        a, b = Store(redis_socket, "t", 0.5), Store(redis_socket, "t", 0.5)
        try:
            pub = TemplateSync(a, every_s=0.05)
            task = asyncio.ensure_future(pub.run(lambda: rows))
            await asyncio.sleep(0.2)
            task.cancel()
            assert await TemplateSync(b).load() == rows
            ttl = await a.redis.pttl(a.key("templates"))
            assert 299_000 < ttl <= 300_001
            await pub.publish([])                 # none left: the value goes
            assert await TemplateSync(b).load() == []
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())
