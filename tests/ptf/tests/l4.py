"""L4 virtual services balanced in the data plane (p4src/include/l4_service.p4): the Maglev
pick, the destination rewrite, the reverse rewrite, UDP, and what a change of the server set
does to established connections (learned on DPDK, re-hashed on BMv2)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "host"))

from lib.base import P4csTest  # noqa: E402
from lib.p4rt import Client  # noqa: E402
from lib.packets import checksum_problems, frame_diff, tcp_frame, udp_frame  # noqa: E402
from lib.topo import (  # noqa: E402
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, SERVER_MAC, SERVER_PORT, SW_MAC, VIP, VIP_PORT,
)
from p4cs.csproc.schedulers import Server  # noqa: E402
from p4cs.csproc.schedulers.maglev import build_table  # noqa: E402
from scapy.layers.inet import IP, UDP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

IP_UDP = 17
SERVICE_ID = 7
#: the learner's 10 s profile (the runner's --learner-timeouts are p4cs.params' flow_timeouts_s)
PROFILE = 1
SERVERS = ("10.0.2.20", "10.0.2.21", "10.0.2.22")
SERVER_L4_PORT = 8080
DNS_PORT, SERVER_DNS_PORT = 53, 5353


class L4Test(P4csTest):
    """A service VIP:port (TCP or UDP) over servers behind port 2; routes to the servers'
    network and back to the client's. Maglev entries are written and removed in batches."""

    def setUp(self):
        super().setUp()
        info = self.p4.table("l4_maglev")
        self.size = info.size // self._services()
        self._bulk: list = []
        self.insert("ipv4_route", {"dst_addr": ("10.0.2.0", 24)}, "route",
                    {"port": SERVER_PORT, "dmac": SERVER_MAC, "smac": SW_MAC[SERVER_PORT]})
        self.insert("ipv4_route", {"dst_addr": ("10.0.1.0", 24)}, "route",
                    {"port": CLIENT_PORT, "dmac": CLIENT_MAC, "smac": SW_MAC[CLIENT_PORT]})

    def _services(self) -> int:
        return self.p4.table("l4_service").size

    def tearDown(self):
        try:
            if self._bulk:
                self.client.write([Client.table_update("delete", Client.key_only(te)) for te in self._bulk])
        finally:
            self._bulk.clear()
            super().tearDown()

    def service(self, proto: int = 6, port: int = VIP_PORT) -> None:
        self.insert("l4_service", {"vip_addr": VIP, "protocol": proto, "vip_port": port}, "l4_select",
                    {"service_id": SERVICE_ID, "timeout_profile": PROFILE})

    def reverse(self, server: str, proto: int = 6, sport: int = SERVER_L4_PORT, vport: int = VIP_PORT):
        self.insert("l4_reverse", {"server_addr": server, "protocol": proto, "server_port": sport}, "l4_unnat",
                    {"vip_addr": VIP, "vip_port": vport})

    def _maglev(self, table: list[str | None], port: int) -> list:
        return [self.entry("l4_maglev", {"service_id": SERVICE_ID, "bucket": b}, "l4_pick",
                           {"server_addr": s, "server_port": port})
                for b, s in enumerate(table) if s is not None]

    def write_maglev(self, table: list[str | None], port: int = SERVER_L4_PORT) -> None:
        """Bucket b -> server table[b] (None: no entry)."""
        entries = self._maglev(table, port)
        self.client.write([Client.table_update("insert", te) for te in entries])
        self._bulk = entries

    def change_maglev(self, old: list[str | None], new: list[str | None], port: int = SERVER_L4_PORT) -> None:
        """What the controller writes when the server set changes: the buckets that change."""
        olds = {b: te for b, te in zip((b for b, s in enumerate(old) if s is not None), self._maglev(old, port))}
        news = {b: te for b, te in zip((b for b, s in enumerate(new) if s is not None), self._maglev(new, port))}
        ups = [Client.table_update("delete", Client.key_only(te)) for b, te in olds.items() if b not in news]
        ups += [Client.table_update("modify", te) for b, te in news.items() if b in olds and old[b] != new[b]]
        ups += [Client.table_update("insert", te) for b, te in news.items() if b not in olds]
        if ups:
            self.client.write(ups)
        self._bulk = list(news.values())

    def maglev_of(self, servers: tuple[str, ...]) -> list[str | None]:
        table = build_table([Server(s, s, SERVER_L4_PORT) for s in servers], self.size)
        return [None if s is None else s.name for s in table]

    # -- traffic ---------------------------------------------------------------------------

    def tcp_to_vip(self, sport: int, flags: str = "A", payload: bytes = b"") -> Ether:
        return tcp_frame(CLIENT_MAC, SW_MAC[CLIENT_PORT], CLIENT_IP, VIP, sport, VIP_PORT, flags=flags,
                         payload=payload)

    def tcp_at_server(self, server: str, sport: int, flags: str = "A", payload: bytes = b"") -> Ether:
        return tcp_frame(SW_MAC[SERVER_PORT], SERVER_MAC, CLIENT_IP, server, sport, SERVER_L4_PORT,
                         flags=flags, payload=payload)

    def server_of(self, sport: int, flags: str = "A") -> str:
        """Send one segment of client port `sport` to the VIP; the server it reached, after
        checking the frame is exactly the client's with the destination rewritten."""
        self.send(CLIENT_PORT, self.tcp_to_vip(sport, flags))
        got = self.recv(SERVER_PORT)
        server = Ether(got)[IP].dst
        self.assertIn(server, SERVERS)
        want = self.tcp_at_server(server, sport, flags)
        if got != bytes(want):
            self.fail(f"frame to {server} differs from the expected one: {frame_diff(got, bytes(want))}")
        self.assertFalse(checksum_problems(got))
        return server


class L4MaglevPick(L4Test):
    """The pipeline picks the server from the Maglev bucket of the 5-tuple: every bucket to one
    server sends every connection there; over a table of three servers, connections spread
    over all three, each one always to the same server; the destination is rewritten with
    valid checksums; the controller sees nothing."""

    def runTest(self):
        self.service()
        self.write_maglev([SERVERS[1]] * self.size)
        for sport in range(41000, 41008):
            self.assertEqual(self.server_of(sport, "S"), SERVERS[1])
        self.change_maglev([SERVERS[1]] * self.size, self.maglev_of(SERVERS))
        seen = {}
        for sport in range(42000, 42060):
            seen[sport] = self.server_of(sport, "S")
        self.assertEqual(set(seen.values()), set(SERVERS), f"60 connections over 3 servers: {seen}")
        for sport in range(42000, 42060, 7):
            self.assertEqual(self.server_of(sport, "PA"), seen[sport])
        self.expect_no_frames()
        self.expect_no_packet_in()


class L4NoServerDrops(L4Test):
    """A bucket without a server drops (all servers gone); other ports of the VIP are not
    the service's."""

    def runTest(self):
        self.service()
        for sport in range(43000, 43010):
            self.send(CLIENT_PORT, self.tcp_to_vip(sport, "S"))
        self.expect_no_frames()
        self.expect_no_packet_in()


class L4ReverseRewrite(L4Test):
    """Server -> client from a service's server (address, protocol, port) leaves with
    VIP:port as its source, routed to the client, checksums valid; the same server on
    another port, or another protocol, is only routed."""

    def runTest(self):
        self.reverse(SERVERS[0])
        for flags, payload in (("SA", b""), ("PA", b"hello" * 51), ("FA", b"")):
            self.send(SERVER_PORT, tcp_frame(SERVER_MAC, SW_MAC[SERVER_PORT], SERVERS[0], CLIENT_IP,
                                             SERVER_L4_PORT, 44000, flags=flags, payload=payload))
            self.expect_frame(CLIENT_PORT, tcp_frame(SW_MAC[CLIENT_PORT], CLIENT_MAC, VIP, CLIENT_IP,
                                                     VIP_PORT, 44000, flags=flags, payload=payload))
        other = tcp_frame(SERVER_MAC, SW_MAC[SERVER_PORT], SERVERS[0], CLIENT_IP, 22, 44000, payload=b"ssh")
        self.send(SERVER_PORT, other)
        self.expect_frame(CLIENT_PORT, tcp_frame(SW_MAC[CLIENT_PORT], CLIENT_MAC, SERVERS[0], CLIENT_IP, 22,
                                                 44000, payload=b"ssh"))
        self.send(SERVER_PORT, udp_frame(SERVER_MAC, SW_MAC[SERVER_PORT], SERVERS[0], CLIENT_IP,
                                         SERVER_L4_PORT, 44000))
        self.expect_frame(CLIENT_PORT, udp_frame(SW_MAC[CLIENT_PORT], CLIENT_MAC, SERVERS[0], CLIENT_IP,
                                                 SERVER_L4_PORT, 44000))
        self.expect_no_frames()
        self.expect_no_packet_in()


class L4Udp(L4Test):
    """A UDP service: datagrams to VIP:53 go to server:5353 (UDP checksum updated; a zero
    checksum, "none", stays zero with a valid IPv4 checksum), the answers come back from
    VIP:53."""

    def runTest(self):
        self.service(IP_UDP, DNS_PORT)
        self.write_maglev([SERVERS[2]] * self.size, SERVER_DNS_PORT)
        self.reverse(SERVERS[2], IP_UDP, SERVER_DNS_PORT, DNS_PORT)
        query = b"\x12\x34\x01\x00\x00\x01" + b"\x00" * 6 + b"\x07example\x03com\x00\x00\x01\x00\x01"
        for sport in (45000, 45001):
            self.send(CLIENT_PORT, udp_frame(CLIENT_MAC, SW_MAC[CLIENT_PORT], CLIENT_IP, VIP, sport, DNS_PORT, query))
            self.expect_frame(SERVER_PORT, udp_frame(SW_MAC[SERVER_PORT], SERVER_MAC, CLIENT_IP, SERVERS[2], sport,
                                                     SERVER_DNS_PORT, query))
            self.send(SERVER_PORT, udp_frame(SERVER_MAC, SW_MAC[SERVER_PORT], SERVERS[2], CLIENT_IP,
                                             SERVER_DNS_PORT, sport, query[::-1]))
            self.expect_frame(CLIENT_PORT, udp_frame(SW_MAC[CLIENT_PORT], CLIENT_MAC, VIP, CLIENT_IP, DNS_PORT,
                                                     sport, query[::-1]))
        no_sum = udp_frame(CLIENT_MAC, SW_MAC[CLIENT_PORT], CLIENT_IP, VIP, 45002, DNS_PORT, query)
        no_sum[UDP].chksum = 0
        self.send(CLIENT_PORT, no_sum)
        want = udp_frame(SW_MAC[SERVER_PORT], SERVER_MAC, CLIENT_IP, SERVERS[2], 45002, SERVER_DNS_PORT, query)
        want[UDP].chksum = 0
        self.expect_frame(SERVER_PORT, want, check_checksums=False)   # the IPv4 one: byte-equal
        # a TCP segment to port 53 is not the UDP service's
        self.send(CLIENT_PORT, tcp_frame(CLIENT_MAC, SW_MAC[CLIENT_PORT], CLIENT_IP, VIP, 45003, DNS_PORT))
        self.expect_no_frames()
        self.expect_no_packet_in()


class L4ServerRemoved(L4Test):
    """A server leaves the Maglev table (the controller rewrites its buckets only). Where the
    data plane learns connections (DPDK, `l4_learns`), every established connection keeps
    its server, the removed one included, while new connections avoid it. Where it does not
    (BMv2), those of the removed server move and those of the other servers stay but for
    about the share of their buckets Maglev gives another owner (minimal disruption)."""

    def runTest(self):
        self.service()
        three, two = self.maglev_of(SERVERS), self.maglev_of(SERVERS[:2])
        self.write_maglev(three)
        before = {sport: self.server_of(sport, "S") for sport in range(46000, 46045)}
        self.assertIn(SERVERS[2], before.values())
        self.change_maglev(three, two)
        after = {sport: self.server_of(sport, "A") for sport in before}
        if self.p["l4_learns"]:
            self.assertEqual(after, before, "established connections moved")
        else:
            for sport, server in before.items():
                if server == SERVERS[2]:
                    self.assertNotEqual(after[sport], SERVERS[2])
            # Maglev: the buckets of the remaining servers keep their owner but for a few
            stay = [b for b, s in enumerate(three) if s != SERVERS[2]]
            f = sum(two[b] != three[b] for b in stay) / len(stay)
            kept = [sport for sport, server in before.items() if server != SERVERS[2]]
            moved = [sport for sport in kept if after[sport] != before[sport]]
            self.assertLessEqual(len(moved), f * len(kept) + 2,
                                 f"{len(moved)} of {len(kept)} connections of the remaining servers "
                                 f"moved; {f:.1%} of their buckets changed owner")
        fresh = {self.server_of(sport, "S") for sport in range(47000, 47030)}
        self.assertNotIn(SERVERS[2], fresh, "a new connection went to the removed server")
        self.expect_no_frames()
        self.expect_no_packet_in()


class L4FinEndsTheConnection(L4Test):
    """Where the data plane learns connections (`l4_learns`): a FIN or RST moves the learned
    entry to the short expiry profile (3 s), so a few seconds later the 5-tuple takes the
    Maglev pick again, while a connection without FIN keeps its server (its profile: 10 s).
    Elsewhere every segment takes the Maglev pick at once."""

    def runTest(self):
        import time

        self.service()
        self.write_maglev([SERVERS[0]] * self.size)
        flows = {48000: "FA", 48001: "RA", 48002: "A"}
        for sport in flows:
            self.assertEqual(self.server_of(sport, "S"), SERVERS[0])
        self.change_maglev([SERVERS[0]] * self.size, [SERVERS[1]] * self.size)
        learns = self.p["l4_learns"]
        for sport, flags in flows.items():
            self.assertEqual(self.server_of(sport, flags), SERVERS[0] if learns else SERVERS[1])
        time.sleep(5)
        for sport, flags in flows.items():
            want = SERVERS[0] if learns and flags == "A" else SERVERS[1]
            self.assertEqual(self.server_of(sport, "A"), want, f"port {sport} after {flags}")
        self.expect_no_frames()
        self.expect_no_packet_in()
