"""Veth offloads on (checksum, TSO/GSO, GRO) with the DPDK target on AF_PACKET ports: the
servers' and the client's TCP stacks hand the switch 64 KB super-frames with partial checksums,
which cross the splice whole (P4CS_SWXD_GSO=pass, the daemon's default) and leave with a
virtio-net header for the receiving stack. 50 MB each way through the content switch,
byte-exact, the fast path counting a super-frame as one packet."""

from __future__ import annotations

import pytest

from e2e_util import download_on_fastpath, fastpath, post_checked

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

BIG = 50 * 2**20


@pytest.fixture(scope="module")
def lab(make_lab, target):
    if target != "dpdk":
        pytest.skip("AF_PACKET offloads of the embedded DPDK target")
    lab = make_lab("o", port_type="afpacket", big_files={"50M": BIG})
    lab.topo.set_offloads(True)
    return lab


@pytest.mark.root
def test_download_with_offloads_on(lab):
    """50 MB download (server -> client): byte-exact; the fast path's frames average more
    than a wire frame could hold, so super-frames crossed it whole."""
    dt, pkts, nbytes = download_on_fastpath(lab, "/big/50M", BIG)
    print(f"\n[e2e] 50 MB download, offloads on: {dt:.2f} s, {BIG * 8 / dt / 1e6:.0f} Mbit/s; "
          f"fast path {pkts} packets / {nbytes} bytes ({nbytes / max(pkts, 1):.0f} per packet)")
    assert nbytes > BIG, nbytes
    assert nbytes / pkts > 1514, (pkts, nbytes)
    assert lab.status()["csproc"]["bad_frames"] == 0


@pytest.mark.root
def test_upload_with_offloads_on(lab, tmp_path):
    """50 MB POST body (client -> server) to the echo service: the server's length and
    sha256 of what it received match; super-frames crossed the fast path whole this way too."""
    body = b"".join(i.to_bytes(8, "big") * 8192 for i in range(BIG // 65536))
    before = fastpath(lab)
    post_checked(lab, body, tmp_path, timeout=120)
    after = fastpath(lab)
    nbytes = after["bytes"] - before["bytes"]
    assert nbytes > BIG and nbytes / (after["packets"] - before["packets"]) > 1514, (before, after)
    assert lab.status()["csproc"]["bad_frames"] == 0
