"""SYN cookies answered by the data plane: connections through the VIP succeed while the
CS processor never sees a SYN (its SYN counters stay 0) and validates every cookie the switch
issued; a burst of spoofed SYNs is answered by the switch and reaches nobody else."""

from __future__ import annotations

import sys

import pytest

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

#: 1000 SYNs to the VIP from random ports and ISNs, through a raw socket of the client; the
#: ports stay below the ephemeral range of the tests' curl connections: a SYN on the 5-tuple
#: of a connection whose entries are still there goes to the controller (csproc.md §9)
FLOOD = r"""
import random, socket, struct, sys
vip, src = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
def csum(b):
    if len(b) % 2: b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while t >> 16: t = (t & 0xFFFF) + (t >> 16)
    return ~t & 0xFFFF
rnd = random.Random(1)
for _ in range(1000):
    sport, isn = rnd.randrange(2000, 30000), rnd.randrange(1 << 32)  # below the ephemeral ports
    hdr = struct.pack("!HHIIBBHHH", sport, 80, isn, 0, 6 << 4, 0x02, 64240, 0, 0) + bytes((2, 4, 5, 180))
    ph = socket.inet_aton(src) + socket.inet_aton(vip) + struct.pack("!BBH", 0, 6, len(hdr))
    hdr = hdr[:16] + struct.pack("!H", csum(ph + hdr)) + hdr[18:]
    s.sendto(hdr, (vip, 0))
"""


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("s")


def test_connections_without_syns_at_the_controller(lab):
    for _ in range(20):
        r = lab.curl("/")
        assert r.returncode == 0 and r.stdout, r.stderr
    st = lab.status()["csproc"]
    assert st["syn_received"] == 0 and st["syncookies_sent"] == 0, st
    assert st["syncookies_invalid"] == 0 and st["spliced"] >= 20, st


def test_syn_burst_stays_in_the_data_plane(lab):
    client = lab.clients[0]
    r = lab.client_exec([sys.executable, "-c", FLOOD, lab.vip, client.ip])
    assert r.returncode == 0, r.stderr
    for _ in range(5):
        r = lab.curl("/")
        assert r.returncode == 0 and r.stdout, r.stderr
    st = lab.status()["csproc"]
    assert st["syn_received"] == 0 and st["syncookies_sent"] == 0, st
