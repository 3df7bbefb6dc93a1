"""Veth offloads on (checksum, TSO/GSO, GRO) with the DPDK target on AF_PACKET ports: the
servers' and the client's TCP stacks hand the switch 64 KB super-frames with partial checksums,
which cross the splice whole (P4CS_SWXD_GSO=pass, the daemon's default) and leave with a
virtio-net header for the receiving stack. 50 MB each way through the content switch,
byte-exact, the fast path counting a super-frame as one packet."""

from __future__ import annotations

import hashlib

import pytest

from e2e_util import download_checked, fastpath

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
    before = fastpath(lab)
    dt = download_checked(lab, "/big/50M", BIG)
    after = fastpath(lab)
    pkts = after["packets"] - before["packets"]
    nbytes = after["bytes"] - before["bytes"]
    print(f"\n[e2e] 50 MB download, offloads on: {dt:.2f} s, {BIG * 8 / dt / 1e6:.0f} Mbit/s; "
          f"fast path {pkts} packets / {nbytes} bytes ({nbytes / max(pkts, 1):.0f} per packet)")
    assert nbytes > BIG, nbytes
    assert nbytes / pkts > 1514, (pkts, nbytes)
    assert lab.status()["csproc"]["bad_frames"] == 0


@pytest.mark.root
def test_upload_with_offloads_on(lab, tmp_path):
    """50 MB POST body (client -> server) to the echo service: the server's length and
    sha256 of what it received match."""
    body = b"".join(i.to_bytes(8, "big") * 8192 for i in range(BIG // 65536))
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    f.chmod(0o644)
    tmp_path.chmod(0o755)
    r = lab.curl("/upload", port=8080, args=["--data-binary", f"@{f}", "-H",
                                             "Content-Type: application/octet-stream"],
                 timeout=120)
    assert r.returncode == 0, r.stderr
    name, _, rest = r.stdout.strip().partition(": ")
    assert rest == f"{len(body)} {hashlib.sha256(body).hexdigest()}", r.stdout
    assert lab.status()["csproc"]["bad_frames"] == 0
