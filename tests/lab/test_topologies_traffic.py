"""The flood generator: frame construction (checked with scapy) and a short real run."""

from __future__ import annotations

import pytest

from p4cs.lab.netns import direct_topology
from p4cs.lab.traffic import Endpoint, build_frame, endpoints, flood

SRC = Endpoint("a", "eth0", "02:00:00:00:00:01", "10.0.1.1", "02:00:00:00:01:00")
DST = Endpoint("b", "eth0", "02:00:00:00:00:02", "10.0.2.1", "02:00:00:00:01:01")


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("frame_len", [60, 64, 128, 1514])
def test_build_frame_is_valid(proto: str, frame_len: int) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether

    raw = build_frame(SRC, DST, proto=proto, sport=1234, dport=80, frame_len=frame_len)
    assert len(raw) == frame_len
    pkt = Ether(raw)
    assert pkt.dst == SRC.next_hop_mac and pkt.src == SRC.mac
    assert pkt[IP].src == SRC.ip and pkt[IP].dst == DST.ip and pkt[IP].ttl == 64
    l4 = pkt[UDP] if proto == "udp" else pkt[TCP]
    assert (l4.sport, l4.dport) == (1234, 80)
    # checksums as scapy would compute them
    ref = Ether(raw)
    del ref[IP].chksum
    del ref[IP].payload.chksum
    ref = Ether(bytes(ref))
    assert ref[IP].chksum == pkt[IP].chksum
    assert ref[IP].payload.chksum == l4.chksum


def test_build_frame_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        build_frame(SRC, DST, proto="tcp", frame_len=50)
    with pytest.raises(ValueError):
        build_frame(SRC, DST, frame_len=4000)


@pytest.mark.root
def test_flood_through_kernel_router(prefix: str) -> None:
    with direct_topology(prefix, n_clients=1, n_servers=1) as topo:
        src, dst = endpoints(topo)
        res = flood(src, dst, duration=0.5, warmup=0.3, flows=4)
        assert res.rx_packets > 1000 and res.rx_pps > 1000, res
        assert res.loss < 0.01, res
        assert res.senders and res.senders[0]["frames"] >= res.rx_packets
