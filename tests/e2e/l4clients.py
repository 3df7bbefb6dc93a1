"""Programs of the L4-service end-to-end tests, run in the lab's namespaces:

    python tests/e2e/l4clients.py persist --vip VIP --port 80 --n 40     (client namespace)
    python tests/e2e/l4clients.py udp --vip VIP --port 53 --n 40         (client namespace)
    python tests/e2e/l4clients.py udpserver --bind IP --port 5353 --name NAME   (a server's)

The clients print JSON lines on stdout (the tests parse them) and exit 0 whenever they could
report. Only the standard library, and the HTTP reader of netclients.py. ``held_across``
runs ``persist`` from a test or a benchmark around a change of the switch.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netclients import connect, read_response  # noqa: E402


def _get(s: socket.socket, buf: bytearray, vip: str) -> str:
    s.sendall(f"GET / HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode())
    r = read_response(s, buf)
    if r.status != 200:
        raise ConnectionError(f"status {r.status}")
    return r.headers.get("x-server", "")


def cmd_persist(a) -> None:
    """Open ``--n`` keep-alive connections and make one request on each (a line: the server
    of each); at a line on stdin, one more request on each: how many broke (no answer, an
    error, or another server), as the last line."""
    conns, before = [], []
    for _ in range(a.n):
        s = connect(a.vip, a.port, a.timeout)
        buf = bytearray()
        before.append(_get(s, buf, a.vip))
        conns.append((s, buf))
    print(json.dumps({"servers": before}), flush=True)
    sys.stdin.readline()
    after, errors = [], []
    for s, buf in conns:
        try:
            after.append(_get(s, buf, a.vip))
        except OSError as exc:
            after.append(None)
            errors.append(str(exc))
        s.close()
    broken = sum(x != y for x, y in zip(before, after))
    print(json.dumps({"servers": after, "broken": broken, "errors": errors[:5]}), flush=True)


def held_across(lab, n: int, change) -> tuple[list[str], dict, object]:
    """Run ``persist`` with ``n`` connections in ``lab``'s client namespace, call
    ``change(servers)`` (the server of each connection) once they are all established, and
    then let them make their second request: (servers before, the last report, what
    ``change`` returned)."""
    import subprocess

    client = lab.topo.popen(lab.clients[0].name,
                            [sys.executable, str(Path(__file__).resolve()), "persist", "--vip", lab.vip,
                             "--port", "80", "--n", str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = client.stdout.readline()
        if not line:
            raise RuntimeError(f"persist client failed: {client.stderr.read()[-2000:]}")
        before = json.loads(line)["servers"]
        what = change(before)
        out, _ = client.communicate("go\n", timeout=300)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return before, json.loads(out.strip().splitlines()[-1]), what


def cmd_udp(a) -> None:
    """``--n`` sockets (client ports) send a datagram to VIP:port, twice: the answers, the
    servers that answered (the first word of the echo), whether every answer came from
    VIP:port and each socket got the same server both times."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(a.n)]
    rounds: list[list[str | None]] = []
    foreign = []
    for r in range(2):
        got: list[str | None] = []
        for i, s in enumerate(socks):
            s.settimeout(1.0)
            answer = None
            for _ in range(3):
                s.sendto(f"ping {r} {i}".encode(), (a.vip, a.port))
                try:
                    data, peer = s.recvfrom(2048)
                except socket.timeout:
                    continue
                if peer != (a.vip, a.port):
                    foreign.append(list(peer))
                if data.endswith(f"ping {r} {i}".encode()):
                    answer = data.split()[0].decode()
                    break
            got.append(answer)
        rounds.append(got)
    for s in socks:
        s.close()
    print(json.dumps({"answered": sum(x is not None for x in rounds[0] + rounds[1]),
                      "servers": sorted({x for x in rounds[0] if x}), "foreign": foreign,
                      "same": rounds[0] == rounds[1]}), flush=True)


def cmd_udpserver(a) -> None:
    """Echo every datagram, prefixed with the server's name and a space."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.bind, a.port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(a.name.encode() + b" " + data, peer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("persist", "udp"):
        p = sub.add_parser(name)
        p.add_argument("--vip", required=True)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--n", type=int, default=40)
        p.add_argument("--timeout", type=float, default=5.0)
    p = sub.add_parser("udpserver")
    p.add_argument("--bind", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    a = ap.parse_args(argv)
    {"persist": cmd_persist, "udp": cmd_udp, "udpserver": cmd_udpserver}[a.cmd](a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
