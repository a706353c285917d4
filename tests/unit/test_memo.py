"""Remembered rewrites of whole pages: the same body with another snippet, without a scan."""

from __future__ import annotations

import pytest

from rumproxy import codecs, encoders, gzipmemo, memo, rewrite
from rumproxy.rewrite import inject_buffered

PAGE = b'<!doctype html><html><head><meta charset="windows-1252"><title>caf\xe9</title></head><body>x</body></html>'


@pytest.mark.parametrize("encoding", ["identity", "deflate", "br", "zstd", "gzip"])
def test_a_remembered_page_takes_any_snippet(encoding):
    raw = encoders.encode(PAGE, encoding)
    first = inject_buffered(raw, encoding=encoding, content_type="text/html", snippet="<script>1</script>", limit=None)
    known = first.reusable
    assert known is not None and known.source is raw and known.codec == "cp1252"
    assert (known.offset, known.placement) == (first.offset, first.placement)
    second = inject_buffered(raw, encoding=encoding, content_type="text/html", snippet="<script>ü</script>", limit=None)
    if isinstance(known, memo.KnownPage):
        body = known.body("<script>ü</script>".encode(known.codec), encoding)
        assert (known.document is None) == (encoding == "identity")
    else:
        body = gzipmemo.whole_body(known, "<script>ü</script>".encode(known.codec))
    assert codecs.decode(body, encoding) == codecs.decode(second.body, encoding)
    assert b"<script>\xfc</script>" in codecs.decode(body, encoding)


def test_a_page_with_a_csp_meta_is_not_remembered():
    page = PAGE.replace(b"<title>", b'<meta http-equiv="Content-Security-Policy" content="img-src *"><title>')
    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet="<script>1</script>", limit=None)
    assert result.body is not None and result.reusable is None


# A head, then a body that changes on every request (a form's token, a timestamp).
HEAD = b'<!doctype html><html><head><meta charset="windows-1252"><title>caf\xe9</title><link rel=stylesheet href=/s.css>'
CHANGING = b"<script src=/app.js></script></head><body>" + b"<p>caf\xe9 and more</p>" * 60 + b"<form><input name=token value=%d></form></body></html>"


def rewrite_page(page: bytes, encoding: str, known_head: memo.KnownHead | None = None, snippet: str = "<script>\xfc</script>"):
    return inject_buffered(
        encoders.encode(page, encoding), encoding=encoding, content_type="text/html", snippet=snippet, limit=None, known_head=known_head
    )


@pytest.mark.parametrize("encoding", ["identity", "deflate", "br", "gzip"])
def test_a_page_that_changes_below_its_head_is_not_scanned_again(encoding, monkeypatch):
    first = rewrite_page(HEAD + CHANGING % 1, encoding)
    head = first.head
    assert head is not None and (head.offset, head.placement, head.codec) == (first.offset, "after-meta", "cp1252")
    assert len(head.source) == 1024 and (HEAD + CHANGING % 1).startswith(head.source)  # the charset prescan's bytes
    page = HEAD + CHANGING % 123456
    expected = rewrite_page(page, encoding)
    monkeypatch.setattr(rewrite, "locate", None)  # no scan
    monkeypatch.setattr(rewrite, "detect_charset", None)
    again = rewrite_page(page, encoding, head)
    assert codecs.decode(again.body, encoding) == codecs.decode(expected.body, encoding)
    assert b'<meta charset="windows-1252"><script>\xfc</script><title>' in codecs.decode(again.body, encoding)
    assert (again.offset, again.placement, again.detail) == (expected.offset, expected.placement, memo.HEAD_REMEMBERED)
    assert again.head is None  # the known one stays
    assert again.reusable is not None  # for when this very body comes again


def test_a_changed_head_is_scanned_again():
    head = rewrite_page(HEAD + CHANGING % 1, "identity").head
    # The same up to the decision (the first script), but another charset in the prescan's bytes.
    utf8 = (HEAD + CHANGING % 2).replace(b"windows-1252", b"utf-8").replace(b"\xe9", b"\xc3\xa9")
    result = rewrite_page(utf8, "identity", head)
    assert b"<script>\xc3\xbc</script>" in result.body and result.detail == ""
    # Another point: a charset meta moved past the title.
    moved = (HEAD + CHANGING % 3).replace(b'<meta charset="windows-1252">', b"").replace(b"<link", b'<meta charset="windows-1252"><link')
    result = rewrite_page(moved, "identity", head)
    assert result.offset == moved.index(b"<link") and result.detail == ""


def test_a_known_head_still_leaves_a_page_that_loads_the_agent_below_it():
    head = rewrite_page(HEAD + CHANGING % 1, "identity").head
    page = (HEAD + CHANGING % 2).replace(b"<form>", b'<script src="/elastic-apm-rum.umd.min.js"></script><form>')
    result = rewrite_page(page, "identity", head)
    assert result.body is None and result.reason == "page loads the Elastic RUM agent already"


@pytest.mark.parametrize(
    "page",
    [
        pytest.param(PAGE, id="shorter than the charset prescan"),
        pytest.param(b"<html><head><title>t</title>" + b"x" * 2000, id="decided where the body ends"),
        pytest.param(HEAD.replace(b"<title>", b'<meta http-equiv="Content-Security-Policy" content="img-src *"><title>') + CHANGING % 1, id="csp meta"),
    ],
)
def test_heads_that_are_not_remembered(page):
    result = rewrite_page(page, "identity")
    assert result.body is not None and result.head is None


def _known(size: int) -> memo.KnownPage:
    return memo.KnownPage(b"s" * size, None, 0, "p", "ascii")


def test_memo_keeps_the_most_recently_used_within_its_budget():
    memory = memo.RewriteMemo(1000)
    for key in "abc":
        memory.put(key, _known(240))
    assert memory.get("a") is not None  # a is now the most recent
    memory.put("d", _known(240))
    memory.put("e", _known(240))  # 5 x 240 > 1000: the least recently used (b) goes
    assert memory.get("b") is None and all(memory.get(k) is not None for k in "acde")
    memory.put("big", _known(300))  # over a quarter of the budget: not kept
    assert memory.get("big") is None
    memory.forget("a")
    assert memory.get("a") is None and memory.count == 3
    memory.budget = 0
    assert memory.count == 0
    memory.put("f", _known(1))
    assert memory.count == 0
