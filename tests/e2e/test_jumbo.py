"""Jumbo frames (MTU 9000 on every veth): the switch announces the MSS of its ports (8960), the
client's MSS reaches the server through the SYN cookie, and a large download runs on the fast
path in jumbo segments, byte-exact."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from e2e_util import download_on_fastpath

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

MTU = 9000
BIG = 20 * 2**20


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("j", mtu=MTU, big_files={"20M": BIG})


@pytest.mark.root
def test_switch_announces_the_port_mss(lab):
    """The controller's MSS follows the ports' MTU (limits.mss: auto): the SYN-ACK the client
    gets announces 8960 (read off the client's interface)."""
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump not on PATH")
    cap = lab.topo.popen(lab.clients[0].name,
                         ["tcpdump", "-i", "eth0", "-nn", "-v", "-l", "-c", "1",
                          "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = cap.stderr.readline()        # tcpdump says so once it captures
        assert "listening on" in line, line + cap.stderr.read()
        assert lab.curl("/").returncode == 0
        out, _ = cap.communicate(timeout=10)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert re.search(rf"\bmss {MTU - 40}\b", out), out


@pytest.mark.root
def test_big_download_in_jumbo_segments(lab, record_property):
    """20 MB byte-exact through the switch; the spliced flow's frames average more than
    3000 bytes (jumbo data segments and their ACKs: at MTU 1500 the average stays near 1000)."""
    dt, pkts, nbytes = download_on_fastpath(lab, "/big/20M", BIG)
    print(f"\n[e2e] 20 MB download at MTU {MTU}: {dt:.2f} s, {BIG * 8 / dt / 1e6:.0f} Mbit/s; "
          f"fast path {pkts} packets / {nbytes} bytes ({nbytes / max(pkts, 1):.0f} per packet)")
    record_property("download_mbit_s", round(BIG * 8 / dt / 1e6, 1))
    assert nbytes > BIG, nbytes
    assert nbytes / pkts > 3000, (pkts, nbytes)
    assert lab.status()["csproc"]["bad_frames"] == 0
