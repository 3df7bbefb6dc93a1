"""The packet port: the CS processor attached to a data-plane port of the switch (BMv2 run
with ``p4cs switch --packet-veth``). The veth pair made for it, and the controller's reader
and writer on it, against a packet socket playing the switch's CPU port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess

import pytest
from finsy import P4Schema

from p4cs.controller.packetchan import ETH_P_ALL, Headers, PacketPath, open_port
from p4cs.switch import bmv2

from .conftest import MINI_P4INFO

pytestmark = [pytest.mark.root]

HEADERS = Headers(P4Schema(MINI_P4INFO))


@pytest.fixture
def packet_veth():
    if os.geteuid() != 0:
        pytest.skip("needs root (a veth pair)")
    name = f"pkt{os.getpid() % 100000}"
    bmv2.delete_packet_veth(name)
    peer = bmv2.create_packet_veth(name)
    try:
        yield name, peer
    finally:
        bmv2.delete_packet_veth(name)


def test_packet_veth_is_up_without_ipv6(packet_veth):
    name, peer = packet_veth
    for ifname in (name, peer):
        link = subprocess.run(["ip", "-o", "link", "show", ifname], capture_output=True,
                              text=True, check=True).stdout
        assert "state UP" in link or "LOWER_UP" in link, link
        assert f"mtu {bmv2.PACKET_PORT_MTU}" in link
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6") as f:
            assert f.read().strip() == "1"
    index = socket.if_nametoindex(name)
    assert bmv2.create_packet_veth(name) == peer      # a killed switch's leftover: replaced
    assert socket.if_nametoindex(name) != index
    with pytest.raises(bmv2.Bmv2Error, match="cannot create the packet port lo"):
        bmv2.create_packet_veth("lo")                  # not a veth: left alone


def test_packet_ins_and_outs_on_the_port(packet_veth):
    """Frames from the switch's end become packet-ins; packet-outs leave with their header, and the controller does not read its own; the lease
    ends when the interface goes away."""
    name, peer = packet_veth
    switch_end = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    switch_end.bind((peer, ETH_P_ALL))
    switch_end.settimeout(5)
    frame = bytes(range(14)) + b"payload"

    async def run():
        got: list = []

        async def handle(pkts):
            got.extend(pkts)

        path = PacketPath("direct", handle, port=name)
        lease = open_port(name, HEADERS)
        held = asyncio.ensure_future(path.hold(lease))
        await asyncio.sleep(0)
        assert path.active == "direct"
        switch_end.send((3).to_bytes(4, "big") + b"\x01" + frame)    # port 3, reason 1
        await path.send(None, None, [(2, frame)])
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.01)
        sent = await asyncio.get_running_loop().run_in_executor(None, switch_end.recv, 65536)
        bmv2.delete_packet_veth(name)
        await asyncio.wait_for(held, 5)
        return got, sent, path, lease

    got, sent, path, lease = asyncio.run(run())
    switch_end.close()
    assert got == [(frame, 3, 1)]            # not the packet-out it wrote itself
    assert path.counters["packet_in_malformed"] == 0
    assert sent[:HEADERS.pout.nbytes] == HEADERS.pout.encode({HEADERS.egress_id: 2})
    assert sent[HEADERS.pout.nbytes:] == frame
    assert path.active == "p4runtime" and lease.why.startswith("receive failed")


def test_a_missing_port_is_an_oserror():
    if os.geteuid() != 0:
        pytest.skip("needs root (a packet socket)")
    with pytest.raises(OSError):
        open_port(f"nope{os.getpid() % 100000}", HEADERS)
