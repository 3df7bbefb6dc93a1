"""Many connections at once: 1,000 concurrent connections (every answer checked), and wrk
with keep-alive connections (after the first request of each, everything is fast path)."""

from __future__ import annotations

import re

import pytest

from e2e_util import run_client, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]
#: also run with the controller's packet I/O on the P4Runtime stream (conftest.py)
P4RUNTIME_PACKET_IO = True

N = 1000


@pytest.fixture(scope="module")
def lab(make_lab):
    # half-closed connections (a FIN copy lost under the burst of closes) end after 10 s
    # without packets instead of 30, and a connection whose two FIN copies were both lost
    # (BMv2's CPU queue drops 0 to ~60 of the 2,000 under this burst, so that happens)
    # ends by its entries' idle timeout, 20 s instead of 300: the removal check below
    # waits 60 s
    return make_lab("c", limits={"half_closed_idle_s": 10, "flow_idle_timeout_s": 20})


def csproc(lab) -> dict:
    return lab.status()["csproc"]


@pytest.mark.root
def test_1000_concurrent_connections(lab, record_property):
    """1,000 connections opened at once to the echo service (all established before the
    first request leaves), each GET /c/<i>: every answer is the one for its own path, the
    round robin spreads them evenly, nothing is left half-bound. Every one of these
    connections is set up by the controller in Python, so the timeouts are generous."""
    before = csproc(lab)
    c0 = lab.status()["counters"]
    out = run_client(lab, "concurrent", "--port", "8080", "--n", str(N), "--hold",
                     "--timeout", "240", timeout=300)
    rate = N / out["total_seconds"]
    print(f"\n[e2e] {N} concurrent connections: all open in {out['open_seconds']:.1f} s, "
          f"all answered in {out['total_seconds']:.1f} s ({rate:.0f} connections/s through the "
          f"controller); per server {out['servers']}")
    record_property("concurrent_connections_per_s", round(rate, 1))
    assert out["n_bad"] == 0, out["bad"]
    assert out["ok"] == N
    # round robin: 334/333/333 unless a server SYN had to be redispatched under load
    assert len(out["servers"]) == 3 and min(out["servers"].values()) >= N // 4, out["servers"]
    after = wait_for(lambda: (s := csproc(lab))["half_bound"] == 0 and s, timeout=30) or csproc(lab)
    assert after["half_bound"] == 0, after
    assert after["spliced"] - before["spliced"] == N
    assert after["install_failures"] == before["install_failures"]
    assert lab.status()["counters"]["install_errors"] == 0
    # Every connection closed: the FIN copies remove all 2,000 flow entries; a connection of
    # which a FIN copy was lost (BMv2's CPU queue under this burst) ends once its entries
    # carry nothing for limits.half_closed_idle_s (10 s; two counts), one of which both were
    # lost by the entries' idle timeout (20 s).
    # ("flows" drops when a removal batch starts, flows_removed when its write is done,
    # idle_timeouts when an entry expired)
    def gone(s: dict) -> int:
        c = s["counters"]
        return c["flows_removed"] - c0["flows_removed"] + c["idle_timeouts"] - c0["idle_timeouts"]

    def all_removed():
        s = lab.status()
        return s["flows"] == 0 and gone(s) >= 2 * N and s
    st = wait_for(all_removed, timeout=60) or lab.status()
    print(f"[e2e] half-closed connections ended idle: "
          f"{csproc(lab)['half_closed_idle'] - before['half_closed_idle']}, "
          f"flow entries idle-expired: {st['counters']['idle_timeouts'] - c0['idle_timeouts']}")
    assert st["flows"] == 0 and gone(st) >= 2 * N, st["counters"]
    # The controller is still fine afterwards.
    r = lab.curl("/~lcs2/")
    assert r.returncode == 0 and r.stdout == "wait: /~lcs2/\n"


@pytest.mark.root
def test_wrk_keepalive(lab, record_property):
    """wrk, 200 keep-alive connections for 8 s: no errors, no non-2xx answers, and exactly
    one delayed binding per connection (every later request is on the fast path)."""
    conns = 200
    before = csproc(lab)
    r = lab.client_exec(["wrk", "-t", "2", "-c", str(conns), "-d", "8s", "--timeout", "60s",
                         f"http://{lab.vip}/"], timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    print(f"\n[e2e] wrk -c{conns}:\n{text}")
    assert "Non-2xx" not in text, text
    assert "Socket errors" not in text, text
    m = re.search(r"(\d+) requests in", text)
    assert m, text
    requests = int(m.group(1))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps:
        record_property("wrk_requests_per_s", float(rps.group(1)))
    assert requests > 2 * conns, text
    after = csproc(lab)
    # wrk first opens and closes one connection to test the address (closed without a
    # request: answered by the switch alone), then its 200; SYNs may be retransmitted.
    assert after["accepted"] - before["accepted"] in (conns, conns + 1)
    assert after["spliced"] - before["spliced"] == conns
