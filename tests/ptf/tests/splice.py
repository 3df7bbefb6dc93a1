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
    """A SYN whose 5-tuple has flow entries is not spliced onto the old connection: it goes to
    the controller untouched. A pure SYN: a client reusing the 4-tuple of a closed connection
    before its entries are gone (reason 1). A SYN-ACK: the server's answer to the CS
    processor's SYN of a new connection on such a 4-tuple whose client-side entry was gone
    while the server-side one was not (reason 2); spliced, it reached the client with the old
    connection's rewrite. Segments with ACK alone on the same keys are still spliced."""

    def runTest(self):
        from lib.topo import REASON_BACKEND_MISS, REASON_VIP_MISS  # noqa: PLC0415
        d_seq, d_ack = 0x100, 0x200
        self.splice_pair(40007, 50007, d_seq, d_ack)
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")
        self.insert("backend_table", {"server_addr": SERVER_IP, "protocol": IP_TCP,
                                      "server_port": SERVER_PORT_NO}, "punt_backend")
        syn = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40007, VIP_PORT, seq=5, ack=0, flags="S")
        self.send(CLIENT_PORT, syn)
        pi = self.expect_packet_in()
        self.assert_packet_in(pi, ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(syn))
        self.expect_no_frames()
        synack = tcp_frame(SERVER_MAC, SW_MAC[2], SERVER_IP, SNAT_IP, SERVER_PORT_NO, 50007, seq=77,
                           ack=6, flags="SA")
        self.send(SERVER_PORT, synack)
        pi = self.expect_packet_in()
        self.assert_packet_in(pi, ingress_port=SERVER_PORT, reason=REASON_BACKEND_MISS,
                              payload=bytes(synack))
        self.expect_no_frames()
        self.c2s(40007, 50007, 9, 10, d_seq, d_ack, flags="A")
        self.s2c(40007, 50007, 11, 12, d_seq, d_ack, flags="A")
        self.expect_no_packet_in()


class SynOnClosedFlowEndsIt(SpliceBase):
    """A pure SYN on the 4-tuple of a closed connection whose entries are still in the flow
    table (both FIN'd: a client reusing its port right after the server closed first). Where
    the flow table removes the entries of closed connections itself (@p4cs_end_expiry: the
    DPDK target), the SYN ends both entries at once (dataplane/src/reuse.c): their
    IdleTimeoutNotifications carry the final counts (the SYN counted into the old flow) and the
    SYN itself takes the miss path (here a VIP entry that punts, reason 1); the client's next
    segment on the 4-tuple is no longer spliced onto the old connection. Elsewhere (BMv2) the
    SYN is punted (SynBypassesFlowTable) and the entries stay for the controller to delete. A
    SYN on entries without a FIN leaves them in place on every target
    (SynBypassesFlowTable)."""

    def runTest(self):
        from lib.topo import REASON_VIP_MISS  # noqa: PLC0415
        t = self.p4.tables["flow_table"]
        end_expiry = any(a.startswith("@p4cs_end_expiry(") for a in t.preamble.annotations)
        d_seq, d_ack = 0x300, 0x400
        c2s, s2c = self.splice_pair(40610, 50610, d_seq, d_ack, flow_id=720,
                                    idle_timeout_ns=300 * 10**9)
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")
        self.c2s(40610, 50610, 100, 200, d_seq, d_ack, payload=b"", flags="FA")
        self.s2c(40610, 50610, 200, 101, d_seq, d_ack, payload=b"", flags="FA")
        syn = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40610, VIP_PORT, seq=9000, ack=0, flags="S")
        self.send(CLIENT_PORT, syn)
        pi = self.expect_packet_in()
        self.assert_packet_in(pi, ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(syn))
        self.expect_no_frames()
        ack = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40610, VIP_PORT, seq=9001, ack=77, flags="A")
        if not end_expiry:
            self.c2s(40610, 50610, 101, 201, d_seq, d_ack, payload=b"", flags="A")
            self.expect_no_packet_in()
            return
        self.send(CLIENT_PORT, ack)
        pi = self.expect_packet_in()
        self.assert_packet_in(pi, ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(ack))
        self.expect_no_frames()
        def key(te):
            return tuple(sorted(self.p4.describe_entry(te)["match"].items()))
        want = {key(c2s): "c2s", key(s2c): "s2c"}
        t0 = time.monotonic()
        seen: dict[str, object] = {}
        while time.monotonic() - t0 < 1.0 and len(seen) < 2:   # the short profile takes >= 1.1 s
            n = self.client.get_idle_notification(0.2)
            for te in (n.table_entry if n is not None else []):
                if key(te) in want:
                    seen[want[key(te)]] = te
        self.assertEqual(sorted(seen), ["c2s", "s2c"], "the SYN did not end both entries at once")
        for which, fid, n_pkts in (("c2s", 720, 2), ("s2c", 721, 1)):
            te = seen[which]
            self.assertTrue(te.HasField("counter_data"), f"no counter_data in {te}")
            self.assertEqual(te.counter_data.packet_count, n_pkts, which)
        self.forget(c2s)
        self.forget(s2c)


def _ones_sum(data: bytes) -> int:
    s = sum(int.from_bytes(data[i:i + 2].ljust(2, b"\0"), "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _checksums_verify(frame: bytes) -> bool:
    """The receiver's check: every word summed, checksum included, is a ones'-complement zero."""
    ip = frame[14:34]
    tcp = frame[34:14 + int.from_bytes(ip[2:4], "big")]
    pseudo = ip[12:20] + bytes([0, IP_TCP]) + len(tcp).to_bytes(2, "big")
    return _ones_sum(ip) == 0xFFFF and _ones_sum(pseudo + tcp) == 0xFFFF


class ChecksumZeroCorners(SpliceBase):
    """The ones'-complement corners of the incremental update: an outgoing IPv4 or TCP checksum
    whose value is zero is written 0xFFFF by every target (the other zero, which verifies; scapy
    writes 0x0000); an incoming zero checksum written either way (0x0000 or 0xFFFF) gives the
    same, valid, outgoing one. Everything else is byte-identical to a full recomputation."""

    def want_and_sent(self, seq, ack, d_seq, d_ack, ip_id, payload):
        want = tcp_frame(SW_MAC[2], SERVER_MAC, SNAT_IP, SERVER_IP, 50008, SERVER_PORT_NO, seq=(seq + d_seq) & M32,
                         ack=(ack + d_ack) & M32, payload=payload, flags="PA", ip_id=ip_id)
        sent = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40008, VIP_PORT, seq=seq, ack=ack,
                         payload=payload, flags="PA", ip_id=ip_id)
        return Ether(bytes(want)), Ether(bytes(sent))

    def runTest(self):
        d_seq, d_ack = 0xFFFF0001, 0x0001FFFF               # carries out of the low and high words
        self.splice_pair(40008, 50008, d_seq, d_ack, flow_id=240)
        seq, ack = 0xFFFEFFFF, 0x0000FFFF
        # outgoing TCP checksum zero: the payload's last word cancels the rest of the sum
        want, _ = self.want_and_sent(seq, ack, d_seq, d_ack, 5, b"zero" + b"\0\0")
        want, sent = self.want_and_sent(seq, ack, d_seq, d_ack, 5, b"zero" + want[TCP].chksum.to_bytes(2, "big"))
        self.assertEqual(want[TCP].chksum, 0)
        want[TCP].chksum = 0xFFFF
        self.send(CLIENT_PORT, sent)
        got = self.expect_frame(SERVER_PORT, want, check_checksums=False)
        self.assertTrue(_checksums_verify(got))
        # outgoing IPv4 checksum zero: the identification word cancels the rest of the header
        want, _ = self.want_and_sent(seq, ack, d_seq, d_ack, 0, b"ip")
        want, sent = self.want_and_sent(seq, ack, d_seq, d_ack, want[IP].chksum, b"ip")
        self.assertEqual(want[IP].chksum, 0)
        want[IP].chksum = 0xFFFF
        self.send(CLIENT_PORT, sent)
        got = self.expect_frame(SERVER_PORT, want, check_checksums=False)
        self.assertTrue(_checksums_verify(got))
        # incoming TCP checksum zero, as 0x0000 and as 0xFFFF: the same outgoing frame
        _, sent = self.want_and_sent(seq, ack, d_seq, d_ack, 6, b"in" + b"\0\0")
        want, sent = self.want_and_sent(seq, ack, d_seq, d_ack, 6, b"in" + sent[TCP].chksum.to_bytes(2, "big"))
        self.assertEqual(sent[TCP].chksum, 0)
        for incoming in (0x0000, 0xFFFF):
            sent[TCP].chksum = incoming
            self.send(CLIENT_PORT, sent)
            self.expect_frame(SERVER_PORT, want)
        self.expect_no_frames()
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
