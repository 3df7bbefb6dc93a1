"""NONSTICKY keep-alive connections through the switch, nginx behind it: one client
connection carries requests that the rules send to three different servers, each answered
byte-exact by its server; a 4 MB body rides the fast path (docs/csproc.md section 17)."""

from __future__ import annotations

import json
import sys

import pytest

from p4cs.lab.server import file_sha256

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

SIZE = 4 * 2**20
RULES = """\
one:  if (prefix(url, "/~lcs1/")) { routeTo(ace, NONSTICKY); }
two:  if (prefix(url, "/~lcs2/")) { routeTo(wait, NONSTICKY); }
big:  if (prefix(url, "/big/")) { routeTo(www, NONSTICKY); }
"""

#: A keep-alive client (http.client, one connection): for each path its status, X-Server,
#: body length and sha256, and the connection's local port (one connection for all).
CLIENT = r"""
import hashlib, http.client, json, sys
vip, paths = sys.argv[1], sys.argv[2:]
conn = http.client.HTTPConnection(vip, 80, timeout=60)
out = []
for p in paths:
    conn.request("GET", p)
    r = conn.getresponse()
    body = r.read()
    out.append({"path": p, "status": r.status, "server": r.getheader("X-Server"),
                "len": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                "port": conn.sock.getsockname()[1]})
conn.close()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("ns")
    (d / "ns.rules").write_text(RULES)
    services = [{"name": "web", "port": 80, "rules": str(d / "ns.rules")}]
    return make_lab("n", big_files={"4M": SIZE}, services=services)


def keepalive(lab, *paths: str) -> list[dict]:
    r = lab.client_exec([sys.executable, "-c", CLIENT, lab.vip, *paths], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_three_requests_on_one_connection_reach_three_servers(lab):
    before = lab.status()["csproc"]
    out = keepalive(lab, "/~lcs1/", "/~lcs2/", "/big/4M", "/~lcs1/")
    assert len({x["port"] for x in out}) == 1, out          # one client connection
    assert [x["status"] for x in out] == [200] * 4, out
    assert [x["server"] for x in out] == ["ace", "wait", "www", "ace"], out
    assert out[0]["len"] == len("ace: /~lcs1/\n") and out[1]["len"] == len("wait: /~lcs2/\n")
    assert out[2]["len"] == SIZE and out[2]["sha256"] == file_sha256(SIZE)
    st = lab.status()["csproc"]
    assert st["rebinds"] - before["rebinds"] == 3, st
    assert st["nonsticky_requests"] - before["nonsticky_requests"] == 3, st
    assert st["bad_responses"] == before["bad_responses"], st


def test_big_body_rides_the_fast_path(lab):
    """The 4 MB body's ~2,900 segments do not reach the controller; the client's ACKs do
    (no client -> server entry on a NONSTICKY connection)."""
    fp0 = lab.control({"op": "fastpath"})["fastpath"]["controller_packet_in"]
    out = keepalive(lab, "/~lcs2/", "/big/4M")
    assert out[1]["sha256"] == file_sha256(SIZE), out
    punted = lab.control({"op": "fastpath"})["fastpath"]["controller_packet_in"] - fp0
    assert punted < SIZE // 1448, punted


def test_curl_reuses_its_connection_across_servers(lab):
    r = lab.client_exec(["curl", "-sS", "--max-time", "30", "-w", "%{num_connects} %{http_code}\\n",
                         "-D", "-"] + [a for p in ("/~lcs1/", "/~lcs2/", "/big/")
                                       for a in ("-o", "/dev/null", f"http://{lab.vip}{p}")])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    servers = [ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("x-server:")]
    codes = [ln.split() for ln in lines if ln.strip() and ln.split()[0].isdigit() and len(ln.split()) == 2]
    assert servers == ["ace", "wait", "www"], r.stdout
    assert codes == [["1", "200"], ["0", "200"], ["0", "200"]], r.stdout
