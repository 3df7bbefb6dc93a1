"""Real TLS handshakes in memory (Python's ssl over MemoryBIO): the ClientHello and the
server's first flight as OpenSSL sends them, with session resumption by session id, TLS 1.2
ticket or TLS 1.3 PSK.  Certificates are self-signed, made with ``openssl req``."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path


def make_cert(directory: Path, cn: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``cn`` (and its key), made with ``openssl req``."""
    cert, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def server_context(cert: Path, key: Path, version: ssl.TLSVersion, tickets: bool = True):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ctx.maximum_version = version
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    return ctx


def client_context(version: ssl.TLSVersion):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def _drain(bio: ssl.MemoryBIO) -> bytes:
    return bio.read()


class Handshake:
    """One TLS connection in memory: ``client_hello`` (the client's first flight),
    ``server_flight`` (the server's answer to it), then :meth:`finish`."""

    def __init__(self, cctx, sctx, sni: str | None = None, session=None, alpn=None):
        self.cin, self.cout = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.sin, self.sout = ssl.MemoryBIO(), ssl.MemoryBIO()
        if alpn:
            cctx.set_alpn_protocols(alpn)
        self.c = cctx.wrap_bio(self.cin, self.cout, server_hostname=sni, session=session)
        self.s = sctx.wrap_bio(self.sin, self.sout, server_side=True)
        self._step(self.c)
        self.client_hello = _drain(self.cout)
        self.sin.write(self.client_hello)
        self._step(self.s)
        self.server_flight = _drain(self.sout)

    @staticmethod
    def _step(obj) -> bool:
        try:
            obj.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    def finish(self):
        """Complete the handshake (and let the client read TLS 1.3 tickets): the client's
        session, to resume."""
        self.cin.write(self.server_flight)
        for _ in range(6):
            done_c = self._step(self.c)
            self.sin.write(_drain(self.cout))
            done_s = self._step(self.s)
            self.cin.write(_drain(self.sout))
            if done_c and done_s:
                break
        self.s.write(b"x")
        self.cin.write(_drain(self.sout))
        assert self.c.read(1) == b"x"
        # A clean close (close_notify both ways): OpenSSL drops a session from its cache
        # when its connection is freed without one.
        for obj, out, peer in ((self.c, self.cout, self.sin), (self.s, self.sout, self.cin)):
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            peer.write(_drain(out))
        return self.c.session

    @property
    def resumed(self) -> bool:
        return self.s.session_reused
