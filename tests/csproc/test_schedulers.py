"""The schedulers one by one: distribution, weights, thresholds, drain, slow start, and the
disruption of Maglev hashing when a server goes."""

from __future__ import annotations

from collections import Counter

import pytest

from p4cs import capabilities
from p4cs.csproc.schedulers import REGISTRY, Server, ServerGroup, make_scheduler
from p4cs.csproc.schedulers.maglev import Maglev


def servers(*weights):
    return [Server(chr(ord("a") + i), f"10.0.0.{i + 1}", 80, w) for i, w in enumerate(weights)]


def share(sch, n, src=lambda i: 0):
    return Counter(sch.pick(src=src(i)).name for i in range(n))


def test_registry_is_the_capability_list():
    assert set(REGISTRY) == set(capabilities.SCHEDULERS)
    assert set(capabilities.ALGORITHMS.values()) <= set(REGISTRY)
    assert not set(capabilities.ALGORITHMS) & set(capabilities.UNSUPPORTED_ALGORITHMS)


@pytest.mark.parametrize("name", sorted(capabilities.SCHEDULERS))
def test_every_scheduler_skips_down_drained_and_excluded(name):
    s = servers(1, 1, 1)
    sch = make_scheduler(name, s)
    picked = {sch.pick(src=i, dst=i).name for i in range(200)}
    assert picked == {"a", "b", "c"} or name == "dh"
    s[0].up = False
    s[1].weight = 0
    for i in range(50):
        assert sch.pick(src=i, dst=i) is s[2]
        assert sch.pick(frozenset([s[2]]), src=i, dst=i) is None


def test_lc_ignores_weights_wlc_does_not():
    s = servers(1, 3)
    lc, wlc = make_scheduler("lc", s), make_scheduler("wlc", s)
    for _ in range(40):
        lc.pick().bind()
    assert (s[0].active, s[1].active) == (20, 20)
    for x in s:
        x.active = 0
    for _ in range(40):
        wlc.pick().bind()
    assert (s[0].active, s[1].active) == (10, 30)


def test_sed_prefers_heavy_idle_server_and_nq_never_queues():
    s = servers(1, 4)
    sed = make_scheduler("sed", s)
    assert sed.pick() is s[1]        # idle: (0+1)/1 vs (0+1)/4, the heavy one
    for _ in range(4):
        s[1].bind()
    assert sed.pick() is s[0]       # (0+1)/1 = 1 < (4+1)/4
    t = servers(1, 4)
    t[1].active = 1
    assert make_scheduler("nq", t).pick() is t[0]    # idle wins, weight or not
    t[0].active = 1
    assert make_scheduler("nq", t).pick() is t[1]    # then as sed


def test_source_and_destination_hash_are_stable_and_weighted():
    s = servers(1, 3)
    sh = make_scheduler("sh", s)
    first = {ip: sh.pick(src=ip) for ip in range(0x0A000000, 0x0A000000 + 500)}
    assert all(sh.pick(src=ip) is srv for ip, srv in first.items())
    c = Counter(x.name for x in first.values())
    assert 0.15 < c["a"] / 500 < 0.35            # 64 of 256 buckets
    s[0].up = False                               # fallback: the others keep their clients
    assert all(sh.pick(src=ip) is srv for ip, srv in first.items() if srv is s[1])
    dh = make_scheduler("dh", servers(1, 1))
    assert len({dh.pick(src=i, dst=0x0A000064).name for i in range(50)}) == 1


def test_maglev_minimal_disruption():
    for n in (5, 10):
        s = servers(*[1] * n)
        m = Maglev(s)
        keys = range(0xC0A80000, 0xC0A80000 + 20000)
        before = {k: m.pick(src=k) for k in keys}
        assert max(Counter(before.values()).values()) < 1.25 * 20000 / n
        g = ServerGroup("g", s, "maglev")
        g.scheduler = m
        g.set_up(s[0], False, 0.0)             # the table is rebuilt without s[0]
        moved = sum(m.pick(src=k) is not before[k] for k in keys) / len(keys)
        lost = sum(before[k] is s[0] for k in keys) / len(keys)
        assert lost <= moved < lost + 0.05 and abs(moved - 1 / n) < 0.05


def test_maglev_weights():
    s = servers(1, 3)
    c = share(Maglev(s), 8000, src=lambda i: i * 7919)
    assert 0.2 < c["a"] / 8000 < 0.3


def test_thresholds_skip_until_below_lower():
    s = [Server("a", "10.0.0.1", 80, upper=3, lower=1), Server("b", "10.0.0.2", 80)]
    rr = make_scheduler("rr", s)
    for _ in range(3):
        s[0].bind()
    assert s[0].overloaded and {rr.pick().name for _ in range(4)} == {"b"}
    s[0].unbind()
    assert s[0].overloaded           # 2 >= lower
    s[0].unbind()
    s[0].unbind()
    assert not s[0].overloaded and {rr.pick().name for _ in range(4)} == {"a", "b"}
    t = Server("t", "10.0.0.3", 80, upper=4)       # lower 0: 3/4 of upper
    for _ in range(4):
        t.bind()
    t.unbind()
    assert t.overloaded
    t.unbind()
    assert not t.overloaded
    with pytest.raises(ValueError):
        Server("x", "10.0.0.1", 80, upper=2, lower=3)


def test_weight_zero_drains_and_slow_start_ramps():
    s = servers(1, 1)
    g = ServerGroup("g", s, "wrr", slow_start=10.0)
    g.set_weight(s[0], 0, 0.0)
    assert {g.pick(now=0.0).name for _ in range(10)} == {"b"}
    g.set_weight(s[0], 1, 100.0)                   # back: ramps over 10 s
    early = Counter(g.pick(now=101.0).name for _ in range(1000))
    assert early["a"] < 0.2 * 1000
    mid = Counter(g.pick(now=105.0).name for _ in range(1000))
    assert 0.25 < mid["a"] / 1000 < 0.4            # 0.5 : 1
    late = Counter(g.pick(now=111.0).name for _ in range(1000))
    assert late["a"] == 500
    g.set_up(s[1], False, 200.0)
    g.set_up(s[1], True, 200.0)
    assert s[1].ramp == 0.01
    g.pick(now=210.0)
    assert s[1].ramp == 1.0


def test_group_override_uses_other_scheduler():
    s = servers(1, 1)
    g = ServerGroup("g", s, "rr")
    s[0].active = 5
    assert g.pick("lc") is s[1]
    with pytest.raises(ValueError):
        make_scheduler("magic", s)


def test_a_live_edit_that_turns_slow_start_off_ends_the_ramps():
    """A server ramping up (slow start) when a live edit sets the group's slow start to 0
    gets its whole weight at once: the next pick divided by the new 0 (every connection to
    the group then failed with an internal error; found by the engine's random life
    cycles)."""
    a, b = Server("a", "10.0.0.1", 80), Server("b", "10.0.0.2", 80)
    g = ServerGroup("g", [a, b], "wrr", slow_start=10.0)
    g.set_up(a, False, 0.0)
    g.set_up(a, True, 1.0)                      # a ramps from 1 % over 10 s
    g.pick(now=2.0)
    assert 0 < a.ramp < 1
    g.update(ServerGroup("g", [Server("a", "10.0.0.1", 80), Server("b", "10.0.0.2", 80)],
                         "wrr"), 3.0)
    assert a.ramp == 1.0
    assert {g.pick(now=4.0).name for _ in range(4)} == {"a", "b"}
