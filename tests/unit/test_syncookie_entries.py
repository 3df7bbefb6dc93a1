"""The SYN-cookie state the controller writes (controller/syncookies.py), against the real
P4Info: what the data plane's SYN-ACK announces per service, and the keys and time slot."""

from pathlib import Path

from finsy import P4Schema

from p4cs import paths
from p4cs.controller import syncookies
from p4cs.controller.app import ControllerApp
from p4cs.controller.config import load_config
from p4cs.csproc.cookies import SynCookies, slot

REPO = Path(__file__).resolve().parents[2]
P4INFO = paths.p4info("dpdk")


def app():
    return ControllerApp(load_config(REPO / "examples" / "lcs.yaml"), P4INFO)


def test_service_entries_announce_what_the_engine_does():
    a = app()
    schema = P4Schema(P4INFO)
    entries = syncookies.service_entries(a.engine)
    assert len(entries) == len(a.engine.services)
    for e, svc in zip(entries, a.engine.services.values()):
        e.encode(schema)
        assert (int(e.match["vip_addr"]), int(e.match["vip_port"])) == (svc.vip, svc.port)
        args = e.action.args
        assert args["synack_mss"] == a.engine.cfg.mss
        assert args["synack_wscale"] == 15       # auto, nothing learned yet: no scaling
        assert args["synack_window"] == a.engine.synack_window(svc)


def test_service_entries_follow_the_learned_scale():
    a = app()
    for g in a.engine.groups.values():
        for s in g.servers:
            a.engine._learn_scale(s, 10, 0.0)
    assert {e.action.args["synack_wscale"] for e in syncookies.service_entries(a.engine)} == {10}
    a.engine.cfg.window_scale = None         # scaling off: none offered whatever was learned
    assert {e.action.args["synack_wscale"] for e in syncookies.service_entries(a.engine)} == {15}


def test_params_entry_carries_the_engines_keys_and_slot():
    a = app()
    e = syncookies.params_entry(a.engine, 1000.0)
    e.encode(P4Schema(P4INFO))
    assert e.is_default_action
    args = e.action.args
    assert (args["key0"], args["key1"], args["key2"], args["key3"]) == a.engine.cookies.key_words()
    assert args["time_slot"] == slot(1000.0) == (1000 >> 6) & 31
    assert syncookies.next_change(1000.0) == 1024.0


def test_key_words_are_the_hash_keys():
    c = SynCookies(b"s" * 32)
    k = c.key_words()
    assert all(0 <= w < 2**32 for w in k) and k[:2] != k[2:]
