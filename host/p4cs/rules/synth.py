"""Build raw client requests from field values: readable witnesses and test inputs."""

from __future__ import annotations

import json
from urllib.parse import quote_plus
from xml.sax.saxutils import escape

from .model import parse_xml_path


def build_client_hello(sni: str | None = None, session_id: bytes | str | None = None,
                       alpn: list[str] | str | None = None, random: bytes | None = None) -> bytes:
    """A TLS 1.2-style ClientHello record with the given SNI, session id and ALPN list."""
    if isinstance(session_id, str):
        session_id = bytes.fromhex(session_id)
    if isinstance(alpn, str):
        alpn = [p for p in alpn.split(",") if p]
    sid = session_id or b""
    body = b"\x03\x03" + (random or bytes(range(32)))
    body += bytes([len(sid)]) + sid
    suites = b"\x13\x01\x13\x02\xc0\x2f\xc0\x30\x00\x9c"
    body += len(suites).to_bytes(2, "big") + suites + b"\x01\x00"
    exts = b""
    if sni is not None:
        name = sni.encode("ascii")
        entry = b"\x00" + len(name).to_bytes(2, "big") + name
        sn = len(entry).to_bytes(2, "big") + entry
        exts += b"\x00\x00" + len(sn).to_bytes(2, "big") + sn
    if alpn:
        plist = b"".join(bytes([len(p)]) + p.encode("ascii") for p in alpn)
        a = len(plist).to_bytes(2, "big") + plist
        exts += b"\x00\x10" + len(a).to_bytes(2, "big") + a
    exts += b"\x00\x0b\x00\x02\x01\x00"  # ec_point_formats
    body += len(exts).to_bytes(2, "big") + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def build_xml(values: dict[str, str]) -> str:
    """A document in which each canonical tag sequence (`a:1/b:2/c`) has the given value.
    Unindexed steps are the first occurrence; earlier siblings are created empty as needed.
    Sequences with different first tags are wrapped in a <doc> element."""
    tree: dict = {}
    for path, val in values.items():
        node = tree
        steps = parse_xml_path(path)
        for k, (name, idx) in enumerate(steps):
            idx = idx or 1
            for i in range(1, idx + 1):
                node.setdefault((name, i), {})
            child = node[(name, idx)]
            if k == len(steps) - 1:
                child["#text"] = val
            node = child

    def emit(node: dict) -> str:
        out = []
        for key, child in node.items():
            if key == "#text":
                continue
            name, _ = key
            inner = emit(child)
            text = escape(child.get("#text", ""))
            out.append(f"<{name}>{text}{inner}</{name}>")
        return "".join(out)

    roots = [k for k in tree if k != "#text"]
    body = emit(tree)
    if len(roots) != 1:
        body = f"<doc>{body}</doc>"
    return '<?xml version="1.0"?>\n' + body + "\n"


def build_http_request(f: dict) -> bytes:
    """An HTTP/1.1 request whose extracted fields are `f` (canonical names -> str values)."""
    xml = {k[4:]: v for k, v in f.items() if k.startswith("xml.") and v is not None}
    form = {k[5:]: v for k, v in f.items() if k.startswith("form.") and v is not None}
    js = {k[5:]: v for k, v in f.items() if k.startswith("json.") and v is not None}
    body = b""
    ctype = None
    if form or (xml and form):
        parts = []
        if xml:
            parts.append("xmldoc=" + quote_plus(build_xml(xml)))
        parts += [quote_plus(k) + "=" + quote_plus(v) for k, v in form.items()]
        body, ctype = "&".join(parts).encode(), "application/x-www-form-urlencoded"
    elif xml:
        body, ctype = build_xml(xml).encode("utf-8"), "text/xml"
    elif js:
        doc: dict = {}
        for path, v in js.items():
            node = doc
            steps = path.split(".")
            for s in steps[:-1]:
                node = node.setdefault(s, {})
                if not isinstance(node, dict):
                    break
            else:
                node[steps[-1]] = v
        body, ctype = json.dumps(doc).encode(), "application/json"
    method = f.get("method") or ("POST" if body else "GET")
    url = f.get("url")
    if url is None:
        url = f.get("path") or "/"
        if f.get("query") is not None:
            url += "?" + f["query"]
    version = f.get("version") or "1.1"
    lines = [f"{method} {url} HTTP/{version}"]
    host = f.get("header.host") or f.get("host")
    if host is None and "host" not in f and "header.host" not in f:
        host = "www.example.com"
    if host is not None:
        lines.append(f"Host: {host}")
    cookies = {k[7:]: v for k, v in f.items() if k.startswith("cookie.") and v is not None}
    for k, v in f.items():
        if k.startswith("header.") and v is not None and k not in ("header.host", "header.content-length"):
            if k == "header.content-type" and ctype:
                ctype = v
                continue
            if k == "header.cookie" and cookies:
                continue
            lines.append(f"{'-'.join(p.capitalize() for p in k[7:].split('-'))}: {v}")
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def build_smtp(f: dict) -> bytes:
    lines = [f"EHLO {f.get('smtp.helo') or 'client.example.org'}"]
    if f.get("smtp.from") is not None or f.get("smtp.to") is not None:
        lines.append(f"MAIL FROM:<{f.get('smtp.from') or ''}>")
    if f.get("smtp.to") is not None:
        lines.append(f"RCPT TO:<{f['smtp.to']}>")
    hdrs = {k[7:]: v for k, v in f.items() if k.startswith("header.") and v is not None}
    if hdrs:
        lines.append("DATA")
        for k, v in hdrs.items():
            lines.append(f"{'-'.join(p.capitalize() for p in k.split('-'))}: {v}")
        lines += ["", "body", "."]
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


def build_pop3(f: dict) -> bytes:
    return f"USER {f.get('pop3.user') or 'user'}\r\nPASS secret\r\n".encode("latin-1")


def build_imap(f: dict) -> bytes:
    return f'a1 LOGIN "{f.get("imap.user") or "user"}" secret\r\n'.encode("latin-1")
