"""TLS through the switch without terminating it: the switch reads the ClientHello, routes
on its SNI (tls.sni rules), splices the connection to a real TLS server, and with
tls-session persistence sends a client that resumes a TLS 1.2 session to the server that
holds it. Real servers (Python ssl, tlspeers.py, self-signed certificate made with
``openssl req``) and real clients (curl, Python ssl); bodies are checked byte for byte and
the resumption on the server's side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_util import wait_for

pytestmark = pytest.mark.root

PEERS = Path(__file__).resolve().parent / "tlspeers.py"

RULES = """\
a: if (tls.sni == "a.example") { routeTo(ga); }
b: if (tls.sni == "b.example") { routeTo(gb); }
"""


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    d.chmod(0o755)
    (d / "tls.rules").write_text(RULES)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=a.example", "-addext",
                    "subjectAltName=DNS:a.example,DNS:b.example,DNS:c.example",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    ips = ["10.0.2.1", "10.0.2.2", "10.0.2.3"]
    groups = {"ga": {"scheduler": "rr", "servers": [{"address": ips[0], "port": 443}]},
              "gb": {"scheduler": "rr", "servers": [{"address": ips[1], "port": 443}]},
              "all": {"scheduler": "rr",
                      "servers": [{"address": ip, "port": 443} for ip in ips]}}
    services = [{"name": "tls", "port": 443, "protocol": "tls", "rules": str(d / "tls.rules"),
                 "default_group": "all",
                 "persistence": {"kind": "tls-session", "timeout_s": 300}}]
    lab = make_lab("t", services=services, groups=groups)
    assert [h.ip for h in lab.servers] == ips
    for i, h in enumerate(lab.servers):
        # TLS 1.2 with session ids (no tickets): the session lives in the server's cache
        lab._spawn(f"tls-{lab.server_name(i)}", [
            sys.executable, str(PEERS), "server", "--bind", h.ip, "--port", "443",
            "--name", lab.server_name(i), "--cert", str(d / "cert.pem"),
            "--key", str(d / "key.pem"), "--max-version", "1.2", "--no-tickets"], host=h.name)
    for h in lab.servers:
        lab._wait_listen(h.name, h.ip, 443)
    return lab


def clients(lab, *args: str) -> list[dict]:
    r = lab.client_exec([sys.executable, str(PEERS), "client", "--vip", lab.vip, *args],
                        timeout=120)
    assert r.returncode == 0, f"client {args} failed ({r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def served(lab, name: str) -> list[dict]:
    return [json.loads(ln) for ln in lab.log_of(f"tls-{name}").splitlines() if ln.startswith("{")]


@pytest.mark.parametrize("sni,server", [("a.example", "ace"), ("b.example", "wait")])
def test_sni_routes_to_its_group_byte_exact(lab, sni, server):
    got = clients(lab, "--sni", sni, "--count", "3", "--size", "300000")
    assert [(c["server"], c["sni"], c["exact"]) for c in got] == [(server, sni, True)] * 3
    r = lab.client_exec(["curl", "-sS", "-k", "--max-time", "20", "--resolve",
                         f"{sni}:443:{lab.vip}", "-D", "-", "-o", "/dev/null",
                         f"https://{sni}/1000"])
    assert r.returncode == 0, r.stderr
    assert f"X-Server: {server}" in r.stdout and f"X-SNI: {sni}" in r.stdout


def test_tls12_session_resumption_lands_on_the_same_server(lab):
    # fresh sessions go round robin over the three servers ...
    fresh = clients(lab, "--sni", "c.example", "--count", "3", "--size", "1000",
                    "--max-version", "1.2")
    assert len({c["server"] for c in fresh}) == 3
    # ... a resumed one stays where its session is, and that server resumes it
    got = clients(lab, "--sni", "c.example", "--count", "6", "--size", "200000",
                  "--max-version", "1.2", "--resume")
    first = got[0]["server"]
    assert [c["server"] for c in got] == [first] * 6
    assert all(c["exact"] for c in got)
    assert [c["server_resumed"] for c in got] == [False] + [True] * 5
    assert [c["client_resumed"] for c in got] == [False] + [True] * 5
    log = served(lab, first)
    assert [e["resumed"] for e in log if e.get("sni") == "c.example"][-6:] == [False] + [True] * 5
    # the template the switch learned from the ServerHello names that server
    templates = lab.control({"op": "templates"})["templates"]
    ours = [t for t in templates if t["service"] == "tls" and t["client"].startswith("id:")]
    ip_of = {lab.server_name(i): h.ip for i, h in enumerate(lab.servers)}
    assert f"{ip_of[first]}:443" in {t["server"] for t in ours}, ours


def test_not_tls_on_the_tls_port_is_reset(lab):
    before = lab.status()
    r = lab.client_exec(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
                         "%{http_code}", f"http://{lab.vip}:443/"])
    assert r.returncode != 0 and r.stdout.strip() in ("", "000"), (r.returncode, r.stdout)
    assert "reset" in r.stderr.lower(), r.stderr

    def bad_hellos(st):
        return st["csproc"]["bad_hellos"]
    assert wait_for(lambda: bad_hellos(lab.status()) == bad_hellos(before) + 1, 10)
