"""URL routing, a 50 MB download on the fast path, POST bodies over several segments and
keep-alive, through the content switch with nginx and the lab's echo server behind it."""

from __future__ import annotations

import pytest

from e2e_util import download_checked, fastpath, headers_of, post_checked, run_client, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]
#: also run with the controller's packet I/O on the P4Runtime stream (conftest.py)
P4RUNTIME_PACKET_IO = True

BIG = 50 * 2**20


@pytest.fixture(scope="module")
def lab(make_lab):
    return make_lab("h", big_files={"50M": BIG})


def get(lab, path: str, port: int = 80) -> tuple[str, dict[str, str], str]:
    """(status code, headers, body) of one curl GET through the VIP."""
    r = lab.curl(path, port=port, args=["-D", "/dev/stderr", "-w", "\n%{http_code}"])
    assert r.returncode == 0, f"curl {path}: {r.returncode} {r.stderr}"
    body, _, code = r.stdout.rpartition("\n")
    return code, headers_of(r.stderr), body.strip()


@pytest.mark.root
def test_packet_io_as_configured(lab, variant):
    """[dpdk]: the controller's packets go on the switch's direct packet channel; [bmv2]: on
    the packet port cabled to BMv2's CPU port; [*-p4runtime]: on the P4Runtime stream."""
    want = "p4runtime" if variant.endswith("-p4runtime") else "direct"
    assert wait_for(lambda: lab.status()["packet_io"] == want, 10), lab.status()["packet_io"]
    code, hdrs, _body = get(lab, "/~lcs1/")
    assert (code, hdrs.get("x-server")) == ("200", "ace")
    handed = "packet channel handed to the primary" in lab.log_of("switch")
    assert handed == (variant == "dpdk")
    on_port = f"packet I/O on the packet port {lab.prefix}pk" in lab.log_of("controller")
    assert on_port == (variant == "bmv2")
    assert lab.status()["counters"]["packet_in_malformed"] == 0


@pytest.mark.root
def test_flow_writes_as_configured(lab, variant):
    """[dpdk]: the flow installs go on the switch's channel socket (every install Write, and
    any removal's); [dpdk-p4runtime] (everything over P4Runtime's gRPC), [bmv2] (no channel
    socket): over gRPC, none on a socket."""
    want = "channel" if variant == "dpdk" else "grpc"
    assert wait_for(lambda: lab.status()["writes"] == want, 10), lab.status()["writes"]
    before = lab.status()["counters"]
    for _ in range(3):
        code, hdrs, _body = get(lab, "/~lcs2/")
        assert (code, hdrs.get("x-server")) == ("200", "wait")
    after = lab.status()["counters"]
    installs = after["install_writes"] - before["install_writes"]
    assert installs >= 3
    on_socket = after["channel_writes"] - before["channel_writes"]
    if variant == "dpdk":
        assert on_socket >= installs
    else:
        assert on_socket == 0
    assert after["install_errors"] == before["install_errors"]


@pytest.mark.root
def test_url_routing(lab):
    """/~lcs1/ → ace, /~lcs2/ → wait (every time), anything else balanced over all three,
    port 8080 to the echo group: the answers come from the server the rules name."""
    for _ in range(3):
        for path, server in (("/~lcs1/", "ace"), ("/~lcs2/", "wait")):
            code, hdrs, body = get(lab, path)
            assert (code, hdrs.get("x-server"), body) == ("200", server, f"{server}: {path}")
    seen = []
    for _ in range(6):
        code, hdrs, body = get(lab, "/")
        assert code == "200" and body == f"{hdrs.get('x-server')}: /"
        seen.append(hdrs["x-server"])
    assert sorted(set(seen)) == ["ace", "wait", "www"], seen
    code, hdrs, body = get(lab, "/route/check", port=8080)
    assert code == "200" and body == f"{hdrs['x-server']}: /route/check"
    st = lab.status()["csproc"]
    assert st["spliced"] >= 13 and st["bad_frames"] == 0


@pytest.mark.root
def test_big_download_on_fast_path(lab, record_property):
    """50 MB byte-exact; the controller sees only the first packets of the connection (and
    the FIN copies at the end)."""
    before = fastpath(lab)
    dt = download_checked(lab, "/big/50M", BIG)
    after = fastpath(lab)
    pkt_in = after["controller_packet_in"] - before["controller_packet_in"]
    fast_pkts = after["packets"] - before["packets"]
    fast_bytes = after["bytes"] - before["bytes"]
    mbit = BIG * 8 / dt / 1e6
    print(f"\n[e2e] 50 MB download: {dt:.2f} s, {mbit:.0f} Mbit/s; controller packet-in {pkt_in}, "
          f"fast path {fast_pkts} packets / {fast_bytes} bytes")
    record_property("download_mbit_s", round(mbit, 1))
    record_property("download_packet_in", pkt_in)
    assert pkt_in < 50, f"the controller saw {pkt_in} packets of a 50 MB transfer"
    assert fast_pkts > 30000, fast_pkts
    assert fast_bytes > BIG, fast_bytes
    # Closed: the FIN copies make the controller remove the flows after the TIME_WAIT-like
    # delay; their counts move from the live flows to the totals, none lost or doubled.
    assert wait_for(lambda: lab.status()["flows"] == 0, timeout=15), lab.status()
    final = fastpath(lab)
    assert 0 <= final["packets"] - after["packets"] <= 50, (after, final)
    assert final["controller_packet_in"] - after["controller_packet_in"] <= 10, (after, final)


@pytest.mark.root
def test_post_header_split_inside_content_length(lab):
    """Request line + ``Content-length: 7`` | ``53`` + blank line | body in 3 pieces, each
    a separate segment 50 ms apart (slide 71): the echo server gets all 753 bytes."""
    before = fastpath(lab)["controller_packet_in"]
    out = run_client(lab, "post", "--body", "753", "--body-segments", "3", "--gap", "0.05")
    assert out["status"] == 200, out
    assert out["text"].split(": ", 1)[1].strip() == out["expected"], out
    assert out["sent_pieces"] == 5
    # SYN, handshake ACK and at least the two header pieces reached the controller.
    assert fastpath(lab)["controller_packet_in"] - before >= 4


@pytest.mark.root
def test_post_body_over_many_segments(lab):
    """200 kB in 20 sends 20 ms apart: the first pieces race the server connection (buffered
    and relayed by the switch), the rest follows the splice."""
    out = run_client(lab, "post", "--body", "200000", "--body-segments", "20", "--gap", "0.02")
    assert out["status"] == 200, out
    assert out["text"].split(": ", 1)[1].strip() == out["expected"], out


@pytest.mark.root
def test_post_with_curl(lab, tmp_path):
    """curl --data-binary of 1 MiB + 1 (curl adds ``Expect: 100-continue``)."""
    body = bytes((i * 131 + 5) & 0xFF for i in range(2**20 + 1))
    assert post_checked(lab, body, tmp_path) in ("ace", "wait", "www")


@pytest.mark.root
def test_keepalive_sticky_curl(lab):
    """curl with several URLs on one connection: all answered, one TCP connection, every
    request by the server the *first* request was routed to (STICKY), even /~lcs2/."""
    paths = ["/~lcs1/", "/~lcs2/", "/", "/big/", "/~lcs1/"]
    urls = [f"http://{lab.vip}{p}" for p in paths]
    r = lab.client_exec(["curl", "-sS", "--max-time", "30", "-D", "/dev/stderr",
                         "-w", "|%{http_code} %{num_connects}\n", *urls], timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln]
    codes = [ln[1:] for ln in lines if ln.startswith("|")]
    assert codes == ["200 1"] + ["200 0"] * (len(paths) - 1), r.stdout
    servers = [ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
               if ln.lower().startswith("x-server:")]
    assert servers == ["ace"] * len(paths), servers
    bodies = [ln for ln in lines if not ln.startswith("|")]
    assert bodies == [f"ace: {p}" for p in paths], bodies


@pytest.mark.root
def test_keepalive_socket_echo(lab):
    """GET /bytes/N of several sizes and a POST in between on one connection to the echo
    service: every body byte-exact, every answer from the same server."""
    out = run_client(lab, "keepalive", "--port", "8080", "--sizes", "100,20000,1,300000,7")
    res = out["results"]
    assert len(res) == 7 and all(r["ok"] for r in res), res
    assert len({r["server"] for r in res}) == 1, res


@pytest.mark.root
def test_window_scale_learned_from_the_servers(lab):
    """limits.window_scale is "auto" (the lab sets none): the controller learns the scale
    the lab's Linux servers announce (the kernel's, from tcp_rmem) and offers it to clients,
    and no spliced connection is mis-scaled."""
    space = max(int(open("/proc/sys/net/ipv4/tcp_rmem").read().split()[2]),
                int(open("/proc/sys/net/core/rmem_max").read()))
    want = 0
    while space > 65535 and want < 14:      # the kernel's tcp_select_initial_window()
        space >>= 1
        want += 1
    learned = wait_for(lambda: all(s["wscale"] == want for members in lab.status()["groups"].values()
                                   for s in members), timeout=30)
    assert learned, lab.status()["groups"]
    code, _, _ = get(lab, "/")
    assert code == "200"
    st = lab.status()
    assert {s["name"]: s["window_scale"] for s in st["services"]} == {"web": want, "echo": want}
    assert st["csproc"]["wscale_mismatch"] == 0
