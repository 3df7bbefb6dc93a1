"""Cookie persistence through the switch, nginx behind it: ``cookie-insert`` adds
``Set-Cookie: SRV=<server id>`` to the first response of a connection (an 8 MB download
byte-exact, the rest of it on the fast path) and a request with that cookie goes to the same
server; ``cookie-learn`` sends a request with the ``SESSIONID`` a server set (nginx
``add_header Set-Cookie``) to that server."""

from __future__ import annotations

import pytest

from e2e_util import headers_of
from p4cs.lab.server import file_sha256

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.slow]

SIZE = 8 * 2**20


@pytest.fixture(scope="module")
def lab(make_lab):
    services = [
        {"name": "ins", "port": 80, "default_group": "all",
         "persistence": {"kind": "cookie-insert", "name": "SRV", "key": "e2e secret"}},
        {"name": "learn", "port": 81, "default_group": "all",
         "persistence": {"kind": "cookie-learn", "name": "SESSIONID", "timeout_s": 600}},
    ]
    return make_lab("k", big_files={"8M": SIZE}, services=services)


def fetch(lab, path: str, port: int, cookie: str | None = None) -> tuple[dict, str]:
    """(response headers, sha256 of the body) of one curl GET through the VIP."""
    hdrs = lab.workdir / "headers.txt"
    jar = ["-b", cookie] if cookie else []
    r = lab.client_exec(["bash", "-c", "set -o pipefail; curl -sS --max-time 60 -D "
                         f"{hdrs} {' '.join(jar)} http://{lab.vip}:{port}{path} | sha256sum"],
                        timeout=90)
    assert r.returncode == 0, r.stderr
    text = hdrs.read_text()
    assert text.startswith("HTTP/1.1 200"), text
    lines = [ln for ln in text.splitlines() if ln.lower().startswith("set-cookie:")]
    return {**headers_of(text), "set-cookie-lines": lines}, r.stdout.split()[0]


def test_insert_sets_the_server_id_and_the_cookie_sticks(lab):
    before = lab.control({"op": "fastpath"})["fastpath"]["controller_packet_in"]
    hdrs, digest = fetch(lab, "/big/8M", 80)
    assert digest == file_sha256(SIZE)
    (line,) = hdrs["set-cookie-lines"]
    assert line.startswith("Set-Cookie: SRV=") and line.endswith("; Path=/"), line
    sid = line.split("=", 1)[1].split(";")[0]
    server = hdrs["x-server"]
    assert server not in sid and "10.0." not in sid
    st = lab.status()["csproc"]
    assert st["cookies_inserted"] == 1 and st["bad_responses"] == 0, st
    # only the first flight went through the controller: the rest rode the flows
    assert lab.control({"op": "fastpath"})["fastpath"]["controller_packet_in"] - before < 200
    # without the cookie the group's scheduler alternates; with it, the same server, and
    # nothing is inserted again
    plain = {fetch(lab, "/", 80)[0]["x-server"] for _ in range(3)}
    assert len(plain) > 1
    for _ in range(4):
        again, digest = fetch(lab, "/big/8M", 80, f"SRV={sid}")
        assert again["x-server"] == server and again["set-cookie-lines"] == []
        assert digest == file_sha256(SIZE)
    # a cookie naming no server is replaced
    other, _ = fetch(lab, "/", 80, "SRV=0000000000000000")
    assert len(other["set-cookie-lines"]) == 1


def test_learn_sends_the_session_to_the_server_that_set_it(lab):
    first, _ = fetch(lab, "/session/", 81)
    (line,) = first["set-cookie-lines"]
    session = line.split(":", 1)[1].strip().split(";")[0]
    server = first["x-server"]
    assert session.startswith("SESSIONID=")
    rows = [t for t in lab.control({"op": "templates"})["templates"] if t["service"] == "learn"]
    assert len(rows) == 1 and rows[0]["client"].startswith("cookie:"), rows
    ips = {lab.server_name(i): h.ip for i, h in enumerate(lab.servers)}
    assert rows[0]["server"] == f"{ips[server]}:80", rows
    plain = {fetch(lab, "/", 81)[0]["x-server"] for _ in range(3)}
    assert len(plain) > 1
    for _ in range(4):
        again, _ = fetch(lab, "/", 81, session)
        assert again["x-server"] == server
