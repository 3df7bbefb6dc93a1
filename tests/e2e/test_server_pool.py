"""Pooled server connections through the switch in SNAT mode, nginx behind it: new client
connections are spliced onto idle connections the switch opened to the servers in advance
(``server_pool``), every body arrives intact, and idle ones are closed after ``max_age_s``
(service ``short``, port 81: the pools of ``web`` keep theirs long enough for a loaded
machine)."""

from __future__ import annotations

import pytest

from e2e_util import wait_for
from p4cs.lab.server import file_sha256

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

SIZE = 2**20
MAX_AGE = 4.0


@pytest.fixture(scope="module")
def lab(make_lab):
    services = [{"name": "web", "port": 80, "default_group": "all",
                 "server_pool": {"idle": 2, "max_age_s": 60}},
                {"name": "short", "port": 81, "default_group": "all",
                 "server_pool": {"idle": 2, "max_age_s": MAX_AGE}}]
    return make_lab("q", mode="snat", big_files={"1M": SIZE}, services=services)


def fetch_many(lab, n: int, port: int = 80) -> list[str]:
    """sha256 of the bodies of ``n`` GETs, one connection each, alternating a small and a
    1 MiB one; the servers that answered."""
    script = (f"for i in $(seq {n}); do "
              f"curl -sS --max-time 30 -o /dev/null -w '%{{http_code}}\\n' http://{lab.vip}:{port}/ || exit 1; "
              f"curl -sS --max-time 30 -D /dev/stderr http://{lab.vip}:{port}/big/1M | sha256sum || exit 1; "
              "done")
    r = lab.client_exec(["bash", "-c", "set -o pipefail; " + script], timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    codes, digests = lines[0::3], lines[1::3]
    assert codes == ["200"] * n and digests == [file_sha256(SIZE)] * n, r.stdout
    return [ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
            if ln.lower().startswith("x-server:")]


def test_clients_ride_pooled_connections(lab):
    servers = fetch_many(lab, 20)
    assert len(set(servers)) == len(lab.servers), servers
    st = lab.status()
    cs = st["csproc"]
    # after the first connection to each server, the pool serves most of them (those
    # opened before the service's window scale was learned fit no later client)
    assert cs["pooled_opened"] >= 2 * len(lab.servers), cs
    assert cs["pooled_used"] >= 25, {k: v for k, v in cs.items() if v}
    assert cs["no_server"] == 0 and cs["server_refused"] == 0, cs
    pooled = [s["pooled"] for s in st["groups"]["all"]]
    assert sum(p["idle"] + p["opening"] for p in pooled) > 0, pooled


def test_idle_pooled_connections_close_after_max_age(lab):
    cs = lab.status()["csproc"]
    idle, closed = cs["pooled_idle"], cs["pooled_closed"]     # web's pools (60 s)
    fetch_many(lab, 2, port=81)
    short = lab.status()["csproc"]["pooled_idle"] - idle         # short's idle ones
    assert short > 0
    wait_for(lambda: lab.status()["csproc"]["pooled_closed"] >= closed + short, MAX_AGE + 10)
    assert lab.status()["csproc"]["pooled_idle"] <= idle
    # and connections still work afterwards (fresh first, pooled again)
    fetch_many(lab, 3, port=81)
