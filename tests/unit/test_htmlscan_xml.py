"""The scanner reading a page as an XML parser does (a page served as application/xhtml+xml): what
it finds must keep the page well-formed XML, with the snippet as the head's first script, checked
by Python's expat on generated XHTML documents, plus hand-made cases of what HTML reads otherwise."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumproxy.htmlscan import Insertion, InsertionScanner, find_insertion_point

PROPERTY = settings(max_examples=int(os.environ.get("SCAN_EXAMPLES", 400)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
XHTML = "http://www.w3.org/1999/xhtml"
SCRIPT = f"{{{XHTML}}}script"
SNIPPET = b'<script src="/__rum/agent.js" data-rum="snippet"></script>'
ROOT = b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">'

# {p} marks where the snippet goes.
CASES = [
    ("an empty title is no raw text", "<head>{p}<title/><link rel='icon' href='/i.png'/><script src='/a.js'/></head>", "after-head"),
    ("nor an empty style, textarea, iframe or noscript", "<head><style/><noscript/><meta charset='utf-8'/>{p}<iframe/><textarea/>x</head>", "after-meta"),
    ("an empty script is whole", "<head>{p}<script src='/a.js'/><meta http-equiv='X-UA-Compatible' content='IE=edge'/></head>", "after-head"),
    ("a script's text is markup", "<head><meta charset='utf-8'/>{p}<script><![CDATA[ document.write('</script>') ]]></script></head>", "after-meta"),
    ("<!--> opens a comment", "<head><!--><script>--><meta charset='utf-8'/>{p}</head>", "after-meta"),
    ("a CDATA section ends at ]]>", "<head><![CDATA[ a > b <script> ]]><meta charset='utf-8'/>{p}<title>t</title></head>", "after-meta"),
    ("an instruction ends at ?>", "<head><?app a > b <script> ?><meta charset='utf-8'/>{p}<script/></head>", "after-meta"),
    ("never into a meta with an end tag", "<head>{p}<meta charset='utf-8'></meta><title>t</title><script/></head>", "after-head"),
    ("an empty template holds nothing", "<head><template/><meta charset='utf-8'/>{p}<script/></head>", "after-meta"),
    ("a template's content does not count", "<head>{p}<template><meta charset='utf-8'/></template><body/></head>", "after-head"),
    ("a meta never declares the charset", "<head>{p}<script src='/a.js'/><meta charset='utf-8'/></head>", "after-head"),
    ("a base href holds the point", "<head>{p}<base href='https://cdn.example/'/><meta charset='utf-8'/><title>t</title></head>", "after-head"),
    ("an empty head", "<head/>{p}<body><script/></body>", "after-head"),
    ("no head", "{p}<body><p>x</p></body>", "before-body"),
]
PREFIXED = b'<h:html xmlns:h="http://www.w3.org/1999/xhtml">'


def document_of(case: str, prolog: bytes = b"") -> tuple[bytes, int]:
    before, after = case.split("{p}")
    head = prolog + ROOT + before.encode()
    return head + after.encode() + b"</html>", len(head)


def scan(document: bytes, chunk: int) -> tuple[Insertion, int | None]:
    """The insertion, and how many bytes were fed when it was decided (None: only at the end)."""
    scanner = InsertionScanner(64 * 1024, xml=True)
    for start in range(0, len(document), chunk):
        if scanner.feed(document[start : start + chunk]) is not None:
            return scanner.decided, min(start + chunk, len(document))
    return scanner.finish(), None


PROLOGS = [
    b"",
    b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE html>\n',
    # The internal subset's "]>" in an entity value and in a comment, and tags in both.
    b'<?xml version="1.0"?>\n<!DOCTYPE html [\n<!ENTITY a "x]><head><script>">\n<!-- ]> <script> -->\n<!ENTITY b \'y\'> ]>\n',
    b"<!--><script>--><?app <script> ?>\n",
]


@pytest.mark.parametrize("prolog", PROLOGS, ids=["bare", "prolog", "internal subset", "comment and instruction"])
@pytest.mark.parametrize(("name", "case", "placement"), CASES, ids=[c[0] for c in CASES])
def test_xml_cases(name: str, case: str, placement: str, prolog: bytes) -> None:
    document, offset = document_of(case, prolog)
    ET.fromstring(document)  # the cases are well-formed XML
    for chunk in (1, 2, 7, len(document)):
        assert scan(document, chunk)[0] == Insertion(offset, placement), chunk
    injected = document[:offset] + SNIPPET + document[offset:]
    ET.fromstring(injected)


def test_the_decision_comes_with_the_head_not_at_the_scan_limit() -> None:
    # Read as HTML, `<title/>` opens a title that runs to the end of the page: the stream would
    # hold the page back to the scan limit and then leave it alone.
    page = ROOT + b"<head><title/><style/><link rel='stylesheet' href='/s.css'/><script src='/a.js'/></head><body>"
    document = page + b"<p>text</p>" * 10_000 + b"</body></html>"
    insertion, fed = scan(document, 4096)
    assert insertion == Insertion(len(ROOT) + len(b"<head>"), "after-head") and fed == 4096
    scanner = InsertionScanner(64 * 1024)
    assert scanner.feed(document[: 64 * 1024]) is None and scanner.exhausted


def test_a_prefixed_root_keeps_the_snippet_inside_it() -> None:
    document = PREFIXED + b"<h:head><h:title>t</h:title><h:script src='/a.js'/></h:head><h:body/></h:html>"
    found, _ = find_insertion_point(document, xml=True)
    assert found == Insertion(len(PREFIXED), "after-html")
    ET.fromstring(document[: found.offset] + SNIPPET + document[found.offset :])


def test_what_html_reads_as_a_charset_meta_decides_nothing_in_xml() -> None:
    # Rule 1a does not wait for a meta after a script: an XML parser reads no charset from one.
    document = ROOT + b"<head><script src='/a.js'></script>" + b"<link href='/x'/>" * 10 + b"<meta charset='utf-8'/></head></html>"
    assert find_insertion_point(document, xml=True)[0] == Insertion(len(ROOT) + 6, "after-head")
    assert find_insertion_point(document)[0].placement == "after-meta"


# --- generated XHTML documents, judged by expat ---------------------------------------------------

# Head items: their bytes and what they do to the point: "moves" it after them, "decides" before
# them, "holds" it where it is from then on (a base href), or nothing.
HEAD_ITEMS = [
    (b"<title/>", "neutral"),
    (b"<title>A &amp; B</title>", "neutral"),
    (b"<title>a <![CDATA[<script>]]> b</title>", "neutral"),
    (b'<meta charset="utf-8"/>', "moves"),
    (b'<meta charset="utf-8"></meta>', "neutral"),
    (b'<meta http-equiv="X-UA-Compatible" content="IE=edge" />', "moves"),
    (b'<meta http-equiv="Content-Type" content="application/xhtml+xml; charset=utf-8"/>', "moves"),
    (b'<meta name="viewport" content="width=device-width"/>', "neutral"),
    (b'<meta http-equiv="Content-Security-Policy" content="connect-src *"/>', "decides"),
    (b'<link rel="stylesheet" href="/a.css"/>', "neutral"),
    (b"<style/>", "neutral"),
    (b"<style>a &gt; b { color: red }</style>", "neutral"),
    (b'<style><![CDATA[ a > b::after { content: "</style><script>" } ]]></style>', "neutral"),
    (b"<noscript/>", "neutral"),
    (b"<template/>", "neutral"),
    (b'<template><meta charset="utf-8"/><link href="/x"/></template>', "neutral"),
    (b'<base href="https://cdn.example/app/"/>', "holds"),
    (b'<base target="_top"/>', "neutral"),
    (b"<!-- <script> -->", "neutral"),
    (b"<!--><script>-->", "neutral"),
    (b"<![CDATA[ <script> ]]>", "neutral"),
    (b"<?app <script> ?>", "neutral"),
    (b"\n  ", "neutral"),
    (b'<script src="/a.js"/>', "decides"),
    (b"<script><![CDATA[ if (a < b) document.write('<script></script>'); ]]></script>", "decides"),
    (b"<script>//<![CDATA[\nwindow.a = 1;\n//]]></script>", "decides"),
    (b"<template><script/></template>", "decides"),
    (b"<iframe/>", "decides"),
    (b"<textarea/>", "decides"),
]
PROLOG_ITEMS = [
    b'<?xml version="1.0" encoding="UTF-8"?>\n',
    b"<!DOCTYPE html>\n",
    b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">',
    b'<!DOCTYPE html [ <!ENTITY dish "cr&#232;me <b>br&#251;l&#233;e</b>"> <!ENTITY odd "]><script>"> <!-- ]> --> ]>',
    b"<!-- <script> -->",
    b"<!--><head><script>-->",
    b"<?app <script> ?>",
    b"\n",
]
BODIES = [b"<body/>", b"<body><p>&dish;</p><script/></body>", b"<body><p>x</p><script src='/b.js'></script></body>"]


@st.composite
def xhtml_documents(draw: st.DrawFn) -> tuple[bytes, int, bool]:
    """A well-formed XHTML document, where the model puts the snippet, and whether it has a head."""
    declaration = draw(st.sampled_from([b"", PROLOG_ITEMS[0]]))
    doctype = draw(st.sampled_from([b"", *PROLOG_ITEMS[1:4]]))
    misc = b"".join(draw(st.lists(st.sampled_from(PROLOG_ITEMS[4:]), max_size=3)))
    body = draw(st.sampled_from(BODIES))
    if b"&dish;" in body and b"ENTITY dish" not in doctype:
        body = BODIES[0]
    document = declaration + doctype + misc + ROOT + draw(st.sampled_from([b"", b"\n"]))
    if not draw(st.booleans(), label="head"):
        return document + body + b"</html>", len(document), False
    document += b"<head>"
    point, held, decided = len(document), False, False
    for item, effect in draw(st.lists(st.sampled_from(HEAD_ITEMS), max_size=8)):
        if effect == "decides":
            decided = True
        elif effect == "holds":
            held = True
        document += item
        if effect == "moves" and not held and not decided:
            point = len(document)
    return document + b"</head>" + body + b"</html>", point, True


def without_snippet(root: ET.Element) -> ET.Element | None:
    """Takes the snippet's element out of the tree, its tail joined to the text before it as the
    parser would have read it; returns its parent."""
    for parent in root.iter():
        for index, child in enumerate(list(parent)):
            if child.get("data-rum") == "snippet":
                tail = child.tail or ""
                if index:
                    previous = parent[index - 1]
                    previous.tail = (previous.tail or "") + tail
                else:
                    parent.text = (parent.text or "") + tail
                parent.remove(child)
                return parent
    return None


def canonical(element: ET.Element) -> tuple:
    return (element.tag, sorted(element.attrib.items()), element.text or "", element.tail or "", [canonical(c) for c in element])


@PROPERTY
@given(xhtml_documents(), st.lists(st.integers(0, 2000), max_size=6))
def test_generated_xhtml_stays_well_formed_with_the_snippet_first_in_its_head(doc: tuple[bytes, int, bool], cuts: list[int]) -> None:
    document, point, has_head = doc
    original = ET.fromstring(document)
    whole, _ = find_insertion_point(document, xml=True)
    scanner = InsertionScanner(len(document) + 1, xml=True)
    bounds = [0, *sorted(c for c in cuts if c < len(document)), len(document)]
    for lo, hi in zip(bounds, bounds[1:]):
        scanner.feed(document[lo:hi])
    assert scanner.finish() == whole
    assert whole.offset == point

    injected = ET.fromstring(document[: whole.offset] + SNIPPET + document[whole.offset :])  # well-formed
    in_order = list(injected.iter())
    snippet = next(e for e in in_order if e.get("data-rum") == "snippet")
    assert snippet.tag == SCRIPT  # in the XHTML namespace, so it runs
    assert not any(e.tag == SCRIPT for e in in_order[: in_order.index(snippet)])  # and runs first
    parent = without_snippet(injected)
    assert parent is not None and parent.tag == (f"{{{XHTML}}}head" if has_head else f"{{{XHTML}}}html")
    assert canonical(injected) == canonical(original)
