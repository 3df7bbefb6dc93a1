"""Server pools in the configuration: http and snat services only, bounded numbers
(file:line errors); a saved configuration keeps the pool; the controller builds the
engine's ``ServerPool`` from it."""

from __future__ import annotations

import pytest

from p4cs.controller.config import ConfigError, ServerPoolConf, parse_config
from p4cs.controller.operator import dump, to_doc

from test_config import BASE


def svc(extra: str, mode: str = "mode: snat, snat_address: 10.0.2.254,") -> str:
    return BASE.replace("default_group: g}", f"default_group: g, {mode}\n     " + extra + "}")


def test_pool_parses_with_defaults_and_values():
    cfg = parse_config(svc("server_pool: {idle: 8, max_age_s: 15}"), "c.yaml")
    assert cfg.services[0].server_pool == ServerPoolConf(8, 15.0)
    cfg = parse_config(svc("server_pool: {}"), "c.yaml")
    assert cfg.services[0].server_pool == ServerPoolConf()
    assert parse_config(BASE, "c.yaml").services[0].server_pool is None


@pytest.mark.parametrize("text,words", [
    (svc("server_pool: {idle: 4}", mode=""),
     "a server pool needs mode snat: the switch opens the pooled connections before it "
     "knows their client"),
    (svc("server_pool: {idle: 4}", mode="mode: snat, snat_address: 10.0.2.254, protocol: tls,"),
     "a server pool needs protocol http, not tls"),
    (svc("server_pool: {idle: -1}"), "'idle' must be an integer in [0, 1024], got -1"),
    (svc("server_pool: {max_age_s: 0}"), "'max_age_s' must be a number in [0.1, 3600], got 0"),
    (svc("server_pool: {size: 4}"), "size"),
    (svc("server_pool: 4"), "server_pool"),
])
def test_bad_pool(text, words):
    with pytest.raises(ConfigError) as ei:
        parse_config(text, "c.yaml")
    assert str(ei.value).startswith("c.yaml:") and words in str(ei.value), str(ei.value)


def test_saved_configuration_keeps_the_pool():
    cfg = parse_config(svc("server_pool: {idle: 2, max_age_s: 5}"), "c.yaml")
    assert parse_config(dump(to_doc(cfg)), "<saved>").services == cfg.services
