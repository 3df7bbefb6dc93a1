import base64
import ipaddress

from conftest import DATA
from p4cs.rules import RequestView, parse_rules, classify
from p4cs.rules.extract import extract_xml, parse_client_hello, parse_imap, parse_pop3, parse_smtp

PURCHASE = (DATA / "purchase.xml").read_bytes()


def test_xml_both_path_forms_and_indices(xml_impl):
    got = extract_xml(PURCHASE, ["purchase/totalAmount", "purchase:1/item:2/subTotal",
                                 "purchase/item/subTotal", "purchase:2/totalAmount",
                                 "purchase/customerName", "item:3/subTotal"])
    assert got == {"purchase/totalAmount": "52000", "purchase:1/item:2/subTotal": "2000",
                   "purchase/item/subTotal": "50000", "purchase/customerName": "CCL"}


def test_xml_inside_soap_envelope_and_namespaces(xml_impl):
    doc = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>'
           b'<orders><purchase><totalAmount>1</totalAmount></purchase>'
           b'<purchase><totalAmount>15</totalAmount></purchase></orders></s:Body></s:Envelope>')
    assert extract_xml(doc, ["purchase:2/totalAmount", "Body/orders/purchase/totalAmount"]) == {
        "purchase:2/totalAmount": "15", "Body/orders/purchase/totalAmount": "1"}


def test_xml_stops_early_and_ignores_trailing_garbage(xml_impl):
    doc = b"<purchase><totalAmount>7</totalAmount>" + b"<<<not xml at all"
    assert extract_xml(doc, ["purchase/totalAmount"]) == {"purchase/totalAmount": "7"}
    # the same garbage before the element makes it absent
    assert extract_xml(b"<purchase><<<<totalAmount>7</totalAmount>", ["purchase/totalAmount"]) == {}


def test_malformed_xml_is_absent_not_an_exception(xml_impl):
    for doc in (b"", b"<", b"<a><b>1</a>", b"\xff\xfe\x00", b"<!DOCTYPE a [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><a>&x;</a>"):
        assert extract_xml(doc, ["a/b", "a"]) in ({}, {"a": ""})


def test_http_fields_content_type_case_and_form_encoded_xml(xml_impl):
    fields = {"method", "url", "path", "query", "version", "host", "xml.purchase/totalAmount",
              "header.content-type", "form.submit"}
    for name in ("purchase_textxml.http", "purchase_form.http"):
        v = RequestView.from_bytes((DATA / name).read_bytes(), fields=fields)
        assert v.get("method") == "POST"
        assert v.get("host") == "viva.uccs.edu"
        assert v.get("xml.purchase/totalAmount") == "52000"
        assert v.complete
    v = RequestView.from_bytes((DATA / "purchase_form.http").read_bytes(), fields=fields)
    assert v.get("form.submit") == "Buy" and v.get("version") == "1.0"


def test_http_request_line_cookie_host_query():
    raw = (b"GET http://Shop.Example.com:8080/a/b.gif?x=1&y=2 HTTP/1.1\r\nHost: ignored\r\n"
           b"Cookie: sid=abc; theme=\"dark\"\r\nCookie: lang=en\r\nX-Multi: 1\r\nx-multi: 2\r\n\r\n")
    v = RequestView.from_bytes(raw)
    assert v.get("host") == "shop.example.com"
    assert v.get("path") == "/a/b.gif" and v.get("query") == "x=1&y=2"
    assert v.get("cookie.theme") == "dark" and v.get("cookie.lang") == "en"
    assert v.get("header.x-multi") == "1, 2"
    assert v.get("cookie.none") is None and v.get("form.x") is None


def test_only_referenced_headers_are_kept():
    raw = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
    v = RequestView.from_bytes(raw, fields={"header.x-a"})
    v.get("header.x-a")
    assert set(v._http["headers"]) == {"host", "x-a"}


def test_json_body():
    body = b'{"order": {"total": 150.5, "items": [{"sku": "A1"}], "vip": true}}'
    raw = b"POST /api HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    v = RequestView.from_bytes(raw)
    assert v.get("json.order.total") == "150.5"
    assert v.get("json.order.items.0.sku") == "A1"
    assert v.get("json.order.vip") == "true"
    assert v.get("json.order") is None and v.get("json.order.items.5.sku") is None


def test_split_content_length_request_slide_71():
    seg1 = (DATA / "split_seg1.bin").read_bytes()
    seg2 = (DATA / "split_seg2.bin").read_bytes()
    rs = parse_rules('big: if (header.Content-Length == 753 && xml.purchase/totalAmount > 5000) routeTo(fast);')
    v1 = rs.view(seg1)
    assert not v1.complete                       # "Content-length: 7" is not the whole value
    assert v1.get("header.content-length") is None
    assert rs.decide(v1).rule is None
    v2 = rs.view(seg1 + seg2)
    assert v2.complete
    assert v2.get("header.content-length") == "753"
    assert rs.decide(v2).target == "fast"


def test_tls_client_hello():
    raw = (DATA / "clienthello.bin").read_bytes()
    ch = parse_client_hello(raw)
    assert ch == {"sni": "secure.example.com", "session_id": bytes(range(1, 33)).hex(), "alpn": "h2,http/1.1"}
    v = RequestView.from_bytes(raw)
    assert v.protocol == "tls" and v.get("tls.sni") == "secure.example.com" and v.complete
    assert v.get("url") is None
    # the same ClientHello split over two TLS records
    hs = raw[5:]
    two = b"\x16\x03\x01" + (20).to_bytes(2, "big") + hs[:20] + b"\x16\x03\x01" + (len(hs) - 20).to_bytes(2, "big") + hs[20:]
    assert parse_client_hello(two) == ch
    for n in range(len(raw)):
        assert parse_client_hello(raw[:n]) is None  # truncated: absent, no exception


def test_smtp_envelope_and_headers():
    raw = (DATA / "smtp.txt").read_bytes()
    s = parse_smtp(raw)
    assert s["from"] == "alice@client.org" and s["to"] == "sales@shop.example"
    assert s["helo"] == "mail.client.org"
    v = RequestView.from_bytes(raw)
    assert v.protocol == "smtp" and v.get("header.x-spam-score") == "7" and v.get("smtp.to") == "sales@shop.example"


def test_addresses_ports_bitmatch():
    v = RequestView.from_bytes(b"GET / HTTP/1.0\r\n\r\n", client=("::ffff:10.1.2.3", 5555),
                               vip=("2001:db8::1", 443))
    assert v.get("client.ip") == ipaddress.ip_address("10.1.2.3")
    assert v.get("vip") == ipaddress.ip_address("2001:db8::1") and v.get("vip.port") == 443
    ip = bytes.fromhex("4500003c1c4640004006b1e6c0a80001c0a800c7")  # TTL 64
    v = RequestView.from_bytes(b"", packet=ip)
    assert v.get("bitmatch(64,8,0xff)") == 64
    assert v.get("bitmatch(0,4,0xf)") == 4          # IP version nibble
    assert v.get("bitmatch(4,4,0xf)") == 5          # IHL
    assert v.get("bitmatch(1000,8,0xff)") is None   # beyond the packet: absent


def test_garbage_never_raises():
    rs = parse_rules((DATA / "mixed.rules").read_text())
    import os
    import random
    rnd = random.Random(7)
    samples = [b"", b"\x16", b"\x16\x03\x01\xff\xff\x01", b"GET", b"GET / HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
               b"POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{{{",
               b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/xml\r\n\r\nZZ\r\n",
               b"EHLO\r\nRCPT TO:\r\nDATA\r\n:\r\n", (DATA / "garbage.bin").read_bytes()]
    samples += [os.urandom(rnd.randint(0, 300)) for _ in range(200)]
    samples += [b"\x16\x03\x01" + os.urandom(rnd.randint(0, 100)) for _ in range(200)]
    for raw in samples:
        d = classify(rs, raw, ("10.0.0.1", 1), ("10.0.0.2", 80))
        assert d.rule in (None, "default", "blocked")


def test_pop3_and_imap_users():
    assert parse_pop3(b"CAPA\r\nUSER alice\r\nPASS x\r\n") == {"user": "alice"}
    assert RequestView.from_bytes(b"USER alice\r\n").get("pop3.user") == "alice"
    plain = base64.b64encode(b"\0bob\0pw")
    for raw, user in [(b'a1 LOGIN alice "pw"\r\n', "alice"),
                      (b'a1 LOGIN "al\\"ice" pw\r\n', 'al"ice'),
                      (b"a1 LOGIN {5}\r\nalice {2}\r\npw\r\n", "alice"),
                      (b"a1 CAPABILITY\r\na2 login dan x\r\n", "dan"),
                      (b"a2 AUTHENTICATE PLAIN\r\n" + plain + b"\r\n", "bob"),
                      (b"a2 AUTHENTICATE PLAIN " + plain + b"\r\n", "bob")]:
        assert parse_imap(raw) == {"user": user}
        v = RequestView.from_bytes(raw)
        assert v.protocol == "imap" and v.get("imap.user") == user and v.get("pop3.user") is None
    assert RequestView.from_bytes(b"a2 AUTHENTICATE PLAIN !!\r\n").get("imap.user") is None
    assert RequestView.from_bytes(b"GET LOGIN HTTP/1.1\r\n\r\n").protocol == "http"
