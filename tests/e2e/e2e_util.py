"""Helpers of the end-to-end tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CLIENTS = Path(__file__).resolve().parent / "netclients.py"
HOST = Path(__file__).resolve().parents[2] / "host"


def p4cs(lab, *args: str) -> subprocess.CompletedProcess:
    """`p4cs ARGS --socket` of the lab's controller, this tree's package first."""
    env = {**os.environ, "PYTHONPATH": f"{HOST}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "p4cs.cli", *args, "--socket", lab.control_socket],
                          capture_output=True, text=True, timeout=60, env=env)


def run_client(lab, cmd: str, *args: str, timeout: float = 120.0, client: int = 0) -> dict:
    """Run ``netclients.py cmd --vip VIP args...`` in the client namespace; its JSON report."""
    r = lab.client_exec([sys.executable, str(CLIENTS), cmd, "--vip", lab.vip, *args],
                        client=client, timeout=timeout)
    assert r.returncode == 0, f"client {cmd} {args} failed ({r.returncode}): {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_for(pred: Callable[[], object], timeout: float, interval: float = 0.2):
    """Poll ``pred`` until it returns something true; that value, or the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def headers_of(text: str) -> dict[str, str]:
    out = {}
    for ln in text.splitlines():
        k, sep, v = ln.partition(":")
        if sep and not ln.startswith("HTTP/"):
            out[k.strip().lower()] = v.strip()
    return out


def start_download(lab, path: str, rate: str, max_time: float = 120.0,
                   client: int = 0) -> subprocess.Popen:
    """``curl`` of ``path`` at ``rate`` in the background; stdout: its sha256, stderr ends
    with ``size=<bytes received>``."""
    return lab.topo.popen(lab.clients[client].name, [
        "bash", "-c", f"set -o pipefail; curl -sS --max-time {max_time} --limit-rate {rate}"
        f" -w '%{{stderr}}size=%{{size_download}}' http://{lab.vip}{path} | sha256sum"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def download_checked(lab, path: str, size: int, max_time: float = 120.0) -> float:
    """``curl`` of ``path`` through the VIP, checked byte-exact against the lab's file of
    ``size`` bytes (``p4cs.lab.server.file_chunks``); the seconds it took."""
    from p4cs.lab.server import file_sha256
    t0 = time.monotonic()
    r = lab.client_exec(["bash", "-c", f"set -o pipefail; curl -sS --max-time {max_time} "
                         f"-w '%{{stderr}}size=%{{size_download}}' http://{lab.vip}{path} | sha256sum"],
                        timeout=max_time + 30)
    dt = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"size={size}", r.stderr
    assert r.stdout.split()[0] == file_sha256(size)
    return dt


def download_on_fastpath(lab, path: str, size: int) -> tuple[float, int, int]:
    """:func:`download_checked` of ``path``; its seconds, and the packets and bytes the fast
    path counted meanwhile."""
    before = fastpath(lab)
    dt = download_checked(lab, path, size)
    after = fastpath(lab)
    return dt, after["packets"] - before["packets"], after["bytes"] - before["bytes"]


def post_checked(lab, body: bytes, tmp_path: Path, timeout: float = 60.0) -> str:
    """``curl --data-binary`` of ``body`` to the echo service (port 8080); checks the length
    and sha256 the server reports and returns the server's name."""
    import hashlib
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    f.chmod(0o644)
    r = lab.curl("/upload", port=8080, args=["--data-binary", f"@{f}", "-H",
                                             "Content-Type: application/octet-stream"],
                 timeout=timeout)
    assert r.returncode == 0, r.stderr
    name, _, rest = r.stdout.strip().partition(": ")
    assert rest == f"{len(body)} {hashlib.sha256(body).hexdigest()}", r.stdout
    return name


def fastpath(lab) -> dict:
    """The fast path's packet and byte totals (control request ``fastpath``)."""
    resp = lab.control({"op": "fastpath"})
    assert resp.get("ok"), resp
    return resp["fastpath"]


def proc(lab, name: str) -> subprocess.Popen:
    """The process the lab started last under ``name``."""
    return dict(lab._procs)[name]


def terminate(lab, name: str) -> None:
    p = proc(lab, name)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=15)


def status_at(lab, sock: str) -> dict:
    from p4cs.controller.cli import control_request
    resp = control_request({"op": "status"}, sock)
    assert resp.get("ok"), resp
    return resp["status"]


def hold_for_reuse(lab, port: int, ports: list[int], go: Path) -> subprocess.Popen:
    """``netclients.py reuse`` in the client namespace: one answered keep-alive connection to
    VIP:``port`` from each local port of ``ports``, held until the file ``go`` exists (then
    each is reset and opened again at once from the same port). Returns once all are open."""
    p = lab.topo.popen(
        lab.clients[0].name, [sys.executable, str(CLIENTS), "reuse", "--vip", lab.vip,
                              "--port", str(port), "--ports", ",".join(map(str, ports)),
                              "--go", str(go), "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line or json.loads(line)["open"] != len(ports):
        p.kill()
        raise AssertionError(f"connections not held: {line!r} {p.stderr.read()[-2000:]}")
    return p


def reuse_report(p: subprocess.Popen, n: int) -> dict:
    """What ``hold_for_reuse``'s client says once ``go`` is there: each of the ``n`` new
    connections answered, at its first SYN (no retransmission: 1 s)."""
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err[-2000:]
    rep = json.loads(out.strip().splitlines()[-1])
    assert rep["ok"] == n, rep["bad"]
    assert max(c for c, _g in rep["connect_get_s"]) < 0.5, rep
    return rep
