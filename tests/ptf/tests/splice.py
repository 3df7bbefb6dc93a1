"""The fast path: spliced flows (flow_table splice / flow_forward).

A splice rewrites MACs, IPv4 addresses, ports, adds the sequence / acknowledgement deltas
(mod 2^32) and fixes the IPv4 and TCP checksums incrementally. Every expected frame below is
built from scratch by scapy (so its checksums are computed, not copied) and the received frame
must be byte-identical to it; the received frame's checksums are also re-verified by scapy.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.base import P4csTest  # noqa: E402
from lib.flows import SpliceBase, flow_key  # noqa: E402
from lib.packets import M32, checksum_problems, tcp_frame  # noqa: E402
from lib.topo import (  # noqa: E402
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, IP_TCP, OTHER_MAC, OTHER_PORT, SERVER_IP, SERVER_MAC, SERVER_PORT,
    SERVER_PORT_NO, SNAT_IP, SW_MAC, VIP, VIP_PORT,
)
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402


PAYLOADS = [b"", b"G", b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n", bytes(range(256)) * 4 + b"odd"]


class SpliceClientToServer(SpliceBase):
    """client -> VIP rewritten to SNAT -> server: MACs, IPs, ports, seq + delta, ack + delta,
    IPv4 and TCP checksums valid (scapy), payload and other fields untouched."""

    def runTest(self):
        d_seq, d_ack = 0x01020304, 0x7FFF0001
        self.splice_pair(40001, 50001, d_seq, d_ack)
        for i, pl in enumerate(PAYLOADS):
            self.c2s(40001, 50001, 1000 + i * 5000, 777777 + i, d_seq, d_ack, payload=pl,
                     flags="PA" if pl else "A", ttl=64 - i, ip_id=100 + i)
        self.expect_no_frames()
        self.expect_no_packet_in()


class SpliceServerToClient(SpliceBase):
    """server -> SNAT rewritten to VIP -> client with the inverse deltas."""

    def runTest(self):
        d_seq, d_ack = 0x01020304, 0x7FFF0001
        self.splice_pair(40002, 50002, d_seq, d_ack)
        for i, pl in enumerate(PAYLOADS):
            self.s2c(40002, 50002, 0x10000000 + i * 9000, 0x20000000 + i, d_seq, d_ack, payload=pl,
                     flags="PA" if pl else "A", ip_id=200 + i)
        self.expect_no_frames()
        self.expect_no_packet_in()


class SeqAckWrapAround(SpliceBase):
    """Sequence and acknowledgement numbers wrap modulo 2^32 (values near 2^32, negative
    deltas), in both directions, with valid checksums."""

    def runTest(self):
        cases = [
            # (seq, ack, d_seq, d_ack)
            (0xFFFFFFF0, 0xFFFFFFFF, 0x20, 0x1),          # both wrap past 2^32
            (0x00000005, 0x00000003, -0x10, -0x4),        # negative deltas wrap below 0
            (0xFFFFFFFF, 0x00000000, 0xFFFFFFFF, 0x80000000),
            (0x80000000, 0x7FFFFFFF, 0x80000000, 0x80000001),
        ]
        for i, (seq, ack, d_seq, d_ack) in enumerate(cases):
            cport, sport = 41000 + i, 51000 + i
            self.splice_pair(cport, sport, d_seq, d_ack, flow_id=200 + 2 * i)
            self.c2s(cport, sport, seq, ack, d_seq, d_ack, payload=b"wrap%d" % i, flags="PA")
            self.s2c(cport, sport, seq, ack, d_seq, d_ack, payload=b"back%d" % i, flags="PA")
        self.expect_no_frames()


class BadChecksumNotLaundered(SpliceBase):
    """A frame that arrives with a wrong TCP (or IPv4) checksum leaves with a wrong one: the
    update is incremental, corruption is not turned into a valid packet."""

    def runTest(self):
        self.splice_pair(40003, 50003, 1000, 2000)
        for layer in (TCP, IP):
            sent = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40003, VIP_PORT, payload=b"corrupt", flags="PA")
            sent = Ether(bytes(sent))
            sent[layer].chksum ^= 0x1234
            self.send(CLIENT_PORT, sent)
            got = self.recv(SERVER_PORT)
            probs = checksum_problems(got)
            bad, good = ("IPv4", "TCP") if layer is IP else ("TCP", "IPv4")
            self.assertTrue(any(p.startswith(bad) for p in probs),
                            f"{bad} checksum was corrupted on input but is valid on output")
            self.assertFalse([p for p in probs if p.startswith(good)],
                             f"only the {bad} checksum was corrupted, but the {good} checksum is wrong too: {probs}")
        self.expect_no_frames()


class FlowForward(P4csTest):
    """flow_forward: only the MACs change, the frame goes to the given port."""

    def runTest(self):
        self.insert("flow_table", flow_key(CLIENT_IP, "10.0.3.9", 40004, 443), "flow_forward",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[3], "flow_id": 300})
        sent = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, "10.0.3.9", 40004, 443, payload=b"tls", flags="PA")
        want = tcp_frame(SW_MAC[3], OTHER_MAC, CLIENT_IP, "10.0.3.9", 40004, 443, payload=b"tls", flags="PA")
        self.send(CLIENT_PORT, sent)
        self.expect_frame(OTHER_PORT, want)
        self.expect_no_frames()
        self.expect_no_packet_in()


class SynBypassesFlowTable(SpliceBase):
    """A pure SYN whose 5-tuple has flow entries (a client reusing the 4-tuple of a closed
    connection before its entries are gone) is not spliced onto the old connection: it goes to
    the controller (reason 1) untouched. A SYN-ACK or a segment with ACK on the same key is
    still spliced."""

    def runTest(self):
        from lib.topo import REASON_VIP_MISS  # noqa: PLC0415
        d_seq, d_ack = 0x100, 0x200
        self.splice_pair(40007, 50007, d_seq, d_ack)
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")
        syn = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40007, VIP_PORT, seq=5, ack=0, flags="S")
        self.send(CLIENT_PORT, syn)
        pi = self.expect_packet_in()
        self.assert_packet_in(pi, ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(syn))
        self.expect_no_frames()
        self.c2s(40007, 50007, 9, 10, d_seq, d_ack, flags="A")
        self.expect_no_packet_in()


class FinEndsTheFlowEntry(SpliceBase):
    """A FIN on a spliced flow whose entries have a long idle timeout. Where the flow table
    removes the entries of closed connections itself (its P4Info table carries
    @p4cs_end_expiry: the DPDK target), the FIN's hit moves its entry to the short expiry
    profile: the entry expires within seconds, its IdleTimeoutNotification carries the final
    packet and byte counts of its counter cell (counter_data), the cell reads 0 once an entry
    with that flow id is inserted again (no counter write needed), and the other direction (no
    FIN) stays; so does a FIN'd entry without idle timeout (permanent
    stays permanent). Elsewhere (BMv2) a FIN changes no expiry: neither entry
    is notified and the cell keeps its counts for the controller to read."""

    WAIT_S = 10.0

    def runTest(self):
        t = self.p4.tables["flow_table"]
        end_expiry = any(a.startswith("@p4cs_end_expiry(") for a in t.preamble.annotations)
        c2s, s2c = self.splice_pair(40600, 50600, 11, 22, flow_id=700, idle_timeout_ns=300 * 10**9)
        sent = [self.c2s(40600, 50600, 1000, 2000, 11, 22, payload=b"data", flags="PA"),
                self.c2s(40600, 50600, 1004, 2000, 11, 22, payload=b"", flags="A"),
                self.c2s(40600, 50600, 1004, 2000, 11, 22, payload=b"", flags="FA")]
        counted = (len(sent), sum(14 + Ether(f)[IP].len for f in sent))
        perm, _ = self.splice_pair(40601, 50601, 11, 22, flow_id=710)
        self.c2s(40601, 50601, 1000, 2000, 11, 22, payload=b"", flags="FA")
        def key(te):
            return tuple(sorted(self.p4.describe_entry(te)["match"].items()))
        want = {key(c2s): "c2s", key(s2c): "s2c", key(perm): "permanent"}
        t0 = time.monotonic()
        seen: dict[str, tuple[float, object]] = {}
        while time.monotonic() - t0 < self.WAIT_S and "c2s" not in seen:
            n = self.client.get_idle_notification(0.5)
            for te in (n.table_entry if n is not None else []):
                which = want.get(key(te))
                if which:
                    seen[which] = (time.monotonic() - t0, te)
        if not end_expiry:
            self.assertEqual(seen, {}, "a FIN changed the expiry of an entry on this target")
            self.assertEqual(self.client.read_counter("flow_counter", 700)[0], len(sent))
            return
        self.assertIn("c2s", seen, f"the FIN'd entry did not expire within {self.WAIT_S} s")
        self.assertNotIn("s2c", seen, "the entry without FIN expired too")
        self.assertNotIn("permanent", seen, "an entry without idle timeout expired after a FIN")
        after, te = seen["c2s"]
        self.assertTrue(te.HasField("counter_data"), f"no counter_data in {te}")
        self.assertEqual((te.counter_data.packet_count, te.counter_data.byte_count), counted)
        self.forget(c2s)
        # gone from the data plane: the flow's next segment is not spliced any more
        self.send(CLIENT_PORT, tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40600, VIP_PORT,
                                         seq=1005, ack=2000, flags="A"))
        self.expect_no_frames()
        self.s2c(40600, 50600, 2000, 1005, 11, 22, payload=b"", flags="A")
        self.c2s(40601, 50601, 1001, 2000, 11, 22, payload=b"", flags="A")
        self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40602, VIP_PORT), "flow_forward",
                    {"port": OTHER_PORT, "dmac": OTHER_MAC, "smac": SW_MAC[OTHER_PORT], "flow_id": 700},
                    idle_timeout_ns=300 * 10**9)
        self.assertEqual(self.client.read_counter("flow_counter", 700), (0, 0))
        print(f"FIN'd entry expired after {after:.1f} s with counts {counted}")
