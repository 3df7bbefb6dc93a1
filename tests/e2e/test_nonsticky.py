"""NONSTICKY keep-alive connections through the switch, nginx behind it: one client
connection carries requests that the rules send to three different servers, each answered
byte-exact by its server; a 4 MB body rides the fast path (docs/csproc.md section 17). A
server that answers with something other than HTTP gets its connection reset, and another
client connection goes on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from p4cs.lab.server import file_sha256

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

SIZE = 4 * 2**20
RULES = """\
one:  if (prefix(url, "/~lcs1/")) { routeTo(ace, NONSTICKY); }
two:  if (prefix(url, "/~lcs2/")) { routeTo(wait, NONSTICKY); }
big:  if (prefix(url, "/big/")) { routeTo(www, NONSTICKY); }
junk: if (prefix(url, "/junk/")) { routeTo(junk, NONSTICKY); }
"""
JUNK_PORT = 8082        # the server that does not speak HTTP, in ace's namespace

#: Answers every request with a line that is not HTTP, keeping its connection open.
JUNK = r"""
import socket, sys, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
def serve(c):
    try:
        while c.recv(65536):
            c.sendall(b"SSH-2.0-OpenSSH_9.6 not http\r\n")
    except OSError:
        pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

#: Two keep-alive connections: B's request to the junk server fails, A goes on.
TWO = r"""
import http.client, json, sys
vip = sys.argv[1]
a = http.client.HTTPConnection(vip, 80, timeout=20)
b = http.client.HTTPConnection(vip, 80, timeout=20)
out = {}
def get(conn, path):
    conn.request("GET", path)
    r = conn.getresponse()
    return [r.status, r.getheader("X-Server"), r.read().decode()]
out["a1"] = get(a, "/~lcs1/")
out["b1"] = get(b, "/~lcs2/")
try:
    out["b2"] = get(b, "/junk/")
except Exception as e:
    out["b2_error"] = type(e).__name__
out["a2"] = get(a, "/~lcs2/")
print(json.dumps(out))
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
    from p4cs.lab.netns import content_switch_topology

    d = tmp_path_factory.mktemp("ns")
    (d / "ns.rules").write_text(RULES)
    ips = [h.ip for h in content_switch_topology("e2eaddr").servers()]
    groups = {name: {"scheduler": "rr", "servers": [{"address": ip, "port": 80}]}
              for name, ip in zip(("ace", "wait", "www"), ips)}
    groups["junk"] = {"scheduler": "rr", "servers": [{"address": ips[0], "port": JUNK_PORT}]}
    services = [{"name": "web", "port": 80, "rules": str(d / "ns.rules")}]
    lab = make_lab("n", big_files={"4M": SIZE}, services=services, groups=groups)
    host = lab.servers[0]
    lab.topo.popen(host.name, [sys.executable, "-c", JUNK, host.ip, str(JUNK_PORT)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab._wait_listen(host.name, host.ip, JUNK_PORT)
    return lab


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


def test_a_server_that_does_not_speak_http_resets_only_its_connection(lab):
    before = lab.status()["csproc"]
    r = lab.client_exec([sys.executable, "-c", TWO, lab.vip], timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["a1"] == [200, "ace", "ace: /~lcs1/\n"], out
    assert out["b1"] == [200, "wait", "wait: /~lcs2/\n"], out
    assert "b2" not in out and out["b2_error"] in ("ConnectionResetError", "RemoteDisconnected",
                                                     "BadStatusLine"), out
    assert out["a2"] == [200, "wait", "wait: /~lcs2/\n"], out
    st = lab.status()["csproc"]
    assert st["bad_responses"] - before["bad_responses"] == 1, st
