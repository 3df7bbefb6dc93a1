"""Packet-in / packet-out through the P4Runtime stream, and idle-timeout notifications,
on the real data-plane daemon with AF_PACKET ports on veths in a private namespace."""

from __future__ import annotations

import time

import pytest
from finsy.proto import p4r, rpc_code
from google.protobuf import text_format
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from p4cs.switch.dpdk.errors import P4RTError
from p4cs.switch.dpdk.pipeline import load_p4info

from .conftest import C_FLOW, MINI_P4INFO, T_FLOW, be, flow_entry, raw_socket, upd

pytestmark = [pytest.mark.dpdk, pytest.mark.root]


def _frame(dst="02:00:00:00:00:02", src="02:00:00:00:00:01", ip_src="10.0.0.1", ip_dst="10.0.0.2"):
    return bytes(Ether(dst=dst, src=src) / IP(src=ip_src, dst=ip_dst) / UDP(sport=1234, dport=80) / (b"x" * 20))


def _recv_matching(sock, payload: bytes, timeout: float = 5.0) -> bytes:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        if data[: len(payload)] == payload:
            return data
    raise AssertionError("frame did not arrive")


def test_packet_out_and_packet_in(make_switch, client_factory, netns_ports):
    ns, ports, peers = netns_ports((1, 2))
    sw = make_switch(ports=ports, netns=ns)
    c = client_factory(sw.addr)
    c.arbitrate(1)
    h1, h2 = raw_socket(ns, peers[1]), raw_socket(ns, peers[2])

    # packet-out to port 2 appears on the peer of port 2, not on port 1
    frame = _frame()
    po = p4r.StreamMessageRequest()
    po.packet.payload = frame
    po.packet.metadata.add(metadata_id=1, value=be(2))
    c.send(po)
    assert _recv_matching(h2, frame)[: len(frame)] == frame
    h1.settimeout(0.3)
    with pytest.raises(TimeoutError):
        while True:
            if h1.recv(65536)[: len(frame)] == frame:
                break

    # a frame into port 1 that misses every table is punted: PacketIn with ingress_port/reason
    h1.settimeout(5)
    pkt = _frame(ip_src="10.9.9.9")
    h1.send(pkt)
    pin = c.recv("packet")
    md = {m.metadata_id: int.from_bytes(m.value, "big") for m in pin.metadata}
    assert md == {1: 1, 2: 1}
    assert pin.payload[: len(pkt)] == pkt

    # after a flow entry is installed the same frame is forwarded to port 2 instead
    c.write([upd("INSERT", flow_entry(0x0A090909, 0x0A000002, port=2, flow_id=9))])
    h1.send(pkt)
    assert _recv_matching(h2, pkt)[: len(pkt)] == pkt
    ce = p4r.CounterEntry(counter_id=301989889)
    ce.index.index = 9
    (r,) = c.read([p4r.Entity(counter_entry=ce)])
    assert r.counter_entry.data.packet_count == 1
    assert r.counter_entry.data.byte_count == len(pkt) - 14  # the pipeline counts the IPv4 length

    # bad packet-outs are answered with StreamError and the stream survives
    bad = p4r.StreamMessageRequest()
    bad.packet.payload = frame
    bad.packet.metadata.add(metadata_id=1, value=be(7))  # no such port
    c.send(bad)
    err = c.recv("error")
    assert err.canonical_code == rpc_code.INVALID_ARGUMENT and err.packet_out.packet_out == bad.packet
    c.send(po)
    _recv_matching(h2, frame)

    # a backup's packet-out is refused; the backup gets no packet-in
    b = client_factory(sw.addr)
    b.arbitrate(0)
    b.send(po)
    assert b.recv("error").canonical_code == rpc_code.PERMISSION_DENIED
    h1.send(_frame(ip_src="10.9.9.8"))
    assert c.recv("packet").metadata[0].value == be(1)
    with pytest.raises(TimeoutError):
        b.recv("packet", timeout=0.5)


def test_idle_timeout_notification(switch, client_factory):
    c = client_factory(switch.addr)
    c.arbitrate(1)
    short = flow_entry(1, 2, idle_ns=1_000_000_000)  # 1 s profile
    keep = flow_entry(1, 3)  # no idle timeout: permanent
    long_ = flow_entry(1, 4, idle_ns=60 * 10**9)
    c.write([upd("INSERT", short), upd("INSERT", keep), upd("INSERT", long_)])
    d = switch.server.pipe.daemon
    n = c.recv("idle_timeout_notification", timeout=15)
    assert list(n.table_entry) == [short]
    assert n.timestamp > 0
    switch.call(d.request(["sweep"]))
    got = {e.table_entry.match[1].exact.value for e in c.read([p4r.Entity(table_entry=p4r.TableEntry(table_id=T_FLOW))])}
    assert got == {be(3), be(4)}
    assert switch.call(d.request(["learner get flow_table match 0x1 0x2"])) == ["ok miss"]
    # an expired entry may be inserted again
    c.write([upd("INSERT", short)])


def test_expiry_messages_gathered_into_one_notification(switch, client_factory):
    """The entries of the daemon's `expired` messages within EXPIRY_GATHER_S go to the
    primary in one IdleTimeoutNotification (the entries a SYN ends come one message per
    pipeline pass); the shadow drops each entry at once, so its key may be inserted again
    meanwhile."""
    from p4cs.switch.dpdk.packetio import EXPIRY_GATHER_S

    c = client_factory(switch.addr)
    c.arbitrate(1)
    a, b = flow_entry(1, 2, idle_ns=60 * 10**9), flow_entry(1, 3, idle_ns=60 * 10**9)
    c.write([upd("INSERT", a), upd("INSERT", b)])
    d = switch.server.pipe.daemon
    assert switch.call(d.request(["learner del flow_table match 1 2", "learner del flow_table match 1 3"])) == ["ok", "ok"]

    async def report():     # as the daemon's control socket would, two messages
        io = switch.server.packet_io
        io.on_expired(b"expired flow_table 1 2\n")
        io.on_expired(b"expired flow_table 1 3\n")
    t0 = time.monotonic()
    switch.call(report())
    c.write([upd("INSERT", a)])          # gone from the shadow already
    n = c.recv("idle_timeout_notification", timeout=5)
    assert time.monotonic() - t0 >= EXPIRY_GATHER_S * 0.9
    assert list(n.table_entry) == [a, b]
    with pytest.raises(TimeoutError):
        c.recv("idle_timeout_notification", timeout=0.3)


def test_expiry_notification_carries_the_counts(make_switch, client_factory, tmp_path):
    """A learner annotated @p4cs_end_expiry: the notification's counter_data holds the final
    counts of the entry's counter cell; inserting an entry with that index zeroes the cell."""
    info = load_p4info(MINI_P4INFO)
    flow = next(t for t in info.tables if t.preamble.id == T_FLOW)
    flow.preamble.annotations.append('@p4cs_end_expiry("flow_pkts" , "flow_id")')
    annotated = tmp_path / "p4info.txtpb"
    annotated.write_text(text_format.MessageToString(info))
    sw = make_switch(load=False)
    sw.load(p4info=annotated)
    c = client_factory(sw.addr)
    c.arbitrate(1)
    short, other = flow_entry(1, 2, flow_id=5, idle_ns=10**9), flow_entry(1, 3, flow_id=6, idle_ns=10**9)
    c.write([upd("INSERT", short), upd("INSERT", other)])
    cell = p4r.CounterEntry(counter_id=C_FLOW, index=p4r.Index(index=5),
                            data=p4r.CounterData(packet_count=3, byte_count=180))
    c.write([p4r.Update(type=p4r.Update.MODIFY, entity=p4r.Entity(counter_entry=cell))])
    got = {}
    while len(got) < 2:
        n = c.recv("idle_timeout_notification", timeout=15)
        got.update({e.match[1].exact.value: e for e in n.table_entry})
    assert got[be(2)].counter_data == p4r.CounterData(packet_count=3, byte_count=180)
    assert got[be(3)].counter_data == p4r.CounterData(packet_count=0, byte_count=0)
    got[be(2)].ClearField("counter_data")
    assert got[be(2)] == short
    def cell():
        ce = p4r.CounterEntry(counter_id=C_FLOW, index=p4r.Index(index=5))
        return c.read([p4r.Entity(counter_entry=ce)])[0].counter_entry.data
    assert cell() == p4r.CounterData(packet_count=3, byte_count=180)
    c.write([upd("INSERT", flow_entry(1, 4, flow_id=5, idle_ns=60 * 10**9))])
    assert cell() == p4r.CounterData()


def test_end_expiry_annotation_errors(make_switch, tmp_path):
    for annotation, why in [('@p4cs_end_expiry("nope", "flow_id")', "names no counter 'nope'"),
                            ('@p4cs_end_expiry("flow_pkts", "nope")', "no action parameter 'nope'"),
                            ("@p4cs_end_expiry(flow_pkts)", "is not @p4cs_end_expiry")]:
        info = load_p4info(MINI_P4INFO)
        next(t for t in info.tables if t.preamble.id == T_FLOW).preamble.annotations.append(annotation)
        bad = tmp_path / "bad.p4info.txtpb"
        bad.write_text(text_format.MessageToString(info))
        sw = make_switch(load=False)
        with pytest.raises(P4RTError, match=why):
            sw.load(p4info=bad)
