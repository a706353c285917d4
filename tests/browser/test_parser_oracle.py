"""The insertion point against Chromium's own HTML parser: a generated document with a script put
where the scanner says parses, in a real Chromium with scripting on, into the document it was
without it, plus that one script element, which runs before any script of the page and, where the
charset comes from outside the markup, loads its script from the page's origin whatever `<base>`
the page has.

The scanner's own tests check it against a model of the placement rules that shares its reading of
HTML; here the browser is the judge. A point inside what the browser reads as a comment, an
attribute, raw text, `<noscript>` or `<template>` would leave no script element, or one that never
runs; a point that changes how the rest is parsed (before the doctype: quirks mode; past a charset
meta the browser's prescan then misses: another charset) would change the document."""

from __future__ import annotations

import itertools
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rumproxy.htmlscan import find_insertion_point
from tests.browser.support import browser_suite
from tests.htmldocuments import BOM, documents, noise, unusual_documents

pytestmark = browser_suite

NON_ASCII = re.compile(rb"[\x80-\xff]")
SNIPPET_SCRIPT = b"window.__snippetSaw = document.scripts.length"
SNIPPET = b"<script data-oracle-snippet>" + SNIPPET_SCRIPT + b"</script>"
# Where the charset comes from outside the markup, the snippet loads its script by a path, as the
# agent's bootstrap does (`/__rum/…`): a `<base href>` to another origin before it would send that
# request elsewhere, and the snippet would not run. (Where only a meta names the charset, the
# snippet goes after that meta even past a `<base>`: README.)
SNIPPET_PATH = "/oracle/snippet.js"
EXTERNAL_SNIPPET = b'<script data-oracle-snippet src="' + SNIPPET_PATH.encode() + b'"></script>'
ORACLE = settings(max_examples=int(os.environ.get("ORACLE_EXAMPLES", 60)), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# The document as the browser built it: its mode and charset, whether the snippet is there as an
# element and how many scripts it saw when it ran (itself included), the tree without it, and its
# comments in document order. In the tree, adjacent text is joined (text on either side of the
# snippet compares as one node), and comments and whitespace-only text are left out: a snippet at
# the start of a page that opens with a comment moves that comment from the document into the head
# (the script starts the head), which no one can see; that a comment lost or swallowed nothing
# shows in the comments.
DOCUMENT = """() => {
  const copy = document.cloneNode(true);
  for (const snippet of copy.querySelectorAll("script[data-oracle-snippet]")) snippet.remove();
  copy.normalize();
  const comments = [];
  const tree = (node) => {
    if (node.nodeType === Node.ELEMENT_NODE) {
      const kids = node instanceof HTMLTemplateElement ? node.content : node;
      kids.normalize();
      return [node.namespaceURI, node.localName, [...node.attributes].map((a) => [a.name, a.value]), children(kids)];
    }
    if (node.nodeType === Node.DOCUMENT_TYPE_NODE) return ["doctype", node.name, node.publicId, node.systemId];
    return ["text", node.data];
  };
  const children = (parent) => {
    const kept = [];
    for (const node of parent.childNodes) {
      if (node.nodeType === Node.COMMENT_NODE) comments.push(node.data);
      else if (!(node.nodeType === Node.TEXT_NODE && /^[ \\t\\n\\f\\r]*$/.test(node.data))) kept.push(tree(node));
    }
    return kept;
  };
  const built = children(copy);
  return {
    mode: document.compatMode,
    charset: document.characterSet,
    snippets: document.querySelectorAll("script[data-oracle-snippet]").length,
    snippetSaw: window.__snippetSaw ?? null,
    frameset: document.body !== null && document.body.localName === "frameset",
    tree: built,
    comments: comments,
  };
}"""


class Pages:
    """An HTTP server on 127.0.0.1 that serves the bytes it is given, as they are."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[bytes, str]] = {}
        self._paths = itertools.count()
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body, content_type = bodies.get(self.path, (b"", "text/plain"))
                self.send_response(200 if self.path in bodies else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, body: bytes, content_type: str) -> str:
        path = f"/page/{next(self._paths)}"
        self.bodies[path] = (body, content_type)
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture(scope="module")
def browser_args() -> list[str]:
    # A <base href> of a generated page names another host: it is not looked up.
    return ["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture(scope="module")
def pages() -> Iterator[Pages]:
    served = Pages()
    served.bodies[SNIPPET_PATH] = (SNIPPET_SCRIPT, "text/javascript")
    served.thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture(scope="module")
def tab(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def parsed(tab: Any, pages: Pages, body: bytes, content_type: str) -> dict[str, Any]:
    tab.goto(pages.add(body, content_type), wait_until="load")
    return tab.evaluate(DOCUMENT)


def check(tab: Any, pages: Pages, document: bytes, charset_declared: bool) -> None:
    content_type = "text/html; charset=utf-8" if charset_declared else "text/html"
    if not charset_declared and not document.startswith(BOM):
        # Chromium guesses the charset of a page that declares none from its bytes, and on a page
        # of a few bytes the snippet's sway it (`hello` and an é in UTF-8: windows-1252, after any
        # script windows-1257; pages with sentences of text keep their guess). What a page's
        # metas declare is compared, so its other bytes are ASCII here, as many as there were.
        document = NON_ASCII.sub(b"x", document)
    point, _ = find_insertion_point(document, charset_declared=charset_declared)
    snippet = EXTERNAL_SNIPPET if charset_declared or document.startswith(BOM) else SNIPPET
    instrumented = document[: point.offset] + snippet + document[point.offset :]
    before = parsed(tab, pages, document, content_type)
    after = parsed(tab, pages, instrumented, content_type)
    where = f"{point.placement} at byte {point.offset} of {document!r}"
    assert after["snippetSaw"] is not None, f"the snippet did not run: {where}"
    # A frameset that takes the body's place takes what the body held with it, a snippet that ran.
    assert after["snippets"] == 1 or after["frameset"], f"the snippet is no element of the page: {where}"
    if charset_declared:  # else rule 1a may put it after a script, to keep a charset meta readable
        assert after["snippetSaw"] == 1, f"the snippet ran after {after['snippetSaw'] - 1} script(s) of the page: {where}"
    for key in ("mode", "charset", "tree"):
        assert after[key] == before[key], f"the snippet changed the page's {key}: {where}"
    # In order they may not stay: after </body> a comment goes after the body, and a script (the
    # snippet there) reopens the body for the comments that follow it; a frameset that then takes
    # the body's place takes those comments with it.
    if after["frameset"]:
        assert not Counter(after["comments"]) - Counter(before["comments"]), f"the snippet added comments: {where}"
    else:
        assert sorted(after["comments"]) == sorted(before["comments"]), f"the snippet changed the page's comments: {where}"


def is_text(document: bytes) -> bool:
    """Whether a page is UTF-8 text: Chromium guesses the charset of one that is not and declares
    none (NUL bytes, say), from its content, which a snippet is part of."""
    try:
        document.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in document


@ORACLE
@given(documents.map(lambda doc: doc[0] + b"".join(frag.data for frag in doc[1])), st.booleans())
# Found here: Chromium takes the charset of a page from an XML declaration at its very start; a
# noscript's content is raw text (scripting is on); a script's text has escaped states;
@example(b'<?xml version="1.0" encoding="utf-8"?>', False)
@example(b'<?xml version="1.0" encoding="utf-8"?><p>caf\xc3\xa9</p>', False)
@example(b'<head><noscript><a title="</noscript><!--"></noscript><meta charset=utf-8>x--><p>', False)
@example(b'<head><script><!--<script></script><meta charset=utf-8>--></script><p>caf\xc3\xa9', False)
# and it reads a charset meta that begins in the first 1,024 bytes to its end, even past the head.
@example(b"<head><meta http-equiv=x-ua-compatible content=IE=edge><p>" + b"." * 950 + b"<meta charset=utf-8>caf\xc3\xa9", False)
# and it reads every duplicate attribute of a meta (a second http-equiv=content-type makes a pragma).
@example(
    b"<head><meta http-equiv=x-ua-compatible content=IE=edge><p>" + b"." * 900
    + b"<meta http-equiv=x-ua-compatible content='text/html; charset=utf-8' http-equiv=content-type>caf\xc3\xa9",
    False,
)
@example(b"</body><?xml version='1.0'?><html><!", True)
@example(b"hello\xc3\xa9", False)  # a guessed charset (check)
def test_generated_pages_parse_the_same_with_the_snippet(tab: Any, pages: Pages, document: bytes, charset_declared: bool) -> None:
    check(tab, pages, document, charset_declared)


@ORACLE
@given(st.lists(noise, max_size=16).map(b"".join))
def test_runs_of_markup_parse_the_same_with_the_snippet(tab: Any, pages: Pages, document: bytes) -> None:
    check(tab, pages, document, charset_declared=True)


@ORACLE
@given(unusual_documents, st.booleans())
# Found here: <plaintext>'s text runs to the end; inline SVG has CDATA sections and markup in its
# <style> and <script>; a frameset drops the scripts after it.
@example(b"<plaintext><meta charset=utf-8>x", False)
@example(b"<svg><![CDATA[<head><meta charset=utf-8>]]></svg>", False)
@example(b"<svg><style><!--</style><meta charset=utf-8>--></svg>", False)
@example(b"<head></head><frameset><meta charset=utf-8>", False)
@example(b"<frameset></frameset><xmp><!--</xmp><meta charset=utf-8>-->", False)
@example(b'<form><meta charset="utf&#45;8"><frameset><frame src=about:blank></frameset>', False)
@example(b"<svg></math><template>", False)  # a template element in SVG has no content fragment
@example(b"</html><html><!--><frameset><frame src=about:blank></frameset>", False)
def test_unusual_pages_parse_the_same_with_the_snippet(tab: Any, pages: Pages, document: bytes, charset_declared: bool) -> None:
    check(tab, pages, document, charset_declared or not is_text(document))
