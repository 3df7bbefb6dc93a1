"""SYN cookies in the data plane: a SYN to a virtual service with a syn_table entry is answered
on its ingress port with a SYN-ACK whose ISN is the cookie host/p4cs/csproc/cookies.py makes for
the keys and time slot written in syn_cookie_params; the controller gets no packet-in. The
SYN-ACK is compared byte for byte with the one the CS processor builds for the same SYN
(csproc.packet.build: MSS option, NOP + window scale only when the client offered one)."""

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "host"))

from lib.base import P4csTest  # noqa: E402
from lib.p4rt import Client  # noqa: E402
from lib.topo import CLIENT_IP, CLIENT_MAC, CLIENT_PORT, IP_TCP, REASON_VIP_MISS, SW_MAC, VIP, VIP_PORT  # noqa: E402
from p4cs.csproc import packet as P  # noqa: E402
from p4cs.csproc.cookies import MSS_TABLE, SynCookies, mss_index  # noqa: E402

SYN, ACK = 0x02, 0x10
COOKIES = SynCookies(b"ptf-syn-cookie-secret-0123456789")
SLOT = 21
TTL = 64
SYNACK_MSS, SYNACK_WSCALE, SYNACK_WINDOW = 1460, 7, 8192


def ip(a: str) -> int:
    return P.ip_int(a)


def mss(v: int) -> bytes:
    return P.mss_option(v)


def ws(v: int) -> bytes:
    return bytes((3, 3, v))


NOP, EOL, SACK_OK = b"\x01", b"\x00", b"\x04\x02"
TS = b"\x08\x0a" + bytes(range(1, 9))

#: (name, the SYN's options, MSS and window scale a host reads from them)
LAYOUTS = [
    ("none", b"", None, None),
    ("linux", mss(1460) + SACK_OK + TS + NOP + ws(7), 1460, 7),
    ("linux-no-timestamps", mss(1460) + NOP + NOP + SACK_OK + NOP + ws(10), 1460, 10),
    ("windows", mss(1400) + NOP + ws(8) + NOP + NOP + SACK_OK, 1400, 8),
    ("macos", mss(1452) + NOP + ws(6) + NOP + NOP + TS + SACK_OK + EOL + EOL, 1452, 6),
    ("mss-only", mss(1300), 1300, None),
    ("scale-only", NOP + ws(2), None, 2),
    ("large-scale-capped", mss(9000) + NOP + ws(15), 9000, 14),
    ("odd-mss", mss(1459) + NOP + ws(0), 1459, 0),
    ("small-mss", mss(100), 100, None),
    ("unknown-option-skipped", b"\xfd\x06abcd" + mss(1360) + NOP + ws(3), 1360, 3),
    ("first-mss-counts", mss(1200) + mss(1460), 1200, None),
    ("mss-at-the-end", NOP * 36 + mss(1440), 1440, None),
    ("eol-ends-the-walk", mss(1400) + EOL + NOP + ws(5), 1400, None),
    ("zero-length-ends-the-walk", mss(1400) + b"\x1e\x00" + NOP + ws(5), 1400, None),
    ("overlong-option-ends-the-walk", NOP + ws(4) + b"\x1e\x28" + mss(1460), None, 4),
    ("truncated-mss", NOP * 38 + b"\x02\x04", None, None),
]


class SynCookieBase(P4csTest):
    """Keys and slot written, one virtual service answered in the data plane."""

    def setUp(self):
        super().setUp()
        k = COOKIES.key_words()
        self.set_params("syn_cookie_keys", {"key0": k[0], "key1": k[1], "key2": k[2], "key3": k[3],
                                            "time_slot": SLOT, "synack_ttl": TTL})
        self.insert("syn_table", {"vip_addr": VIP, "vip_port": VIP_PORT}, "answer_syn",
                    {"synack_mss": SYNACK_MSS, "synack_wscale": SYNACK_WSCALE,
                     "synack_window": SYNACK_WINDOW})
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")

    def tearDown(self):
        try:
            self.set_params("syn_cookie_off", {})
        finally:
            super().tearDown()

    def set_params(self, action, params):
        te = self.entry("syn_cookie_params", None, action, params, is_default=True)
        self.client.write([Client.table_update("modify", te)])

    def syn(self, sport, cisn, options=b"", payload=b""):
        return P.build(P.mac_bytes(CLIENT_MAC), P.mac_bytes(SW_MAC[1]), ip(CLIENT_IP), ip(VIP), sport,
                       VIP_PORT, cisn, 0, SYN, 64240, payload, options)

    def synack(self, sport, cisn, client_mss, client_ws):
        isn = COOKIES.make(ip(CLIENT_IP), ip(VIP), sport, VIP_PORT, cisn, client_mss, SLOT << 6, client_ws)
        opts = mss(SYNACK_MSS) + (b"" if client_ws is None else NOP + ws(SYNACK_WSCALE))
        return isn, P.build(P.mac_bytes(SW_MAC[1]), P.mac_bytes(CLIENT_MAC), ip(VIP), ip(CLIENT_IP), VIP_PORT,
                            sport, isn, cisn + 1, SYN | ACK, SYNACK_WINDOW, b"", opts, TTL)


class OptionLayouts(SynCookieBase):
    """Every option layout: the exact SYN-ACK, and a cookie that validates with the MSS and
    window scale of the SYN (the CS processor's check on the completing ACK)."""

    def runTest(self):
        for i, (name, opts, client_mss, client_ws) in enumerate(LAYOUTS):
            sport, cisn = 40000 + i, 0x10000000 * (i % 16) + 12345 * i
            self.send(CLIENT_PORT, self.syn(sport, cisn, opts))
            isn, want = self.synack(sport, cisn, client_mss, client_ws)
            with self.subTest(layout=name):
                self.expect_frame(CLIENT_PORT, want)
                got = COOKIES.check_opts(ip(CLIENT_IP), ip(VIP), sport, VIP_PORT, cisn, isn, SLOT << 6)
                self.assertEqual(got, (MSS_TABLE[mss_index(client_mss)], client_ws), f"cookie of layout {name}")
        self.expect_no_frames()
        self.expect_no_packet_in()


class SynWithData(SynCookieBase):
    """A SYN carrying data is answered too: the IPv4 length covers the SYN-ACK, the data
    trails it (the receiver's IP layer ignores it)."""

    def runTest(self):
        self.send(CLIENT_PORT, self.syn(41000, 777, mss(1460), b"early data"))
        _, want = self.synack(41000, 777, 1460, None)
        got = self.recv(CLIENT_PORT)
        self.assertEqual(got[:len(want)], want)
        self.expect_no_packet_in()


class SlotAndKeyChange(SynCookieBase):
    """A new slot or key written by the controller changes the cookie of the same SYN."""

    def runTest(self):
        k = COOKIES.key_words()
        sport, cisn = 42000, 99
        self.set_params("syn_cookie_keys", {"key0": k[0], "key1": k[1], "key2": k[2], "key3": k[3],
                                            "time_slot": (SLOT + 1) % 32, "synack_ttl": TTL})
        self.send(CLIENT_PORT, self.syn(sport, cisn, mss(1460)))
        isn = COOKIES.make(ip(CLIENT_IP), ip(VIP), sport, VIP_PORT, cisn, 1460, (SLOT + 1) << 6, None)
        got = self.recv(CLIENT_PORT)
        self.assertEqual(int.from_bytes(got[38:42], "big"), isn)
        other = SynCookies(b"another-secret-of-32-bytes......")
        k = other.key_words()
        self.set_params("syn_cookie_keys", {"key0": k[0], "key1": k[1], "key2": k[2], "key3": k[3],
                                            "time_slot": SLOT, "synack_ttl": TTL})
        self.send(CLIENT_PORT, self.syn(sport, cisn, mss(1460)))
        got = self.recv(CLIENT_PORT)
        isn = other.make(ip(CLIENT_IP), ip(VIP), sport, VIP_PORT, cisn, 1460, SLOT << 6, None)
        self.assertEqual(int.from_bytes(got[38:42], "big"), isn)
        self.expect_no_packet_in()


class NotAnsweredGoesToController(SynCookieBase):
    """A SYN to a service without a syn_table entry, a SYN before the keys are written and a
    SYN with RST or FIN set take the old way: a packet-in."""

    def runTest(self):
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": 81}, "punt_vip")
        f = P.build(P.mac_bytes(CLIENT_MAC), P.mac_bytes(SW_MAC[1]), ip(CLIENT_IP), ip(VIP), 43000, 81, 5, 0, SYN,
                    1000, b"", mss(1460))
        self.send(CLIENT_PORT, f)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=f)
        f = P.build(P.mac_bytes(CLIENT_MAC), P.mac_bytes(SW_MAC[1]), ip(CLIENT_IP), ip(VIP), 43001, VIP_PORT, 5, 0,
                    SYN | 0x01, 1000)
        self.send(CLIENT_PORT, f)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=f)
        self.set_params("syn_cookie_off", {})
        f = self.syn(43002, 5, mss(1460))
        self.send(CLIENT_PORT, f)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=f)
        self.expect_no_frames()


class Flood(SynCookieBase):
    """SYNs from random ports and ISNs, in bursts of 20: every one answered with its cookie,
    not one packet-in."""

    def runTest(self):
        rnd = random.Random(7)
        for _ in range(10):
            sent = []
            for _ in range(20):
                sport, cisn = rnd.randrange(1024, 65536), rnd.randrange(1 << 32)
                sent.append((sport, cisn))
                self.send(CLIENT_PORT, self.syn(sport, cisn, mss(1460) + NOP + ws(7)))
            got = {}
            for _ in sent:
                f = self.recv(CLIENT_PORT)
                got[(int.from_bytes(f[36:38], "big"), (int.from_bytes(f[42:46], "big") - 1) % (1 << 32))] = f
            for sport, cisn in sent:
                self.assertEqual(got.get((sport, cisn)), self.synack(sport, cisn, 1460, 7)[1])
        self.expect_no_packet_in(1.0)


class SynOnFlowHitGoesToController(SynCookieBase):
    """A SYN whose 5-tuple still has a flow entry (a client reusing the port of a closed
    connection whose entries have not expired) is neither spliced nor answered with a cookie:
    its completing ACK would meet the old entry. It reaches the controller untouched, which
    removes the old entries and answers it. The same SYN on a free 5-tuple is answered."""

    def runTest(self):
        from lib.flows import flow_key, splice_params  # noqa: PLC0415
        from lib.topo import SERVER_IP, SERVER_MAC, SERVER_PORT, SERVER_PORT_NO  # noqa: PLC0415
        key = flow_key(CLIENT_IP, VIP, 43100, VIP_PORT)
        self.insert("flow_table", key, "splice", splice_params(key, {
            "port": SERVER_PORT, "dmac": SERVER_MAC, "smac": SW_MAC[2], "sip": CLIENT_IP, "dip": SERVER_IP,
            "sport": 43100, "dport": SERVER_PORT_NO, "seq_delta": 0, "ack_delta": 7, "flow_id": 310}))
        f = self.syn(43100, 5, mss(1460))
        self.send(CLIENT_PORT, f)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=f)
        self.expect_no_frames()
        self.send(CLIENT_PORT, self.syn(43101, 5, mss(1460)))
        self.expect_frame(CLIENT_PORT, self.synack(43101, 5, 1460, None)[1])
        self.expect_no_packet_in()
