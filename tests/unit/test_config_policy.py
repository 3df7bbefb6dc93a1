"""Configuration of the balancing policy: schedulers from the capability registry,
thresholds, slow start, health checks, persistence; and a rule reload the service's
protocol cannot carry out keeps the old rules."""

from __future__ import annotations

import pytest

from p4cs import capabilities
from p4cs.controller.config import ConfigError, parse_config

BASE = """\
ports: {1: {mac: "02:00:00:00:01:fe", gateway: 10.0.1.254/24}}
groups:
  g:
    scheduler: %s
    slow_start_s: 5
    health: {type: http, path: /ok, expect: 204, interval_s: 2, timeout_s: 1, rise: 2, fall: 3}
    servers: [{address: 10.0.1.1, port: 80, weight: 2, upper_threshold: 10, lower_threshold: 5}]
services:
  - {name: web, vip: 10.0.0.100, port: 80, default_group: g,
     persistence: {timeout_s: 600, netmask: 255.255.255.0}}
"""


@pytest.mark.parametrize("sched", sorted(capabilities.SCHEDULERS))
def test_every_registry_scheduler_is_accepted(sched):
    cfg = parse_config(BASE % sched)
    g = cfg.groups["g"]
    assert g.scheduler == sched and g.slow_start_s == 5.0
    assert (g.health.type, g.health.path, g.health.expect) == ("http", "/ok", 204)
    assert (g.servers[0].upper_threshold, g.servers[0].lower_threshold) == (10, 5)
    p = cfg.services[0].persistence
    assert (p.timeout_s, p.netmask) == (600.0, "255.255.255.0")


@pytest.mark.parametrize("old,new,msg", [
    ("scheduler: rr", "scheduler: fastest", "unknown scheduler 'fastest'"),
    ("type: http", "type: icmp", "health check type must be one of tcp, http"),
    ("timeout_s: 1", "timeout_s: 3", "timeout_s must not exceed interval_s"),
    ("lower_threshold: 5", "lower_threshold: 50", "lower_threshold needs an upper_threshold"),
    ("255.255.255.0", "255.0.255.0", "is not a netmask"),
    ("rise: 2", "rise: 0", "'rise' must be an integer in [1, 100]"),
])
def test_bad_policy_is_refused_with_its_line(old, new, msg):
    text = (BASE % "rr").replace(old, new)
    with pytest.raises(ConfigError) as e:
        parse_config(text, "c.yaml")
    assert msg in str(e.value) and str(e.value).startswith("c.yaml:")


def test_reload_refused_by_the_protocol_check_keeps_the_old_rules(tmp_path):
    from p4cs.rules.ruleset import protocol_problems
    from p4cs.rules.store import RuleStore
    good, bad = tmp_path / "good.rules", tmp_path / "bad.rules"
    good.write_text('a: if (smtp.from == "x") { reject; }\n')
    bad.write_text('a: if (path == "/x") { reject; }\n')
    store = RuleStore(check=lambda rs: protocol_problems(rs, "smtp"))
    assert store.reload(good) == []
    errs = store.reload(bad)
    assert errs and errs[0].startswith(f"{bad}:1: error: rule a uses path")
    assert store.current.source == str(good)
