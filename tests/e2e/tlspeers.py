"""TLS peers of the end-to-end tests, run inside the lab's namespaces.

``server``: an HTTPS server (Python ssl, one thread per connection). ``GET /<n>`` answers
``n`` bytes of the lab's file content (``p4cs.lab.server.file_chunks``) with headers naming
the server, the SNI it got and whether it resumed the TLS session (``X-Resumed``: what the
server's own TLS stack says); every connection is also logged as a JSON line on stdout.

``client``: ``--count`` HTTPS GETs through the switch with SNI ``--sni``; with ``--resume``
every connection after the first offers the first connection's session. Prints one JSON
report: per connection the server, the resumption as the server and as the client saw it,
and whether the body was byte-exact.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import ssl
import sys
import threading

from p4cs.lab.server import file_chunks, file_sha256


def _version(name: str) -> ssl.TLSVersion:
    return {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[name]


def serve(args) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.maximum_version = _version(args.max_version)
    if args.no_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    snis: dict = {}

    def remember(sock, name, _ctx):
        snis[id(sock)] = name

    ctx.sni_callback = remember
    lsock = socket.create_server((args.bind, args.port), backlog=128)

    def one(conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            with ctx.wrap_socket(conn, server_side=True) as s:
                req = b""
                while b"\r\n\r\n" not in req:
                    chunk = s.recv(4096)
                    if not chunk:
                        return
                    req += chunk
                path = req.split(b" ", 2)[1].decode()
                size = int(path.strip("/") or 0)
                sni = snis.pop(id(s), None)
                resumed = s.session_reused
                print(json.dumps({"server": args.name, "sni": sni, "resumed": resumed,
                                  "version": s.version()}), flush=True)
                head = (f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nX-Server: {args.name}\r\n"
                        f"X-Resumed: {int(resumed)}\r\nX-SNI: {sni}\r\nConnection: close\r\n\r\n")
                s.sendall(head.encode())
                for chunk in file_chunks(size):
                    s.sendall(chunk)
                try:
                    s.unwrap()
                except (OSError, ssl.SSLError):
                    pass
        except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
            print(json.dumps({"server": args.name, "error": str(exc)}), flush=True)

    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=one, args=(conn,), daemon=True).start()


def fetch(args) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = _version(args.max_version)
    want = file_sha256(args.size)
    session = None
    out = []
    for i in range(args.count):
        with socket.create_connection((args.vip, args.port), timeout=20) as raw:
            with ctx.wrap_socket(raw, server_hostname=args.sni, session=session) as s:
                s.sendall(f"GET /{args.size} HTTP/1.1\r\nHost: {args.sni}\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                reused, got, version = s.session_reused, s.session, s.version()
                try:
                    # A clean shutdown both ways: OpenSSL drops from the server's cache a
                    # session whose connection was not shut down properly (Python 3.11.2's
                    # server then often gave the next connection a full handshake).
                    s.unwrap()
                except (OSError, ssl.SSLError):
                    pass
                head, _, body = data.partition(b"\r\n\r\n")
                hdr = dict(ln.split(": ", 1) for ln in head.decode().split("\r\n")[1:])
                out.append({"server": hdr["X-Server"], "server_resumed": hdr["X-Resumed"] == "1",
                            "client_resumed": reused, "sni": hdr["X-SNI"],
                            "exact": hashlib.sha256(body).hexdigest() == want,
                            "version": version})
                if args.resume and session is None:
                    session = got
    print(json.dumps(out))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, default=443)
    s.add_argument("--name", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--max-version", default="1.3")
    s.add_argument("--no-tickets", action="store_true")
    c = sub.add_parser("client")
    c.add_argument("--vip", required=True)
    c.add_argument("--port", type=int, default=443)
    c.add_argument("--sni", required=True)
    c.add_argument("--count", type=int, default=1)
    c.add_argument("--size", type=int, default=100000)
    c.add_argument("--max-version", default="1.3")
    c.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    serve(args) if args.cmd == "server" else fetch(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
