"""ARP answered by the pipeline, ARP replies punted, routed IPv4 traffic (ipv4_route, longest prefix match),
unknown destinations and EtherTypes dropped."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.base import P4csTest  # noqa: E402
from lib.packets import arp_reply_expected, arp_request, tcp_frame, udp_frame  # noqa: E402
from lib.topo import (  # noqa: E402
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, GW_IP, OTHER_MAC, OTHER_PORT, REASON_ARP, SERVER_MAC, SERVER_PORT, SW_MAC,
    VIP,
)
from scapy.layers.l2 import Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402


class ArpReply(P4csTest):
    """An ARP request for a switch address (gateway, VIP) is answered on the ingress port."""

    def runTest(self):
        self.insert("arp_table", {"target_addr": GW_IP[1]}, "arp_reply", {"mac": SW_MAC[1]})
        self.insert("arp_table", {"target_addr": VIP}, "arp_reply", {"mac": SW_MAC[1]})
        for ip in (GW_IP[1], VIP):
            self.send(CLIENT_PORT, arp_request(CLIENT_MAC, CLIENT_IP, ip))
            self.expect_frame(CLIENT_PORT, arp_reply_expected(SW_MAC[1], ip, CLIENT_MAC, CLIENT_IP), check_checksums=False)
        self.expect_no_frames()
        self.expect_no_packet_in()


class ArpUnknownDropped(P4csTest):
    """ARP requests for addresses the switch does not own are dropped."""

    def runTest(self):
        self.insert("arp_table", {"target_addr": GW_IP[1]}, "arp_reply", {"mac": SW_MAC[1]})
        self.send(CLIENT_PORT, arp_request(CLIENT_MAC, CLIENT_IP, "10.0.1.99"))
        self.expect_no_frames()
        self.expect_no_packet_in()


class ArpReplyPunted(P4csTest):
    """ARP replies go to the controller (neighbour resolution), unchanged, and nowhere else."""

    def runTest(self):
        self.insert("arp_table", {"target_addr": GW_IP[1]}, "arp_reply", {"mac": SW_MAC[1]})
        reply = arp_reply_expected(CLIENT_MAC, CLIENT_IP, SW_MAC[1], GW_IP[1])
        self.send(CLIENT_PORT, reply)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_ARP,
                              payload=bytes(reply))
        self.expect_no_frames()


class Ipv4Route(P4csTest):
    """ipv4_route: longest prefix wins, MACs rewritten, the rest of the frame unchanged
    (TTL included: p4cs forwards like a bridge), checksums untouched and valid."""

    def runTest(self):
        self.insert("ipv4_route", {"dst_addr": ("10.0.3.0", 24)}, "route",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[3]})
        self.insert("ipv4_route", {"dst_addr": ("10.0.3.128", 25)}, "route",
                    {"port": SERVER_PORT, "dmac": SERVER_MAC, "smac": SW_MAC[2]})
        for dst, port, dmac, smac in (("10.0.3.5", OTHER_PORT, OTHER_MAC, SW_MAC[3]),
                                      ("10.0.3.200", SERVER_PORT, SERVER_MAC, SW_MAC[2])):
            for mk in (lambda s, d: udp_frame(s, d, CLIENT_IP, dst, 5000, 53),
                       lambda s, d: tcp_frame(s, d, CLIENT_IP, dst, 40000, 22, payload=b"ssh")):
                self.send(CLIENT_PORT, mk(CLIENT_MAC, SW_MAC[1]))
                self.expect_frame(port, mk(smac, dmac))
        self.expect_no_frames()
        self.expect_no_packet_in()


class RouteMissDropped(P4csTest):
    """IPv4 to a destination without a route is dropped (ipv4_route default action)."""

    def runTest(self):
        self.insert("ipv4_route", {"dst_addr": ("10.0.3.0", 24)}, "route",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[3]})
        self.send(CLIENT_PORT, udp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, "10.0.4.5", 5000, 53))
        self.expect_no_frames()
        self.expect_no_packet_in()


class UnknownEtherTypeDropped(P4csTest):
    """Frames that are neither IPv4 nor ARP are not bridged (nor punted)."""

    def runTest(self):
        self.insert("ipv4_route", {"dst_addr": ("0.0.0.0", 1)}, "route",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[3]})
        for et in (0x88B5, 0x86DD, 0x8100):
            self.send(CLIENT_PORT, Ether(src=CLIENT_MAC, dst=SW_MAC[1], type=et) / Raw(b"\x45" + bytes(59)))
        self.expect_no_frames()
        self.expect_no_packet_in()
        self.assert_forwarding_alive()
