"""Packet-in (misses punted to the controller with metadata), packet-out (to the given egress
port, out-of-range ports dropped) and the FIN/RST copies of spliced flows."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.base import P4csTest  # noqa: E402
from lib.flows import SpliceBase  # noqa: E402
from lib.packets import icmp_echo, tcp_frame, udp_frame  # noqa: E402
from lib.topo import (  # noqa: E402
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, FLOW_END_SESSION, GW_IP, IP_TCP, REASON_BACKEND_MISS, REASON_FLOW_END,
    REASON_LOCAL, REASON_VIP_MISS, SERVER_IP, SERVER_MAC, SERVER_PORT, SERVER_PORT_NO, SNAT_IP, SW_MAC, VIP,
    VIP_PORT,
)
from scapy.layers.inet import TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402


def vip_entry(test):
    return test.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT},
                       "punt_vip")


class VipMissPacketIn(P4csTest):
    """A client's segment to VIP:port without a flow entry goes to the controller: PacketIn
    with ingress_port = the client's port, reason 1 (VIP miss), payload = the frame as sent.
    Nothing leaves on a data port. Another port of the same address is not a virtual service."""

    def runTest(self):
        vip_entry(self)
        for cport, flags in ((40100, "S"), (40101, "PA")):
            f = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, cport, VIP_PORT, flags=flags, payload=b"" if flags == "S" else b"GET")
            self.send(CLIENT_PORT, f)
            pi = self.expect_packet_in()
            self.assert_packet_in(pi, ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(f))
        self.send(CLIENT_PORT, tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40102, VIP_PORT + 1, flags="S"))
        self.expect_no_packet_in()
        self.expect_no_frames()


class BackendMissPacketIn(P4csTest):
    """A real server's segment without a flow entry: PacketIn reason 2, ingress_port = the
    server's port."""

    def runTest(self):
        self.insert("backend_table", {"server_addr": SERVER_IP, "protocol": IP_TCP, "server_port": SERVER_PORT_NO},
                    "punt_backend")
        f = tcp_frame(SERVER_MAC, SW_MAC[2], SERVER_IP, SNAT_IP, SERVER_PORT_NO, 50100, flags="SA")
        self.send(SERVER_PORT, f)
        pi = self.expect_packet_in()
        self.assert_packet_in(pi, ingress_port=SERVER_PORT, reason=REASON_BACKEND_MISS, payload=bytes(f))
        self.expect_no_frames()


class LocalPacketIn(P4csTest):
    """Traffic addressed to a switch-owned address (local_table): PacketIn reason 3."""

    def runTest(self):
        self.insert("local_table", {"addr": GW_IP[1]}, "punt_local")
        self.insert("local_table", {"addr": SNAT_IP}, "punt_local")
        frames = [
            (CLIENT_PORT, icmp_echo(CLIENT_MAC, SW_MAC[1], CLIENT_IP, GW_IP[1])),
            (SERVER_PORT, tcp_frame(SERVER_MAC, SW_MAC[2], SERVER_IP, SNAT_IP, SERVER_PORT_NO, 50101, flags="SA")),
            (CLIENT_PORT, udp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, GW_IP[1], 5353, 53)),
        ]
        for port, f in frames:
            self.send(port, f)
            pi = self.expect_packet_in()
            self.assert_packet_in(pi, ingress_port=port, reason=REASON_LOCAL, payload=bytes(f))
        self.expect_no_frames()


class PacketOutToPort(P4csTest):
    """PacketOut with egress_port = N leaves on port N exactly as the controller built it."""

    def runTest(self):
        for port in self.ports:
            f = udp_frame(SW_MAC[port], "02:00:00:00:0f:%02x" % port, GW_IP[port], "10.0.%d.50" % port, 7000 + port, 80,
                          payload=b"packet-out to port %d" % port)
            self.client.packet_out(bytes(f), port)
            self.expect_frame(port, f)
        self.expect_no_frames()
        self.expect_no_packet_in()
        err = self.client.get_stream_error(0.1)
        self.assertIsNone(err, f"stream error for valid packet-outs: {err}")


class PacketOutBadPortDropped(P4csTest):
    """PacketOut to a port the switch does not have (>= P4CS_MAX_PORTS, 0xffff, the CPU port
    itself) is dropped: nothing leaves on any port, nothing comes back as a PacketIn. (The
    target may also answer with a StreamError; that is allowed.) A valid packet-out afterwards
    still works."""

    def runTest(self):
        f = udp_frame(SW_MAC[1], CLIENT_MAC, GW_IP[1], CLIENT_IP, 7000, 80, payload=b"must not leave")
        bad = sorted({16, 200, 0xFFFF, self.cpu_port})
        for port in bad:
            self.client.packet_out(bytes(f), port)
        time.sleep(0.3)
        self.expect_no_frames()
        self.expect_no_packet_in()
        errs = []
        while (e := self.client.get_stream_error(0.05)) is not None:
            errs.append(e)
        for e in errs:
            self.assertTrue(e.HasField("packet_out"), f"unexpected stream error: {e}")
        self.client.packet_out(bytes(f), CLIENT_PORT)
        self.expect_frame(CLIENT_PORT, f)


class FinRstCopy(SpliceBase):
    """FIN and RST of a spliced flow are forwarded (rewritten, as any segment of the flow) AND
    copied to the controller: PacketIn reason 4, through clone session P4CS_FLOW_END_SESSION
    whose replica is the CPU port (configured here through P4Runtime). The copy is the frame as
    received or as forwarded (targets differ; both carry the flags). ingress_port is the port
    the segment came in on. Segments without FIN/RST are not copied."""

    def runTest(self):
        self.add_clone_session(FLOW_END_SESSION, [self.cpu_port])
        d_seq, d_ack = 5000, 7000
        self.splice_pair(40200, 50200, d_seq, d_ack, flow_id=400)
        # a plain segment: forwarded, no copy
        self.c2s(40200, 50200, 10, 20, d_seq, d_ack, payload=b"data", flags="PA")
        self.expect_no_packet_in(0.5)
        cases = [
            ("c2s", "FA", CLIENT_PORT), ("s2c", "FA", SERVER_PORT),
            ("c2s", "R", CLIENT_PORT), ("s2c", "RA", SERVER_PORT),
        ]
        for direction, flags, in_port in cases:
            fwd = getattr(self, direction)(40200, 50200, 1000, 2000, d_seq, d_ack, flags=flags)
            pi = self.expect_packet_in(3.0)
            self.assert_packet_in(pi, ingress_port=in_port, reason=REASON_FLOW_END)
            if direction == "c2s":
                sent = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40200, VIP_PORT, seq=1000, ack=2000, flags=flags)
            else:
                sent = tcp_frame(SERVER_MAC, SW_MAC[2], SERVER_IP, SNAT_IP, SERVER_PORT_NO, 50200, seq=1000, ack=2000, flags=flags)
            self.assertIn(pi.payload, (bytes(sent), fwd),
                          f"{direction} {flags}: the copy is neither the frame received nor the frame forwarded: {pi}")
            tcp = Ether(pi.payload)[TCP]
            self.assertTrue(int(tcp.flags) & 0x05, f"copy without FIN/RST: {tcp.flags}")
        self.expect_no_packet_in(0.3)
        self.expect_no_frames()
