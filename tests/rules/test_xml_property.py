"""The XML extractor agrees with the expat reference (one Python callback per element): equal
on well-formed documents; on damaged ones it never reports a value the reference does not (a
value it reports is the reference's). Each test runs with the C scanner in front of libxml2
and with libxml2 alone (the `xml_impl` fixture); tests/rules/test_xmlscan.py compares the two."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_targets import XML_SEEDS, mutated
from p4cs.rules.extract import extract_xml
from xml_reference import reference_extract_xml

NAMES = ["a", "b", "c", "purchase", "item", "total"]
PATHS = ["a", "b", "a/b", "b/c", "a:1/b:2", "a/b:2/c", "purchase/total", "item:3", "c:2",
         "purchase:1/item:2/total", "a/a"]
TEXT = st.sampled_from(["", "1", " x ", "5000", "&amp;", "&lt;q&gt;", "&#65;", "<![CDATA[<z>]]>",
                        "<!-- c -->", "<?pi d?>", "\u00e9", "\n  "])


#: what generated elements are made of; test_xmlscan.py draws richer ones from the same generator
PLAIN = {"names": st.sampled_from(NAMES), "text": TEXT, "max_depth": 3,
         "attrs": st.sampled_from(["", ' k="v"', " k='&amp;' j=\"2\""]),
         "end_space": st.just(""), "wrap": st.just(False)}


@st.composite
def element(draw, depth=0, kind=PLAIN):
    """An element; the prefix `n:` is declared on the root."""
    name = draw(kind["names"])
    tag = name if draw(st.booleans()) else "n:" + name
    attrs = draw(kind["attrs"]) + (' xmlns:n="urn:x"' if depth == 0 else "")
    text = kind["text"]
    if depth >= kind["max_depth"] or draw(st.integers(0, 3)) == 0:
        if draw(st.integers(0, 4)) == 0:
            return f"<{tag}{attrs}{draw(kind['end_space'])}/>"
        return f"<{tag}{attrs}>{draw(text)}</{tag}{draw(kind['end_space'])}>"
    kids = draw(st.lists(element(depth + 1, kind), max_size=4))
    inner = draw(text) + "".join(k + draw(text) for k in kids)
    if draw(kind["wrap"]):  # an element declaring its own prefix around the children
        inner = f'<m:c xmlns:m="urn:m2">{inner}</m:c>'
    return f"<{tag}{attrs}>{inner}</{tag}>"


@st.composite
def document(draw):
    doc = draw(element())
    decl = draw(st.sampled_from(["", '<?xml version="1.0"?>\n', '<?xml version="1.0" encoding="UTF-8"?>']))
    return (decl + doc + draw(st.sampled_from(["", "\n", "<!-- end -->"]))).encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(document(), st.lists(st.sampled_from(PATHS), min_size=1, max_size=4))
def test_equal_to_expat_on_wellformed_documents(xml_impl, doc, paths):
    assert extract_xml(doc, paths) == reference_extract_xml(doc, paths), doc


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(document(), mutated(XML_SEEDS)).flatmap(
           lambda d: st.tuples(st.just(d), mutated([d]))),
       st.lists(st.sampled_from(PATHS + ["purchase/totalAmount", "item:2/subTotal"]), min_size=1, max_size=4))
def test_never_more_than_expat_on_damaged_documents(xml_impl, docs, paths):
    _, doc = docs
    got = extract_xml(doc, paths)
    ref = reference_extract_xml(doc, paths)
    for k, v in got.items():
        assert ref.get(k) == v, (doc, k, v, ref)


def test_large_document_value_at_the_end(xml_impl):
    items = "".join(f"<item><n>{i}</n></item>" for i in range(3000))
    doc = f"<purchase>{items}<total>7</total></purchase>".encode()
    assert extract_xml(doc, ["purchase/total", "item:2999/n", "purchase/item:3000/n"]) == {
        "purchase/total": "7", "item:2999/n": "2998", "purchase/item:3000/n": "2999"}
    bad = doc[:len(doc) // 2] + b"</wrong>" + doc[len(doc) // 2:]
    assert extract_xml(bad, ["purchase/total", "item:2/n"]) == {"item:2/n": "1"}
