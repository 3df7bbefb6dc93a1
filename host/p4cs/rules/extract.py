"""L7 field extraction: HTTP (httptools), XML (a checking C scanner, libxml2 via lxml where it
declines; early stop), urlencoded forms, JSON, TLS ClientHello, SMTP envelope, addresses and
bit fields.

Extraction is lazy: a `RequestView` parses a protocol layer only when a field of that layer is
first asked for, and keeps only the fields the rule set references. Malformed or truncated
input makes the affected fields absent (`None`); no exception escapes.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import re
import threading
from typing import Iterable
from urllib.parse import parse_qsl

import httptools
from lxml import etree

from p4cs.csproc.tls import client_hello

from .model import is_body_field, parse_bitmatch_name, parse_xml_path, xml_path_text

try:
    from . import _xmlscan
except ImportError:  # the package was installed without its C part: libxml2 only
    _xmlscan = None

Value = "str | int | ipaddress.IPv4Address | ipaddress.IPv6Address | None"

# ---------------------------------------------------------------------------------------------
# XML


class _Done(Exception):
    pass


def _local(tag) -> str | None:
    if not isinstance(tag, str):
        return None  # comments, processing instructions
    return tag.rpartition("}")[2]


def _nth(el, local: str) -> int:
    """1-based position of `el` among its parent's children of the same local name."""
    n = 1
    for sib in el.itersiblings(preceding=True):
        if _local(sib.tag) == local:
            n += 1
    return n


def _matches(el, steps) -> bool:
    """Whether `el` ends the tag sequence `steps` (each step a child of the previous)."""
    for name, want in reversed(steps):
        if el is None or _local(el.tag) != name:
            return False
        if want is not None and _nth(el, name) != want:
            return False
        el = el.getparent()
    return True


def _first_match(el, steps) -> bool:
    """`el` matches and no ancestor of it does (an ancestor comes first in document order)."""
    if not _matches(el, steps):
        return False
    up = el.getparent()
    while up is not None:
        if _local(up.tag) == steps[-1][0] and _matches(up, steps):
            return False
        up = up.getparent()
    return True


_XML_WHOLE = 8192  # documents up to this size are parsed in one call
_XML_FIRST_CHUNK = 2048
_XML_MAX_CHUNK = 32768
_XML_OPTIONS = dict(resolve_entities="internal", no_network=True, load_dtd=False,
                    huge_tree=False, remove_comments=True, remove_pis=True)
_tls = threading.local()


def _whole_parser() -> "etree.XMLParser":
    """A reusable parser per thread (lxml parsers must not be shared between threads)."""
    p = getattr(_tls, "xml_parser", None)
    if p is None:
        p = _tls.xml_parser = etree.XMLParser(**_XML_OPTIONS)
    return p


@functools.lru_cache(maxsize=1024)
def _compiled(paths: tuple[str, ...]):
    """The parsed sequences of a rule set's paths, and the C scanner's compiled form of them."""
    specs = tuple((p, parse_xml_path(p)) for p in dict.fromkeys(paths))
    return specs, (_xmlscan.Sequences(specs) if _xmlscan is not None and specs else None)


def extract_xml(doc: bytes | str, paths: Iterable[str]) -> dict[str, str]:
    """Values of XML tag sequences (canonical `a:1/b/c` text, see model.parse_xml_path).

    A sequence may start at any depth (so `purchase/totalAmount` also finds a purchase inside a
    SOAP body); each step is a child of the previous one; `:n` selects the n-th element of that
    name within its parent (1-based). The value is the text content of the first matching
    element in document order, whitespace-stripped. Namespaces are ignored (local names match).

    The C scanner (`_xmlscan`) reads UTF-8 documents in one checked pass and stops when every
    sequence is resolved; it declines (returns None) whatever it cannot check exactly -- any
    malformation, other encodings, DTD internal subsets, other entities, non-ASCII names,
    dubious namespace declarations -- and then `extract_xml_libxml2`, the reference, extracts.
    The results are the reference's in every case (tests/rules/test_xmlscan.py).
    """
    specs, seqs = _compiled(tuple(paths))
    if not specs:
        return {}
    if isinstance(doc, str):
        doc = doc.encode("utf-8")
    if seqs is not None:
        got = seqs.scan(doc)
        if got is not None:
            return got
    return _extract_libxml2(doc, specs)


def extract_xml_libxml2(doc: bytes | str, paths: Iterable[str]) -> dict[str, str]:
    """`extract_xml` with libxml2 (lxml) alone: the reference the C scanner is tested against
    and the path for the documents it declines.

    libxml2 scans the bytes; Python only looks at elements named like the last step of a
    sequence. A small document is parsed in one call; a larger one is fed to the pull
    parser in growing pieces and parsing stops as soon as every sequence is resolved. Where
    the document stops being well-formed (namespace-well-formed: a prefix must be declared)
    extraction ends: values of elements that ended before that point stay, the rest are
    absent. Internal entities are expanded;
    external ones and DTDs are never loaded.
    """
    specs, _ = _compiled(tuple(paths))
    if not specs:
        return {}
    if isinstance(doc, str):
        doc = doc.encode("utf-8")
    return _extract_libxml2(doc, specs)


def _extract_libxml2(doc: bytes, specs) -> dict[str, str]:
    if not doc.startswith((b"\xff\xfe", b"\xfe\xff")):
        nul = doc.find(b"\x00")  # never in XML text; libxml2 would skip it
        if nul >= 0:
            doc = doc[:nul]
    by_last: dict[str, list] = {}
    for p, steps in specs:
        by_last.setdefault(steps[-1][0], []).append((p, steps))
    results: dict[str, str] = {}
    if len(doc) <= _XML_WHOLE:
        try:
            root = etree.fromstring(doc, _whole_parser())
        except etree.XMLSyntaxError:
            pass  # not well-formed: the pull parser finds what ends before the error
        else:
            for p, steps in specs:
                for el in root.iter("{*}" + steps[-1][0]):  # document order
                    if _matches(el, steps):
                        results[p] = "".join(el.itertext()).strip()
                        break
            return results
    parser = etree.XMLPullParser(events=("end",), tag=["{*}" + n for n in by_last], **_XML_OPTIONS)

    def take() -> bool:
        for _, el in parser.read_events():
            cands = by_last.get(_local(el.tag))
            if not cands:
                continue
            for p, steps in cands:
                if p not in results and _first_match(el, steps):
                    results[p] = "".join(el.itertext()).strip()
            if len(results) == len(specs):
                return True
        return False

    pos, chunk, size = 0, _XML_FIRST_CHUNK, len(doc)
    while pos < size:
        piece = doc[pos:pos + chunk]
        pos += len(piece)
        chunk = min(chunk * 2, _XML_MAX_CHUNK)
        try:
            parser.feed(piece)
        except etree.XMLSyntaxError:
            # libxml2 stops at the first error: the elements it delivered ended before it
            take()
            return results
        if take():
            return results
    try:
        parser.close()
    except etree.XMLSyntaxError:
        return results  # truncated: closing would invent end tags for the open elements
    take()
    return results


# ---------------------------------------------------------------------------------------------
# HTTP

_XML_TYPES = ("text/xml", "application/xml")


def _media_type(ct: str | None) -> str:
    return (ct or "").split(";", 1)[0].strip().lower()


def body_kind(content_type: str | None, body: bytes) -> str | None:
    """'xml' | 'form' | 'json' | None, from the Content-Type (case-insensitive); without a
    Content-Type, XML and JSON documents are recognised by their first character."""
    mt = _media_type(content_type)
    if mt:
        if mt in _XML_TYPES or mt.endswith("+xml"):
            return "xml"
        if mt == "application/x-www-form-urlencoded":
            return "form"
        if mt == "application/json" or mt.endswith("+json"):
            return "json"
        return None
    head = body.lstrip()[:1]
    if head == b"<":
        return "xml"
    if head in (b"{", b"["):
        return "json"
    return None


class _HttpSink:
    __slots__ = ("url", "headers", "body", "headers_done", "complete", "keep", "want_body")

    def __init__(self, keep: set[str] | None, want_body: bool):
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.headers_done = False
        self.complete = False
        self.keep = keep
        self.want_body = want_body

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        n = name.decode("latin-1").lower()
        if self.keep is not None and n not in self.keep:
            return
        v = value.decode("latin-1").strip()
        if n in self.headers:
            sep = "; " if n == "cookie" else ", "
            self.headers[n] = self.headers[n] + sep + v
        else:
            self.headers[n] = v

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        if self.want_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        raise _Done  # only the first request of a pipeline is classified


def parse_http(raw: bytes, keep_headers: set[str] | None = None, want_body: bool = True):
    """Parse the first HTTP/1.x request in `raw`. Returns a dict of request-line fields,
    headers (lower-case names), body, `headers_done` and `complete`; or None when the request
    line or headers are malformed."""
    sink = _HttpSink(keep_headers, want_body)
    parser = httptools.HttpRequestParser(sink)
    error = False
    try:
        parser.feed_data(raw)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserCallbackError as e:
        if not isinstance(e.__context__, _Done):
            error = True
    except httptools.HttpParserError:
        error = True
    if not sink.headers_done:
        # request line or headers malformed or not all here yet: nothing reliable
        return {"headers_done": False, "complete": False} if not error else None
    out = {
        "headers_done": True,
        "complete": sink.complete and not error,
        "method": parser.get_method().decode("latin-1"),
        "version": parser.get_http_version(),
        "url": sink.url.decode("latin-1"),
        "headers": sink.headers,
        "body": b"".join(sink.body) if (sink.complete and not error) else None,
    }
    return out


def split_target(url: str) -> tuple[str, str | None, str | None]:
    """request-target -> (path, query or None, authority host or None)."""
    host = None
    rest = url
    low = url[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        after = url.split("://", 1)[1]
        slash = after.find("/")
        auth = after if slash < 0 else after[:slash]
        rest = "/" if slash < 0 else after[slash:]
        host = _host_only(auth.rpartition("@")[2])
    path, q, query = rest.partition("?")
    path = path.partition("#")[0]
    return path, (query.partition("#")[0] if q else None), host


def _host_only(h: str) -> str:
    h = h.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def parse_cookies(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in header.replace(",", ";").split(";"):
        name, eq, val = part.strip().partition("=")
        if eq and name and name not in out:
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1]
            out[name] = val
    return out


def json_lookup(doc, path: str):
    cur = doc
    for step in path.split("."):
        if isinstance(cur, dict):
            if step not in cur:
                return None
            cur = cur[step]
        elif isinstance(cur, list):
            if not step.isdigit() or int(step) >= len(cur):
                return None
            cur = cur[int(step)]
        else:
            return None
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if cur is None or isinstance(cur, (dict, list)):
        return None
    return str(cur)


def extract_body_fields(content_type: str | None, body: bytes, fields: Iterable[str]) -> dict[str, str]:
    """Values of xml./form./json. fields from an HTTP body."""
    fields = list(fields)
    kind = body_kind(content_type, body)
    out: dict[str, str] = {}
    if kind is None or not fields:
        return out
    xml_paths = [f[4:] for f in fields if f.startswith("xml.")]
    try:
        if kind == "xml":
            for k, v in extract_xml(body, xml_paths).items():
                out["xml." + k] = v
        elif kind == "form":
            form: dict[str, str] = {}
            for k, v in parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                                  encoding="utf-8", errors="replace"):
                form.setdefault(k, v)
            for f in fields:
                if f.startswith("form.") and f[5:] in form:
                    out[f] = form[f[5:]]
            if xml_paths:
                # XML carried inside a urlencoded form: the first field whose value is a document
                for v in form.values():
                    if v.lstrip().startswith("<"):
                        for k, val in extract_xml(v.encode("utf-8"), xml_paths).items():
                            out["xml." + k] = val
                        break
        elif kind == "json":
            doc = json.loads(body)
            for f in fields:
                if f.startswith("json."):
                    v = json_lookup(doc, f[5:])
                    if v is not None:
                        out[f] = v
    except (ValueError, UnicodeError, RecursionError):
        pass  # malformed body: its fields are absent
    return out


# ---------------------------------------------------------------------------------------------
# TLS ClientHello


def parse_client_hello(raw: bytes) -> dict | None:
    """SNI, session id and ALPN of a TLS ClientHello (possibly spread over several handshake
    records). Never decrypts or answers; returns None if this is not a complete ClientHello.
    The wire parser is the CS processor's (``p4cs.csproc.tls``), which frames and routes
    the ClientHellos of TLS services."""
    hello = client_hello(raw)
    if hello is None:
        return None
    sid = hello.session_id
    out: dict = {"session_id": sid.hex() if sid else None, "sni": None, "alpn": None}
    try:
        for etype, e in hello.exts:
            if etype == 0 and len(e) >= 5:  # server_name
                j = 2
                while j + 3 <= len(e):
                    ntype, nlen = e[j], int.from_bytes(e[j + 1 : j + 3], "big")
                    if ntype == 0:
                        out["sni"] = e[j + 3 : j + 3 + nlen].decode("ascii").lower().rstrip(".")
                        break
                    j += 3 + nlen
            elif etype == 16 and len(e) >= 2:  # ALPN
                protos, j = [], 2
                while j < len(e):
                    plen = e[j]
                    protos.append(e[j + 1 : j + 1 + plen].decode("ascii"))
                    j += 1 + plen
                out["alpn"] = ",".join(protos)
        return out
    except (IndexError, UnicodeDecodeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# SMTP


def _addr(arg: str) -> str:
    arg = arg.strip()
    if arg.startswith("<"):
        return arg[1:].partition(">")[0].strip()
    return arg.split()[0] if arg.split() else ""


def parse_smtp(raw: bytes) -> dict:
    """The envelope of a client SMTP dialogue: HELO/EHLO, MAIL FROM, first RCPT TO, and the
    message headers after DATA (lower-case names)."""
    out: dict = {"helo": None, "from": None, "to": None, "headers": {}}
    text = raw.decode("latin-1")
    lines = text.split("\n")
    in_data = False
    in_headers = False
    last = None
    for line in lines[:-1] if not text.endswith("\n") else lines:
        line = line.rstrip("\r")
        if in_data:
            if line == ".":
                break
            if in_headers:
                if not line:
                    in_headers = False
                elif line[:1] in (" ", "\t") and last:
                    out["headers"][last] += " " + line.strip()
                else:
                    name, colon, val = line.partition(":")
                    if colon and name.strip():
                        last = name.strip().lower()
                        out["headers"].setdefault(last, val.strip())
            continue
        up = line.upper()
        if up.startswith(("HELO ", "EHLO ")):
            out["helo"] = line[5:].strip()
        elif up.startswith("MAIL FROM:"):
            out["from"] = _addr(line[10:])
        elif up.startswith("RCPT TO:"):
            if out["to"] is None:
                out["to"] = _addr(line[8:])
        elif up == "DATA" or up.startswith("DATA "):
            in_data = in_headers = True
    return out


# ---------------------------------------------------------------------------------------------
# POP3 and IMAP


def parse_pop3(raw: bytes) -> dict:
    """The user of a client POP3 dialogue: the argument of its first USER command."""
    for line in raw.split(b"\n"):
        if line[:5].upper() == b"USER ":
            user = line[5:].strip()
            try:
                return {"user": user.decode("utf-8") if user else None}
            except UnicodeDecodeError:
                return {"user": None}
    return {"user": None}


def _imap_astring(data: bytes, i: int) -> tuple[bytes, int] | None:
    """An IMAP astring (atom, quoted string or literal) at ``data[i:]``, and its end."""
    if data[i:i + 1] == b'"':
        out, j = bytearray(), i + 1
        while j < len(data) and data[j:j + 1] != b'"':
            if data[j:j + 1] == b"\\":
                j += 1
            out += data[j:j + 1]
            j += 1
        return (bytes(out), j + 1) if j < len(data) else None
    m = re.match(rb"\{(\d+)\+?\}\r?\n", data[i:])
    if m:
        start = i + m.end()
        n = int(m.group(1))
        return (data[start:start + n], start + n) if len(data) >= start + n else None
    m = re.match(rb"[^ \r\n(){%*\"\\]+", data[i:])
    return (m.group(0), i + m.end()) if m else None


def parse_imap(raw: bytes) -> dict:
    """The user of a client IMAP dialogue: the first LOGIN's user name, or the
    authentication identity of an AUTHENTICATE PLAIN (RFC 4616)."""
    for m in re.finditer(rb"(?m)^[^ \r\n]+ (LOGIN|AUTHENTICATE) ", raw, re.I):
        i = m.end()
        try:
            if m.group(1).upper() == b"LOGIN":
                got = _imap_astring(raw, i)
                return {"user": got[0].decode("utf-8") if got else None}
            mech, _, rest = raw[i:].partition(b"\n")
            mech, _, ir = mech.strip().partition(b" ")
            if mech.upper() != b"PLAIN":
                continue
            resp = ir or rest.partition(b"\n")[0].strip()
            parts = base64.b64decode(resp, validate=True).split(b"\0")
            return {"user": parts[1].decode("utf-8") if len(parts) == 3 else None}
        except (ValueError, UnicodeDecodeError):
            return {"user": None}
    return {"user": None}


# ---------------------------------------------------------------------------------------------
# The request view


def _ip(addr) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        a = ipaddress.ip_address(addr)
    except (ValueError, TypeError):
        return None
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return a.ipv4_mapped
    return a


def detect_protocol(raw: bytes) -> str:
    if raw[:1] == b"\x16":
        return "tls"
    head = raw[:5].upper()
    if head in (b"HELO ", b"EHLO ") or head[:4] in (b"HELO", b"EHLO") or raw[:10].upper() == b"MAIL FROM:":
        return "smtp"
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    if head == b"USER " or line.upper() == b"CAPA":
        return "pop3"
    if _IMAP_FIRST.match(line) and not _HTTP_VERSION.search(line):
        return "imap"
    return "http"


_IMAP_FIRST = re.compile(rb"^[^ ]+ (LOGIN|AUTHENTICATE|CAPABILITY)( |$)", re.I)
_HTTP_VERSION = re.compile(rb" HTTP/\d")


_SIMPLE_HTTP = ("url", "path", "query", "method", "version", "host")


class RequestView:
    """Lazy field access over one client request. `get(field)` returns the value (str, int or
    ip address) or None when the field is absent."""

    __slots__ = ("raw", "client", "vip", "packet", "fields", "_vals", "_proto", "_http",
                 "_http_done", "_body_done", "_other_done")

    def __init__(self) -> None:
        self._vals: dict = {}
        self._http = None
        self._http_done = self._body_done = self._other_done = False
        self._proto = None
        self.raw = b""
        self.client = self.vip = None
        self.packet = None
        self.fields = None

    @classmethod
    def from_bytes(cls, raw: bytes, client=None, vip=None, fields=None, packet: bytes | None = None) -> "RequestView":
        """`raw`: the bytes the client sent (HTTP request, TLS records or SMTP dialogue).
        `client`, `vip`: (ip, port). `fields`: the field names to extract (rs.fields); None
        extracts whatever is asked for. `packet`: the first packet's bytes from the IP header
        on, for bitmatch(); without it bitmatch() reads `raw`."""
        v = cls()
        v.raw = bytes(raw)
        v.client = client
        v.vip = vip
        v.packet = packet
        v.fields = frozenset(fields) if fields is not None else None
        return v

    @classmethod
    def from_fields(cls, values: dict) -> "RequestView":
        """A view with given field values (missing names are absent); for tests and witnesses."""
        v = cls()
        v._vals = dict(values)
        v._http_done = v._body_done = v._other_done = True
        v._proto = "fields"
        return v

    # -- protocol ------------------------------------------------------------------------------
    @property
    def protocol(self) -> str:
        if self._proto is None:
            self._proto = detect_protocol(self.raw)
        return self._proto

    @property
    def complete(self) -> bool:
        """True when the request is complete enough to classify: HTTP headers (and, when body
        fields are referenced, the body) received; a whole ClientHello; SMTP envelope up to
        DATA or the recipients."""
        proto = self.protocol
        if proto == "fields":
            return True
        if proto == "http":
            h = self._parse_http()
            if h is None:
                return True  # malformed: waiting will not help
            needs_body = self.fields is None or any(is_body_field(f) for f in self.fields)
            return h["complete"] if needs_body else h["headers_done"]
        if proto == "tls":
            return parse_client_hello(self.raw) is not None
        if proto == "pop3":
            return parse_pop3(self.raw)["user"] is not None
        if proto == "imap":
            return parse_imap(self.raw)["user"] is not None
        s = parse_smtp(self.raw)
        return s["to"] is not None

    # -- field access --------------------------------------------------------------------------
    def get(self, name: str):
        vals = self._vals
        if name in vals:
            return vals[name]
        val = self._extract(name)
        vals[name] = val
        return val

    def values(self) -> dict:
        return dict(self._vals)

    def _extract(self, name: str):
        if self._proto == "fields":
            return None
        if name == "client.ip":
            return _ip(self.client[0]) if self.client else None
        if name == "client.port":
            return int(self.client[1]) if self.client else None
        if name == "vip":
            return _ip(self.vip[0]) if self.vip else None
        if name == "vip.port":
            return int(self.vip[1]) if self.vip else None
        if name.startswith("bitmatch("):
            off, length, mask = parse_bitmatch_name(name)
            data = self.packet if self.packet is not None else self.raw
            end = off + length
            if len(data) * 8 < end:
                return None
            first, last = off // 8, (end + 7) // 8
            chunk = int.from_bytes(data[first:last], "big")
            shift = last * 8 - end
            return (chunk >> shift) & ((1 << length) - 1) & mask
        proto = self.protocol
        if name.startswith(("tls.",)):
            if proto != "tls":
                return None
            ch = parse_client_hello(self.raw)
            return None if ch is None else ch.get(name[4:])
        if name.startswith("smtp."):
            if proto != "smtp":
                return None
            return parse_smtp(self.raw).get(name[5:])
        if proto == "smtp" and name.startswith("header."):
            return parse_smtp(self.raw)["headers"].get(name[7:])
        if name == "pop3.user":
            return parse_pop3(self.raw)["user"] if proto == "pop3" else None
        if name == "imap.user":
            return parse_imap(self.raw)["user"] if proto == "imap" else None
        if proto != "http":
            return None
        h = self._parse_http()
        if h is None or not h["headers_done"]:
            return None
        if is_body_field(name):
            return self._body_field(name, h)
        if name == "method":
            return h["method"]
        if name == "version":
            return h["version"]
        if name == "url":
            return h["url"]
        if name in ("path", "query", "host"):
            path, query, ahost = split_target(h["url"])
            if name == "path":
                return path
            if name == "query":
                return query
            if ahost:
                return ahost
            hh = h["headers"].get("host")
            return _host_only(hh) if hh is not None else None
        if name.startswith("header."):
            return h["headers"].get(name[7:])
        if name.startswith("cookie."):
            ck = h["headers"].get("cookie")
            return None if ck is None else parse_cookies(ck).get(name[7:])
        return None

    def _parse_http(self):
        if not self._http_done:
            self._http_done = True
            keep = None
            want_body = True
            if self.fields is not None:
                keep = {"host", "content-type", "content-length", "transfer-encoding"}
                keep.update(f[7:] for f in self.fields if f.startswith("header."))
                if any(f.startswith("cookie.") for f in self.fields):
                    keep.add("cookie")
                want_body = any(is_body_field(f) for f in self.fields)
            self._http = parse_http(self.raw, keep, want_body)
        return self._http

    def _body_field(self, name: str, h):
        if not self._body_done:
            self._body_done = True
            body = h.get("body")
            if body is not None:
                wanted = [f for f in (self.fields or ()) if is_body_field(f)]
                if name not in wanted:
                    wanted.append(name)
                found = extract_body_fields(h["headers"].get("content-type"), body, wanted)
                for f in wanted:
                    self._vals.setdefault(f, found.get(f))
        if name in self._vals:
            return self._vals[name]
        # a body field nobody declared in `fields`: extract it alone
        body = h.get("body")
        if body is None:
            return None
        return extract_body_fields(h["headers"].get("content-type"), body, [name]).get(name)


def xml_field_path(fname: str) -> str:
    return xml_path_text(parse_xml_path(fname[4:]))
