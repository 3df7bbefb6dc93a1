"""Client programs for the end-to-end tests, run inside the client namespace (and one
misbehaving server, ``rstserver``, run in a server namespace):

    ip netns exec <client-ns> python tests/e2e/netclients.py <command> --vip VIP [--port P] ...

Each prints one JSON object on stdout (the tests parse it) and exits 0 whenever it could
report, so that the test decides what is wrong. Only the standard library is used; the
expected bodies are computed here from the same definitions as the lab's servers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "host"))
from p4cs.lab.server import pattern_bytes  # noqa: E402


# ---------------------------------------------------------------------- HTTP/1.1 parsing
class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def as_dict(self) -> dict:
        return {"status": self.status, "server": self.headers.get("x-server"),
                "length": len(self.body)}


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        if ln:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
    return status, headers


def read_response(sock: socket.socket, buf: bytearray) -> Response:
    """One response with a Content-Length from a blocking socket; ``buf`` keeps the rest."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"EOF before the response header ({len(buf)} bytes)")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    n = int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < n:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"EOF after {len(body)} of {n} body bytes")
        body += data
    buf[:] = body[n:]
    return Response(status, headers, bytes(body[:n]))


def connect(vip: str, port: int, timeout: float) -> socket.socket:
    s = socket.create_connection((vip, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# ---------------------------------------------------------------------- commands
def cmd_post(a) -> dict:
    """A POST whose header block and body arrive in separate segments, with the
    Content-Length header itself split inside its value (``Content-length: 7`` | ``53``,
    slide 71 of the source documents)."""
    body = bytes((i * 31 + 7) & 0xFF for i in range(a.body))
    digits = str(len(body))
    cut = 1 if len(digits) > 1 else 0
    head1 = (f"POST /upload/{a.body} HTTP/1.1\r\nHost: {a.vip}\r\nUser-Agent: e2e-segments\r\n"
             f"Content-length: {digits[:cut]}").encode()
    head2 = f"{digits[cut:]}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
    pieces = [head1, head2]
    step = max(1, -(-len(body) // a.body_segments))
    pieces += [body[i:i + step] for i in range(0, len(body), step)]
    s = connect(a.vip, a.port, a.timeout)
    t0 = time.monotonic()
    for p in pieces:
        s.sendall(p)
        time.sleep(a.gap)
    buf = bytearray()
    r = read_response(s, buf)
    s.close()
    return {**r.as_dict(), "text": r.body.decode(errors="replace"), "sent_pieces": len(pieces),
            "expected": f"{len(body)} {hashlib.sha256(body).hexdigest()}",
            "seconds": time.monotonic() - t0}


def cmd_keepalive(a) -> dict:
    """Several requests, one after the other, on one connection (GET /bytes/N of several
    sizes, and a POST in between); every body is checked."""
    s = connect(a.vip, a.port, a.timeout)
    buf = bytearray()
    results = []
    sizes = [int(x) for x in a.sizes.split(",")]
    for i, n in enumerate(sizes):
        if i == len(sizes) // 2:
            body = pattern_bytes(5000)
            s.sendall(f"POST /ka/{i} HTTP/1.1\r\nHost: {a.vip}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                      + body)
            r = read_response(s, buf)
            want = f"{len(body)} {hashlib.sha256(body).hexdigest()}"
            results.append({**r.as_dict(), "ok": r.status == 200 and r.body.decode().strip().endswith(want)})
        s.sendall(f"GET /bytes/{n} HTTP/1.1\r\nHost: {a.vip}\r\n\r\n".encode())
        r = read_response(s, buf)
        results.append({**r.as_dict(), "ok": r.status == 200 and r.body == pattern_bytes(n)})
    # The server must not have closed: one more request still works.
    s.sendall(f"GET /bytes/10 HTTP/1.1\r\nHost: {a.vip}\r\nConnection: close\r\n\r\n".encode())
    r = read_response(s, buf)
    results.append({**r.as_dict(), "ok": r.status == 200 and r.body == pattern_bytes(10)})
    local = s.getsockname()
    s.close()
    return {"results": results, "local": list(local)}


def cmd_reset(a) -> dict:
    """Send a request and report how the connection ended: response, EOF or reset."""
    out: dict = {}
    data = bytearray()
    try:
        s = connect(a.vip, a.port, a.timeout)
    except OSError as exc:
        return {"outcome": "connect-error", "error": repr(exc)}
    try:
        s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: {a.vip}\r\n\r\n".encode())
        while True:
            chunk = s.recv(65536)
            if not chunk:
                out["outcome"] = "eof"
                break
            data += chunk
    except ConnectionResetError as exc:
        out["outcome"] = "reset"
        out["error"] = repr(exc)
    except socket.timeout:
        out["outcome"] = "timeout"
    finally:
        s.close()
    out["received"] = bytes(data[:300]).decode("latin-1")
    return out


def cmd_rstserver(a) -> None:
    """Accept, read the request, then reset the connection (SO_LINGER 0): a server that
    gives up after the switch has spliced the connection to it."""
    import struct
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((a.vip, a.port))
    ls.listen(128)
    while True:
        c, _ = ls.accept()
        try:
            c.settimeout(5)
            c.recv(65536)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        c.close()


def cmd_logserver(a) -> None:
    """An HTTP/1.1 keep-alive server that appends the path of every request it answers to
    ``--log``: which requests reached a server."""
    import socketserver
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with open(a.log, "a") as f:
                f.write(self.path + "\n")
            body = f"seen {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self) -> None:      # no reverse DNS lookup of the address
            socketserver.TCPServer.server_bind(self)

    Server((a.vip, a.port), Handler).serve_forever()


def cmd_twice(a) -> dict:
    """``GET --path`` then ``GET --then`` on one keep-alive connection (``--pipeline``: both
    sent at once): what came back for each."""
    s = connect(a.vip, a.port, a.timeout)
    reqs = [f"GET {p} HTTP/1.1\r\nHost: {a.vip}\r\n\r\n".encode() for p in (a.path, a.then)]
    out: dict = {"answers": []}
    buf = bytearray()
    try:
        if a.pipeline:
            s.sendall(b"".join(reqs))
        for req in reqs:
            if not a.pipeline:
                s.sendall(req)
            r = read_response(s, buf)
            out["answers"].append({**r.as_dict(), "text": r.body.decode(errors="replace")})
    except (OSError, ConnectionError) as exc:
        out["end"] = repr(exc)
    s.close()
    return out


def cmd_hold(a) -> dict:
    """Hold ``--n`` idle connections (handshake, no request) for ``--seconds``, reopening
    each one the switch resets or closes: one address trying to take every half-bound slot."""
    import selectors

    sel = selectors.DefaultSelector()
    opened = lost = failed = 0

    def open_one() -> None:
        nonlocal opened, failed
        try:
            s = connect(a.vip, a.port, a.timeout)
        except OSError:
            failed += 1
            return
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        opened += 1

    deadline = time.monotonic() + a.seconds
    for _ in range(a.n):
        open_one()
    print(json.dumps({"holding": len(sel.get_map())}), flush=True)
    while time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:            # reset (evicted) or closed (408): take the slot again
                sel.unregister(key.fileobj)
                key.fileobj.close()
                lost += 1
                open_one()
    return {"opened": opened, "lost": lost, "connect_failed": failed}


def cmd_reuse(a) -> dict:
    """One keep-alive connection from each local port of ``--ports`` (a GET answered on each),
    held until the file ``--go`` exists; then each is reset (SO_LINGER 0: no TIME_WAIT here)
    and a new connection opened at once from the same port, with one GET: how many answered."""
    import struct

    def conn(lport: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(a.timeout)
        s.bind(("", lport))
        s.connect((a.vip, a.port))
        return s

    def get(s: socket.socket) -> bool:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {a.vip}\r\n\r\n".encode())
        return read_response(s, bytearray()).status == 200

    ports = [int(x) for x in a.ports.split(",")]
    held = []
    for lport in ports:
        s = conn(lport)
        if get(s):
            held.append((lport, s))
    print(json.dumps({"open": len(held)}), flush=True)
    deadline = time.monotonic() + a.timeout
    while not Path(a.go).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    ok, bad, times = 0, [], []
    for lport, s in held:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        t0 = time.monotonic()
        try:
            s2 = conn(lport)
            t1 = time.monotonic()
            if get(s2):
                ok += 1
            else:
                bad.append((lport, "status"))
            s2.close()
            times.append((round(t1 - t0, 3), round(time.monotonic() - t1, 3)))
        except (OSError, ConnectionError) as exc:
            bad.append((lport, repr(exc)))
    return {"ok": ok, "bad": bad, "connect_get_s": times}


def cmd_fetch(a) -> dict:
    """``--n`` GETs of ``--path``, one new connection each: how many were answered 200."""
    ok, errors = 0, []
    for _ in range(a.n):
        try:
            s = connect(a.vip, a.port, a.timeout)
            s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: {a.vip}\r\nConnection: close\r\n\r\n".encode())
            r = read_response(s, bytearray())
            s.close()
            if r.status == 200:
                ok += 1
            else:
                errors.append(r.status)
        except OSError as exc:
            errors.append(repr(exc))
    return {"ok": ok, "n": a.n, "errors": errors[:10]}


async def _one(i: int, a, start: asyncio.Event, connected: list, t_conn: list) -> dict:
    path = f"/c/{i}"
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(a.vip, a.port), a.timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        connected.append(False)
        return {"i": i, "ok": False, "error": f"connect: {exc!r}"}
    t_conn.append(time.monotonic() - t0)
    connected.append(True)
    try:
        if a.hold:
            await start.wait()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {a.vip}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), a.timeout)
        head, _, body = data.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        server = headers.get("x-server", "")
        ok = status == 200 and body == f"{server}: {path}\n".encode() and \
            int(headers.get("content-length", -1)) == len(body)
        return {"i": i, "ok": ok, "server": server, "status": status,
                "error": None if ok else f"bad answer {data[:200]!r}"}
    except (OSError, asyncio.TimeoutError, ValueError, IndexError) as exc:
        return {"i": i, "ok": False, "error": f"request: {exc!r}"}
    finally:
        writer.close()


async def _concurrent(a) -> dict:
    start = asyncio.Event()
    connected: list = []
    t_conn: list = []
    t0 = time.monotonic()
    tasks = [asyncio.create_task(_one(i, a, start, connected, t_conn)) for i in range(a.n)]
    if a.hold:
        # All connections are open at the same time before the first request goes out.
        deadline = time.monotonic() + a.timeout
        while len(connected) < a.n and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    t_open = time.monotonic() - t0
    start.set()
    t1 = time.monotonic()
    results = await asyncio.gather(*tasks)
    t_all = time.monotonic() - t0
    bad = [r for r in results if not r["ok"]]
    servers: dict[str, int] = {}
    for r in results:
        if r["ok"]:
            servers[r["server"]] = servers.get(r["server"], 0) + 1
    t_conn.sort()
    return {"n": a.n, "ok": len(results) - len(bad), "bad": bad[:20], "n_bad": len(bad),
            "servers": servers, "open_seconds": t_open, "requests_seconds": time.monotonic() - t1,
            "total_seconds": t_all,
            "connect_p50": t_conn[len(t_conn) // 2] if t_conn else None,
            "connect_max": t_conn[-1] if t_conn else None}


def cmd_concurrent(a) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, a.n + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return asyncio.run(_concurrent(a))


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--vip", required=True)
    common.add_argument("--port", type=int, default=8080)
    common.add_argument("--timeout", type=float, default=30.0)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("post", parents=[common])
    p.add_argument("--body", type=int, default=753)
    p.add_argument("--body-segments", type=int, default=3)
    p.add_argument("--gap", type=float, default=0.05)
    p = sub.add_parser("keepalive", parents=[common])
    p.add_argument("--sizes", default="100,20000,1,300000,7")
    p = sub.add_parser("reset", parents=[common])
    p.add_argument("--path", default="/")
    p = sub.add_parser("rstserver", parents=[common], help="--vip is the address to bind")
    p = sub.add_parser("concurrent", parents=[common])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--hold", action="store_true", help="open all, then send all requests")
    p = sub.add_parser("logserver", parents=[common], help="--vip is the address to bind")
    p.add_argument("--log", required=True)
    p = sub.add_parser("twice", parents=[common])
    p.add_argument("--path", default="/")
    p.add_argument("--then", default="/secret")
    p.add_argument("--pipeline", action="store_true")
    p = sub.add_parser("hold", parents=[common])
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--seconds", type=float, default=30.0)
    p = sub.add_parser("reuse", parents=[common])
    p.add_argument("--ports", required=True)
    p.add_argument("--go", required=True)
    p = sub.add_parser("fetch", parents=[common])
    p.add_argument("--n", type=int, default=80)
    p.add_argument("--path", default="/")
    a = ap.parse_args(argv)
    if a.cmd in ("rstserver", "logserver"):
        {"rstserver": cmd_rstserver, "logserver": cmd_logserver}[a.cmd](a)
        return 0
    out = {"post": cmd_post, "keepalive": cmd_keepalive, "reset": cmd_reset,
           "concurrent": cmd_concurrent, "hold": cmd_hold, "fetch": cmd_fetch,
           "twice": cmd_twice, "reuse": cmd_reuse}[a.cmd](a)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
