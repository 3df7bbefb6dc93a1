"""Abuse: truncated and malformed frames, IPv4 options and fragments. The target must not die
and must keep forwarding; IPv4 options / fragments towards a virtual service go to the
controller with reason 5 (the flow key cannot be trusted), elsewhere they are routed."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.base import P4csTest  # noqa: E402
from lib.flows import SpliceBase  # noqa: E402  (TcpOptionsCarried)
from lib.packets import tcp_frame  # noqa: E402
from lib.topo import (  # noqa: E402
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, IP_TCP, OTHER_MAC, OTHER_PORT, REASON_IP_EXCEPTION, REASON_LOCAL,
    REASON_VIP_MISS, SW_MAC, VIP, VIP_PORT,
)
from scapy.layers.inet import IP, TCP, IPOption_RR  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402


def vip_service(test):
    test.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")
    # the VIP address is also switch-owned: non-service traffic to it is local
    test.insert("local_table", {"addr": VIP}, "punt_local")


class IpOptionsToVip(P4csTest):
    """IPv4 with options towards the VIP: PacketIn reason 5, frame unchanged; even when a flow
    entry exists for its 5-tuple (L4 is not parsed behind options)."""

    def runTest(self):
        vip_service(self)
        self.insert("flow_table", {"src_addr": CLIENT_IP, "dst_addr": VIP, "protocol": IP_TCP, "src_port": 40500,
                                   "dst_port": VIP_PORT}, "flow_forward",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[OTHER_PORT], "flow_id": 800})
        for opts in ([IPOption_RR(routers=["0.0.0.0"])], [IPOption_RR(routers=["0.0.0.0"] * 3)]):
            f = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40500, VIP_PORT, flags="S", options=opts)
            self.assertGreater(Ether(bytes(f))[IP].ihl, 5)
            self.send(CLIENT_PORT, f)
            self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_IP_EXCEPTION,
                                  payload=bytes(f))
        self.expect_no_frames()


class FragmentsToVip(P4csTest):
    """IPv4 fragments towards the VIP (first fragment with MF, later fragments with an offset):
    PacketIn reason 5."""

    def runTest(self):
        vip_service(self)
        whole = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40501, VIP_PORT, flags="PA", payload=b"A" * 64)
        first = Ether(bytes(whole))
        first[IP].flags = "MF"
        first[IP].len = 20 + 24
        first = Ether(bytes(first)[: 14 + 20 + 24])
        del first[IP].chksum
        later = Ether(src=CLIENT_MAC, dst=SW_MAC[1]) / IP(src=CLIENT_IP, dst=VIP, proto=IP_TCP, frag=3, id=1) / Raw(b"B" * 40)
        for f in (first, later):
            f = Ether(bytes(f))
            self.send(CLIENT_PORT, f)
            self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_IP_EXCEPTION,
                                  payload=bytes(f))
        self.expect_no_frames()


class IpOptionsRouted(P4csTest):
    """IPv4 with options to an ordinary destination is routed like any IPv4 packet."""

    def runTest(self):
        self.insert("ipv4_route", {"dst_addr": ("10.0.3.0", 24)}, "route", {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[3]})
        opts = [IPOption_RR(routers=["0.0.0.0"])]
        f = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, "10.0.3.7", 40502, 22, flags="S", options=opts)
        self.send(CLIENT_PORT, f)
        self.expect_frame(OTHER_PORT, tcp_frame(SW_MAC[3], OTHER_MAC, CLIENT_IP, "10.0.3.7", 40502, 22, flags="S", options=opts))
        self.expect_no_packet_in()


class MalformedFramesSurvive(P4csTest):
    """Truncated and nonsensical frames (cut inside Ethernet, IPv4, TCP, ARP; IPv4 total length
    larger than the frame; IHL < 5; version 6 in an IPv4 EtherType) do not kill the target:
    afterwards a flow entry, routing and P4Runtime reads still work. What happens to the bad
    frames themselves is target-specific and only reported (BMv2's parser rejects short frames;
    the DPDK SWX parser does not bounds-check)."""

    def runTest(self):
        vip_service(self)
        self.insert("flow_table", {"src_addr": CLIENT_IP, "dst_addr": VIP, "protocol": IP_TCP, "src_port": 40510,
                                   "dst_port": VIP_PORT}, "flow_forward",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[3], "flow_id": 810})
        good = bytes(tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40510, VIP_PORT, flags="PA", payload=b"x" * 20))
        bad = {
            "eth-only-ipv4-type": good[:14],
            "ipv4-cut-at-6": good[:20],
            "ipv4-no-tcp": good[:34],
            "tcp-cut-at-8": good[:42],
            "tcp-cut-at-19": good[:53],
            "ip-len-too-big": None,
            "ihl-3": None,
            "version-6": None,
            "arp-cut": bytes(Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=CLIENT_MAC, psrc=CLIENT_IP, pdst="10.0.1.1"))[:24],
            "all-zero-60": bytes(60),
            "all-ones-60": b"\xff" * 60,
        }
        p = Ether(good)
        p[IP].len = 1400
        del p[IP].chksum
        bad["ip-len-too-big"] = bytes(p)
        p = Ether(good)
        p[IP].ihl = 3
        bad["ihl-3"] = bytes(p)
        p = Ether(good)
        p[IP].version = 6
        bad["version-6"] = bytes(p)
        outcomes = {}
        for name, frame in bad.items():
            self.dataplane.flush()
            self.client.drain()
            try:
                self.send(CLIENT_PORT, frame)
            except OSError as e:
                outcomes[name] = f"not sendable ({e})"
                continue
            time.sleep(0.15)
            n_frames = sum(1 for _ in self._drain_frames())
            n_pi = self.client.drain()["packet_ins"]
            outcomes[name] = f"{n_frames} frame(s) out, {n_pi} packet-in(s)"
        print("malformed frame outcomes:", outcomes)
        # still alive: the flow entry (the same 5-tuple as the truncated TCP frames), a route, a read
        self.dataplane.flush()
        self.send(CLIENT_PORT, good)
        self.expect_frame(OTHER_PORT, tcp_frame(SW_MAC[3], OTHER_MAC, CLIENT_IP, VIP, 40510, VIP_PORT, flags="PA",
                                                payload=b"x" * 20))
        self.assert_forwarding_alive()
        self.assertTrue(self.client.read_table("flow_table"), "flow table read failed after malformed frames")

    def _drain_frames(self):
        while True:
            res = self.dataplane.poll(device_number=0, timeout=0.05)
            if isinstance(res, self.dataplane.PollFailure) or getattr(res, "packet", None) is None:
                return
            yield res


class TcpOptionsCarried(SpliceBase):
    """TCP options ride as payload through a splice: the option bytes are unchanged and the
    checksum stays valid."""

    def runTest(self):
        self.splice_pair(40520, 50520, 1000, 2000, flow_id=820)
        sent = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40520, VIP_PORT, flags="PA", payload=b"opt")
        from lib.packets import M32
        from lib.topo import SERVER_IP, SERVER_MAC, SERVER_PORT, SERVER_PORT_NO, SNAT_IP
        opts = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
        sent = Ether(bytes(sent))
        sent[TCP].options = opts
        sent = Ether(bytes(Ether(src=sent.src, dst=sent.dst) / IP(src=CLIENT_IP, dst=VIP, id=1) /
                           TCP(sport=40520, dport=VIP_PORT, seq=1000, ack=2000, flags="PA", window=8192, options=opts) /
                           Raw(b"opt")))
        want = Ether(src=SW_MAC[2], dst=SERVER_MAC) / IP(src=SNAT_IP, dst=SERVER_IP, id=1) / TCP(
            sport=50520, dport=SERVER_PORT_NO, seq=(1000 + 1000) & M32, ack=(2000 + 2000) & M32, flags="PA", window=8192,
            options=opts) / Raw(b"opt")
        self.send(CLIENT_PORT, sent)
        self.expect_frame(SERVER_PORT, want)
