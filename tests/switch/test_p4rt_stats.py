"""The data plane's counters on the DPDK target's channel socket: asked for by anyone who may
open it, per port and per table (named as in the P4Info), the packet channel untouched."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from p4cs.controller.switchstats import StatsUnavailable, ask

from .test_p4rt_pktchan import serve_channel

pytestmark = [pytest.mark.dpdk]


def test_stats_without_a_primary_tables_named_as_in_the_p4info(make_switch, tmp_path):
    sw = make_switch()
    path = serve_channel(sw, tmp_path)
    st = asyncio.run(ask(path))
    types = {p["port"]: p["type"] for p in st["ports"]}
    assert "cpu" in types.values() and "copy" in types.values(), st["ports"]
    assert all(p["rx_pkts"] == 0 and p["tx_drops"] == 0 for p in st["ports"])
    assert {t["name"] for t in st["tables"]} == {"MainControlImpl.l2_fwd"}
    assert [(t["name"], t["entries"]) for t in st["learners"]] == [("MainControlImpl.flow_table", 0)]
    assert sw.server.channel.lease is None
    assert sw.server.channel.counters == {"granted": 0, "refused": 0, "ended": 0, "writes": 0,
                                          "write_malformed": 0}


def test_stats_without_a_pipeline_and_a_request_that_is_not_one(make_switch, tmp_path):
    sw = make_switch(load=False)
    path = serve_channel(sw, tmp_path)
    with pytest.raises(StatsUnavailable, match="no running pipeline"):
        asyncio.run(ask(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:   # not a stats request
        s.settimeout(5)
        s.connect(path)
        s.send(json.dumps({"op": "stats", "more": 1}).encode())
        answer = json.loads(s.recv(4096))
        assert answer["ok"] is False and "malformed" in answer["error"]
