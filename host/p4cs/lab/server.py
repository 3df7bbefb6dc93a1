"""A small HTTP/1.1 origin server for tests, the demo and benchmarks (python -m p4cs.lab.server).

GET  /bytes/N   N bytes of a fixed pattern (keep-alive)
GET  /anything  "<name>: /anything"
POST /anything  "<name>: <length> <sha256 of the body>" (Content-Length or chunked)
Every response carries ``X-Server: <name>``.
"""

from __future__ import annotations

import argparse
import hashlib
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes((j * 7 + 13) & 0xFF for j in range(65536))


def pattern_bytes(n: int) -> bytes:
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def file_chunks(size: int):
    """The content of the lab's large static files: 64 KiB blocks, each numbered, so that a
    misplaced or duplicated block changes the sha256."""
    left, k = size, 0
    while left > 0:
        chunk = (k.to_bytes(8, "big") + PATTERN)[:min(left, 65536)]
        yield chunk
        left -= len(chunk)
        k += 1


def file_sha256(size: int) -> str:
    h = hashlib.sha256()
    for chunk in file_chunks(size):
        h.update(chunk)
    return h.hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "p4cs-lab"
    name = "lab"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("X-Server", self.name)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/bytes/"):
            try:
                n = int(self.path[7:])
            except ValueError:
                return self._send(b"bad size\n", 400)
            if not 0 <= n <= 1 << 30:
                return self._send(b"bad size\n", 400)
            return self._send(pattern_bytes(n))
        self._send(f"{self.name}: {self.path}\n".encode())

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n)

    def do_POST(self) -> None:
        body = self._body()
        self._send(f"{self.name}: {len(body)} {hashlib.sha256(body).hexdigest()}\n".encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096
    allow_reuse_address = True

    def server_bind(self) -> None:
        """As HTTPServer's, without its reverse DNS lookup of the address (socket.getfqdn): in a
        namespace whose default route leads nowhere it waits for resolver timeouts."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--name", default="lab")
    a = ap.parse_args()
    Handler.name = a.name
    with Server((a.bind, a.port), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
