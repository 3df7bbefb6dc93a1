"""Master arbitration: only the primary client (highest election id) may write, send
packet-outs and receive packet-ins; a backup's Write is refused with PERMISSION_DENIED."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lib import base  # noqa: E402
from lib.base import P4csTest  # noqa: E402
from lib.p4rt import SC, Client  # noqa: E402
from lib.packets import tcp_frame, udp_frame  # noqa: E402
from lib.topo import CLIENT_IP, CLIENT_MAC, CLIENT_PORT, GW_IP, IP_TCP, REASON_VIP_MISS, SW_MAC, VIP, VIP_PORT  # noqa: E402


class ArbitrationBase(P4csTest):
    """Tests with more clients than the suite's: `other_client` opens them (closed in tearDown,
    after which the suite's client takes primary back, whatever the test left)."""

    def other_client(self, election_id):
        c = Client(self.p["grpcaddr"], self.p["device_id"], self.p4)
        self._others.append(c)
        # every id used stays below the one the suite's client takes back primary with
        base._Shared.election_id = max(base._Shared.election_id, election_id)
        return c, c.arbitrate(election_id)

    def setUp(self):
        super().setUp()
        self._others = []

    def tearDown(self):
        try:
            for c in self._others:
                c.close()
        finally:
            try:
                self.regain_primary()
            finally:
                super().tearDown()

    def vip(self, vip_port=VIP_PORT):
        return self.entry("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": vip_port},
                          "punt_vip")


class BackupWriteDenied(ArbitrationBase):
    """A second client with a lower election id is a backup: its arbitration answer is not OK,
    its Write gets PERMISSION_DENIED and changes nothing, its packet-out is not sent, it gets
    no packet-ins; the primary is unaffected."""

    def runTest(self):
        backup, status = self.other_client(self.client.election_id - 1)
        self.assertNotEqual(status, SC.OK, "a client with a lower election id was told it is primary")
        te = self.vip(VIP_PORT)
        try:
            backup.write([Client.table_update("insert", te)])
            self.fail("the backup's Write succeeded")
        except Exception as e:  # noqa: BLE001
            code = getattr(e, "first_code", None)
            self.assertEqual(code, SC.PERMISSION_DENIED, f"backup Write: {e}")
        self.assertEqual(self.client.read_table("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}), [],
                         "the backup's entry was installed")
        f = udp_frame(SW_MAC[1], CLIENT_MAC, GW_IP[1], CLIENT_IP, 7000, 80, payload=b"from the backup")
        backup.packet_out(bytes(f), CLIENT_PORT)
        self.expect_no_frames(0.5)
        # the primary still writes, and only the primary gets the packet-in
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")
        syn = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40400, VIP_PORT, flags="S")
        self.send(CLIENT_PORT, syn)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(syn))
        self.assertIsNone(backup.get_packet_in(0.5), "the backup received a packet-in")


class PrimaryTakeover(ArbitrationBase):
    """A client with a higher election id becomes primary and the old primary's Write is
    refused; when the old client comes back with an even higher id, roles swap again."""

    def runTest(self):
        eid = self.client.election_id
        newer, status = self.other_client(eid + 1)
        self.assertEqual(status, SC.OK, "a client with a higher election id is not primary")
        te = self.vip(VIP_PORT + 10)
        codes = self.client.write_codes([Client.table_update("insert", te)])
        self.assertEqual(codes, [SC.PERMISSION_DENIED], "the demoted client could still write")
        newer.write([Client.table_update("insert", te)])
        newer.write([Client.table_update("delete", self.entry("vip_table", {"vip_addr": VIP, "protocol": IP_TCP,
                                                                           "vip_port": VIP_PORT + 10}))])
        base._Shared.election_id = max(base._Shared.election_id, eid + 2)
        self.assertEqual(self.client.arbitrate(eid + 2), SC.OK, "the old client did not get primary back")
        codes = newer.write_codes([Client.table_update("insert", te)])
        self.assertEqual(codes, [SC.PERMISSION_DENIED], "the client that lost primary could still write")
        self.client.insert(te)
        self._installed.append(te)


class WriteWithoutElectionId(ArbitrationBase):
    """A Write that carries no (or a wrong) election id is refused even from the primary's
    connection."""

    def runTest(self):
        from finsy.proto import p4r

        req = p4r.WriteRequest(device_id=self.client.device_id,
                               updates=[Client.table_update("insert", self.vip(VIP_PORT + 20))])
        for eid in (None, self.client.election_id + 7):
            r = p4r.WriteRequest()
            r.CopyFrom(req)
            if eid is not None:
                r.election_id.low = eid
            try:
                self.client.stub.Write(r, timeout=10)
                self.fail(f"Write with election id {eid} was accepted")
            except Exception as e:  # noqa: BLE001
                code = e.code() if hasattr(e, "code") else None
                if code == SC.UNKNOWN:  # per-update details
                    from lib.p4rt import _rpc_error
                    code = _rpc_error(e, 1).first_code
                self.assertEqual(code, SC.PERMISSION_DENIED, f"Write with election id {eid}: {e}")


class RearbitrateSameElectionId(ArbitrationBase):
    """The primary sends its own election id again: it stays primary (its Write succeeds and
    packet-ins keep coming to it). Whether the target answers such an update is where targets
    differ (test parameter `rearbitration_answered`, docs/targets.md): the DPDK target's server
    answers every update, BMv2's (PI) only those that change the election id."""

    def runTest(self):
        self.client.send_arbitration(self.client.election_id)
        status = self.client.arbitration_answer(1.0)
        if self.p["rearbitration_answered"]:
            self.assertEqual(status, SC.OK, "the primary repeating its election id was not answered OK")
        else:
            self.assertIsNone(status, "this target was expected not to answer an unchanged election id")
        self.insert("vip_table", {"vip_addr": VIP, "protocol": IP_TCP, "vip_port": VIP_PORT}, "punt_vip")
        syn = tcp_frame(CLIENT_MAC, SW_MAC[1], CLIENT_IP, VIP, 40410, VIP_PORT, flags="S")
        self.send(CLIENT_PORT, syn)
        self.assert_packet_in(self.expect_packet_in(), ingress_port=CLIENT_PORT, reason=REASON_VIP_MISS, payload=bytes(syn))
