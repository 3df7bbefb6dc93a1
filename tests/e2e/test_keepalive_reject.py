"""Keep-alive and `reject`: `GET /` then `GET /secret` on one connection, where a rule rejects
`/secret`. The second request must never reach the server (before: it was served, riding the
fast path of the first request's connection)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from e2e_util import CLIENTS, run_client

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

PORT = 8081             # the logging server, in ace's namespace
RULES = """\
deny: if (prefix(url, "/secret")) { reject; }
all:  routeTo(log);
"""


@pytest.fixture(scope="module")
def lab(make_lab, tmp_path_factory):
    from p4cs.lab.netns import content_switch_topology

    d = tmp_path_factory.mktemp("ka")
    (d / "deny.rules").write_text(RULES)
    ips = [h.ip for h in content_switch_topology("e2eaddr").servers()]
    groups = {"log": {"scheduler": "rr", "servers": [{"address": ips[0], "port": PORT}]},
              "echo": {"scheduler": "rr", "servers": [{"address": ip, "port": 8080} for ip in ips]}}
    services = [{"name": "guarded", "port": 80, "rules": str(d / "deny.rules")},
                {"name": "echo", "port": 8080, "default_group": "echo"}]
    lab = make_lab("k", groups=groups, services=services)
    host = lab.servers[0]
    lab.seen = lab.workdir / "seen.log"
    lab.topo.popen(host.name, [sys.executable, str(CLIENTS), "logserver", "--vip", host.ip,
                               "--port", str(PORT), "--log", str(lab.seen)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lab._wait_listen(host.name, host.ip, PORT)
    return lab


def seen(lab) -> list[str]:
    return lab.seen.read_text().split() if lab.seen.exists() else []


@pytest.mark.parametrize("pipeline", [False, True], ids=["sequential", "pipelined"])
def test_second_request_on_a_keepalive_connection_never_reaches_the_server(lab, pipeline):
    before = len(seen(lab))
    args = ["--port", "80", "--path", "/", "--then", "/secret"] + (["--pipeline"] if pipeline else [])
    out = run_client(lab, "twice", *args)
    first = out["answers"][0]
    assert first["status"] == 200 and first["text"] == "seen /\n", out
    # The server closed after the first answer: the second got no answer (EOF or reset).
    assert len(out["answers"]) == 1 and "end" in out, out
    time.sleep(0.5)
    assert seen(lab)[before:] == ["/"], seen(lab)
    # On a new connection the rules see /secret: 403, and still nothing reaches the server.
    out = run_client(lab, "twice", "--port", "80", "--path", "/secret", "--then", "/")
    assert out["answers"][0]["status"] == 403, out
    time.sleep(0.5)
    assert seen(lab)[before:] == ["/"], seen(lab)


def test_keepalive_clients_reconnect_and_get_every_answer(lab):
    """curl with several URLs reuses its connection when it can: after the server's close it
    opens a new one, and every request is classified."""
    before = len(seen(lab))
    r = lab.client_exec(["curl", "-sS", "--max-time", "20", "-w", "%{http_code}\n"]
                        + [a for p in ("/a", "/secret", "/b") for a in ("-o", "/dev/null", f"http://{lab.vip}{p}")])
    assert r.returncode == 0 and r.stdout.split() == ["200", "403", "200"], r
    assert seen(lab)[before:] == ["/a", "/b"]


def test_services_without_reject_keep_their_keepalive(lab):
    out = run_client(lab, "keepalive", "--port", "8080")
    assert all(x["ok"] for x in out["results"]), out
