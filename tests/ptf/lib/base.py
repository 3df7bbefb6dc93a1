"""Base class and shared state of the p4cs PTF tests.

Test parameters (``ptf --test-params "k=v;k=v"``, values are Python literals):

========================  =========================================================  ==============
name                      meaning                                                    default
========================  =========================================================  ==============
``grpcaddr``              P4Runtime address of the target                            127.0.0.1:9559
``device_id``             P4Runtime device id                                        1
``p4info``                P4Info file of the running program (text or binary)        required
``device_config``         if set and the target's pipeline cookie differs (or it     none
                          has no pipeline), pushed with SetForwardingPipelineConfig
``cpu_port``              CPU port number (0 on DPDK, 255 on BMv2)                   0
``target``                ``dpdk`` or ``bmv2`` (only for messages and tolerances)    dpdk
``ports``                 the data-plane ports wired to PTF ports of the same        (1, 2, 3)
                          numbers
``election_id``           election id of the suite's primary client                  1000
``idle_timeout_s``        idle timeout asked for in the idle-timeout test            2
``idle_wait_s``           how long that test waits for the notification              15
``table_full_max``        most entries the table-full test inserts before failing    1500000
``table_full_code``       the code of an insert refused by a full table (name of a   RESOURCE_EXHAUSTED
                          grpc.StatusCode; docs/targets.md)
``table_full_at``         the number of entries at which the flow table refuses      None
                          (an exact table), None when it depends on the keys
``rearbitration_answered``  whether the target answers a MasterArbitrationUpdate that  True
                          does not change the client's election id (docs/targets.md)
``l4_learns``             whether the target learns the connections of L4 services   True
                          (add-on-miss: DPDK), so that a server-set change moves none
========================  =========================================================  ==============

One P4Runtime client (primary) is shared by every test of a PTF run; each test removes what
it installed in tearDown, so the tests are independent and may run in any order. The cleanup
runs whatever the test did: if the shared client lost primary, it takes it back with an
election id above every one used so far (an update that raises the id is answered by every
target) and deletes again; a cleanup that still fails fails the test.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import ptf
import ptf.testutils as tu
from ptf.base_tests import BaseTest

from .p4rt import SC, Client, P4Info, P4RuntimeError, PacketIn
from .packets import checksum_problems, frame_diff

LOG = logging.getLogger("p4cs.ptf")

DEFAULTS: dict[str, Any] = {
    "grpcaddr": "127.0.0.1:9559",
    "device_id": 1,
    "p4info": None,
    "device_config": None,
    "cpu_port": 0,
    "target": "dpdk",
    "ports": (1, 2, 3),
    "election_id": 1000,
    "idle_timeout_s": 2,
    "idle_wait_s": 15,
    "table_full_max": 1_500_000,
    "table_full_code": "RESOURCE_EXHAUSTED",
    "table_full_at": None,
    "rearbitration_answered": True,
    "l4_learns": True,
}


def params() -> dict[str, Any]:
    p = dict(DEFAULTS)
    p.update(tu.test_params_get())
    if isinstance(p["ports"], int):
        p["ports"] = (p["ports"],)
    if not p["p4info"]:
        raise RuntimeError("test parameter p4info is required (--test-params \"p4info='…'\")")
    return p


class _Shared:
    """State kept for the whole PTF process: the primary client and the pipeline check."""

    client: Client | None = None
    p4info: P4Info | None = None
    election_id: int = 0
    pipeline_checked = False
    egress_installed = False


def _connect(p: dict[str, Any]) -> Client:
    if _Shared.p4info is None:
        _Shared.p4info = P4Info.load(p["p4info"])
    c = Client(p["grpcaddr"], p["device_id"], _Shared.p4info)
    # A reconnect must not come back as a backup: always go above every id used so far.
    _Shared.election_id = max(_Shared.election_id + 1, int(p["election_id"]))
    st = c.arbitrate(_Shared.election_id)
    if st != SC.OK:
        c.close()
        raise RuntimeError(f"the suite's client (election id {_Shared.election_id}) is not primary: {st.name}")
    if not _Shared.pipeline_checked:
        _ensure_pipeline(c, p)
        _Shared.pipeline_checked = True
    return c


def _ensure_pipeline(c: Client, p: dict[str, Any]) -> None:
    dev_path = p.get("device_config")
    try:
        cookie = c.get_pipeline_cookie()
        has = True
    except P4RuntimeError as e:
        # FAILED_PRECONDITION is what the specification says for "no pipeline"; some targets
        # answer differently (UNKNOWN, NOT_FOUND): anything else means "push it".
        if not dev_path:
            raise
        LOG.info("no pipeline on the target (%s)", e)
        cookie, has = None, False
    if not dev_path:
        if not has:
            raise RuntimeError("the target has no pipeline and no device_config test parameter was given")
        return
    with open(dev_path, "rb") as f:
        dev = f.read()
    want = Client.pipeline_cookie(c.p4info, dev)
    if has and cookie == want:
        LOG.info("pipeline already loaded (cookie %#x)", want)
        return
    LOG.info("pushing the pipeline (%s)", dev_path)
    t0 = time.monotonic()
    c.set_pipeline(dev, want)
    LOG.info("pipeline pushed in %.1f s", time.monotonic() - t0)
    _Shared.egress_installed = False


def shared_client(p: dict[str, Any]) -> Client:
    c = _Shared.client
    if c is None or not c.alive:
        if c is not None:
            c.close()
        _Shared.client = c = _connect(p)
    return c


class P4csTest(BaseTest):
    """Base of every p4cs PTF test: `self.client` (primary), `self.p4` (P4Info), ports,
    entry bookkeeping (everything installed through `self.insert` is deleted in tearDown)
    and packet helpers."""

    def setUp(self) -> None:
        super().setUp()
        self.dataplane = ptf.dataplane_instance
        self.p = params()
        self.client = shared_client(self.p)
        self.p4 = self.client.p4info
        self.cpu_port: int = int(self.p["cpu_port"])
        self.ports: tuple[int, ...] = tuple(self.p["ports"])
        self.target: str = self.p["target"]
        self._installed: list = []  # TableEntry, in insertion order
        self._clone_sessions: list[int] = []
        self._install_egress_ports()
        self.client.drain()
        self.dataplane.flush()

    def tearDown(self) -> None:
        try:
            errors = self._cleanup()
        finally:
            self._installed.clear()
            self._clone_sessions.clear()
            try:
                self.client.drain()
                self.dataplane.flush()
            finally:
                super().tearDown()
        if errors:
            self.fail(f"cleanup failed: {'; '.join(errors)}")

    def _cleanup(self) -> list[str]:
        """Delete what the test installed; the errors that remain."""
        errors = []
        for te in reversed(self._installed):
            err = self._undo(Client.table_update("delete", Client.key_only(te)))
            if err:
                errors.append(f"{self.p4.describe_entry(te)}: {err}")
        for sid in self._clone_sessions:
            err = self._undo(Client.update("delete", Client.clone_session(sid, [])))
            if err:
                errors.append(f"clone session {sid}: {err}")
        return errors

    def _undo(self, update) -> str | None:
        """One cleanup DELETE (absent already is fine); as primary again if the client lost it."""
        try:
            self.client.write([update])
            return None
        except P4RuntimeError as e:
            if e.first_code == SC.NOT_FOUND:
                return None
            if e.first_code != SC.PERMISSION_DENIED:
                return str(e)
        try:
            self.regain_primary()
            self.client.write([update])
        except P4RuntimeError as e:
            return None if e.first_code == SC.NOT_FOUND else str(e)
        except (RuntimeError, ConnectionError, TimeoutError) as e:
            return f"cannot become primary again: {e}"
        return None

    def regain_primary(self) -> None:
        """Make the suite's client primary again, with an election id above every one used so
        far: an update that raises the id is answered by every target (one that repeats it is
        not always, see the `rearbitration_answered` parameter)."""
        if not self.client.alive:
            self.client = shared_client(self.p)  # a new stream, above every id used
            return
        _Shared.election_id = max(_Shared.election_id, self.client.election_id or 0) + 1
        st = self.client.arbitrate(_Shared.election_id)
        if st != SC.OK:
            raise RuntimeError(f"the suite's client (election id {_Shared.election_id}) is not primary: {st.name}")

    # -- target specifics -------------------------------------------------------------------

    def _install_egress_ports(self) -> None:
        """The PNA program sends through egress_table (out_port -> send(port)): one entry per
        existing port, CPU port included. The v1model program has no such table."""
        if _Shared.egress_installed or "egress_table" not in self.p4.tables:
            return
        for port in (self.cpu_port, *self.ports):
            te = self.p4.table_entry("egress_table", {"out_port": port}, "send", {"port": port})
            try:
                self.client.insert(te)
            except P4RuntimeError as e:
                if e.first_code != SC.ALREADY_EXISTS:
                    raise
        _Shared.egress_installed = True

    # -- table entries ----------------------------------------------------------------------

    def entry(self, table: str, match: dict | None = None, action: str | None = None, params: dict | None = None, **kw):
        return self.p4.table_entry(table, match, action, params, **kw)

    def insert(self, table: str, match: dict, action: str, params: dict | None = None, **kw):
        te = self.entry(table, match, action, params, **kw)
        self.client.insert(te)
        self._installed.append(te)
        return te

    def forget(self, te) -> None:
        """The test removed `te` itself."""
        self._installed = [x for x in self._installed if x is not te]

    def assert_write_fails(self, code: grpc.StatusCode, updates: list) -> P4RuntimeError:
        try:
            self.client.write(updates)
        except P4RuntimeError as e:
            self.assertEqual(
                e.first_code, code, f"expected {code.name}, the target answered {e.first_code.name}: {e}"
            )
            return e
        self.fail(f"the write succeeded; expected {code.name}")

    def add_clone_session(self, session_id: int, ports: list[int]) -> None:
        try:
            self.client.write([Client.update("insert", Client.clone_session(session_id, ports))])
        except P4RuntimeError as e:
            if e.first_code != SC.ALREADY_EXISTS:
                raise
            self.client.write([Client.update("modify", Client.clone_session(session_id, ports))])
        self._clone_sessions.append(session_id)

    # -- packets ------------------------------------------------------------------------------

    def send(self, port: int, frame) -> None:
        tu.send_packet(self, port, bytes(frame))

    def recv(self, port: int, timeout: float = 2.0) -> bytes:
        """The next frame received on `port` (fails the test if none arrives)."""
        res = self.dataplane.poll(device_number=0, port_number=port, timeout=timeout)
        if isinstance(res, self.dataplane.PollFailure) or getattr(res, "packet", None) is None:
            self.fail(f"no frame on port {port} within {timeout} s")
        return bytes(res.packet)

    def expect_frame(self, port: int, want, timeout: float = 2.0, check_checksums: bool = True) -> bytes:
        """Receive on `port` and compare byte for byte with `want` (a scapy packet or bytes)."""
        got = self.recv(port, timeout)
        want_b = bytes(want)
        if got != want_b:
            self.fail(f"frame on port {port} differs from the expected one: {frame_diff(got, want_b)}")
        if check_checksums:
            probs = checksum_problems(got)
            self.assertFalse(probs, f"checksums of the frame on port {port}: {probs}")
        return got

    def expect_no_frames(self, timeout: float = 0.5) -> None:
        tu.verify_no_other_packets(self, device_number=0, timeout=timeout)

    def expect_packet_in(self, timeout: float = 3.0) -> PacketIn:
        pi = self.client.get_packet_in(timeout)
        if pi is None:
            self.fail(f"no PacketIn within {timeout} s")
        return pi

    def expect_no_packet_in(self, timeout: float = 0.5) -> None:
        pi = self.client.get_packet_in(timeout)
        if pi is not None:
            self.fail(f"unexpected PacketIn: {pi}")

    def assert_packet_in(self, pi: PacketIn, *, ingress_port: int, reason: int, payload: bytes | None = None) -> None:
        md = pi.metadata
        self.assertEqual(md.get("ingress_port"), ingress_port, f"PacketIn ingress_port: {pi}")
        self.assertEqual(md.get("reason"), reason, f"PacketIn reason: {pi}")
        if payload is not None and pi.payload != payload:
            self.fail(f"PacketIn payload differs from the frame sent: {frame_diff(pi.payload, payload)}")

    def assert_forwarding_alive(self) -> None:
        """A routed frame still goes through (used after abuse)."""
        from .packets import udp_frame

        p_in, p_out = self.ports[0], self.ports[-1]
        te = self.insert("ipv4_route", {"dst_addr": ("198.51.100.0", 24)}, "route",
                         {"port": p_out, "dmac": "02:00:00:00:99:01", "smac": "02:00:00:00:99:02"})
        f = udp_frame("02:00:00:00:00:01", "02:00:00:00:99:99", "10.0.1.10", "198.51.100.7", 1111, 2222)
        want = udp_frame("02:00:00:00:99:02", "02:00:00:00:99:01", "10.0.1.10", "198.51.100.7", 1111, 2222)
        self.dataplane.flush()
        self.send(p_in, f)
        self.expect_frame(p_out, want)
        self.client.delete(te)
        self.forget(te)
