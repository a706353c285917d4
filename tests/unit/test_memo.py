"""Remembered rewrites of whole pages: the same body with another snippet, without a scan."""

from __future__ import annotations

import pytest

from rumproxy import codecs, encoders, gzipmemo, memo
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
