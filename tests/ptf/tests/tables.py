"""Table and counter semantics through P4Runtime: counters, read-back, modify, delete,
duplicate insert / absent delete errors, idle timeouts, and the behaviour of a full flow table."""

import ipaddress
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib.base import P4csTest  # noqa: E402
from lib.flows import SpliceBase, flow_key, splice_params  # noqa: E402
from lib.p4rt import SC, Client, P4RuntimeError  # noqa: E402
from lib.packets import sized_tcp_frame, tcp_frame  # noqa: E402
from lib.topo import (  # noqa: E402
    CLIENT_IP, CLIENT_MAC, CLIENT_PORT, IP_TCP, OTHER_MAC, OTHER_PORT, REASON_VIP_MISS, SERVER_IP, SERVER_MAC,
    SERVER_PORT, SERVER_PORT_NO, SNAT_IP, SW_MAC, VIP, VIP_PORT,
)


def vip_entry(test):
    return test.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT},
                       "punt_vip")


def fwd_params(port=OTHER_PORT, flow_id=500):
    dmac = {OTHER_PORT: OTHER_MAC, SERVER_PORT: SERVER_MAC}[port]
    return {"port": port, "dmac": dmac, "smac": SW_MAC[port], "flow_id": flow_id}


def splice_to_server(cport, snat_port, flow_id):
    """client:cport -> VIP:80 spliced to SNAT:snat_port -> server:8080 (port 2), sequence numbers unchanged."""
    return splice_params(flow_key(CLIENT_IP, VIP, cport, VIP_PORT), {
        "port": SERVER_PORT, "dmac": SERVER_MAC, "smac": SW_MAC[SERVER_PORT], "sip": SNAT_IP, "dip": SERVER_IP,
        "sport": snat_port, "dport": SERVER_PORT_NO, "seq_delta": 0, "ack_delta": 0, "flow_id": flow_id})


def to_vip(cport, **kw):
    return tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, cport, VIP_PORT, **kw)


def forwarded(cport, port=OTHER_PORT, **kw):
    dmac = {OTHER_PORT: OTHER_MAC, SERVER_PORT: SERVER_MAC}[port]
    return tcp_frame(SW_MAC[port], dmac, CLIENT_IP, VIP, cport, VIP_PORT, **kw)


class Counters(SpliceBase):
    """flow_counter[flow_id] counts the packets and bytes (frame length) of every action of the
    flow table: splice, flow_forward. Other indices do not move."""

    def runTest(self):
        ids = {"splice": 601, "forward": 603}
        self.splice_pair(40300, 50300, 11, 22, flow_id=ids["splice"])
        self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40301, VIP_PORT), "flow_forward", fwd_params(flow_id=ids["forward"]))
        before = {k: self.client.read_counter("flow_counter", i) for k, i in ids.items()}
        neighbour = self.client.read_counter("flow_counter", ids["splice"] + 1)  # the reverse leg
        sends = {"splice": (5, 100, 40300), "forward": (3, 150, 40301)}
        for k, (n, size, cport) in sends.items():
            for _ in range(n):
                self.send(CLIENT_PORT, sized_tcp_frame(size, CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, cport, VIP_PORT, flags="PA"))
        for port, n in ((SERVER_PORT, 5), (OTHER_PORT, 3)):
            for _ in range(n):
                self.recv(port)
        time.sleep(0.2)
        for k, i in ids.items():
            n, size, _ = sends[k]
            pk, by = self.client.read_counter("flow_counter", i)
            self.assertEqual((pk - before[k][0], by - before[k][1]), (n, n * size),
                             f"flow_counter[{i}] ({k}): packets/bytes delta after {n} frames of {size} bytes")
        self.assertEqual(self.client.read_counter("flow_counter", ids["splice"] + 1), neighbour,
                         "a counter index without traffic moved")
        self.expect_no_frames()


class CounterBytesPadded(P4csTest):
    """Byte counts of a minimum-size frame whose IPv4 packet is shorter than the Ethernet
    minimum (54 bytes + 6 bytes of padding). The targets differ, deliberately (see
    p4src/include/flow_table.p4): BMv2 counts the frame (60); the PNA program gives the DPDK
    counter an explicit length, IPv4 total length + 14 (54), so Ethernet padding is not
    counted. The test pins down each target's documented behaviour."""

    def runTest(self):
        self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40305, VIP_PORT), "flow_forward", fwd_params(flow_id=605))
        before = self.client.read_counter("flow_counter", 605)
        f = bytes(tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40305, VIP_PORT, flags="A"))
        self.assertEqual(len(f), 54)
        f += bytes(6)
        for _ in range(4):
            self.send(CLIENT_PORT, f)
            self.recv(OTHER_PORT)
        time.sleep(0.3)
        pk, by = self.client.read_counter("flow_counter", 605)
        per_frame = 54 if self.target == "dpdk" else 60
        self.assertEqual((pk - before[0], by - before[1]), (4, 4 * per_frame),
                         f"flow_counter packets/bytes after 4 frames of 60 bytes (54 + 6 bytes of padding) "
                         f"on {self.target}: expected {per_frame} bytes each")


class ReadBack(P4csTest):
    """Entries read back by key and by wildcard are the entries written."""

    def runTest(self):
        te1 = self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40310, VIP_PORT), "flow_forward", fwd_params(flow_id=610))
        te2 = self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40311, VIP_PORT), "splice", splice_to_server(40311, 50311, 611))
        te3 = self.insert("ipv4_route", {"dst_addr": ("10.9.0.0", 16)}, "route", {"port": 2, "dmac": SERVER_MAC, "smac": SW_MAC[2]})
        d = self.p4.describe_entry
        for te, cport in ((te1, 40310), (te2, 40311)):
            got = self.client.read_table("flow_table", flow_key(CLIENT_IP, VIP, cport, VIP_PORT))
            self.assertEqual([d(g) for g in got], [d(te)])
        everything = [d(g) for g in self.client.read_table("flow_table")]
        for te in (te1, te2):
            self.assertIn(d(te), everything)
        routes = [d(g) for g in self.client.read_table("ipv4_route")]
        self.assertIn(d(te3), routes)


class ModifyEntry(P4csTest):
    """MODIFY replaces the action and its data: traffic follows the new action at once and the
    entry reads back modified."""

    def runTest(self):
        vip_entry(self)
        te = self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40320, VIP_PORT), "flow_forward", fwd_params(OTHER_PORT, 620))
        self.send(CLIENT_PORT, to_vip(40320, payload=b"one"))
        self.expect_frame(OTHER_PORT, forwarded(40320, OTHER_PORT, payload=b"one"))
        new = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40320, VIP_PORT), "flow_forward", fwd_params(SERVER_PORT, 621))
        self.client.modify(new)
        self.send(CLIENT_PORT, to_vip(40320, payload=b"two"))
        self.expect_frame(SERVER_PORT, forwarded(40320, SERVER_PORT, payload=b"two"))
        got = self.client.read_table("flow_table", flow_key(CLIENT_IP, VIP, 40320, VIP_PORT))
        self.assertEqual([self.p4.describe_entry(g) for g in got], [self.p4.describe_entry(new)])
        spliced = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40320, VIP_PORT), "splice", splice_to_server(40320, 50320, 622))
        self.client.modify(spliced)
        self.send(CLIENT_PORT, to_vip(40320, payload=b"three"))
        self.expect_frame(SERVER_PORT, tcp_frame(SW_MAC[2], SERVER_MAC, SNAT_IP, SERVER_IP, 50320, SERVER_PORT_NO,
                                                 payload=b"three"))
        self.expect_no_frames()
        self.expect_no_packet_in()
        self.assertIsNotNone(te)


class DeleteThenMiss(P4csTest):
    """After DELETE the flow misses again: the next segment goes to the controller (VIP miss)
    and the entry no longer reads back."""

    def runTest(self):
        vip_entry(self)
        te = self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40330, VIP_PORT), "flow_forward", fwd_params(flow_id=630))
        self.send(CLIENT_PORT, to_vip(40330, payload=b"hit"))
        self.expect_frame(OTHER_PORT, forwarded(40330, payload=b"hit"))
        self.client.delete(te)
        self.forget(te)
        f = to_vip(40330, payload=b"miss")
        self.send(CLIENT_PORT, f)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(f))
        self.expect_no_frames()
        self.assertEqual(self.client.read_table("flow_table", flow_key(CLIENT_IP, VIP, 40330, VIP_PORT)), [])


class DuplicateInsert(P4csTest):
    """INSERT of a key that exists fails with ALREADY_EXISTS (flow table and a regular table)
    and leaves the existing entry as it was."""

    def runTest(self):
        self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40340, VIP_PORT), "flow_forward", fwd_params(flow_id=640))
        dup = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40340, VIP_PORT), "flow_forward", fwd_params(SERVER_PORT, 641))
        self.assert_write_fails(SC.ALREADY_EXISTS, [Client.table_update("insert", dup)])
        vip = vip_entry(self)
        self.assert_write_fails(SC.ALREADY_EXISTS, [Client.table_update("insert", vip)])
        self.send(CLIENT_PORT, to_vip(40340, payload=b"still"))
        self.expect_frame(OTHER_PORT, forwarded(40340, payload=b"still"))


class DeleteAbsent(P4csTest):
    """DELETE and MODIFY of an absent key fail with NOT_FOUND."""

    def runTest(self):
        absent = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40350, VIP_PORT), "flow_forward", fwd_params(flow_id=650))
        key_only = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40350, VIP_PORT))
        self.assert_write_fails(SC.NOT_FOUND, [Client.table_update("delete", key_only)])
        self.assert_write_fails(SC.NOT_FOUND, [Client.table_update("modify", absent)])
        vip_key = self.entry("vip_table", {"vip_addr": "10.0.0.101", "protocol": IP_TCP, "vip_port": 81})
        self.assert_write_fails(SC.NOT_FOUND, [Client.table_update("delete", vip_key)])


class BatchPartialFailure(P4csTest):
    """One WriteRequest with good and bad updates: the good ones are applied, each bad one gets
    its own error (CONTINUE_ON_ERROR)."""

    def runTest(self):
        self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40360, VIP_PORT), "flow_forward", fwd_params(flow_id=660))
        good = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40361, VIP_PORT), "flow_forward", fwd_params(flow_id=661))
        dup = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40360, VIP_PORT), "flow_forward", fwd_params(SERVER_PORT, 662))
        gone = self.entry("flow_table", flow_key(CLIENT_IP, VIP, 40362, VIP_PORT))
        codes = self.client.write_codes([Client.table_update("insert", good), Client.table_update("insert", dup),
                                         Client.table_update("delete", gone)])
        self._installed.append(good)
        self.assertEqual(codes, [SC.OK, SC.ALREADY_EXISTS, SC.NOT_FOUND])
        self.send(CLIENT_PORT, to_vip(40361, payload=b"batched"))
        self.expect_frame(OTHER_PORT, forwarded(40361, payload=b"batched"))


class IdleTimeout(P4csTest):
    """An entry with an idle timeout and no traffic produces an IdleTimeoutNotification naming
    it; an entry with the same timeout that keeps seeing traffic does not, and keeps
    forwarding; an entry without timeout is never notified."""

    def runTest(self):
        to_ns = int(float(self.p["idle_timeout_s"]) * 1e9)
        wait = float(self.p["idle_wait_s"])
        idle = self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40370, VIP_PORT), "flow_forward", fwd_params(flow_id=670),
                           idle_timeout_ns=to_ns)
        busy = self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40371, VIP_PORT), "flow_forward", fwd_params(flow_id=671),
                           idle_timeout_ns=to_ns)
        self.insert("flow_table", flow_key(CLIENT_IP, VIP, 40372, VIP_PORT), "flow_forward", fwd_params(flow_id=672))
        d = self.p4.describe_entry
        want_idle = d(idle)["match"]
        t0 = time.monotonic()
        notified = []
        got_idle = None
        while time.monotonic() - t0 < wait:
            self.send(CLIENT_PORT, to_vip(40371, payload=b"keepalive"))
            n = self.client.get_idle_notification(0.4)
            if n is None:
                continue
            for te in n.table_entry:
                notified.append(d(te)["match"])
                if d(te)["match"] == want_idle:
                    got_idle = time.monotonic() - t0
            if got_idle is not None:
                break
        self.assertIsNotNone(got_idle, f"no IdleTimeoutNotification for the idle entry within {wait} s (got {notified})")
        self.assertNotIn(d(busy)["match"], notified, "an entry with traffic was reported idle")
        self.assertEqual(len(notified), 1, f"unexpected notifications: {notified}")
        # The last keepalive may still be crossing the data plane: let it out, then drop it.
        time.sleep(0.3)
        self.dataplane.flush()
        self.send(CLIENT_PORT, to_vip(40371, payload=b"alive"))
        self.expect_frame(OTHER_PORT, forwarded(40371, payload=b"alive"))
        print(f"idle entry notified after {got_idle:.1f} s (timeout {to_ns / 1e9:.1f} s)")
        self.dataplane.flush()


class TableFull(P4csTest):
    """Behaviour when the flow table is full.

    Random 5-tuples are inserted in batches until the target refuses an insert. On the DPDK
    target the flow table is an SWX learner: a key hashes to a bucket of 4 entries, and the
    insert is refused when that bucket is full, long before its size (with random keys, at
    a few hundred thousand); on BMv2 when the exact table holds `size` entries (test
    parameter `table_full_at`). The test asserts: every refusal has the target's table-full
    code (test parameter `table_full_code`: RESOURCE_EXHAUSTED; BMv2 answers UNKNOWN, see
    docs/targets.md) and no insert fails otherwise, per update, inside a batch whose other
    updates succeed; the refused key is not installed (no read-back, its traffic misses and
    is punted) while installed keys keep forwarding; re-inserting it is refused again while
    the table is unchanged; after the entries are deleted it can be inserted.
    """

    BATCH = 2000

    def runTest(self):
        limit = int(self.p["table_full_max"])
        full = getattr(SC, self.p["table_full_code"])
        vip_entry(self)
        rng = random.Random(0x9C5)
        seen = set()
        installed = []  # key-only entries for cleanup
        refused = []
        other_codes = []
        t0 = time.monotonic()
        base = self.entry("flow_table", flow_key("100.64.0.1", VIP, 1, VIP_PORT), "flow_forward", fwd_params(flow_id=700))
        te_ids = {mf.name: mf.id for mf in self.p4.table("flow_table").match_fields}
        try:
            while not refused and not other_codes and len(installed) < limit:
                batch = []
                keys = []
                while len(batch) < self.BATCH:
                    src = 0x64400000 | rng.getrandbits(22)  # 100.64.0.0/10
                    sport = 1024 + rng.getrandbits(15)
                    if (src, sport) in seen:
                        continue
                    seen.add((src, sport))
                    te = type(base)()
                    te.CopyFrom(base)
                    for fm in te.match:
                        if fm.field_id == te_ids["src_addr"]:
                            fm.exact.value = src.to_bytes(4, "big")
                        elif fm.field_id == te_ids["src_port"]:
                            fm.exact.value = sport.to_bytes(2, "big").lstrip(b"\0") or b"\0"
                    batch.append(Client.table_update("insert", te))
                    keys.append((src, sport, te))
                codes = self.client.write_codes(batch)
                for (src, sport, te), code in zip(keys, codes):
                    if code == SC.OK:
                        installed.append((src, sport, te))
                    elif code == full:
                        refused.append((src, sport, te))
                    else:
                        other_codes.append(code)
            fill_s = time.monotonic() - t0
            self.assertFalse(other_codes, f"inserts failed with other codes than {full.name}: {set(other_codes)}")
            self.assertTrue(refused, f"the table accepted {len(installed)} entries without reporting "
                                     f"{full.name} (table_full_max={limit})")
            print(f"first refusal after {len(installed)} entries ({fill_s:.1f} s); {len(refused)} refused in that batch")
            if self.p["table_full_at"] is not None:
                self.assertEqual(len(installed), int(self.p["table_full_at"]), "the table refused at another size")
            rsrc, rsport, rte = refused[0]
            rkey = flow_key(str(ipaddress.IPv4Address(rsrc)), VIP, rsport, VIP_PORT)
            # not installed: no read-back, traffic misses -> VIP miss packet-in
            self.assertEqual(self.client.read_table("flow_table", rkey), [], "a refused entry reads back")
            f = tcp_frame(CLIENT_MAC, SW_MAC[1], str(ipaddress.IPv4Address(rsrc)), VIP, rsport, VIP_PORT, payload=b"refused")
            self.send(CLIENT_PORT, f)
            self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(f))
            self.expect_no_frames()
            # installed keys (first and last) still forward
            for src, sport, _te in (installed[0], installed[-1]):
                ip = str(ipaddress.IPv4Address(src))
                self.send(CLIENT_PORT, tcp_frame(CLIENT_MAC, SW_MAC[1], ip, VIP, sport, VIP_PORT, payload=b"in"))
                self.expect_frame(OTHER_PORT, tcp_frame(SW_MAC[3], OTHER_MAC, ip, VIP, sport, VIP_PORT, payload=b"in"))
            # still full for that key
            self.assertEqual(self.client.write_codes([Client.table_update("insert", rte)]), [full])
        finally:
            t1 = time.monotonic()
            self._delete_all([te for _, _, te in installed])
            print(f"deleted {len(installed)} entries in {time.monotonic() - t1:.1f} s")
        # room again
        self.client.insert(rte)
        self._installed.append(rte)
        self.send(CLIENT_PORT, f)
        self.expect_frame(OTHER_PORT, tcp_frame(SW_MAC[3], OTHER_MAC, str(ipaddress.IPv4Address(rsrc)), VIP, rsport, VIP_PORT,
                                                payload=b"refused"))

    def _delete_all(self, entries):
        bad = []
        for i in range(0, len(entries), self.BATCH):
            ups = [Client.table_update("delete", Client.key_only(te)) for te in entries[i:i + self.BATCH]]
            try:
                self.client.write(ups)
            except P4RuntimeError as e:
                bad += [c for c in e.codes if c != SC.OK]
        self.assertFalse(bad, f"deleting the filled entries failed: {set(bad)}")
