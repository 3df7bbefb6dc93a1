"""Failures: servers that refuse the connection, a server that resets a spliced connection,
a client that aborts a download mid-way (its flow entries must go)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from e2e_util import CLIENTS, run_client, wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]
#: also run with the controller's packet I/O on the P4Runtime stream (conftest.py)
P4RUNTIME_PACKET_IO = True

BIG = 50 * 2**20
TEARDOWN = 2.0          # limits.teardown_delay_s: flows are removed this long after the close
RST_PORT = 8083         # the resetting server, in ace's namespace


class FlowsNotRemoved(AssertionError):
    """The flow entries of an aborted connection are still installed."""


@pytest.fixture(scope="module")
def lab(make_lab):
    from p4cs.lab.netns import content_switch_topology

    # The groups name servers by address: the topology's addresses (nothing is created here).
    ips = [h.ip for h in content_switch_topology("e2eaddr").servers()]
    groups = {
        "all": {"scheduler": "rr", "servers": [{"address": ip, "port": 80} for ip in ips]},
        # nothing listens on port 9: the server's kernel answers every SYN with an RST
        "dead": {"scheduler": "rr", "servers": [{"address": ip, "port": 9} for ip in ips[:2]]},
        "half": {"scheduler": "rr", "servers": [{"address": ips[0], "port": 9},
                                                {"address": ips[1], "port": 80}]},
        "resetter": {"scheduler": "rr", "servers": [{"address": ips[0], "port": RST_PORT}]},
    }
    services = [
        {"name": "web", "port": 80, "default_group": "all"},
        {"name": "dead", "port": 81, "default_group": "dead"},
        {"name": "half", "port": 82, "default_group": "half"},
        {"name": "resetter", "port": 83, "default_group": "resetter"},
    ]
    lab = make_lab("f", big_files={"50M": BIG}, groups=groups, services=services,
                   limits={"teardown_delay_s": TEARDOWN})
    assert [h.ip for h in lab.servers] == ips
    host = lab.servers[0]
    lab.topo.popen(host.name, [sys.executable, str(CLIENTS), "rstserver", "--vip", host.ip,
                               "--port", str(RST_PORT)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab._wait_listen(host.name, host.ip, RST_PORT)
    return lab


def csproc(lab) -> dict:
    return lab.status()["csproc"]


def curl_code(lab, port: int, path: str = "/") -> tuple[str, str, str]:
    r = lab.curl(path, port=port, args=["-D", "/dev/stderr", "-w", "\n%{http_code}"], timeout=30)
    assert r.returncode == 0, f"curl: {r.returncode} {r.stderr}"
    body, _, code = r.stdout.rpartition("\n")
    server = next((ln.split(":", 1)[1].strip() for ln in r.stderr.splitlines()
                   if ln.lower().startswith("x-server:")), "")
    return code, server, body


@pytest.mark.root
def test_client_abort_removes_flows(lab):
    """A client killed in the middle of a 50 MB download: its socket is closed with unread
    data, so its kernel resets the connection; the RST crosses the fast path to the server
    and its copy reaches the controller, which removes both flow entries after the
    TIME_WAIT-like delay. The server's connection is gone as well."""
    st0 = lab.status()
    flows0, removed0 = st0["flows"], st0["counters"]["flows_removed"]
    p = lab.topo.popen(lab.clients[0].name,
                       ["curl", "-sS", "--limit-rate", "4M", "-o", "/dev/null",
                        f"http://{lab.vip}/big/50M"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Spliced, and the transfer is under way on the fast path.
        def midway():
            fp = lab.control({"op": "fastpath"})["fastpath"]
            return lab.status()["flows"] == flows0 + 2 and fp["bytes"] > 2 * 2**20
        assert wait_for(midway, timeout=30), (lab.status(), lab.control({"op": "fastpath"}))
        assert p.poll() is None, "the download ended before the abort"
    finally:
        p.kill()        # SIGKILL: no orderly close by curl
        p.wait()
    t0 = time.monotonic()

    def removed():
        st = lab.status()
        return st["flows"] == flows0 and st["counters"]["flows_removed"] >= removed0 + 2
    gone = wait_for(removed, timeout=TEARDOWN + 8)
    dt = time.monotonic() - t0
    # The RST went through to nginx whatever the controller did.
    srv = lab.servers
    estab = [lab.topo.exec(h.name, ["ss", "-Htn", "state", "established", "sport", "= :80"],
                           check=False).stdout.strip() for h in srv]
    assert not any(estab), estab
    if not gone:
        st = lab.status()
        raise FlowsNotRemoved(
            f"{st['flows'] - flows0} flow entries of the aborted connection still installed "
            f"{dt:.1f} s after the abort (teardowns={st['csproc']['teardowns']}, "
            f"packet_in={st['counters']['packet_in']}, flows_removed={st['counters']['flows_removed']})")
    print(f"\n[e2e] flows of the aborted connection removed {dt:.1f} s after the abort")

    def web_conns():
        return [c for c in lab.control({"op": "connections"})["connections"] if c["service"] == "web"]
    # the tombstone outlives the removal by tombstone_margin (3 s)
    assert wait_for(lambda: not web_conns(), timeout=8), web_conns()
    # A new connection works afterwards. It reuses the flow ids (counter indexes) of the
    # aborted one: its fast-path counts must start from zero, not from the old download's.
    fp0 = lab.control({"op": "fastpath"})["fastpath"]
    assert curl_code(lab, 80, "/")[0] == "200"
    fp1 = lab.control({"op": "fastpath"})["fastpath"]
    assert fp1["packets"] - fp0["packets"] < 100, (fp0, fp1)


@pytest.mark.root
def test_all_servers_refuse_503(lab):
    """Every server of the group answers the switch's SYN with an RST. The switch has sent
    the client nothing yet (delayed binding), so, as docs/csproc.md §8 says, the client gets
    a clean ``503`` after the redispatch, not a reset."""
    before = csproc(lab)
    code, server, body = curl_code(lab, 81)
    assert code == "503", (code, body)
    assert server == ""
    after = csproc(lab)
    assert after["server_refused"] - before["server_refused"] == 2      # first try + 1 redispatch
    assert after["redispatched"] - before["redispatched"] == 1
    assert after["no_server"] - before["no_server"] == 1


@pytest.mark.root
def test_refusing_server_redispatched(lab):
    """Group of a refusing server (port 9) and a live one, round robin: every request is
    answered by the live server; the refusals are redispatched. (Each connection takes two
    round-robin picks, so every one tries the refusing server first: there is no passive
    health check that takes a refusing server out.)"""
    before = csproc(lab)
    for _ in range(4):
        code, server, body = curl_code(lab, 82, "/")
        assert (code, server) == ("200", "wait"), (code, server, body)
    after = csproc(lab)
    assert after["redispatched"] - before["redispatched"] == 4
    assert after["server_refused"] - before["server_refused"] == 4
    assert after["no_server"] == before["no_server"]


@pytest.mark.root
def test_server_reset_reaches_client(lab):
    """A server that resets the connection after the splice: the client gets the RST
    (ECONNRESET), through the data plane."""
    before = csproc(lab)
    out = run_client(lab, "reset", "--port", "83", "--path", "/reset-me", "--timeout", "20")
    assert out["outcome"] == "reset", out
    assert out["received"] == "", out
    after = csproc(lab)
    assert after["spliced"] - before["spliced"] == 1
