"""Tests for rumproxy.htmlscan: generated documents checked against a model, plus a hand-made corpus."""

from __future__ import annotations

import os
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rumproxy.htmlscan import Insertion, InsertionScanner, PageFacts, find_insertion_point
from tests.htmldocuments import BOM, Frag, documents, noise

PRESCAN = 1024  # the bytes a browser's charset prescan reads
SNIPPET = b'<script src="/rum.js"></script>'
PROPERTY = settings(max_examples=int(os.environ.get("SCAN_EXAMPLES", 400)), deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the placement rules, applied to generated documents ----------------------------------------

HEAD_CONTENT = {b"meta", b"title", b"link", b"style", b"base", b"script", b"noscript", b"template", b"bgsound", b"basefont"}
NEUTRAL = (HEAD_CONTENT - {b"script"}) | {b"html", b"head"}
INERT = {b"template"}  # noscript is raw text
TREE_READS_OTHERWISE = {b"svg", b"math", b"frameset"}  # rule 1a reads no further


def model(bom: bytes, frags: list[Frag], charset_declared: bool = False) -> tuple[Insertion, bool]:
    """The placement rules applied to an already tokenized document."""
    point = Insertion(len(bom), "start")
    if frags and frags[0].data.startswith(b"<?xml"):
        point = Insertion(len(bom) + len(frags[0].data), "after-xml-declaration")
    in_head = seen_html = seen_doctype = amp = held = charset_seen = False

    def advance(to: Insertion) -> Insertion:
        return point if held else to

    def decided(insertion: Insertion, through: int, index: int) -> tuple[Insertion, bool]:
        """Rule 1a: a decision before any charset meta, in the prescan's bytes, waits for them."""
        if charset_declared or bom or charset_seen or through >= PRESCAN:
            return insertion, amp
        waiting_inert, at = inert, start
        for frag in frags[index:]:
            end = at + len(frag.data)
            if frag.kind == "start" and frag.name in TREE_READS_OTHERWISE:
                break
            if frag.may_declare:
                if at >= PRESCAN or waiting_inert:
                    break
                insertion = Insertion(end, "after-meta")
                if frag.declares:
                    return insertion, amp
            if frag.kind == "start" and frag.name in INERT:
                waiting_inert += 1
            elif frag.kind == "end" and frag.name in INERT and waiting_inert:
                waiting_inert -= 1
            at = end
        return insertion, amp

    inert = 0
    start = len(bom)
    for index, frag in enumerate(frags):
        end = start + len(frag.data)
        name = frag.name
        opened = start + len(name) + 2  # the "<", the name and the byte after it
        if frag.kind == "doctype" and not (seen_doctype or seen_html or in_head or inert):
            seen_doctype = True
            point = advance(Insertion(end, "after-doctype"))
        elif frag.kind in ("start", "raw"):
            if in_head and (name == b"script" or name not in HEAD_CONTENT):
                return decided(point, opened, index)
            if not in_head and name not in NEUTRAL:
                if name in (b"script", b"body") and not inert and not held:
                    return decided(Insertion(start, f"before-{name.decode()}"), opened, index)
                return decided(point, opened, index)
            if name in INERT:
                inert += 1
            elif inert:
                pass
            elif frag.moves:
                point = advance(Insertion(end, "after-meta"))
                charset_seen = charset_seen or frag.declares
            elif frag.base_href:
                held = held or charset_declared or bool(bom)
            elif name == b"html":
                amp = amp or frag.amp
                if not seen_html:
                    seen_html = True
                    point = advance(Insertion(end, "after-html"))
            elif name == b"head":
                in_head = True
                point = advance(Insertion(end, "after-head"))
        elif frag.kind == "end":
            if name == b"head" and in_head:
                return decided(point, opened + 1, index)
            if name in INERT and inert:
                inert -= 1
        start = end
    return point, amp


def feed_in_chunks(document: bytes, cuts: list[int], limit: int, charset_declared: bool = False) -> tuple[Insertion, PageFacts, bool]:
    scanner = InsertionScanner(limit, charset_declared=charset_declared)
    bounds = [0, *sorted(cuts), len(document)]
    early = None
    for lo, hi in zip(bounds, bounds[1:]):
        found = scanner.feed(document[lo:hi])
        if found is not None:
            early = early or found
            assert scanner.decided == found == early
    return scanner.finish(), scanner.facts, early is not None


@PROPERTY
@given(documents, st.data())
def test_generated_documents_match_the_model_in_any_chunking(doc: tuple[bytes, list[Frag]], data: st.DataObject) -> None:
    bom, frags = doc
    document = bom + b"".join(f.data for f in frags)
    declared = data.draw(st.booleans(), label="charset_declared")
    expected, amp = model(bom, frags, declared)

    whole, facts = find_insertion_point(document, charset_declared=declared)
    assert whole == expected
    assert facts.amp == amp

    cuts = data.draw(st.lists(st.integers(0, len(document)), max_size=8))
    assert feed_in_chunks(document, cuts, len(document) + 1, declared)[:2] == (whole, facts)

    # Were the point inside a comment, a tag or raw text, the inserted script
    # would not be a tag there and a rescan would land elsewhere.
    injected = document[: whole.offset] + SNIPPET + document[whole.offset :]
    assert find_insertion_point(injected, charset_declared=declared)[0].offset == whole.offset
    assert injected[: whole.offset] + injected[whole.offset + len(SNIPPET) :] == document




@PROPERTY
@given(st.lists(noise, max_size=16).map(b"".join), st.data())
def test_arbitrary_bytes_are_chunking_independent_and_land_on_token_edges(document: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.one_of(st.none(), st.integers(1, len(document) + 2)))
    declared = data.draw(st.booleans(), label="charset_declared")
    whole, facts = find_insertion_point(document, limit, charset_declared=declared)
    cuts = data.draw(st.lists(st.integers(0, len(document)), max_size=8))
    chunked, chunked_facts, _ = feed_in_chunks(document, cuts, len(document) + 1 if limit is None else limit, declared)
    assert (chunked, chunked_facts) == (whole, facts)

    bom = len(BOM) if document.startswith(BOM) else 0
    assert bom <= whole.offset <= len(document)
    assert whole.offset == bom or document[whole.offset - 1 : whole.offset] == b">" or document[whole.offset : whole.offset + 1] == b"<"
    if limit is None:
        injected = document[: whole.offset] + SNIPPET + document[whole.offset :]
        assert find_insertion_point(injected, charset_declared=declared)[0].offset == whole.offset


@PROPERTY
@given(
    st.one_of(documents.map(lambda doc: doc[0] + b"".join(f.data for f in doc[1])), st.lists(noise, max_size=16).map(b"".join)),
    st.lists(noise, max_size=8).map(b"".join),
    st.booleans(),
)
# A waiting decision that a tag settles (rule 1a) rests on the bytes through that tag.
@example(b'<a<head><noscript class=""><meta charset="utf-8">', b"", False)
@example(b"<html><head><script>a()</script><meta http-equiv=Content-Security-Policy content=x>", b"<meta charset=utf-8>", False)
# A "<" that ends the prescan's bytes: the byte after it says whether a meta began there.
@example(b"<html><head><script>a()</script>" + b"x" * 990 + b"<!>", b"meta charset=utf-8>", False)
def test_a_decision_rests_only_on_the_bytes_before_decided_through(document: bytes, tail: bytes, declared: bool) -> None:
    # What lets a page that changes below its head skip the scan (memo.KnownHead).
    scanner = InsertionScanner(len(document) + 1, charset_declared=declared)
    decided = scanner.feed(document)
    through = scanner.decided_through
    if decided is None:
        assert through is None
        scanner.finish()
        assert scanner.decided_through is None  # that decision rests on where the input ends
        return
    assert through is not None and decided.offset <= through <= len(document)
    other = document[:through] + tail
    again = InsertionScanner(len(other) + 1, charset_declared=declared)
    assert (again.feed(other), again.decided_through, again.facts) == (decided, through, scanner.facts)


# --- hand-made corpus: "⁂" marks the expected point ----------------------------------------------

HERE = "⁂"
CORPUS: list[tuple[str, str, str, str]] = [
    # (name, document, placement, encoding)
    ("plain", "<!DOCTYPE html><html><head>⁂<title>x</title></head><body></body></html>", "after-head", "utf-8"),
    ("head in comment", "<html>⁂<!-- <head> --><p><head></head>", "after-html", "utf-8"),
    ("head in a quoted attribute", '<html data-x="<head>" title=\'a>b\'>⁂<div><head>', "after-html", "utf-8"),
    ("head in a script string", '<!doctype html>⁂<script>var s = "<head></head><body>";</script><head>', "before-script", "utf-8"),
    ("uppercase", "<HTML><HEAD>⁂<TITLE>T</TITLE><SCRIPT>x</SCRIPT></HEAD>", "after-head", "utf-8"),
    ("attributes with >", '<html><head data-a="1>2" data-b=\'<body>\'>⁂<link rel=x></head>', "after-head", "utf-8"),
    ("no head, body", "<!DOCTYPE html><html lang=en>\n⁂<body>hi</body>", "before-body", "utf-8"),
    ("no head, div", "<!DOCTYPE html><html lang=en>⁂\n<div>hi</div>", "after-html", "utf-8"),
    ("no html, div", "<!DOCTYPE html>⁂\n<div>hi</div>", "after-doctype", "utf-8"),
    ("fragment", "⁂<p>hello</p>", "start", "utf-8"),
    ("amp", "<!doctype html><html ⚡ lang=en><head><meta charset=utf-8>⁂<script async src=v0.js></script>", "after-meta", "utf-8"),
    ("bom", "\ufeff⁂<p>x</p>", "start", "utf-8"),
    # Chromium takes the charset from an XML declaration at the very start: the snippet stays after it.
    ("xml declaration", '<?xml version="1.0" encoding="iso-8859-1"?>⁂<p>Café</p>', "after-xml-declaration", "latin-1"),
    ("bom, xml declaration", '\ufeff<?xml version="1.0"?>⁂\n<p>x</p>', "after-xml-declaration", "utf-8"),
    ("xml declaration, doctype", '<?xml version="1.0"?>\n<!DOCTYPE html>⁂<svg/>', "after-doctype", "utf-8"),
    ("not at the start", '⁂ <?xml version="1.0"?><p>x</p>', "start", "utf-8"),
    ("another instruction", '⁂<?php echo 1 ?><p>x</p>', "start", "utf-8"),
    ("upper case", '⁂<?XML version="1.0"?><p>x</p>', "start", "utf-8"),
    ("bom and head", "\ufeff<html><head>⁂</head>", "after-head", "utf-8"),
    ("latin-1 meta", '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">⁂<title>Café</title>', "after-meta", "latin-1"),
    ("shift_jis meta", '<html><head><title>日本語のページ</title><meta charset="Shift_JIS">⁂<link rel=stylesheet href=a.css></head><body>こんにちは</body>', "after-meta", "shift_jis"),
    ("euc-jp implicit head", '<html><meta charset=euc-jp>⁂<p>日本語</p>', "after-meta", "euc-jp"),
    ("x-ua-compatible", "<html><head><meta charset=utf-8><META HTTP-EQUIV='x-ua-compatible' CONTENT='IE=edge'>⁂<meta name=viewport content=width=device-width><script>", "after-meta", "utf-8"),
    ("ie conditional comments", "<!DOCTYPE html><!--[if lt IE 9]><html class=ie><![endif]--><!--[if gt IE 8]><!--><html><!--<![endif]-->⁂<body>", "before-body", "utf-8"),
    ("downlevel revealed", "<html>⁂<![if !IE]><p>x</p><![endif]>", "after-html", "utf-8"),
    ("script before the charset meta", "<html><head><script>a()</script><meta charset=utf-8>⁂", "after-meta", "utf-8"),
    ("title holding a script", "<head><title><script>x</script></title><meta charset=utf-8>⁂<script>", "after-meta", "utf-8"),
    ("textarea with tags", "<html>⁂<textarea><head><script></textarea><head>", "after-html", "utf-8"),
    ("style with tags", "<head><style>a::before{content:'<script>'}</style><meta charset=utf-8>⁂</head>", "after-meta", "utf-8"),
    ("cdata", "<html>⁂<![CDATA[<head]]><p>", "after-html", "utf-8"),
    ("text only", "⁂just some text < with > brackets", "start", "utf-8"),
    ("empty", "⁂", "start", "utf-8"),
    ("noscript meta", "<head><meta charset=utf-8>⁂<noscript><meta http-equiv=x-ua-compatible content=a></noscript></head>", "after-meta", "utf-8"),
    ("noscript closed", "<head><noscript><link rel=x></noscript><meta charset=utf-8>⁂<p>", "after-meta", "utf-8"),
    ("noscript script", "<html>⁂<noscript><script>x</script></noscript>", "after-html", "utf-8"),
    # With scripting on a noscript's content is text, whatever it looks like (found by Chromium).
    ("noscript text", "<head><noscript><img src=x></noscript><meta charset=utf-8>⁂<p>", "after-meta", "utf-8"),
    ("noscript ends in an attribute", '<head>⁂<noscript><a title="</noscript><!--"></noscript><meta charset=utf-8>x--><p>', "after-head", "utf-8"),
    ("bogus end tag", "<html></ head><head>⁂<p>", "after-head", "utf-8"),
    ("comment edge cases", "<!--><!---><head><!-- --!><meta charset=utf-8>⁂<!-- <meta charset=x> --><p>", "after-meta", "utf-8"),
    ("xml prolog", '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head>⁂<title/></title></head>', "after-head", "utf-8"),
    ("header is not head", "<html>⁂<header><head>", "after-html", "utf-8"),
]


def corpus_document(text: str, encoding: str) -> tuple[bytes, int]:
    before, after = text.split(HERE)
    head = before.encode(encoding)
    return head + after.encode(encoding), len(head)


@pytest.mark.parametrize(("name", "text", "placement", "encoding"), CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(name: str, text: str, placement: str, encoding: str) -> None:
    document, offset = corpus_document(text, encoding)
    found, facts = find_insertion_point(document)
    assert found == Insertion(offset, placement)
    assert facts.amp == (name == "amp")
    for size in (1, 2, 3, 7):
        scanner = InsertionScanner()
        for i in range(0, len(document), size):
            scanner.feed(document[i : i + size])
        assert scanner.finish() == found


# A <base href> before the point: the document with {d} where the point is when the page's
# charset is declared outside it, {u} where it is otherwise, and their placements.
JOOMLA_HEAD = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "x.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml">\n<head>{d}'
    '\n  <base href="https://www.example.org/" />\n  <meta http-equiv="content-type" content="text/html; charset=utf-8" />{u}'
    '\n  <title>Home</title>\n  <script src="/media/jui/js/jquery.min.js"></script>'
)
BASE_CASES = [
    ("joomla", JOOMLA_HEAD, "after-head", "after-meta"),
    ("before a head", "<!doctype html>{d}<base href=//cdn.example/><meta charset=utf-8>{u}<p>", "after-doctype", "after-meta"),
    ("a head after it", "<html>{d}<base href=https://x/><head>{u}<meta name=a><p>", "after-html", "after-head"),
    ("first of all", "{d}<BASE HREF><meta charset=utf-8><title>x</title>{u}<body>", "start", "before-body"),
    ("a script before a head", "<!doctype html>{d}<base href=https://x/>{u}<script src=a.js></script>", "after-doctype", "before-script"),
    ("after the charset meta", "<head><meta charset=utf-8>{d}{u}<base href=/app/><meta name=viewport content=x></head>", "after-meta", "after-meta"),
    ("in noscript", "<head><noscript><base href=x></noscript><meta charset=utf-8>{d}{u}<p>", "after-meta", "after-meta"),
    ("no href", "<head><base target=_top data-href=x><meta charset=utf-8>{d}{u}<p>", "after-meta", "after-meta"),
]


def marked(document: str, marker: str, bom: bytes = b"") -> tuple[bytes, int]:
    """The page of a case above with its point at `marker` ({d} or {u}), and that point."""
    other = "{u}" if marker == "{d}" else "{d}"
    before, after = document.replace(other, "").split(marker)
    return bom + (before + after).encode(), len(bom) + len(before.encode())


@pytest.mark.parametrize(("document", "declared_at", "undeclared_at"), [c[1:] for c in BASE_CASES], ids=[c[0] for c in BASE_CASES])
def test_a_base_href_holds_the_point_when_the_charset_is_declared_outside(document: str, declared_at: str, undeclared_at: str) -> None:
    # The agent's URL (/__rum/... by default) must not resolve against another origin's <base>.
    for declared, marker, placement, bom in (
        (True, "{d}", declared_at, b""), (False, "{u}", undeclared_at, b""), (False, "{d}", declared_at, BOM)
    ):
        page, offset = marked(document, marker, bom)
        found, _ = find_insertion_point(page, charset_declared=declared)
        assert found == Insertion(offset, placement)
        assert feed_in_chunks(page, list(range(0, len(page), 5)), len(page) + 1, declared)[0] == found


@pytest.mark.parametrize("before", ["", "<script>" + "var a = 1;" * 60 + "</script>", "<!-- x -->" * 90 + "<script>a()</script>"])
@pytest.mark.parametrize("encoding", ["latin-1", "shift_jis"])
def test_charset_meta_stays_in_the_first_1024_bytes(encoding: str, before: str) -> None:
    from rumproxy.charset import detect_charset

    label = "iso-8859-1" if encoding == "latin-1" else "shift_jis"
    text = f"<html><head>{before}<meta charset={label}><title>{'é' if encoding == 'latin-1' else '日本'}</title></head><body>" + "x" * 2000
    document = text.encode(encoding)
    assert detect_charset(None, document).label == label
    found, _ = find_insertion_point(document)
    injected = document[: found.offset] + SNIPPET * 40 + document[found.offset :]
    assert detect_charset(None, injected).label == label
    for size in (1, 100, 1000):  # the decision waits for the meta however the page arrives
        assert feed_in_chunks(document, list(range(0, len(document), size)), 64 * 1024)[0] == found


# Rule 1a: (document with {d} where the point is when the Content-Type names the charset, {u} where
# it is when only a meta may, the placements).
SCRIPT_FIRST = "<script>(function(w,d){w.dataLayer=w.dataLayer||[];" + "/* tag manager */" * 20 + "})(window,document)</script>"
PRESCAN_CASES = [
    ("a script first", "<!doctype html><html><head>{d}" + SCRIPT_FIRST + "<meta charset=utf-8>{u}<title>t</title>", "after-head", "after-meta"),
    ("http-equiv", "<html><head>{d}<script>a()</script><meta http-equiv=Content-Type content='text/html; charset=utf-8'>{u}", "after-head", "after-meta"),
    ("no head", "<!doctype html>{d}{u}<script>a()</script><p>" + "x" * 1100 + "<meta charset=utf-8>", "before-script", "before-script"),
    ("before a head", "<!doctype html>{d}<script>a()</script><meta charset=utf-8>{u}<head>", "before-script", "after-meta"),
    ("body first", "<html>{d}<body><meta charset=utf-8>{u}<p>x", "before-body", "after-meta"),
    ("past the prescan", "<html><head>{d}{u}<script>" + "a();" * 260 + "</script><meta charset=utf-8>", "after-head", "after-head"),
    # Chromium reads a meta that begins in those bytes to its end (found by Chromium).
    ("across the prescan's end", "<html><head>{d}<script>" + "a();" * 244 + "</script><meta charset=utf-8>{u}", "after-head", "after-meta"),
    ("begins past them", "<html><head>{d}{u}<script>" + "a();" * 254 + "</script><meta charset=utf-8>", "after-head", "after-head"),
    # A browser's prescan reads the meta in noscript, but the snippet after the other one moves neither.
    ("in noscript", "<html><head>{d}<script>a()</script><noscript><meta charset=utf-8></noscript><meta charset=utf-8>{u}", "after-head", "after-meta"),
    ("only in noscript", "<html><head>{d}{u}<script>a()</script><noscript><meta charset=utf-8></noscript><p>", "after-head", "after-head"),
    ("in a template", "<html><head>{d}{u}<script>a()</script><template><meta charset=utf-8></template><meta charset=utf-8>", "after-head", "after-head"),
    # A script's escaped text: document.write("<script …></script>") inside <!-- … --> does not end it.
    ("a script writing a script", "<html><head>{d}<script><!-- document.write('<script src=a.js></script>'); //--></script><meta charset=utf-8>{u}", "after-head", "after-meta"),
    ("a meta in a script's escaped text", "<html><head>{d}{u}<script><!--<script></script><meta charset=utf-8>--></script><p>", "after-head", "after-head"),
    ("a script escaped and back", "<html><head>{d}<script><!--</script><meta charset=utf-8>{u}-->", "after-head", "after-meta"),
    ("<!--> escapes nothing", "<html><head>{d}<script><!--><script></script><meta charset=utf-8>{u}", "after-head", "after-meta"),
    ("upper case", "<html><head>{d}{u}<SCRIPT><!--<SCRIPT></SCRIPT ><meta charset=utf-8>--></SCRIPT/><p>", "after-head", "after-head"),
    ("a pragma to Chromium", "<html><head>{d}<script>a()</script><meta http-equiv=x-ua-compatible content='text/html; charset=utf-8' http-equiv=content-type>{u}<p>", "after-head", "after-meta"),
    # A content naming a charset before the charset attribute, without a pragma: Chromium takes the
    # charset, the spec's prescan neither, and reads on.
    ("a meta only Chromium reads", "<html><head>{d}<script>a()</script><meta content='text/html; charset=koi8-r' charset=utf-8><meta charset=utf-8>{u}", "after-head", "after-meta"),
    # What follows inline SVG or MathML, or a frameset, the tree reads otherwise (found by Chromium).
    ("a CDATA section in SVG", "<html><head>{d}{u}<script>a()</script><svg><![CDATA[<head><meta charset=utf-8>]]></svg>", "after-head", "after-head"),
    ("markup in SVG's style", "<html><head>{d}{u}<script>a()</script><svg><style><!--</style><meta charset=utf-8>--></svg>", "after-head", "after-head"),
    ("in MathML", "<!doctype html>{d}{u}<math><![CDATA[x]]><meta charset=utf-8></math>", "after-doctype", "after-doctype"),
    ("after a frameset", "<html><head>{d}{u}<script>a()</script></head><frameset><meta charset=utf-8></frameset>", "after-head", "after-head"),
    ("in plaintext", "<html>{d}{u}<plaintext><meta charset=utf-8>", "after-html", "after-html"),
    ("plaintext in the head", "<html><head><meta charset=utf-8>{d}{u}<plaintext></head><script>", "after-meta", "after-meta"),
    ("a meta policy first", "<html><head>{d}{u}<script>a()</script><meta http-equiv=Content-Security-Policy content=x><meta charset=utf-8>", "after-head", "after-head"),
    ("no charset meta", "<html><head>{d}{u}<script>a()</script><meta http-equiv=X-UA-Compatible content=IE=edge><p>", "after-head", "after-head"),
    ("the charset first", "<html><head><meta charset=utf-8>{d}{u}<script>a()</script><meta charset=latin1>", "after-meta", "after-meta"),
]


@pytest.mark.parametrize(("document", "declared_at", "undeclared_at"), [c[1:] for c in PRESCAN_CASES], ids=[c[0] for c in PRESCAN_CASES])
def test_a_decision_before_the_charset_meta_waits_for_the_prescans_bytes(document: str, declared_at: str, undeclared_at: str) -> None:
    for declared, marker, placement in ((True, "{d}", declared_at), (False, "{u}", undeclared_at)):
        page, offset = marked(document, marker)
        found, facts = find_insertion_point(page, charset_declared=declared)
        assert found == Insertion(offset, placement)
        for size in (1, 7, 1000):
            assert feed_in_chunks(page, list(range(0, len(page), size)), len(page) + 1, declared)[:2] == (found, facts)


def test_across_the_prescans_end_is_what_it_says():
    page = PRESCAN_CASES[6][1].replace("{d}", "").replace("{u}", "").encode()
    assert page.index(b"<meta") < 1024 < page.index(b"<meta") + len(b"<meta charset=utf-8>")


def test_a_waiting_decision_holds_the_stream_back_only_until_the_prescans_bytes():
    scanner = InsertionScanner()
    assert scanner.feed(b"<html><head><script>a()</script>") is None
    assert scanner.feed(b"<p>" + b"x" * 988) is None  # 1,023 bytes
    assert scanner.feed(b"y") == Insertion(12, "after-head")
    assert scanner.decided_through == 1024
    assert scanner.facts.csp_meta is None
    waiting = InsertionScanner(limit=1024)
    assert waiting.feed(b"<html><head><script>" + b"a" * 2000) == Insertion(12, "after-head")
    assert not waiting.exhausted
    short = InsertionScanner()
    assert short.feed(b"<html><head><script>a()</script>") is None
    assert short.finish() == Insertion(12, "after-head") and short.decided_through is None


@pytest.mark.parametrize(
    ("crossing", "placement"),
    [
        # A tag that begins in the prescan's bytes is read to its end (Chromium reads a meta so).
        (b"<meta http-equiv=Content-Security-Policy content=x>", "after-head"),
        (b"<meta charset=utf-8>", "after-meta"),
        (b"<p>", "after-head"),
        # Other markup is no meta as soon as its second byte says so.
        (b"<!-- x -->", "after-head"),
        (b"</p>", "after-head"),
        (b"<!>", "after-head"),  # its "<" is the prescan's last byte: the next says it is no tag
    ],
)
def test_what_crosses_the_prescans_end_does_not_depend_on_the_chunks(crossing: bytes, placement: str) -> None:
    start = 1024 - len(crossing) // 2
    end = start + len(crossing)
    head = b"<html><head><script>a()</script>"
    page = head + b"x" * (start - len(head)) + crossing + b"<meta charset=utf-8>"  # that one begins past them
    is_tag = crossing[1:2].isalpha()
    expected = (
        Insertion(end if placement == "after-meta" else 12, placement),
        PageFacts(amp=False, csp_meta=(start, end) if b"Content-Security-Policy" in crossing else None),
        end if is_tag else 1025 if page[1023:1024] == b"<" else 1024,
    )
    for cuts in ([], [1024], [1000], [start + 1], [start + 2], list(range(0, len(page), 100)), list(range(0, len(page), 1))):
        scanner = InsertionScanner()
        for lo, hi in zip([0, *cuts], [*cuts, len(page)]):
            scanner.feed(page[lo:hi])
        assert (scanner.finish(), scanner.facts, scanner.decided_through) == expected


def test_a_meta_policy_met_while_waiting_is_reported():
    page = b"<html><head><script>a()</script><meta http-equiv=Content-Security-Policy content=x><meta charset=utf-8>"
    found, facts = find_insertion_point(page)
    assert found == Insertion(12, "after-head")
    assert facts.csp_meta == (page.index(b"<meta"), page.index(b"<meta charset"))


def test_decides_early_and_then_does_no_work() -> None:
    scanner = InsertionScanner()
    assert scanner.feed(b"<!DOCTYPE html><html><head><meta charset=utf-8><scr") is None
    found = scanner.feed(b"ipt src=app.js>")
    assert found == Insertion(47, "after-meta") == scanner.decided
    assert scanner.feed(b"<meta charset=latin1>") is found
    assert scanner.finish() is found


def test_huge_head_exhausts_the_scanner() -> None:
    document = b"<html><head>" + b'<link rel="preload" href="/a.css">' * 3000 + b"<meta charset=utf-8><script>"
    scanner = InsertionScanner(limit=64 * 1024)
    for i in range(0, len(document), 4096):
        assert scanner.feed(document[i : i + 4096]) is None
    assert scanner.exhausted
    assert scanner.finish() == Insertion(12, "after-head")
    assert find_insertion_point(document, 64 * 1024)[0] == Insertion(12, "after-head")
    assert find_insertion_point(document)[0].placement == "after-meta"


def peak_memory_while_feeding(scanner: InsertionScanner, opening: bytes, chunk: bytes, times: int) -> int:
    tracemalloc.start()
    try:
        scanner.feed(opening)
        for _ in range(times):
            scanner.feed(chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    "opening", [b"<html><head><!--", b"<html><head><title>", b"<html><head><?"], ids=["comment", "title", "bogus"]
)
def test_skipped_text_is_not_kept(opening: bytes) -> None:
    chunk = b"a-b-<p x" * 2500  # 20 kB that closes none of them
    scanner = InsertionScanner(limit=1 << 30)
    peak = peak_memory_while_feeding(scanner, opening, chunk, times=100)
    assert peak < 4 * len(chunk)
    assert not scanner.exhausted
    assert scanner.finish() == Insertion(12, "after-head")


def test_an_endless_tag_is_dropped_at_the_limit() -> None:
    limit = 256 * 1024
    chunk = b"a" * 20_000
    scanner = InsertionScanner(limit)
    peak = peak_memory_while_feeding(scanner, b'<html title="', chunk, times=100)
    assert scanner.exhausted
    assert peak < 1.5 * limit + 4 * len(chunk)
    assert scanner.finish() == Insertion(0, "start")


def test_a_long_tag_in_tiny_chunks_is_not_quadratic() -> None:
    scanner = InsertionScanner(limit=1 << 20)
    scanner.feed(b"<html data-x=")
    for _ in range(200_000):
        scanner.feed(b"a")
    assert scanner.feed(b" amp>") is None
    assert scanner.facts.amp
    assert scanner.finish() == Insertion(200_018, "after-html")


def test_offsets_are_absolute_across_feeds() -> None:
    scanner = InsertionScanner()
    scanner.feed(b"x" * 10000)
    scanner.feed(b"<html>")
    assert scanner.feed(b"<body>") == Insertion(10006, "before-body")


def test_accepts_any_bytes_like_chunk() -> None:
    scanner = InsertionScanner(charset_declared=True)
    scanner.feed(bytearray(b"<html><he"))
    assert scanner.feed(memoryview(b"ad><body>")) == Insertion(12, "after-head")


def test_rejects_a_useless_limit() -> None:
    with pytest.raises(ValueError):
        InsertionScanner(0)


@pytest.mark.parametrize(
    ("document", "amp"),
    [(b"<html amp>", True), (b"<HTML AMP4EMAIL>", True), ("<html ⚡4email data-css-strict>".encode(), True),
     (b"<html lang=amp>", False), (b"<html><!-- <html amp> -->", False), (b"<html class='amp'>", False)],
)
def test_amp_facts(document: bytes, amp: bool) -> None:
    assert find_insertion_point(document)[1] == PageFacts(amp=amp)
