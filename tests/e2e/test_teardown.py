"""Teardown of many connections closed together: the flow entries leave the switch, what the
flows carried reaches the fast-path totals, and the controller sends no RPC per connection:
none at all on the DPDK target (the FIN/RST hits end the entries in the pipeline, the expiry
notifications carry the counts), batches of deletions on BMv2."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from e2e_util import run_client, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]

N = 40


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("t")


def test_closed_connections_leave_without_rpcs_per_connection(lab, target):
    st0 = lab.status()
    c0, cs0 = st0["counters"], st0["csproc"]
    # N connections open at once, one request each (echo service: the server closes)
    out = run_client(lab, "concurrent", "--n", str(N), "--hold", timeout=120)
    assert out["ok"] == N, out["bad"]

    # ("flows" drops when a removal is asked, flows_removed when its Delete is done; the
    # counts reach the totals with the harvest that follows within half a second)
    def gone():
        st = lab.status()
        c = st["counters"]
        return st["flows"] == st0["flows"] and st["csproc"]["teardowns"] - cs0["teardowns"] >= N \
            and c["flows_removed"] - c0["flows_removed"] >= 2 * N \
            and c["fastpath_packets"] - c0["fastpath_packets"] >= 3 * N and st
    # (the response and the client's ACKs and FIN crossed the fast path: >= 3 packets each)
    st = wait_for(gone, timeout=30)
    assert st, lab.status()
    c1 = st["counters"]
    assert c1["flows_removed"] - c0["flows_removed"] == 2 * N
    assert c1["idle_timeouts"] == c0["idle_timeouts"]
    rpcs = c1["teardown_rpcs"] - c0["teardown_rpcs"]
    if target == "dpdk":
        assert rpcs == 0, c1
    else:
        # one Delete per 50 ms of closes, one counter Read and reset per 0.5 s: not per connection
        assert 0 < rpcs < N, c1
    # nothing installed any more: once the last harvest is in (flow ids removed in one 0.5 s
    # window are read together, possibly after a first window already counted above), the
    # fast-path totals are the finished flows' counts alone
    def harvested():
        fp = lab.control({"op": "fastpath"})["fastpath"]
        c = lab.status()["counters"]
        return (fp["packets"], fp["bytes"]) == (c["fastpath_packets"], c["fastpath_bytes"]) \
            and (fp, c)
    done = wait_for(harvested, timeout=5)
    fp, c = done or (lab.control({"op": "fastpath"})["fastpath"], lab.status()["counters"])
    assert (fp["packets"], fp["bytes"]) == (c["fastpath_packets"], c["fastpath_bytes"])


#: One GET from a fixed local port, read to the end: the server closes first (the client
#: keeps no TIME_WAIT and may reuse the port at once). Prints the seconds it took.
FIXED_PORT_GET = r"""
import socket, sys, time
vip, port = sys.argv[1], int(sys.argv[2])
t0 = time.monotonic()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("", port))
s.settimeout(20)
s.connect((vip, 80))
s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
s.close()
assert data.startswith(b"HTTP/1.1 200"), data[:100]
print(time.monotonic() - t0)
"""


def test_port_reused_right_after_the_server_closed(lab, target):
    """With ``Connection: close`` the server closes first, so the client keeps no TIME_WAIT
    and may reuse its port at once: the new connection is bound without waiting for the
    closed one's entries to go (no SYN retransmission, which takes 1 s), both while they are
    still in the data plane and once they have expired (the tombstone is still there then).
    Every flow id and entry comes back afterwards."""
    st0 = lab.status()
    cs0 = st0["csproc"]
    for pause in (0.0, 0.0, 4.5):
        time.sleep(pause)
        r = lab.client_exec([sys.executable, "-c", FIXED_PORT_GET, lab.vip, "47321"])
        assert r.returncode == 0, r.stderr
        dt = float(r.stdout)
        assert dt < 0.9, f"{dt:.2f} s: the SYN on the reused port was not answered at once"
    cs = lab.status()["csproc"]
    assert cs["reincarnations"] - cs0["reincarnations"] >= 2, cs
    assert cs["install_failures"] == cs0["install_failures"], cs
    st = wait_for(lambda: (s := lab.status())["flows"] == st0["flows"] and s, timeout=30)
    assert st, lab.status()
    rpcs = st["counters"]["teardown_rpcs"] - st0["counters"]["teardown_rpcs"]
    print(f"[e2e] teardown RPCs for {cs['reincarnations'] - cs0['reincarnations']} "
          f"reincarnation(s): {rpcs}")
    if target == "dpdk":
        # The second GET's SYN met the first one's entries: the data plane ended both
        # (dataplane/src/reuse.c; their counts came with the expiry notification) and answered
        # the SYN with its cookie, as it did the others: no SYN reached the controller, and no
        # Delete or counter Read is needed (before: 1-4 RPCs). A Read of the old flow ids if
        # the new connection's install came before that notification.
        assert cs["syn_received"] == cs0["syn_received"], cs
        assert rpcs <= 1, st["counters"]
    else:
        # BMv2: the SYN goes to the controller, which deletes the entries first
        assert cs["syn_received"] > cs0["syn_received"], cs


#: One GET read to the server's FIN; the client's own FIN leaves only when the script ends.
HALF_CLOSED_GET = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=20)
s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: close\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
assert data.startswith(b"HTTP/1.1 200"), data[:100]
time.sleep(float(sys.argv[2]))
s.close()
"""


def test_half_closed_idle_connection_ends_without_its_other_fin(make_lab):
    """The server closes, the client keeps its side open and sends nothing: as if the
    client's FIN copy had been lost. With ``limits.half_closed_idle_s`` 0.5 the controller
    reads the entries' counters twice, finds nothing moved and ends the connection (before
    the 3 s expiry of the entry the server's FIN hit on DPDK), its entries removed."""
    lab = make_lab("h", limits={"half_closed_idle_s": 0.5})
    st0 = lab.status()
    done: dict = {}
    t = threading.Thread(target=lambda: done.update(r=lab.client_exec(
        [sys.executable, "-c", HALF_CLOSED_GET, lab.vip, "8"], timeout=30)))
    t.start()
    try:
        st = wait_for(lambda: (s := lab.status())["csproc"]["half_closed_idle"]
                      > st0["csproc"]["half_closed_idle"] and s, timeout=6)
        assert st, lab.status()["csproc"]
        assert st["csproc"]["teardowns"] - st0["csproc"]["teardowns"] == 1
        assert st["csproc"]["flows_expired"] == st0["csproc"]["flows_expired"]
        st = wait_for(lambda: (s := lab.status())["flows"] == st0["flows"] and s, timeout=10)
        assert st, lab.status()
        assert not done, "the client closed first"
    finally:
        t.join()
    assert done["r"].returncode == 0, done["r"].stderr
