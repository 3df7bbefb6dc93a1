"""The spreading of punted frames over CS-processor workers (controller/spread.py): both legs
of a connection reach the same worker, in transparent and SNAT mode."""

from __future__ import annotations

import random

from p4cs.constants import REASON_ARP, REASON_BACKEND_MISS, REASON_FLOW_END, REASON_LOCAL, REASON_VIP_MISS
from p4cs.controller.spread import Spreader, pure_syn_tuple, segment_tuple
from p4cs.csproc import packet as P
from p4cs.csproc.engine import Config, Engine, VirtualService
from p4cs.csproc.packet import ip_int
from p4cs.csproc.routing import PrefixRouter
from p4cs.csproc.schedulers import Server, ServerGroup

VIP, SNAT, GW = ip_int("10.0.0.100"), ip_int("10.0.2.253"), ip_int("10.0.2.254")
SERVER = ip_int("10.0.2.1")
SNAT_PORTS = (20000, 59999)


def frame(sip: int, dip: int, sport: int, dport: int) -> bytes:
    return P.build(b"\x02" * 6, b"\x04" * 6, sip, dip, sport, dport, 1, 2, P.ACK, 1000)


def spreader(n: int) -> Spreader:
    return Spreader(n, {(VIP, 80)}, {SNAT}, SNAT_PORTS, {GW, VIP})


def test_transparent_legs_meet():
    rng = random.Random(1)
    for n in (2, 3, 4, 8):
        sp = spreader(n)
        seen = set()
        for _ in range(500):
            cip, cport = rng.getrandbits(32), rng.randrange(1024, 65536)
            w = sp.worker(frame(cip, VIP, cport, 80), REASON_VIP_MISS)
            # the server answers the client's own address and port
            assert sp.worker(frame(SERVER, cip, 80, cport), REASON_BACKEND_MISS) == w
            # a FIN/RST copy of either leg, as it arrived
            assert sp.worker(frame(cip, VIP, cport, 80), REASON_FLOW_END) == w
            assert sp.worker(frame(SERVER, cip, 80, cport), REASON_FLOW_END) == w
            seen.add(w)
        assert seen == set(range(n))        # every worker gets connections


def test_snat_partition():
    """Worker w's engine allocates only SNAT ports p % n == w, and the server's answers to
    them reach worker w."""
    for n in (2, 3):
        sp = spreader(n)
        for w in range(n):
            g = ServerGroup("g", [Server("g/s", "10.0.2.1", 80)], "rr")
            svc = VirtualService("s", "10.0.0.100", 80, PrefixRouter([]), default_group="g",
                                 mode="snat", snat_ip="10.0.2.253")
            eng = Engine([svc], {"g": g}, None, Config(snat_share=(w, n)))
            ports = [eng.policy.source(svc, 1, 1)[1] for _ in range(50)]
            assert all(p % n == w and SNAT_PORTS[0] <= p <= SNAT_PORTS[1] for p in ports)
            assert {sp.worker(frame(SERVER, SNAT, 80, p), REASON_LOCAL) for p in ports} == {w}


def test_controller_own_frames_go_to_worker_0():
    sp = spreader(4)
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    assert sp.worker(arp, REASON_ARP) == 0
    # a health probe's answer: to the switch's address, a port above the SNAT pool
    assert sp.worker(frame(SERVER, GW, 80, 60001), REASON_LOCAL) == 0
    assert sp.worker(frame(SERVER, SNAT, 80, 60001), REASON_LOCAL) == 0
    # malformed: too short, not IPv4, not TCP
    assert sp.worker(b"\x00" * 20, REASON_VIP_MISS) == 0
    assert segment_tuple(b"\x00" * 60) is None
    udp = bytearray(frame(1, VIP, 5, 80))
    udp[23] = 17
    assert sp.worker(bytes(udp), REASON_VIP_MISS) == 0


def test_one_worker():
    sp = spreader(1)
    assert sp.worker(frame(ip_int("10.0.1.1"), VIP, 40000, 80), REASON_VIP_MISS) == 0


def test_persistence_spreads_by_client_network():
    """With templates (client-ip persistence, netmask /24) every connection of a client
    network reaches one worker, on both legs."""
    sp = Spreader(4, {(VIP, 80)}, {SNAT}, SNAT_PORTS, {GW, VIP}, client_mask=0xFFFFFF00)
    rng = random.Random(2)
    seen = set()
    for net in range(64):
        base = ip_int("10.1.0.0") + (net << 8)
        ws = set()
        for _ in range(20):
            cip, cport = base + rng.randrange(1, 255), rng.randrange(1024, 65536)
            ws.add(sp.worker(frame(cip, VIP, cport, 80), REASON_VIP_MISS))
            ws.add(sp.worker(frame(SERVER, cip, 80, cport), REASON_BACKEND_MISS))
        assert len(ws) == 1
        seen |= ws
    assert seen == set(range(4))


def test_spreader_of_a_configuration():
    from pathlib import Path

    from p4cs.controller.config import load_config
    from p4cs.controller.workers import client_mask, spreader_for
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "lcs.yaml")
    sp = spreader_for(cfg, 2, client_mask(cfg))
    assert sp.vips == {(VIP, 80)} and sp.mask is None
    assert GW in sp.local


def test_pure_syn_tuple():
    """The 4-tuple of a SYN alone (the frames the controller checks for a dead worker's
    entries); None for a SYN-ACK, a SYN with FIN or RST, any other segment or frame."""
    c, v = ip_int("10.0.1.1"), ip_int("10.0.0.100")

    def seg(flags: int) -> bytes:
        return P.build(b"\x02" * 6, b"\x04" * 6, c, v, 40000, 80, 1, 0, flags, 1000)

    assert pure_syn_tuple(seg(P.SYN)) == (c, v, 40000, 80)
    for flags in (P.SYN | P.ACK, P.SYN | P.RST, P.SYN | P.FIN, P.ACK, P.FIN | P.ACK, P.RST):
        assert pure_syn_tuple(seg(flags)) is None, flags
    assert pure_syn_tuple(seg(P.SYN)[:47]) is None      # cut before the flags
    assert pure_syn_tuple(b"\x00" * 60) is None


def test_rewritten_copies_reach_the_owner():
    """A FIN/RST copy of the DPDK pipeline is the segment as the splice rewrote it:
    ``copy_worker`` names the worker of the connection for both legs, in transparent and
    SNAT mode, with and without a client mask; the switch's own segments go to worker 0."""
    rng = random.Random(3)
    for mask in (None, 0xFFFFFF00):
        for n in (2, 3, 4):
            sp = Spreader(n, {(VIP, 80)}, {SNAT}, SNAT_PORTS, {GW, VIP}, client_mask=mask)
            for _ in range(300):
                cip, cport = rng.getrandbits(32), rng.randrange(1024, 65536)
                w = sp.worker(frame(cip, VIP, cport, 80), REASON_VIP_MISS)
                # the server's FIN as it leaves for the client: from the virtual service
                assert sp.copy_worker(VIP, cip, 80, cport) == w
                # the client's FIN as it leaves for the server, transparent
                assert sp.copy_worker(cip, SERVER, cport, 8080) == w
            # SNAT: the client's FIN leaves from the worker's SNAT port
            for w in range(n):
                p = SNAT_PORTS[0] + rng.randrange(1000) * n + (w - SNAT_PORTS[0]) % n
                assert p % n == w and sp.copy_worker(SNAT, SERVER, p, 8080) == w
            assert sp.copy_worker(GW, SERVER, 40000, 8080) == 0          # a health probe
            assert sp.copy_worker(SNAT, SERVER, 60001, 8080) == 0         # outside the pool
    assert spreader(1).copy_worker(VIP, 5, 80, 40000) == 0


def test_request_names_what_the_data_plane_spreads_by():
    sp = Spreader(2, {(VIP, 80), (VIP, 443)}, {SNAT}, SNAT_PORTS, {GW, VIP},
                  client_mask=0xFFFFFF00)
    assert sp.request() == {"vips": [["10.0.0.100", 80], ["10.0.0.100", 443]],
                            "snat": ["10.0.2.253"], "local": ["10.0.0.100", "10.0.2.254"],
                            "ports": [20000, 59999], "mask": "255.255.255.0"}
