"""The C XML scanner (p4cs.rules._xmlscan) against libxml2, the reference
(extract_xml_libxml2): on generated well-formed documents it resolves every document itself
and gives the reference's values; on damaged ones it gives the reference's values too, either
because everything up to the elements it reports is well-formed or because it declines (None)
and extract_xml asks libxml2."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import XML_SEEDS, XMLSCAN_SEEDS, guarded, mutated
from test_xml_property import element
from p4cs.rules import extract
from p4cs.rules.extract import extract_xml, extract_xml_libxml2

pytestmark = pytest.mark.skipif(extract._xmlscan is None,
                                reason="p4cs.rules._xmlscan is not built (setup.py build_ext --inplace)")

NAMES = ["a", "b", "c", "purchase", "item", "total", "a.b", "x-y", "_z9"]
PATHS = ["a", "b", "a/b", "b/c", "a:1/b:2", "a/b:2/c", "purchase/total", "item:3", "c:2",
         "purchase:1/item:2/total", "a/a", "a.b/x-y", "_z9", "b:99999999999999999999"]
TEXT = st.sampled_from([
    "", "1", " x ", "5000", "&amp;", "&lt;q&gt;", "&#65;", "&#x1F600;", "&#13;", "&#10;x&#9;",
    "&quot;&apos;", "<![CDATA[<z>]]>", "<![CDATA[]]>", "<![CDATA[a]]]>", "<![CDATA[x\r\ny]]>",
    "<!-- c -->", "<!---->", "<!-- a - b -->", "<?pi d?>", "<?pi?>", "<?pi \r\n x ?>", "\u00e9",
    "\u20ac\U0001F600", "\n  ", "a\r\nb", "a\rb", "a\r", "]", "]]", "a > b", "\t", "\x7f\u0085",
    "\u00a0pad\u00a0", "\u2003"])
ATTRS = st.sampled_from([
    "", ' k="v"', " k='&amp;' j=\"2\"", ' k = "a>b"', " k='\"' j=\"'\"", ' k="&#60;&lt;"',
    '\n\tk="1"\r\n', ' xml:lang="en"', ' n:k="1"', ' xmlns="urn:d"', ' xmlns:m="urn:m" m:k="2"',
    ' xmlns=""', ' k="\u00e9\t"'])


RICH = {"names": st.sampled_from(NAMES), "text": TEXT, "attrs": ATTRS, "max_depth": 4,
        "end_space": st.sampled_from(["", " ", "\n\t"]), "wrap": st.integers(0, 5).map(lambda i: i == 0)}


PROLOG = st.sampled_from([
    "", '<?xml version="1.0"?>\n', "<?xml version='1.0' encoding='UTF-8'?>",
    '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\r\n',
    '<?xml  version = "1.0"  standalone=\'no\' ?>', "\ufeff", "\ufeff<?xml version=\"1.0\"?>"])
MISC = st.sampled_from(["", "\n", "<!-- m -->", "<?pi x?>\n", " <!---->\t"])
DOCTYPE = st.sampled_from(["", "<!DOCTYPE a>", '<!DOCTYPE purchase SYSTEM "p.dtd">\n',
                           "<!DOCTYPE n:a PUBLIC '-//P4CS//X 1.0//EN' 'x.dtd' >",
                           '<!DOCTYPE a PUBLIC "-//A/B" "">'])


@st.composite
def document(draw):
    doc = draw(element(kind=RICH))
    return (draw(PROLOG) + draw(MISC) + draw(DOCTYPE) + draw(MISC) + doc + draw(MISC)).encode("utf-8")


def scan(doc, paths):
    specs, seqs = extract._compiled(tuple(paths))
    return seqs.scan(doc)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(document(), st.lists(st.sampled_from(PATHS), min_size=1, max_size=5))
def test_scanner_resolves_wellformed_documents_like_libxml2(doc, paths):
    got = scan(doc, paths)
    assert got is not None, doc  # in the scanner's part of XML: never left to libxml2
    assert got == extract_xml_libxml2(doc, paths), doc


BREAKERS = [b"<", b"&", b"&foo;", b"&#0;", b"&#x110000;", b"&#xD800;", b"&amp", b"]]>", b"--",
            b"\x01", b"\x0c", b"\x00", b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xef\xbf\xbe",
            b"\xf4\x90\x80\x80", b"\xe2\x82", b"<!DOCTYPE a [<!ENTITY foo 'x'>]>", b' x="1"',
            b' x="1" x="2"', b"</a>", b"</b >", b"<p:x>", b"<n:>", b"<:a>", b"<a:b:c>", b" xmlns:p=''",
            b' xmlns:xml="urn:x"', b' xmlns:q="http://www.w3.org/2000/xmlns/"', b"\r", b"<?xml ?>",
            b"<?xml-stylesheet x?>", b"<?p:i?>", b"<![CDATA[", b"?>", b"-->", b"<!-- - -->", b"<!--->",
            b"<!ELEMENT a ANY>", b"<1a>", b"< a>", b"<a/ >", b'"', b"'", b"=", b"/>", b"\t",
            b"\xc3\xa9", b"<\xc3\xa9>", b'<?xml version="1.1"?>', b"\xef\xbb\xbf", b"\xff\xfe",
            b"<!DOCTYPE a>", b'encoding="latin1"', b"&#x41", b"&#65;"]


@st.composite
def damaged(draw):
    doc = bytearray(draw(st.one_of(document(), mutated(XML_SEEDS + XMLSCAN_SEEDS))))
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(doc)))
        op = draw(st.integers(0, 3))
        if op == 0:
            doc[pos:pos] = draw(st.sampled_from(BREAKERS))
        elif op == 1:
            del doc[pos:pos + draw(st.integers(1, 6))]
        elif op == 2 and pos < len(doc):
            doc[pos] = draw(st.integers(0, 255))
        else:
            del doc[pos:]
    return bytes(doc)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(damaged(), st.lists(st.sampled_from(PATHS + ["purchase/totalAmount", "item:2/subTotal"]),
                           min_size=1, max_size=4))
def test_damaged_documents_give_the_reference_values(doc, paths):
    ref = extract_xml_libxml2(doc, paths)
    got = scan(guarded(doc), paths)
    assert got is None or got == ref, (doc, got, ref)
    assert extract_xml(doc, paths) == ref


@pytest.mark.parametrize("doc", [
    b"", b"   ", b"<", b"<a>", b"<a><b>1</b>", b"<a><b>1</b></c>", b"text<a/>",
    b"<a>&nbsp;</a>", b"<a>\x00</a>", b"<a>]]></a>", b"<a><!-- x -- y --></a>",
    b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>', b"\xff\xfe<\x00a\x00/\x00>\x00",
    b'<!DOCTYPE a [<!ENTITY e "v">]><a>&e;</a>', b"<a><p:b/></a>", b'<a p:k="1"/>',
    b'<a k="1" k="2"/>', b'<a xmlns:p="u" xmlns:q="u" p:k="1" q:k="2"/>', b'<a xmlns:p=""/>',
    b"<\xc3\xa9l\xc3\xa9ment/>", b" <?xml version='1.0'?><a/>", b"<a><?xml x?></a>",
    b'<a k="<"/>', b"<a k=1/>", b'<a k="1"j="2"/>', b"<a>&#xFFFE;</a>", b"<a>\xef\xbf\xbf</a>",
    b"<a>" + b"<b>" * 300 + b"</b>" * 300 + b"</a>",
])
def test_what_the_scanner_leaves_to_libxml2(doc):
    """Malformed or outside the scanner's part of XML: declined, and extract_xml gives what
    libxml2 gives (mostly nothing; values that ended before a problem stay)."""
    paths = ["a", "a/b", "b"]
    assert scan(doc, paths) is None
    assert extract_xml(doc, paths) == extract_xml_libxml2(doc, paths)


@pytest.mark.parametrize("doc, value", [(b"<a/><b/>", ""), (b"<a><![CDATA[x]]></a><![CDATA[y]]>", "x"),
                                        (b"<a>x</a>\xff", "x")])
def test_nothing_after_the_root_element_changes_a_value(doc, value):
    """The scan ends with the root element: what follows it, even if malformed, cannot give a
    value or take one away (libxml2 keeps the values of the elements that ended)."""
    paths = ["a", "a/b", "b"]
    assert scan(doc, paths) == extract_xml_libxml2(doc, paths) == {"a": value}


def test_depth_up_to_255_levels_is_scanned_deeper_is_left_to_libxml2():
    def nest(n):
        return b"<a>" * (n - 1) + b"<b>1</b>" + b"</a>" * (n - 1)
    assert scan(nest(255), ["a/b"]) == extract_xml_libxml2(nest(255), ["a/b"]) == {"a/b": "1"}
    assert scan(nest(256), ["a/b"]) is None
    assert extract_xml(nest(256), ["a/b"]) == {"a/b": "1"}  # libxml2's limit is 256 levels
    assert extract_xml(nest(257), ["a/b"]) == extract_xml_libxml2(nest(257), ["a/b"]) == {}


def test_limits_of_names_attributes_and_namespace_declarations():
    long_name = b"n" * 1025
    for doc in (b"<%s/>" % long_name,
                b"<a %s/>" % b" ".join(b'k%d="1"' % i for i in range(33)),
                b"<a>" + b"".join(b'<b xmlns:p%d="u">' % i for i in range(65)) + b"</b>" * 65 + b"</a>"):
        assert scan(doc, ["a"]) is None
        assert extract_xml(doc, ["a"]) == extract_xml_libxml2(doc, ["a"])
    doc = (b"<%s>" % (b"n" * 1024) + b"<a %s>1</a>" % b" ".join(b'k%d="1"' % i for i in range(32))
           + b"".join(b'<b xmlns:p%d="u">' % i for i in range(64)) + b"</b>" * 64 + b"</%s>" % (b"n" * 1024))
    assert scan(doc, ["a"]) == extract_xml_libxml2(doc, ["a"]) == {"a": "1"}


def test_early_stop_and_the_end_of_the_root_element():
    doc = b"<r><t>7</t><u>8</u>" + b"\xff<<garbage"
    assert scan(doc, ["t"]) == extract_xml_libxml2(doc, ["t"]) == {"t": "7"}
    assert scan(doc, ["t", "u", "v"]) is None  # v is still open to find when the garbage starts
    assert extract_xml(doc, ["t", "u", "v"]) == {"t": "7", "u": "8"}
    doc = b"<r><t>7</t></r><r>junk"
    assert scan(doc, ["t", "v"]) == extract_xml_libxml2(doc, ["t", "v"]) == {"t": "7"}


def test_value_text_is_the_references_text():
    doc = ('<r xmlns:s="urn:s"><s:t k="a>b">\r\n x &amp; &#x20AC;<![CDATA[ <c>\r\n ]]>'
           "<i>in<!-- no --><?no x?></i>\u00e9 \u2003</s:t></r>").encode()
    assert scan(doc, ["r/t"]) == extract_xml_libxml2(doc, ["r/t"]) == {
        "r/t": "x & \u20ac <c>\n in\u00e9"}


def test_huge_documents_are_left_to_libxml2():
    doc = b"<a>" + b" " * 10_000_000 + b"</a>"
    assert scan(doc, ["a"]) is None
    assert extract_xml(doc, ["a"]) == {"a": ""}


def test_long_qualified_names_across_16_byte_blocks():
    """Names are read 16 bytes at a time: colons and name ends in every position of a block."""
    for plen in range(1, 36, 3):
        for llen in range(1, 36, 2):
            prefix, local = "p" * plen, "l" * llen
            doc = f'<r xmlns:{prefix}="u"><{prefix}:{local} {prefix}:k="1">v</{prefix}:{local} ></r>'.encode()
            assert scan(doc, [f"r/{local}"]) == extract_xml_libxml2(doc, [f"r/{local}"]) == {f"r/{local}": "v"}
            two = f'<r xmlns:{prefix}="u"><{prefix}:{local}:x/></r>'.encode()
            assert scan(two, ["r"]) is None
            assert extract_xml(two, ["r"]) == extract_xml_libxml2(two, ["r"])
