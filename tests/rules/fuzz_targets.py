"""Fuzz targets for the parsers that read client bytes or operator files, with their input
strategies (hypothesis). Used by tests/rules/test_fuzz.py (short budget) and bench/fuzz.py
(fixed time budget per target). The `xmlscan` target (the C XML scanner on its own, each input
right before an inaccessible page) exists when p4cs.rules._xmlscan is built.

A target raises on a crash (any exception the code under test lets escape, or a broken
invariant); `Hang` is raised by the per-input time bound. Inputs that ever failed are kept
in tests/rules/data/fuzz/<target>/ and replayed by the test suite.
"""

from __future__ import annotations

import ctypes
import mmap
import signal
from contextlib import contextmanager
from pathlib import Path

from hypothesis import strategies as st

from p4cs.csproc.framing import RequestFramer
from p4cs.rules import RequestView, parse_rules
from p4cs.rules.extract import (
    extract_body_fields,
    extract_xml,
    extract_xml_libxml2,
    parse_client_hello,
    parse_http,
    parse_smtp,
)
from p4cs.rules.model import parse_xml_path
from p4cs.rules.parser import RuleError
from p4cs.rules.synth import build_client_hello, build_smtp

try:
    from p4cs.rules import _xmlscan
except ImportError:  # not built: no xmlscan target
    _xmlscan = None

DATA = Path(__file__).resolve().parent / "data"
CORPUS = DATA / "fuzz"


class Hang(Exception):
    """An input took longer than the per-input time bound."""


@contextmanager
def time_bound(seconds: float):
    """Raise Hang in the calling (main) thread when the block runs longer than `seconds`."""

    def alarm(signum, frame):
        raise Hang(f"input took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------------
# inputs: seeds, mutated


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few random edits (replace, insert, delete, duplicate, truncate)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 4))
        pos = draw(st.integers(0, len(data)))
        if op == 0 and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            data[pos:pos] = draw(st.binary(max_size=8) | st.sampled_from(
                [b"<", b">", b"</", b"&", b"\r\n", b":", b"\x00", b"\xff", b'"', b"{", b"[",
                 b"9" * 40, b"%", b"=", b"&&", b"||", b"(", b")", b"!", b"\\"]))
        elif op == 2:
            end = draw(st.integers(pos, min(len(data), pos + 16)))
            del data[pos:end]
        elif op == 3:
            end = draw(st.integers(pos, min(len(data), pos + 32)))
            data[pos:pos] = data[pos:end] * draw(st.integers(1, 20))
        else:
            del data[pos:]
    return bytes(data)


def inputs(seeds: list[bytes]):
    return st.one_of(mutated(seeds), st.binary(max_size=300))


def _seed(name: str) -> bytes:
    return (DATA / name).read_bytes()


XML_SEEDS = [_seed("purchase.xml"),
             b'<s:Envelope xmlns:s="x"><s:Body><purchase><totalAmount>1</totalAmount>'
             b"</purchase></s:Body></s:Envelope>",
             b"<a><b>1</b><b>2<c>x</c></b><![CDATA[t]]><!-- c --><?pi x?></a>",
             b'<?xml version="1.0" encoding="ISO-8859-1"?><a x="1">&amp;&#65;&lt;<b/></a>']
#: documents in the part of XML the C scanner resolves itself (it declines the fourth seed above)
XMLSCAN_SEEDS = [
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE purchase SYSTEM "p.dtd">\n<!-- c -->'
    b'<purchase xmlns:n="urn:x" n:k="a&gt;b"><n:item k=\'1\'><subTotal>1&#65;</subTotal></n:item>'
    b"<item><subTotal><![CDATA[<2>]]></subTotal></item><?pi x?>"
    b"<totalAmount>\r\n 3 \xc3\xa9</totalAmount></purchase>\n",
    b'<a xmlns="urn:d"><b k="1" j=\'&quot;\'>1</b><b>2<c>x</c>\xe2\x82\xac</b><c/><a><b>in</b></a></a>',
]
XML_PATHS = ["purchase/totalAmount", "purchase:1/item:2/subTotal", "a/b", "a:1/b:2/c", "b",
             "Body/purchase/totalAmount", "a", "item/productID"]

HTTP_SEEDS = [_seed("lcs1.http"), _seed("lcs2.http"), _seed("purchase_form.http"),
              _seed("purchase_textxml.http"),
              b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
              b'POST /j HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{"a": {"b": [1, "x"]}, "c": 5}',
              b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; b=\"2\"\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"]
BODY_SEEDS = [b'{"a": {"b": [1, "x"]}, "c": 5, "d": true, "e": null}', b"a=1&b=%41&xmldoc=%3Ca%3E1%3C%2Fa%3E",
              b"[[[[1]]]]", XML_SEEDS[0]]
TLS_SEEDS = [_seed("clienthello.bin"), build_client_hello("www.example.com", "ab" * 32, "h2,http/1.1"),
             build_client_hello(None)]
SMTP_SEEDS = [_seed("smtp.txt"),
              build_smtp({"smtp.helo": "h", "smtp.from": "a@b", "smtp.to": "c@d", "header.subject": "x"})]
RULE_SEEDS = [p.read_bytes() for p in sorted(DATA.glob("*.rules"))]

RULE_TOKENS = ["if", "else", "(", ")", "{", "}", ";", ",", "&&", "||", "!", "==", "!=", "<", ">=",
               "in", "[", "]", "match", "prefix", "suffix", "regex", "host", "url", "client.ip",
               "client.port", "xml.a/b", "xml.a:1.b", "header.X", "cookie.c", "json.a.0", "form.f",
               "bitmatch(0, 8, 0xff)", '"a"', "'b'", '"[a-z"', '"(a"', "5", "-3.5", "0x1f",
               "10.0.0.0/8", "9" * 120, "routeTo(g)", "forward(s, NONSTICKY)", "reject",
               "loadBalance(g, roundRobin)", 'log("x", url)', "r1:", "r1:", "true", "false",
               "#c\n", "/*", "*/", "\n", "\u201cq\u201d"]
rule_texts = st.one_of(
    mutated(RULE_SEEDS).map(lambda b: b.decode("utf-8", "replace")),
    st.lists(st.sampled_from(RULE_TOKENS), max_size=40).map(" ".join),
    st.text(max_size=200),
)

#: A rule set testing every kind of field, for fuzzing extraction through RequestView.
FIELD_RULES = parse_rules("""
a: if (xml.purchase/totalAmount > 100 || json.a.b.0 == 1 || form.b == "A") routeTo(body);
b: if (regex(url, "^/x") && host == "a" && cookie.b == "2" && header.upgrade == "websocket") routeTo(h);
c: if (tls.sni == "www.example.com" || tls.alpn == "h2" || tls.session_id == "ab") routeTo(tls);
d: if (smtp.from == "a@b" || smtp.to == "c@d" || smtp.helo == "h" || header.subject == "x") routeTo(mail);
e: if (bitmatch(0, 8, 0xff) == 22 && method == "GET" && version == "1.1" && query == "q") routeTo(bits);
f: if (path in ["/", "/x"] && client.port > 1000) routeTo(p);
""")


# ---------------------------------------------------------------------------------------------
# targets (each raises on a crash)


def t_xml(doc: bytes) -> None:
    got = extract_xml(doc, XML_PATHS)
    assert isinstance(got, dict) and all(isinstance(v, str) for v in got.values())
    assert set(got) <= set(XML_PATHS)


_PAGE = mmap.PAGESIZE
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def guarded(data: bytes) -> memoryview:
    """`data` placed right before an inaccessible page: a read past its end faults (SIGSEGV)
    instead of going unnoticed."""
    pages = len(data) // _PAGE + 1
    m = mmap.mmap(-1, (pages + 1) * _PAGE)
    if _libc.mprotect(ctypes.addressof(ctypes.c_char.from_buffer(m)) + pages * _PAGE, _PAGE, 0):
        raise OSError(ctypes.get_errno(), "mprotect failed")
    start = pages * _PAGE - len(data)
    m[start:start + len(data)] = data
    return memoryview(m)[start:pages * _PAGE]


def t_xmlscan(doc: bytes) -> None:
    """The C scanner reads nothing past the document's end, and a value it gives (when it does
    not leave the document to libxml2) is libxml2's."""
    got = XMLSCAN.scan(guarded(doc))
    assert got is None or got == extract_xml_libxml2(doc, XML_PATHS), got


def t_body(body: bytes) -> None:
    for ct in ("application/json", "application/x-www-form-urlencoded", "text/xml", None):
        got = extract_body_fields(ct, body, ["json.a.b.0", "json.c", "form.a", "form.b",
                                             "xml.a", "xml.purchase/totalAmount"])
        assert all(isinstance(v, str) for v in got.values())


def t_http(raw: bytes) -> None:
    parse_http(raw)
    v = FIELD_RULES.view(raw, ("192.0.2.1", 4000), ("198.51.100.1", 80))
    v.complete  # noqa: B018 - exercises the completeness test
    FIELD_RULES.decide(v)


def _frame(chunks) -> tuple[RequestFramer, int]:
    """Feed chunks; also return how many bytes were fed up to the first complete message."""
    f = RequestFramer(need_body=True, max_header=8192, max_body=1 << 16)
    fed = 0
    for c in chunks:
        if not f.message_done:
            fed += len(c)
        f.feed(c)
        assert f.error in (None, 400, 413, 431)
        assert not (f.ready and f.error is not None)
    return f, fed


def t_framer(raw: bytes) -> None:
    """Fed byte by byte, in 7-byte pieces or whole, the framer reaches the same state.
    Compared up to the end of the first request: bytes after it in the same piece are parsed
    as a pipelined request (see test_fuzz.test_framer_bytes_after_a_complete_request)."""
    one, end = _frame([raw[i:i + 1] for i in range(len(raw))])
    head = raw[:end]
    seven, _ = _frame([head[i:i + 7] for i in range(0, len(head), 7)])
    whole, _ = _frame([head])
    states = [(f.ready, f.error, f.headers_done) for f in (one, seven, whole)]
    assert states[0] == states[1] == states[2], states


def t_tls(raw: bytes) -> None:
    ch = parse_client_hello(raw)
    assert ch is None or isinstance(ch, dict)
    FIELD_RULES.decide(FIELD_RULES.view(raw))


def t_smtp(raw: bytes) -> None:
    s = parse_smtp(raw)
    assert isinstance(s["headers"], dict)
    FIELD_RULES.decide(FIELD_RULES.view(raw))


def t_rules(text: str) -> None:
    try:
        rs = parse_rules(text, "fuzz.rules")
    except RuleError as e:
        assert e.problems and all(p.message and "\n" not in p.message for p in e.problems)
        return
    rs.decide(RequestView.from_fields({"host": "a", "url": "/x", "client.port": 5}))


#: name -> (target, strategy, kind of input)
TARGETS = {
    "xml": (t_xml, inputs(XML_SEEDS), bytes),
    "body": (t_body, inputs(BODY_SEEDS), bytes),
    "http": (t_http, inputs(HTTP_SEEDS), bytes),
    "framer": (t_framer, inputs(HTTP_SEEDS), bytes),
    "tls": (t_tls, inputs(TLS_SEEDS), bytes),
    "smtp": (t_smtp, inputs(SMTP_SEEDS), bytes),
    "rules": (t_rules, rule_texts, str),
}
if _xmlscan is not None:
    XMLSCAN = _xmlscan.Sequences([(p, parse_xml_path(p)) for p in XML_PATHS])
    TARGETS["xmlscan"] = (t_xmlscan, inputs(XML_SEEDS + XMLSCAN_SEEDS), bytes)


def save(name: str, data) -> Path:
    """Keep a failing input as a regression case."""
    import hashlib

    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    d = CORPUS / name
    d.mkdir(parents=True, exist_ok=True)
    p = d / (hashlib.sha1(raw).hexdigest()[:16] + ".bin")
    p.write_bytes(raw)
    return p


def corpus(name: str) -> list:
    d = CORPUS / name
    kind = TARGETS[name][2]
    out = []
    for p in sorted(d.glob("*.bin")) if d.is_dir() else ():
        raw = p.read_bytes()
        out.append((p.name, raw.decode("utf-8", "surrogatepass") if kind is str else raw))
    return out
