"""`p4cs switch --port-type` and the per-port counters the Python daemon wrapper exposes."""
from __future__ import annotations

import asyncio

import pytest
import typer

from conftest import CPU_PORT, FLOW_SPEC
from p4cs.switch.cli import parse_ifaces


def test_port_type():
    assert parse_ifaces(["1=veth0", "2=tap:t0", "3=afpacket:v3", "4=sink"], dpdk=True,
                        port_type="afxdp") == {1: "afxdp:veth0", 2: "tap:t0", 3: "afpacket:v3", 4: "sink"}
    assert parse_ifaces(["1=veth0", "2=afxdp:v2"], dpdk=True, port_type="afpacket") == \
        {1: "afpacket:veth0", 2: "afxdp:v2"}
    assert parse_ifaces(["1=afxdp:veth0"], dpdk=False) == {1: "veth0"}


def test_port_type_cli_rejects_unknown():
    from p4cs.switch.cli import switch_cmd
    with pytest.raises(typer.BadParameter, match="--port-type"):
        switch_cmd(iface=["1=veth0"], port_type="dpdk-tap", target="dpdk", grpc_addr="127.0.0.1:0", device_id=1,
                   netns=None, spec=None, p4info=None, cpu_port=None, workdir=None,
                   learner_timeouts=None, eal=None, no_pipeline=True, verbose=0)


@pytest.mark.root
@pytest.mark.dpdk
def test_daemon_port_stats(swxd_binary, workdir):
    from p4cs.switch.dpdk.daemon import SwxDaemon

    async def go():
        d = SwxDaemon(FLOW_SPEC, {0: "sink", 1: "sink"}, CPU_PORT, binary=str(swxd_binary),
                      workdir=workdir)
        await d.start()
        try:
            assert d.send_packet(b"\x00\x01\x00\x00" + bytes(60))   # packet-out to port 1
            for _ in range(50):
                stats = await d.port_stats()
                if stats[1]["tx_pkts"]:
                    break
                await asyncio.sleep(0.05)
        finally:
            await d.stop()
        return stats

    stats = asyncio.run(go())
    assert sorted(stats) == [0, 1, 2, 3] and stats[3]["type"] == "copy"
    assert stats[1]["tx_pkts"] == 1 and stats[1]["tx_bytes"] == 60
    assert stats[2]["type"] == "cpu" and stats[2]["rx_pkts"] == 1
    for key in ("rx_drops", "rx_errors", "tx_drops", "csum_completed", "gso_frames", "gso_segments"):
        assert stats[0][key] == 0
