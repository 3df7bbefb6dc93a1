"""The direct packet channel of the DPDK target: the CPU and copy ports handed to the primary
(and to nobody else), packets on the handed ports, the StreamChannel again when the lease
ends; the controller's reader counting and dropping malformed frames."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from finsy import P4Schema

from p4cs.controller.packetchan import ChannelRefused, Headers, Lease, PacketPath, ask
from p4cs.switch.dpdk.packetio import COPY_PORT_BYTES
from p4cs.switch.dpdk.pktchan import METADATA_KEY

from .conftest import MINI_P4INFO, raw_socket
from .test_p4rt_packetio import _frame, _recv_matching

pytestmark = [pytest.mark.dpdk]

HEADERS = Headers(P4Schema(MINI_P4INFO))


def serve_channel(sw, tmp_path) -> str:
    path = str(tmp_path / "packets.sock")

    async def serve():
        sw.server.serve_packet_channel(path)

    sw.call(serve())
    return path


def take(path: str, election_id: int, device_id: int = 1) -> Lease:
    """The lease, its sockets in blocking mode with a timeout (read from this thread)."""
    lease = asyncio.run(ask(path, HEADERS, device_id, election_id))
    for s in (lease.conn, lease.cpu, lease.copy):
        s.settimeout(5)
    return lease


def refusal(path: str, election_id: int, device_id: int = 1) -> str:
    with pytest.raises(ChannelRefused) as exc:
        asyncio.run(ask(path, HEADERS, device_id, election_id))
    return str(exc.value)


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_channel_is_advertised_and_handed_to_the_primary_only(make_switch, client_factory, tmp_path):
    sw = make_switch()
    path = serve_channel(sw, tmp_path)
    primary, backup = client_factory(sw.addr), client_factory(sw.addr)
    from finsy.proto import p4r

    _resp, call = primary.stub.Capabilities.with_call(p4r.CapabilitiesRequest(), timeout=10)
    assert (METADATA_KEY, path) in tuple(call.initial_metadata())

    assert "no primary" in refusal(path, 5)
    primary.arbitrate(5)
    backup.arbitrate(3)
    assert "not primary" in refusal(path, 3)          # the backup
    assert "not this switch's" in refusal(path, 5, device_id=7)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.settimeout(5)
        s.connect(path)
        s.send(b"\x00not json")
        answer = json.loads(s.recv(4096))
        assert answer["ok"] is False and "malformed" in answer["error"]
    assert sw.server.channel.lease is None

    lease = take(path, 5)
    assert sw.server.channel.lease is not None
    # A second request of the primary replaces the first lease: the first one is closed.
    second = take(path, 5)
    assert lease.conn.recv(4096) == b""
    # The primary's stream goes away: the switch ends the lease.
    primary.close()
    assert second.conn.recv(4096) == b""
    assert wait_until(lambda: sw.server.channel.lease is None)
    assert sw.server.channel.counters == {"granted": 2, "refused": 4, "ended": 2, "writes": 0,
                                          "write_malformed": 0}
    for s in (lease.conn, lease.cpu, lease.copy, second.conn, second.cpu, second.copy):
        s.close()


@pytest.mark.root
def test_packets_on_the_handed_ports_then_on_the_stream_again(make_switch, client_factory,
                                                              netns_ports, tmp_path):
    ns, ports, peers = netns_ports((1, 2))
    sw = make_switch(ports=ports, netns=ns)
    path = serve_channel(sw, tmp_path)
    c = client_factory(sw.addr)
    c.arbitrate(1)
    h1, h2 = raw_socket(ns, peers[1]), raw_socket(ns, peers[2])
    lease = take(path, 1)

    # A punted frame arrives on the handed CPU port with its packet_in header, not as PacketIn.
    pkt = _frame(ip_src="10.9.9.9")
    h1.send(pkt)
    payload, port, reason = HEADERS.decode(lease.cpu.recv(65536))
    assert (payload[: len(pkt)], port, reason) == (pkt, 1, 1)
    with pytest.raises(TimeoutError):
        c.recv("packet", timeout=0.5)

    # A packet-out written to the handed CPU port leaves on its egress port.
    frame = _frame(ip_src="10.7.7.7")
    lease.cpu.send(HEADERS.encode(2, frame))
    assert _recv_matching(h2, frame)[: len(frame)] == frame

    # The controller lets go: PacketIns are back on the stream.
    lease.conn.close()
    assert wait_until(lambda: sw.server.channel.lease is None)
    h1.send(pkt)
    pin = c.recv("packet")
    assert pin.payload[: len(pkt)] == pkt
    lease.cpu.close()
    lease.copy.close()


def test_pipeline_change_ends_the_lease(make_switch, client_factory, tmp_path):
    sw = make_switch()
    path = serve_channel(sw, tmp_path)
    c = client_factory(sw.addr)
    c.arbitrate(1)
    lease = take(path, 1)
    sw.load()       # the daemon is restarted: the handed ports are gone
    assert lease.conn.recv(4096) == b""
    assert lease.cpu.recv(65536) == b""
    assert sw.server.channel.lease is None
    lease2 = take(path, 1)      # the new daemon's ports
    for s in (lease.conn, lease.cpu, lease.copy, lease2.conn, lease2.cpu, lease2.copy):
        s.close()


def test_malformed_frames_are_counted_and_dropped():
    """The controller's reader: short frames of the CPU port and short copies are dropped and
    counted; the others reach the handler, copies with reason REASON_FLOW_END."""
    from p4cs.constants import REASON_FLOW_END

    async def run():
        got: list = []

        async def handle(pkts):
            got.extend(pkts)

        path = PacketPath("direct", handle)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(3)]
        (conn, conn_peer), (cpu, cpu_peer), (copy, copy_peer) = pairs
        for s in (conn, cpu, copy):
            s.setblocking(False)
        lease = Lease(conn, cpu, copy, HEADERS)
        held = asyncio.ensure_future(path.hold(lease))
        await asyncio.sleep(0)
        assert path.active == "direct"
        cpu_peer.send(b"\x00\x00")                                   # shorter than the header
        cpu_peer.send((3).to_bytes(4, "big") + b"\x01" + b"frame")   # port 3, reason 1
        copy_peer.send(b"\x00\x01")                                  # no room for the port
        copy_peer.send((2).to_bytes(4, "big") + b"fin")
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.01)
        conn_peer.close()                                            # the switch ends it
        await asyncio.wait_for(held, 5)
        assert path.active == "p4runtime" and lease.why == "the switch closed it"
        assert cpu.fileno() == -1 and copy.fileno() == -1
        for s in (cpu_peer, copy_peer):
            s.close()
        return got, path.counters

    got, counters = asyncio.run(run())
    assert sorted(got) == sorted([(b"frame", 3, 1), (b"fin", 2, REASON_FLOW_END)])
    assert counters["packet_in_malformed"] == 2


def test_channel_socket_of_a_live_switch_is_refused_a_stale_one_replaced(tmp_path):
    from p4cs.switch.dpdk.arbitration import Arbiter
    from p4cs.switch.dpdk.pktchan import PacketChannel

    path = tmp_path / "packets.sock"

    async def run():
        first = PacketChannel(path, Arbiter(1), lambda: None)
        first.start()
        second = PacketChannel(path, Arbiter(1), lambda: None)
        with pytest.raises(OSError, match="another process serves it"):
            second.start()
        await asyncio.sleep(0.1)
        assert first.counters["refused"] == 0       # the check is no request
        first.stop()
        assert not path.exists()
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as stale:
            stale.bind(str(path))                   # left by a switch that died
        second.start()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        second.stop()

    asyncio.run(run())
    assert not path.exists()


@pytest.mark.parametrize("io", ["mmsg", "one-per-call"])
def test_many_frames_each_way_in_batches(io, monkeypatch):
    """The channel's reader and writer with recvmmsg / sendmmsg (``_mmsg``) and with one
    system call per frame: 1,000 packet-ins arrive in order in batches of at most BATCH, the
    copy port is read to the end, packet-outs beyond a full socket wait for room and all
    arrive in order, the switch closing its CPU port ends the lease."""
    from p4cs.controller import packetchan

    if io == "mmsg":
        if packetchan._mmsg is None:
            pytest.skip("p4cs.controller._mmsg is not built (no C compiler at install)")
    else:
        monkeypatch.setattr(packetchan, "_mmsg", None)

    async def run():
        batches: list[int] = []
        got: list = []

        async def handle(pkts):
            batches.append(len(pkts))
            got.extend(pkts)

        path = PacketPath("direct", handle)
        pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(3)]
        (conn, conn_peer), (cpu, cpu_peer), (copy, copy_peer) = pairs
        for s in (conn, cpu, copy, cpu_peer, copy_peer):
            s.setblocking(False)
        cpu_peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 21)  # > BATCH frames in
        cpu.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)       # packet-outs fill it
        lease = Lease(conn, cpu, copy, HEADERS)
        # frames queued before the lease is held: read at the first wake-up, in batches
        sent_in = 0
        for i in range(1000):
            try:
                cpu_peer.send((i % 7).to_bytes(4, "big") + b"\x01" + i.to_bytes(4, "big"))
                sent_in += 1
            except BlockingIOError:
                break
        copies_in = 0
        for i in range(300):
            try:
                copy_peer.send((5).to_bytes(4, "big") + b"c" + i.to_bytes(4, "big"))
                copies_in += 1
            except BlockingIOError:
                break
        held = asyncio.ensure_future(path.hold(lease))
        for _ in range(300):
            if len(got) == sent_in + copies_in:
                break
            await asyncio.sleep(0.01)
        # packet-outs: more than the socket holds; the peer drains it meanwhile
        outs = [(i % 4, b"o" * 600 + i.to_bytes(4, "big")) for i in range(400)]
        received: list[bytes] = []

        async def drain():
            while len(received) < len(outs):
                try:
                    received.append(cpu_peer.recv(65536))
                except BlockingIOError:
                    await asyncio.sleep(0.001)

        drainer = asyncio.ensure_future(drain())
        left = await path._send_direct(lease, outs)
        await asyncio.wait_for(drainer, 10)
        cpu_peer.close()                                 # the switch's end of the CPU port
        await asyncio.wait_for(held, 5)
        for s in (conn_peer, copy_peer):
            s.close()
        return sent_in, copies_in, batches, got, left, received, outs, lease.why, path.counters

    sent_in, copies_in, batches, got, left, received, outs, why, counters = asyncio.run(run())
    assert sent_in > 300 and copies_in > 50
    cpu_in = [p for p in got if p[2] == 1]
    copies = [p for p in got if p[2] != 1]
    assert [int.from_bytes(p[0], "big") for p in cpu_in] == list(range(sent_in))
    assert [p[1] for p in cpu_in] == [i % 7 for i in range(sent_in)]
    assert [int.from_bytes(p[0][1:], "big") for p in copies] == list(range(copies_in))
    assert max(batches) <= packetchan.BATCH + copies_in and len(batches) >= 2
    assert left == [] and counters["packet_out_dropped"] == 0
    assert [r[-604:] for r in received] == [f for _, f in outs]             # all, in order
    assert [r[:-604] for r in received] == [HEADERS.encode(p, b"") for p, _ in outs]
    assert why == "the data-plane daemon closed its ports"


def _tcp(sip: str, dip: str, sport: int, dport: int, flags: str = "A") -> bytes:
    from scapy.all import IP, TCP, Ether
    return bytes(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") /
                 IP(src=sip, dst=dip) / TCP(sport=sport, dport=dport, flags=flags))


def test_punts_spread_over_the_workers_channels(make_switch, client_factory, netns_ports,
                                                tmp_path):
    """With ``workers`` N the lease carries N pairs of sockets and the daemon sends each
    punt to the pair of the worker ``Spreader.worker`` names (dataplane/src/spread.c against
    controller/spread.py): client legs by the client's hash, SNAT answers by port, the
    switch's own addresses and other frames to worker 0. The lease's end stops the spread."""
    import random

    from p4cs.controller.spread import Spreader
    from p4cs.csproc.packet import ip_int

    ns, ports, peers = netns_ports((1, 2))
    sw = make_switch(ports=ports, netns=ns, channels=3)
    path = serve_channel(sw, tmp_path)
    c = client_factory(sw.addr)
    c.arbitrate(1)
    h1 = raw_socket(ns, peers[1])
    vip, snat, gw = "10.0.0.100", "10.0.2.253", "10.0.2.254"
    sp = Spreader(3, {(ip_int(vip), 80), (ip_int(vip), 443)}, {ip_int(snat)}, (20000, 59999),
                  {ip_int(gw), ip_int(vip)})

    # more workers than the switch has channels: refused, with the reason
    with pytest.raises(ChannelRefused, match="3 packet channels"):
        asyncio.run(ask(path, HEADERS, 1, 1, workers=4, spread=sp.request()))
    for bad in ({"vips": [["10.0.0.300", 80]]}, {"vips": [["10.0.0.1", 70000]]}, [], None,
                {"mask": 5}, {"snat": "10.0.0.1"}):
        with pytest.raises(ChannelRefused, match="malformed|spread"):
            asyncio.run(ask(path, HEADERS, 1, 1, workers=2, spread=bad))

    lease = asyncio.run(ask(path, HEADERS, 1, 1, workers=3, spread=sp.request()))
    copy = lease.copy
    socks = [lease.cpu] + [cpu for cpu, _copy in lease.extra]
    assert len(socks) == 3
    for s in socks:
        s.settimeout(0.05)
    rng = random.Random(7)
    cases = []
    for _ in range(60):
        client = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        cport = rng.randrange(1024, 65536)
        cases += [(client, vip, cport, rng.choice((80, 443))),          # client leg
                  ("10.0.2.1", client, 8080, cport),                     # transparent answer
                  ("10.0.2.1", snat, 8080, rng.randrange(20000, 60000)),  # SNAT answer
                  ("10.0.2.1", snat, 8080, rng.randrange(1024, 20000)),   # outside the pool
                  ("10.0.2.1", gw, 8080, cport)]                         # the switch's own
    want: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    for sip, dip, sport, dport in cases:
        f = _tcp(sip, dip, sport, dport)
        want[sp.worker(f, 1)].append(f)
        h1.send(f)
    h1.send(_frame(ip_src="10.9.9.9"))          # UDP: worker 0
    want[0].append(_frame(ip_src="10.9.9.9"))
    assert all(want.values())                    # every worker has frames to get
    got: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
    deadline = time.monotonic() + 5
    while sum(map(len, got.values())) < len(cases) + 1 and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            while True:
                try:
                    payload, port, _reason = HEADERS.decode(s.recv(65536))
                except TimeoutError:
                    break
                assert port == 1
                got[i].append(payload)
    for i in want:
        assert [g[:len(w)] for g, w in zip(got[i], want[i])] == want[i], i
        assert len(got[i]) == len(want[i]), i

    # the copy port (FIN/RST copies, as the splice rewrote them) by Spreader.copy_worker;
    # a packet-out to the copy port leaves the way a mirrored copy does
    copy_port = sw.server.pipe.daemon.info["copy_port"]
    copies = [copy] + [cp for _cpu, cp in lease.extra]
    for s in copies:
        s.settimeout(0.05)
    want = {0: [], 1: [], 2: []}
    for _ in range(60):
        client = f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        cport = rng.randrange(1024, 65536)
        for sip, dip, sport, dport in ((vip, client, 80, cport),                      # to the client
                                       (client, "10.0.2.1", cport, 8080),              # transparent
                                       (snat, "10.0.2.1", rng.randrange(20000, 60000), 8080),
                                       (gw, "10.0.2.1", cport, 8080)):                 # health probe
            f = _tcp(sip, dip, sport, dport, "FA")
            t = (ip_int(sip), ip_int(dip), sport, dport)
            want[sp.copy_worker(*t)].append(f)
            lease.cpu.send(HEADERS.encode(copy_port, f))
    assert all(want.values())
    got = {0: [], 1: [], 2: []}
    deadline = time.monotonic() + 5
    while sum(map(len, got.values())) < 240 and time.monotonic() < deadline:
        for i, s in enumerate(copies):
            while True:
                try:
                    msg = s.recv(65536)
                except TimeoutError:
                    break
                got[i].append(msg[COPY_PORT_BYTES:])
    for i in want:
        assert [g[:len(w)] for g, w in zip(got[i], want[i])] == want[i], i
        assert len(got[i]) == len(want[i]), i

    # a new request of the primary replaces the lease: the punts are still spread (the old
    # lease's `spread off` goes to the daemon before the new `spread` line)
    old = lease
    lease = asyncio.run(ask(path, HEADERS, 1, 1, workers=3, spread=sp.request()))
    assert old.conn.recv(4096) == b""
    for s in [old.conn, old.cpu, old.copy] + [x for pair in old.extra for x in pair]:
        s.close()
    socks = [lease.cpu] + [cpu for cpu, _copy in lease.extra]
    for s in socks:
        s.settimeout(0.05)
    sent = {0: 0, 1: 0, 2: 0}
    for _ in range(30):
        f = _tcp(f"192.168.7.{rng.randrange(1, 255)}", vip, rng.randrange(1024, 65536), 80)
        sent[sp.worker(f, 1)] += 1
        h1.send(f)
    got_n = {0: 0, 1: 0, 2: 0}
    deadline = time.monotonic() + 5
    while sum(got_n.values()) < 30 and time.monotonic() < deadline:
        for i, s in enumerate(socks):
            try:
                s.recv(65536)
                got_n[i] += 1
            except TimeoutError:
                pass
    assert got_n == sent and min(sent.values()) > 0, (got_n, sent)

    # the lease ends: every punt comes on the stream again (the spread stopped)
    lease.conn.close()
    assert wait_until(lambda: sw.server.channel.lease is None)
    lease2 = take(path, 1)
    for sip, dip, sport, dport in cases[:10]:
        h1.send(_tcp(sip, dip, sport, dport))
    for _ in range(10):
        payload, _port, _reason = HEADERS.decode(lease2.cpu.recv(65536))
    for s in [lease.cpu, lease.copy, lease2.conn, lease2.cpu, lease2.copy] + \
            [x for pair in lease.extra for x in pair]:
        s.close()
