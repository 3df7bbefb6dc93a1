"""Fair admission under a half-open flood: one client address holds idle connections (no
request) up to the half-bound cap and keeps reopening them; another client's requests still
get through (before: 1 of 80)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from e2e_util import CLIENTS, run_client, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

CAP = 300


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("a", n_clients=2, limits={"max_pending": CAP})


def test_one_address_holding_the_cap_does_not_lock_out_others(lab, record_property):
    hog = lab.topo.popen(lab.clients[0].name,
                         [sys.executable, str(CLIENTS), "hold", "--vip", lab.vip, "--port", "80",
                          "--n", str(CAP + 50), "--seconds", "120", "--timeout", "10"],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(hog.stdout.readline())["holding"] >= CAP - 10
        st = wait_for(lambda: (s := lab.status()["csproc"])["half_bound"] >= CAP - 5 and s, timeout=30)
        assert st, lab.status()["csproc"]
        out = run_client(lab, "fetch", "--port", "80", "--path", "/~lcs1/", "--n", "80",
                         "--timeout", "10", client=1, timeout=600)
        st = lab.status()["csproc"]
    finally:
        hog.terminate()
        hog.wait(timeout=30)
    print(f"\n[e2e] {out['ok']} of {out['n']} requests answered while one address holds the "
          f"half-bound cap ({CAP}); idle connections evicted: {st['evicted_idle']}, "
          f"newcomers reset: {st['limit_half_bound']}")
    record_property("fetch_success_under_half_open_flood", out["ok"] / out["n"])
    assert out["ok"] >= 0.9 * out["n"], out
    # The cap was in force while the others were served: idle connections of the holder gave
    # way to them, and its own newcomers were reset. How many of the others needed an eviction
    # depends on timing (a slot the holder's reset newcomer left may be free when one comes);
    # the eviction rule itself is tested exactly in tests/csproc/test_admission.py.
    assert st["evicted_idle"] >= 1 and st["limit_half_bound"] >= 1, st
    assert st["half_bound"] <= CAP
    r = wait_for(lambda: lab.status()["csproc"]["half_bound"] == 0, timeout=30)
    assert r, lab.status()["csproc"]
