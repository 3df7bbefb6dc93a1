"""p4cs-swxd: control protocol, learner direct operations, traffic through veths, CPU port,
expiry notifications, idle CPU and bench mode."""
from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from conftest import (CPU_PORT, FLOW_SPEC, netns_packet_socket, recv_frames, start_daemon)

pytestmark = [pytest.mark.root, pytest.mark.dpdk]

MAC_H0 = "02:00:00:00:00:10"
MAC_H1 = "02:00:00:00:00:11"
MAC_SW = "02:00:00:00:00:fe"


def ip2int(a: str) -> int:
    return struct.unpack("!I", socket.inet_aton(a))[0]


def mac2int(m: str) -> int:
    return int(m.replace(":", ""), 16)


def key(src="10.0.0.1", dst="10.0.0.100", proto=6, sport=40000, dport=80) -> str:
    return f"match {ip2int(src)} {ip2int(dst)} {proto} {sport} {dport}"


def splice(dmac=MAC_H1, smac=MAC_SW, new_src="10.0.1.100", new_dst="10.0.1.2", sport=50000,
           dport=8080, seq=1000, ack=0xFFFFFFF0, port=1, cidx=7) -> str:
    return (f"action splice dmac 0x{mac2int(dmac):012x} smac 0x{mac2int(smac):012x} "
            f"new_src {ip2int(new_src)} new_dst {ip2int(new_dst)} new_sport {sport} "
            f"new_dport {dport} seq_delta {seq} ack_delta {ack} port {port} counter_idx {cidx}")


# ---------------------------------------------------------------------------------------------
# Control protocol without traffic


def test_ping_info(sink_daemon):
    ctl = sink_daemon.ctl
    assert ctl.req("ping", "ping") == ["ok pong", "ok pong"]
    info = json.loads(ctl.one("info")[3:])
    assert info["cpu_port"] == CPU_PORT
    assert [p["type"] for p in info["ports"]] == ["sink", "sink", "cpu"]
    lrn = {x["name"]: x for x in info["learners"]}["flow_table"]
    assert [k["bits"] for k in lrn["key"]] == [32, 32, 8, 16, 16]
    assert lrn["timeouts"] == [3, 30, 120]
    spl = {a["name"]: a for a in lrn["actions"]}["splice"]
    assert [a["bits"] for a in spl["args"]][:2] == [48, 48]
    assert {t["name"] for t in info["tables"]} == {"vip_table", "route_table", "port_table"}
    assert info["regarrays"] == [{"name": "flow_pkts", "size": 65536}]


def test_learner_ops(sink_daemon):
    ctl = sink_daemon.ctl
    k = key()
    assert ctl.one(f"learner get flow_table {k}") == "ok miss"
    assert ctl.one(f"learner add flow_table {k} {splice()}") == "ok"
    assert ctl.one(f"learner add flow_table {k} {splice()}").startswith("err EEXIST")
    got = ctl.one(f"learner get flow_table {k}")
    assert got.startswith("ok hit splice ")
    args = dict(kv.split("=") for kv in got.split()[3:])
    assert int(args["dmac"]) == mac2int(MAC_H1)
    assert int(args["smac"]) == mac2int(MAC_SW)
    assert int(args["new_src"]) == ip2int("10.0.1.100")
    assert int(args["new_sport"]) == 50000
    assert int(args["ack_delta"]) == 0xFFFFFFF0
    assert ctl.one(f"learner mod flow_table {k} {splice(port=0, sport=1234)} timeout 2") == "ok"
    got = ctl.one(f"learner get flow_table {k}")
    args = dict(kv.split("=") for kv in got.split()[3:])
    assert (int(args["port"]), int(args["new_sport"])) == (0, 1234)
    k2 = key(sport=40001)
    assert ctl.one(f"learner mod flow_table {k2} {splice()}").startswith("err ENOENT")
    assert ctl.one(f"learner del flow_table {k2}").startswith("err ENOENT")
    assert ctl.one(f"learner keep flow_table {k2}").startswith("err ENOENT")
    assert ctl.one(f"learner keep flow_table {k}") == "ok"
    assert ctl.one(f"learner del flow_table {k}") == "ok"
    assert ctl.one(f"learner get flow_table {k}") == "ok miss"
    # batch: one reply line per request line, in order
    lines = [f"learner add flow_table {key(sport=s)} {splice()}" for s in range(1000, 1100)]
    assert ctl.req(*lines) == ["ok"] * 100
    stats = json.loads(ctl.one("stats")[3:])
    assert {x["name"]: x for x in stats["learners"]}["flow_table"]["entries"] == 100


def test_bad_lines(sink_daemon):
    ctl = sink_daemon.ctl
    bad = [
        "", "   ", "nope", "ping extra", "learner", "learner add", "learner add nope match 1",
        "learner frob flow_table match 1 2 6 3 4",
        "learner add flow_table match 1 2 3",
        f"learner add flow_table {key()}",
        f"learner add flow_table {key()} action nope",
        f"learner add flow_table {key()} action flow_miss",
        f"learner add flow_table {key()} action splice dmac 1",
        f"learner add flow_table {key()} {splice()} timeout 9",
        f"learner add flow_table {key()} {splice()} extra",
        f"learner add flow_table {key()} {splice()} dmac",
        "learner add flow_table match 99999999999 1 6 1 1 " + splice(),
        "learner add flow_table match 0x1ffffffff 1 6 1 1 " + splice(),
        "learner add flow_table match -1 1 6 1 1 " + splice(),
        "learner add flow_table match 1 1 6 1 1 action splice dmac 0x1000000000000",
        "learner get flow_table match 1 2 6 3 4 extra",
        "table", "table add", "table add nope match 1 action fwd port 1",
        "table add flow_table match 1 action fwd port 1",
        "table add port_table match zz action fwd port 1",
        "table add port_table match 1 action nope",
        "table add port_table action fwd port 1",
        "table frob port_table match 1",
        "reg", "reg read", "reg read nope 0", "reg read flow_pkts 65536",
        "reg read flow_pkts 0 0", "reg read flow_pkts 0 100000", "reg write flow_pkts 0",
        "reg write flow_pkts 0 x", "reg frob flow_pkts 0",
        "\x00\x01\xff garbage", "x" * 5000,
    ]
    out = ctl.req(*bad)
    for line, reply in zip(bad, out):
        assert reply.startswith("err E"), (line, reply)
    # binary junk in a message of its own
    ctl.sock.send(bytes(range(256)) * 4)
    assert ctl.recv_msg().startswith("err")
    assert ctl.one("ping") == "ok pong"


def test_tables_and_regs(sink_daemon):
    ctl = sink_daemon.ctl
    assert ctl.req("table add port_table match 0 action fwd port 1",
                   "table add port_table match 1 action fwd port 0",
                   "table add route_table match 0x0a000100/0xffffff00 action route port 1 dmac 0x020000000011",
                   "table add vip_table match 0x0a000064 80 action send_to_cpu",
                   "table default route_table action NoAction",
                   "reg write flow_pkts 3 42") == ["ok"] * 6
    # MODIFY through add, then delete
    assert ctl.one("table add port_table match 0 action fwd port 0") == "ok"
    assert ctl.one("table del port_table match 1") == "ok"
    assert ctl.one("reg read flow_pkts 2 3") == "ok 0 42 0"
    assert ctl.one("reg write flow_pkts 0x3 0xffffffffffffffff") == "ok"
    assert ctl.one("reg read flow_pkts 3") == f"ok {2**64 - 1}"
    # a commit that fails (more entries than the table holds) answers err on every table line
    # of the message and leaves the previous tables in place
    lines = [f"table add port_table match {i + 10} action fwd port 1" for i in range(200)]
    out = ctl.req("ping", *lines)
    assert out[0] == "ok pong"
    if any(o != "ok" for o in out[1:]):
        assert all(o.startswith("err") for o in out[1:]), set(out[1:])
    assert ctl.one("ping") == "ok pong"


def test_expiry_notification(swxd_binary, workdir):
    d = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"],
                     extra=["--learner-timeouts", "3,4"])
    try:
        ctl = d.ctl
        info = json.loads(ctl.one("info")[3:])
        assert info["learners"][0]["timeouts"] == [3, 4, 120]
        short, perm = key(sport=1), key(sport=2)
        assert ctl.req(f"learner add flow_table {short} {splice()} timeout 0",
                       f"learner add flow_table {perm} {splice()} timeout 0",
                       f"learner keep flow_table {perm}") == ["ok"] * 3
        # the sweeper reports on its own within timeout + one full pass
        expired = ctl.poll_expired(6.0)
        want = f"expired flow_table {ip2int('10.0.0.1')} {ip2int('10.0.0.100')} 6 1 80"
        assert want in expired, expired
        assert all(" 6 2 80" not in e for e in expired)
        assert ctl.one(f"learner get flow_table {short}") == "ok miss"
        assert ctl.one(f"learner get flow_table {perm}").startswith("ok hit")
        # explicit sweep: nothing new
        ctl.expired.clear()
        assert ctl.one("sweep") == "ok"
        assert ctl.poll_expired(0.3) == []
    finally:
        d.stop()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_prefault_makes_the_learner_tables_resident(swxd_binary, workdir):
    """--prefault: the learner tables' pages are resident once the daemon answers (a fresh
    daemon without it has touched almost none of them), and it works as before."""
    plain = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"])
    try:
        rss_plain = _rss_kib(plain.proc.pid)
    finally:
        plain.stop()
    d = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"], extra=["--prefault"])
    try:
        log = d.log.read_text()
        m = re.search(r"prefault: (\d+) MiB of learner tables resident", log)
        assert m, log
        mib = int(m.group(1))
        assert mib >= 1, log           # the test spec's flow table: 65,536 entries
        assert _rss_kib(d.proc.pid) - rss_plain >= 0.9 * mib * 1024, (rss_plain, mib)
        ctl = d.ctl
        assert ctl.one(f"learner add flow_table {key()} {splice()}") == "ok"
        assert ctl.one(f"learner get flow_table {key()}").startswith("ok hit")
    finally:
        d.stop()


# ---------------------------------------------------------------------------------------------
# Traffic through veths in namespaces


def tcp_frame(src="10.0.0.1", dst="10.0.0.100", sport=40000, dport=80, seq=5000, ack=7000,
              payload=b"GET / HTTP/1.0\r\n\r\n", flags="PA"):
    return bytes(Ether(src=MAC_H0, dst=MAC_SW) / IP(src=src, dst=dst, ttl=64) /
                 TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags) / payload)


def checksums_ok(frame: bytes) -> bool:
    p = Ether(frame)
    ip_ck, tcp_ck = p[IP].chksum, p[TCP].chksum
    del p[IP].chksum
    del p[TCP].chksum
    q = Ether(bytes(p))
    return q[IP].chksum == ip_ck and q[TCP].chksum == tcp_ck


@pytest.fixture(params=["afpacket", "afxdp"])
def traffic(swxd_binary, workdir, topo, request):
    kind = request.param
    d = start_daemon(swxd_binary, workdir, [f"0={kind}:s0", f"1={kind}:s1"], netns=topo.sw)
    if kind == "afxdp":
        need_xdp(d)
    s0 = netns_packet_socket(topo.h0, "h0")
    s1 = netns_packet_socket(topo.h1, "h1")
    try:
        yield d, s0, s1
        assert d.proc.poll() is None, "daemon died:\n" + d.log.read_text()
    finally:
        s0.close()
        s1.close()
        d.stop()


def test_splice_rewrite(traffic):
    d, s0, s1 = traffic
    k = key()
    assert d.ctl.one(f"learner add flow_table {k} {splice()}") == "ok"
    s0.send(tcp_frame())
    frames = recv_frames(s1, 3.0, match=lambda f: f[12:14] == b"\x08\x00")
    assert frames, "no spliced frame on h1"
    p = Ether(frames[0])
    assert p.dst == MAC_H1 and p.src == MAC_SW
    assert (p[IP].src, p[IP].dst) == ("10.0.1.100", "10.0.1.2")
    assert (p[TCP].sport, p[TCP].dport) == (50000, 8080)
    assert p[TCP].seq == 6000 and p[TCP].ack == (7000 + 0xFFFFFFF0) & 0xFFFFFFFF
    assert bytes(p[TCP].payload) == b"GET / HTTP/1.0\r\n\r\n"
    assert checksums_ok(frames[0])
    assert d.ctl.one("reg read flow_pkts 7") == "ok 1"
    stats = json.loads(d.ctl.one("stats")[3:])
    assert {x["name"]: x for x in stats["learners"]}["flow_table"]["hit"] >= 1
    # MODIFY takes effect on the next packet; DELETE sends the flow to the miss path
    assert d.ctl.one(f"learner mod flow_table {k} {splice(port=0, cidx=8)}") == "ok"
    s0.send(tcp_frame())
    back = recv_frames(s0, 3.0, match=lambda f: f[:6] == bytes.fromhex(MAC_H1.replace(":", "")))
    assert back, "modified flow did not come out of port 0"
    assert d.ctl.one("reg read flow_pkts 8") == "ok 1"


def test_expiry_reports_the_counter(traffic):
    """`learner count`: an entry's expiry line carries its counter cell; adding an entry with
    that index again zeroes the cell (a modification does not)."""
    d, s0, s1 = traffic
    ctl = d.ctl
    for bad in ("learner count flow_table counter_idx nope -", "learner count flow_table x",
                "learner count flow_table a b c d"):
        assert ctl.one(bad).startswith("err EINVAL"), bad
    assert ctl.one("learner count flow_table counter_idx flow_pkts -") == "ok"
    counted, plain = key(sport=40001), key(sport=40002)
    assert ctl.req(f"learner add flow_table {counted} {splice(cidx=21)} timeout 0",
                   f"learner add flow_table {plain} {splice(cidx=22)} timeout 0") == ["ok"] * 2
    for sport in (40001, 40001, 40001, 40002):
        s0.send(tcp_frame(sport=sport))
    assert len(recv_frames(s1, 3.0, match=lambda f: f[12:14] == b"\x08\x00")) >= 1
    deadline = time.monotonic() + 3.0
    while ctl.one("reg read flow_pkts 21") != "ok 3" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ctl.one("reg read flow_pkts 21") == "ok 3"
    # the counter has no bytes unit here (`-`): 0 bytes
    expired = ctl.poll_expired(6.0)
    want = f"expired flow_table {ip2int('10.0.0.1')} {ip2int('10.0.0.100')} 6 40001 80 count 21 3 0"
    assert want in expired, expired
    assert any(e.endswith(" 6 40002 80 count 22 1 0") for e in expired), expired
    assert ctl.one("reg read flow_pkts 21") == "ok 3"
    assert ctl.req(f"learner add flow_table {key(sport=40003)} {splice(cidx=21)}",
                   "reg read flow_pkts 21") == ["ok", "ok 0"]
    s0.send(tcp_frame(sport=40003))
    deadline = time.monotonic() + 3.0
    while ctl.one("reg read flow_pkts 21") != "ok 1" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ctl.req(f"learner mod flow_table {key(sport=40003)} {splice(cidx=21)}",
                   "reg read flow_pkts 21") == ["ok", "ok 1"]


def test_cpu_port_both_ways(traffic):
    d, s0, s1 = traffic
    assert d.ctl.one("table add vip_table match 0x0a000064 80 action send_to_cpu") == "ok"
    # miss in the flow table + VIP hit -> CPU with {ingress port, reason}
    s0.send(tcp_frame(sport=41000))
    d.cpu.settimeout(3.0)
    msg = d.cpu.recv(65536)
    port, reason = struct.unpack("!HH", msg[:4])
    assert (port, reason) == (0, 1)
    assert Ether(msg[4:])[TCP].sport == 41000
    # packet-out: CPU header names the egress port
    out = bytes(Ether(src=MAC_SW, dst=MAC_H1) / IP(src="10.9.9.9", dst="10.0.1.2") /
                TCP(sport=1, dport=2))
    d.cpu.send(struct.pack("!HH", 1, 0) + out)
    got = recv_frames(s1, 3.0, match=lambda f: f[12:14] == b"\x08\x00")
    assert got and got[0][:len(out)] == out
    # out-of-range packet-out ports are dropped, never crash the daemon
    for bad_port in (2, 3, 7, 0xFFFF):
        d.cpu.send(struct.pack("!HH", bad_port, 0) + out)
    d.cpu.send(b"\x00")  # runt
    time.sleep(0.3)
    assert d.ctl.one("ping") == "ok pong"
    stats = json.loads(d.ctl.one("stats")[3:])
    assert stats["drop_pkts"] >= 4


def test_l2_and_route(traffic):
    d, s0, s1 = traffic
    assert d.ctl.req("table add port_table match 0 action fwd port 1",
                     "table add route_table match 0x0a000100/0xffffff00 action route port 1 "
                     "dmac 0x020000000011") == ["ok", "ok"]
    arp = bytes(Ether(src=MAC_H0, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))
    s0.send(arp)
    assert recv_frames(s1, 3.0, match=lambda f: f == arp), "ARP not forwarded by port_table"
    udp = bytes(Ether(src=MAC_H0, dst=MAC_SW) / IP(src="10.0.0.1", dst="10.0.1.7") /
                UDP(sport=1, dport=2) / b"x")
    s0.send(udp)
    got = recv_frames(s1, 3.0, match=lambda f: f[12:14] == b"\x08\x00")
    assert got and Ether(got[0]).dst == MAC_H1 and Ether(got[0])[IP].dst == "10.0.1.7"


def test_idle_cpu(traffic):
    d, s0, s1 = traffic
    pid = d.proc.pid
    # the daemon runs under `ip netns exec`, which execs: same pid
    def cpu_ticks():
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])  # utime + stime
    time.sleep(0.5)
    t0, c0 = time.monotonic(), cpu_ticks()
    time.sleep(3.0)
    t1, c1 = time.monotonic(), cpu_ticks()
    share = (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
    print(f"idle CPU share: {share:.3%}")
    assert share < 0.05, share


def test_bench_mode(swxd_binary, workdir, tmp_path):
    pcap = tmp_path / "flows.pcap"
    frames = [Ether(tcp_frame(sport=40000 + i)) for i in range(64)]
    wrpcap(str(pcap), frames)
    ctl_a, ctl_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cmd = [str(swxd_binary), "--spec", str(FLOW_SPEC), "--workdir", str(workdir),
           "--ctl-fd", str(ctl_b.fileno()), "--port", f"0=source:{pcap}:loop",
           "--port", "1=sink", "--bench-packets", "300000"]
    # TCP frames that miss the flow table end in the drop port, which the benchmark does not
    # count: install the flows first.
    proc = subprocess.Popen(cmd, pass_fds=[ctl_b.fileno()], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ctl_b.close()
    try:
        ctl_a.settimeout(60)
        lines = [f"learner add flow_table {key(sport=40000 + i)} {splice()} timeout 2"
                 for i in range(64)]
        ctl_a.send("\n".join(lines).encode())
        reply = ctl_a.recv(1 << 16).decode().split("\n")
        assert all(r in ("ok", "err EEXIST key already present") for r in reply), reply
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ctl_a.close()
    assert proc.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    print("bench:", res)
    assert res["packets"] >= 300000 and res["pps"] > 100000


def test_learner_bucket_full(swxd_binary, workdir, tmp_path):
    import re
    spec = tmp_path / "tiny.spec"
    spec.write_text(re.sub(r"(learner flow_table \{.*?\n\tsize )\d+", r"\g<1>4",
                           FLOW_SPEC.read_text(), flags=re.S))
    d = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"], spec=spec)
    try:
        out = d.ctl.req(*[f"learner add flow_table {key(sport=s)} {splice()}" for s in range(64)])
        ok = out.count("ok")
        full = [o for o in out if o.startswith("err ENOSPC")]
        assert ok <= 16 and len(full) == 64 - ok and full, out
        stats = json.loads(d.ctl.one("stats")[3:])
        lrn = stats["learners"][0]
        assert (lrn["entries"], lrn["enospc"]) == (ok, len(full))
        # deleting frees the slot again
        first_ok = out.index("ok")
        assert d.ctl.one(f"learner del flow_table {key(sport=first_ok)}") == "ok"
        # empty messages and closing the control socket
        d.ctl.sock.send(b"")
        assert d.ctl.recv_msg().startswith("err EINVAL")
        d.ctl.sock.close()
        assert d.proc.wait(10) == 0
    finally:
        d.stop()


# ---------------------------------------------------------------------------------------------
# Mirroring: the copy port (--copy-fd) and the `mirror` control line

def test_mirror_control(swxd_binary, workdir):
    d = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"], copy=True)
    try:
        info = json.loads(d.ctl.one("info")[3:])
        # data ports 0, 1; port 2 is the CPU port: the copy port is the next free number,
        # and the drop port (SWX `drop` sends to the last output port) is a sink after it
        assert info["copy_port"] == 3 and info["drop_port"] == 4, info
        assert {p["port"]: p["type"] for p in info["ports"]} == {0: "sink", 1: "sink", 2: "cpu", 3: "copy"}
        assert info["mirroring_sessions"] >= 2 and info["mirroring_slots"] >= 1
        n = info["mirroring_sessions"]
        assert d.ctl.req("mirror 1", "mirror 1 3", "mirror 1", "mirror 1 0x3 truncate 64", "mirror 1",
                         "mirror 1 off", "mirror 1", f"mirror {n - 1} 0") == \
            ["ok off", "ok", "ok 3", "ok", "ok 3 truncate 64", "ok", "ok off", "ok"]
        bad = ["mirror", f"mirror {n} 3", "mirror 1 4", "mirror 1 3 truncate", "mirror 1 3 truncate 70000",
               "mirror 1 3 foo 5", "mirror x 3", "mirror 1 off truncate 3", "mirror 1 3 truncate 5 6",
               "mirror -1 3", "mirror 1 0x10000000000000000"]
        for line in bad:
            r = d.ctl.one(line)
            assert r.startswith("err EINVAL"), (line, r)
        assert d.ctl.one("mirror 1") == "ok off"   # the bad lines changed nothing
    finally:
        d.stop()


@pytest.fixture
def copy_traffic(swxd_binary, workdir, topo):
    d = start_daemon(swxd_binary, workdir, ["0=afpacket:s0", "1=afpacket:s1"], netns=topo.sw, copy=True)
    s0 = netns_packet_socket(topo.h0, "h0")
    s1 = netns_packet_socket(topo.h1, "h1")
    try:
        yield d, s0, s1
        assert d.proc.poll() is None, "daemon died:\n" + d.log.read_text()
    finally:
        s0.close()
        s1.close()
        d.stop()


def _copies(d, timeout: float, want: int = 1 << 30) -> list[tuple[int, bytes]]:
    """Messages of the copy port: (input port of the copied packet, frame)."""
    out = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(out) < want:
        d.copy.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = d.copy.recv(65536)
        except (socket.timeout, TimeoutError):
            break
        out.append((int.from_bytes(msg[:4], "big"), msg[4:]))
    return out


def test_fin_rst_mirrored_to_copy_port(copy_traffic):
    d, s0, s1 = copy_traffic
    info = json.loads(d.ctl.one("info")[3:])
    copy_port = info["copy_port"]
    is_ip = lambda f: f[12:14] == b"\x08\x00"  # noqa: E731
    # timeout profile 2 (120 s): the entry must outlive the whole test
    assert d.ctl.one(f"learner add flow_table {key()} {splice()} timeout 2") == "ok"
    # sessions start off: a FIN is forwarded, no copy anywhere (neither the copy port nor port 0)
    s0.send(tcp_frame(flags="FA"))
    assert recv_frames(s1, 3.0, match=is_ip)
    assert _copies(d, 0.3) == []
    assert recv_frames(s0, 0.3, match=lambda f: f[:6] != bytes.fromhex(MAC_SW.replace(":", ""))) == []
    assert d.ctl.one(f"mirror 1 {copy_port}") == "ok"
    # a plain segment: forwarded, not copied
    s0.send(tcp_frame(flags="PA"))
    assert recv_frames(s1, 3.0, match=is_ip)
    assert _copies(d, 0.3) == []
    # FIN and RST: forwarded AND copied; the copy is the emitted (rewritten) frame, no header,
    # behind the port the packet came in on (0)
    for flags in ("FA", "R", "RA"):
        s0.send(tcp_frame(flags=flags))
        fwd = recv_frames(s1, 3.0, match=is_ip)
        assert fwd, flags
        copies = _copies(d, 1.0, want=1) + _copies(d, 0.1)
        assert len(copies) == 1, (flags, copies)
        in_port, copy = copies[0]
        assert in_port == 0, flags
        assert copy == fwd[0][:len(copy)] and len(copy) >= 54, flags
        assert Ether(copy)[TCP].flags & 0x05
        assert (Ether(copy)[IP].dst, Ether(copy)[TCP].dport) == ("10.0.1.2", 8080)
    # the reverse leg, in on port 1: the copy says port 1
    rkey = key(src="10.0.1.2", dst="10.0.1.100", sport=8080, dport=50000)
    rsplice = splice(dmac=MAC_H0, new_src="10.0.0.100", new_dst="10.0.0.1", sport=80, dport=40000, port=0, cidx=8)
    assert d.ctl.one(f"learner add flow_table {rkey} {rsplice} timeout 2") == "ok"
    s1.send(tcp_frame(src="10.0.1.2", dst="10.0.1.100", sport=8080, dport=50000, flags="FA"))
    assert recv_frames(s0, 3.0, match=is_ip)
    copies = _copies(d, 1.0, want=1) + _copies(d, 0.1)
    assert [(port, Ether(c)[TCP].dport) for port, c in copies] == [(1, 40000)]
    # truncation (of the frame, not of the port in front of it)
    assert d.ctl.one(f"mirror 1 {copy_port} truncate 54") == "ok"
    s0.send(tcp_frame(flags="FA"))
    assert recv_frames(s1, 3.0, match=is_ip)
    copies = _copies(d, 1.0)
    assert [(port, len(c)) for port, c in copies] == [(0, 54)]
    # off again
    assert d.ctl.one("mirror 1 off") == "ok"
    s0.send(tcp_frame(flags="FA"))
    assert recv_frames(s1, 3.0, match=is_ip)
    assert _copies(d, 0.3) == []
    stats = json.loads(d.ctl.one("stats")[3:])
    assert {p["port"]: p for p in stats["ports"]}[copy_port]["tx_pkts"] == 5


# ---------------------------------------------------------------------------------------------
# Interfaces as they come: tx checksumming, TSO and GSO on

_TCP_SINK = r"""
import hashlib, socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("10.0.0.2", 5001))
ls.listen(1)
print("ready", flush=True)
c, _ = ls.accept()
h, n = hashlib.sha256(), 0
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    h.update(b)
    n += len(b)
c.sendall(f"{n} {h.hexdigest()}".encode())
c.close()
"""

_TCP_SOURCE = r"""
import socket, sys
data = bytes(range(256)) * (int(sys.argv[1]) // 256)
s = socket.create_connection(("10.0.0.2", 5001), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
print(s.recv(200).decode(), flush=True)
"""


def need_xdp(d) -> None:
    """Skip (with the daemon's reason) when the kernel refused AF_XDP and the port fell back."""
    ports = {p["port"]: p["type"] for p in json.loads(d.ctl.one("info")[3:])["ports"]}
    if ports[0] != "afxdp":
        why = [ln for ln in d.log.read_text().splitlines() if "no AF_XDP" in ln]
        d.stop()
        pytest.skip(why[0] if why else "AF_XDP port fell back to AF_PACKET")


def _ethtool_on(ns: str, ifname: str, feature: str) -> bool:
    out = subprocess.run(["ip", "netns", "exec", ns, "ethtool", "-k", ifname],
                         capture_output=True, text=True).stdout
    return f"{feature}: on" in out


SOL_PACKET, PACKET_VNET_HDR = 263, 15
VNET = struct.Struct("<BBHHHH")   # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
NEEDS_CSUM, GSO_TCPV4 = 1, 1


def vnet_packet_socket(ns: str, ifname: str) -> socket.socket:
    """A packet socket whose frames come and go behind a virtio-net header."""
    s = netns_packet_socket(ns, ifname)
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    return s


def _fold(x: int) -> int:
    while x >> 16:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def pseudo_sum(frame: bytes) -> int:
    """The folded TCP/IPv4 pseudo-header sum of frame: what a partial checksum field holds."""
    ihl = (frame[14] & 0xF) * 4
    l4len = struct.unpack("!H", frame[16:18])[0] - ihl
    return _fold(sum(struct.unpack("!4H", frame[26:34])) + 6 + l4len)


def tcp_csum_field(frame: bytes) -> int:
    return struct.unpack("!H", frame[14 + (frame[14] & 0xF) * 4 + 16:][:2])[0]


def recv_vnet(s: socket.socket, timeout: float, want: int, match) -> list[tuple[tuple, bytes]]:
    """(virtio-net header fields, frame) of the frames that match, until want or timeout."""
    got = recv_frames(s, timeout, want=want, match=lambda m: match(m[VNET.size:]))
    return [(VNET.unpack(m[:VNET.size]), m[VNET.size:]) for m in got]


@pytest.mark.parametrize("kind,gso", [("afpacket", "pass"), ("afpacket", "cut"), ("afxdp", "pass")])
def test_offloads_on_tcp_through_pipeline(swxd_binary, workdir, topo_offloads, kind, gso):
    """A fresh veth pair (offloads on, as they come): a real TCP connection's segments,
    partial checksums and TSO super-frames included, cross the pipeline intact: cut into
    wire-sized segments in the port (gso cut), or whole (gso pass) with the partial checksum
    of the emitted headers and the GSO info in the virtio-net header."""
    import hashlib
    import sys
    t = topo_offloads
    for ns, ifn in ((t.h0, "h0"), (t.h1, "h1"), (t.sw, "s0")):
        assert _ethtool_on(ns, ifn, "tx-checksumming") and _ethtool_on(ns, ifn, "tcp-segmentation-offload")
    for ns, ifn, addr, mac in ((t.h0, "h0", "10.0.0.1/24", MAC_H0), (t.h1, "h1", "10.0.0.2/24", MAC_H1)):
        subprocess.run(["ip", "-n", ns, "link", "set", ifn, "address", mac], check=True)
        subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", ifn], check=True)
    d = start_daemon(swxd_binary, workdir, [f"0={kind}:s0", f"1={kind}:s1"], netns=t.sw,
                     env={"P4CS_SWXD_GSO": gso})
    cap = vnet_packet_socket(t.h1, "h1")
    if kind == "afxdp":
        need_xdp(d)
    server = None
    try:
        # ARP by port (L2), IPv4 routed to the host's MAC
        assert d.ctl.req("table add port_table match 0 action fwd port 1",
                         "table add port_table match 1 action fwd port 0",
                         f"table add route_table match 0x0a000002/0xffffffff action route port 1 "
                         f"dmac 0x{mac2int(MAC_H1):012x}",
                         f"table add route_table match 0x0a000001/0xffffffff action route port 0 "
                         f"dmac 0x{mac2int(MAC_H0):012x}") == ["ok"] * 4
        server = subprocess.Popen(["ip", "netns", "exec", t.h1, sys.executable, "-c", _TCP_SINK],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        size = 4 << 20
        client = subprocess.run(["ip", "netns", "exec", t.h0, sys.executable, "-c", _TCP_SOURCE,
                                 str(size)], capture_output=True, text=True, timeout=60)
        assert client.returncode == 0, client.stderr
        want = hashlib.sha256(bytes(range(256)) * (size // 256)).hexdigest()
        assert client.stdout.split() == [str(size), want]
        # what the pipeline sent to h1: wire-sized frames with valid checksums, and (gso pass
        # on AF_PACKET) super-frames with the pseudo-header sum of their emitted headers
        to_h1 = bytes.fromhex(MAC_H1.replace(":", ""))
        frames = recv_vnet(cap, 1.0, 200,
                           lambda f: f[:6] == to_h1 and f[12:14] == b"\x08\x00" and f[23] == 6)
        assert frames
        supers = [(vh, f) for vh, f in frames if vh[1]]
        # a partial checksum only on super-frames: every other frame complete and wire-sized
        assert all(bool(vh[0] & NEEDS_CSUM) == bool(vh[1]) for vh, f in frames)
        assert all(len(f) <= 1514 and checksums_ok(f) for vh, f in frames if not vh[1])
        assert all(vh[1] == GSO_TCPV4 and 0 < vh[3] <= 1448 and (vh[4], vh[5]) == (34, 16) and
                   tcp_csum_field(f) == pseudo_sum(f) for vh, f in supers)
        stats = {p["port"]: p for p in json.loads(d.ctl.one("stats")[3:])["ports"]}
        print("port 0:", stats[0])
        assert stats[0]["csum_completed"] > 0
        if kind == "afpacket":
            assert stats[0]["gso_frames"] > 0
        if kind == "afpacket" and gso == "cut":
            assert not supers and stats[0]["gso_segments"] > stats[0]["gso_frames"]
        else:
            # with XDP on s0 the kernel turns GSO off on its peer: no super-frames for AF_XDP
            assert stats[0]["gso_segments"] == 0 and bool(supers) == (kind == "afpacket")
        assert stats[0]["rx_errors"] == 0 and stats[1]["rx_errors"] == 0
        assert stats[0]["type"] == kind and stats[0]["name"] == "s0"
        assert "partial checksums" in d.log.read_text()
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        cap.close()
        d.stop()


@pytest.mark.parametrize("gso", ["pass", "cut"])
def test_super_frame_through_splice(swxd_binary, workdir, topo_offloads, gso):
    """A TSO super-frame with FIN (virtio-net header: TCPv4, gso_size 1400, partial checksum)
    through the splice: gso pass sends it on whole, once through the pipeline (the flow counter
    counts 1), its addresses / ports / sequence number rewritten, the pseudo-header sum of the
    new headers in its checksum field and the GSO info in the header; its mirror copies on the
    copy port are wire-sized segments with full checksums, FIN on the last only. gso cut: four
    segments through the pipeline, as on a wire."""
    t = topo_offloads
    d = start_daemon(swxd_binary, workdir, ["0=afpacket:s0", "1=afpacket:s1"], netns=t.sw,
                     copy=True, env={"P4CS_SWXD_GSO": gso})
    s0 = vnet_packet_socket(t.h0, "h0")
    s1 = vnet_packet_socket(t.h1, "h1")
    try:
        copy_port = json.loads(d.ctl.one("info")[3:])["copy_port"]
        assert d.ctl.req(f"learner add flow_table {key()} {splice()} timeout 2",
                         f"mirror 1 {copy_port}") == ["ok", "ok"]
        payload = bytes(range(256)) * 19 + bytes(136)   # 5000 bytes: 3 x 1400 + 800
        frame = bytearray(tcp_frame(payload=payload, flags="FPA"))
        ck = 14 + 20 + 16
        frame[ck:ck + 2] = struct.pack("!H", pseudo_sum(bytes(frame)))
        s0.send(VNET.pack(NEEDS_CSUM, GSO_TCPV4, 54, 1400, 34, 16) + bytes(frame))
        is_ip = lambda f: f[12:14] == b"\x08\x00"  # noqa: E731
        got = recv_vnet(s1, 3.0, 1 if gso == "pass" else 4, is_ip)
        if gso == "pass":
            assert len(got) == 1
            vh, f = got[0]
            assert vh[0] & NEEDS_CSUM and vh[1:2] == (GSO_TCPV4,) and vh[3:] == (1400, 34, 16)
            assert len(f) == len(frame)
            assert tcp_csum_field(f) == pseudo_sum(f)
            segs = [f]
        else:
            assert [len(f) for vh, f in got] == [54 + 1400] * 3 + [54 + 800]
            assert all(checksums_ok(f) and not vh[1] for vh, f in got)
            segs = [f for vh, f in got]
        p = Ether(segs[0])
        assert p.dst == MAC_H1 and p.src == MAC_SW
        assert (p[IP].src, p[IP].dst) == ("10.0.1.100", "10.0.1.2")
        assert (p[TCP].sport, p[TCP].dport, p[TCP].seq) == (50000, 8080, 6000)
        assert b"".join(f[54:] for f in segs) == payload
        assert d.ctl.one("reg read flow_pkts 7") == ("ok 1" if gso == "pass" else "ok 4")
        copies = _copies(d, 1.0, want=4 if gso == "pass" else 1) + _copies(d, 0.2)
        if gso == "pass":
            assert [(port, len(c)) for port, c in copies] == [(0, 1454)] * 3 + [(0, 854)]
            assert all(checksums_ok(c) for port, c in copies)
            assert [Ether(c)[TCP].flags & 0x01 for port, c in copies] == [0, 0, 0, 1]
            assert b"".join(c[54:] for port, c in copies) == payload
            assert Ether(copies[0][1])[TCP].seq == 6000
        else:
            assert [(port, len(c)) for port, c in copies] == [(0, 854)]
        # truncated copies: of each segment that carries the FIN / is copied
        assert d.ctl.one(f"mirror 1 {copy_port} truncate 54") == "ok"
        s0.send(VNET.pack(NEEDS_CSUM, GSO_TCPV4, 54, 1400, 34, 16) + bytes(frame))
        assert recv_vnet(s1, 3.0, 1 if gso == "pass" else 4, is_ip)
        copies = _copies(d, 1.0, want=4 if gso == "pass" else 1) + _copies(d, 0.2)
        assert [(port, len(c)) for port, c in copies] == [(0, 54)] * (4 if gso == "pass" else 1)
        stats = {p["port"]: p for p in json.loads(d.ctl.one("stats")[3:])["ports"]}
        assert stats[0]["gso_frames"] == 2 and stats[0]["gso_segments"] == 8
        assert stats[0]["rx_errors"] == 0 and stats[1]["tx_drops"] == 0
    finally:
        s0.close()
        s1.close()
        d.stop()


def test_super_frame_punted_in_segments(swxd_binary, workdir, topo_offloads):
    """A super-frame the pipeline sends to the CPU port (flow-table miss, VIP hit) reaches the
    controller as wire-sized segments with full checksums, each behind its own packet_in
    header; the pipeline saw it once."""
    t = topo_offloads
    d = start_daemon(swxd_binary, workdir, ["0=afpacket:s0", "1=afpacket:s1"], netns=t.sw)
    s0 = vnet_packet_socket(t.h0, "h0")
    try:
        assert d.ctl.one("table add vip_table match 0x0a000064 80 action send_to_cpu") == "ok"
        payload = bytes(range(256)) * 12   # 3072 bytes: 1400 + 1400 + 272
        frame = bytearray(tcp_frame(sport=41000, payload=payload))
        frame[50:52] = struct.pack("!H", pseudo_sum(bytes(frame)))
        s0.send(VNET.pack(NEEDS_CSUM, GSO_TCPV4, 54, 1400, 34, 16) + bytes(frame))
        d.cpu.settimeout(3.0)
        msgs = [d.cpu.recv(65536) for _ in range(3)]
        assert [struct.unpack("!HH", m[:4]) for m in msgs] == [(0, 1)] * 3
        segs = [m[4:] for m in msgs]
        assert [len(f) for f in segs] == [1454, 1454, 326]
        assert all(checksums_ok(f) for f in segs)
        assert [Ether(f)[TCP].seq for f in segs] == [5000, 6400, 7800]
        assert b"".join(f[54:] for f in segs) == payload
        stats = json.loads(d.ctl.one("stats")[3:])
        ports = {p["port"]: p for p in stats["ports"]}
        assert ports[0]["rx_pkts"] == 1 and ports[0]["gso_segments"] == 3
    finally:
        s0.close()
        d.stop()


@pytest.mark.parametrize("kind", ["afpacket", "afxdp"])
def test_jumbo_mtu(swxd_binary, workdir, topo, kind):
    """A 9000-byte MTU passes end to end; AF_XDP, which takes one page per frame, falls back to
    AF_PACKET with a warning that names the reason."""
    for ns, ifn in ((topo.sw, "s0"), (topo.sw, "s1"), (topo.h0, "h0"), (topo.h1, "h1")):
        subprocess.run(["ip", "-n", ns, "link", "set", ifn, "mtu", "9000"], check=True)
    d = start_daemon(swxd_binary, workdir, [f"0={kind}:s0", f"1={kind}:s1"], netns=topo.sw)
    s0 = netns_packet_socket(topo.h0, "h0")
    s1 = netns_packet_socket(topo.h1, "h1")
    try:
        info = {p["port"]: p["type"] for p in json.loads(d.ctl.one("info")[3:])["ports"]}
        assert info[0] == info[1] == "afpacket"
        if kind == "afxdp":
            assert "no AF_XDP on s0 (MTU 9000 above" in d.log.read_text()
        assert d.ctl.one("table add route_table match 0x0a000100/0xffffff00 action route port 1 "
                         "dmac 0x020000000011") == "ok"
        big = bytes(Ether(src=MAC_H0, dst=MAC_SW) / IP(src="10.0.0.1", dst="10.0.1.7") /
                    UDP(sport=1, dport=2) / (b"j" * (9000 - 28)))
        assert len(big) == 9014
        s0.send(big)
        got = recv_frames(s1, 3.0, match=lambda f: f[12:14] == b"\x08\x00")
        assert got and len(got[0]) == 9014 and got[0][14:] == big[14:]
        stats = {p["port"]: p for p in json.loads(d.ctl.one("stats")[3:])["ports"]}
        assert stats[0]["rx_bytes"] == 9014 and stats[1]["tx_bytes"] == 9014
    finally:
        s0.close()
        s1.close()
        d.stop()


def test_reuse_control(sink_daemon):
    """`learner reuse` (dataplane/src/reuse.c): the key sources must fit the learner's key
    fields, the rewrite arguments its action's; malformed lines are refused, `off` ends it;
    `stats` names the learner and counts what it did."""
    ctl = sink_daemon.ctl
    line = "learner reuse flow_table 0 4 0 2 3 1 sip dip proto sport dport"
    rev = " reverse splice new_src new_dst new_sport new_dport"
    assert ctl.req(line, line + rev) == ["ok", "ok"]
    assert json.loads(ctl.one("stats")[3:])["reuse"] == {
        "learner": "flow_table", "ended": 0, "ended_reverse": 0, "punted": 0}
    for bad in ("learner reuse flow_table", "learner reuse flow_table 0 4 0 2 3 1 sip dip proto sport",
                "learner reuse flow_table 0 4 0 2 3 1 sip dip sport proto dport",   # 16 bits != 8
                "learner reuse flow_table 0 4 0 2 3 1 sip dip proto sport xport",
                "learner reuse flow_table 9 4 0 2 3 1 sip dip proto sport dport",   # no profile 9
                "learner reuse flow_table 0 4 3 2 3 1 sip dip proto sport dport",   # port past hdr
                "learner reuse flow_table 0 4 0 2 4 1 sip dip proto sport dport",   # reason past hdr
                "learner reuse flow_table 0 4 0 2 3 256 sip dip proto sport dport",
                line + " reverse nope new_src new_dst new_sport new_dport",
                line + " reverse splice new_src new_dst new_sport",
                line + " reverse splice new_src new_dst new_dport new_sport x",
                line + " reverse splice new_src dmac new_sport new_dport",          # 48 bits
                line + " backward splice new_src new_dst new_sport new_dport"):
        assert ctl.one(bad).startswith("err E"), bad
    assert ctl.one("learner reuse flow_table off") == "ok"
    assert json.loads(ctl.one("stats")[3:])["reuse"]["learner"] == ""
    assert ctl.one("ping") == "ok pong"


def test_spread_control(swxd_binary, workdir):
    """The `spread` line (dataplane/src/spread.c): at most as many workers as the daemon has
    packet channels (--spread-fd pairs + its own), malformed lines refused with nothing
    changed, `spread off`."""
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(2)]
    fds = [p[1].fileno() for p in pairs]
    d = start_daemon(swxd_binary, workdir, ["0=sink", "1=sink"],
                     extra=["--spread-fd", f"{fds[0]}:{fds[1]}"], pass_fds=fds)
    try:
        ok = "spread 2 4 20000 59999 - v=10.0.0.100:80 v=10.0.0.100:443 s=10.0.2.253 l=10.0.2.254"
        assert d.ctl.req(ok, "spread 2 4 1024 65535 255.255.255.0", "spread off") == \
            ["ok", "ok", "ok"]
        assert d.ctl.one("spread 3 4 1024 65535 -").startswith("err ERANGE")
        many = "spread 2 4 1024 65535 - " + " ".join(f"l=10.0.{i // 250}.{i % 250}"
                                                     for i in range(250))
        for line in ("spread", "spread on", "spread 2", "spread 1 4 1 2 -", "spread 2 65 1 2 -",
                     "spread 2 4 2000 1000 -", "spread 2 4 1 70000 -", "spread 2 4 1 2 10.0.0",
                     "spread 2 4 1 2 - v=10.0.0.1", "spread 2 4 1 2 - v=10.0.0.1:70000",
                     "spread 2 4 1 2 - s=10.0.0.1:80", "spread 2 4 1 2 - x=10.0.0.1",
                     "spread 2 4 1 2 - s=", "spread 2 4 1 2 - s=1.2.3.256", "spread x 4 1 2 -",
                     many):
            r = d.ctl.one(line)
            assert r.startswith("err E"), (line[:60], r)
        assert d.ctl.one("ping") == "ok pong"
    finally:
        d.stop()
        for a, b in pairs:
            a.close()
            b.close()
