"""The whole-body rewriter: one insertion in the page's own charset; a <meta> CSP widened only
where it would block the agent's beacons."""

from __future__ import annotations

import gzip

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumproxy import csp
from rumproxy.rewrite import PolicyBlocked, inject_buffered, meta_with_policy, splice

SNIPPET = '<script src="/__rum/x/a.js"></script><script>go()</script>'
PAGE = b'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>x</body></html>'


def widen(policy: str) -> str:
    return csp.allow_connect(policy, page_origin="https://shop.test", connect_url="https://apm.test:8200/intake")


def test_one_insertion_after_the_charset_meta():
    result = inject_buffered(PAGE, encoding="identity", content_type="text/html", snippet=SNIPPET, limit=None)
    assert result.reason == "injected" and result.placement == "after-meta"
    assert result.body == PAGE.replace(b'<meta charset="utf-8">', b'<meta charset="utf-8">' + SNIPPET.encode())


def test_reencoded_with_the_same_encoding():
    result = inject_buffered(gzip.compress(PAGE), encoding="gzip", content_type="text/html", snippet=SNIPPET, limit=None)
    assert SNIPPET.encode() in gzip.decompress(result.body)


def test_latin1_page_keeps_its_bytes():
    page = '<html><head><meta charset="iso-8859-1"><title>Café</title></head></html>'.encode("latin-1")
    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet=SNIPPET, limit=None)
    assert result.body.replace(SNIPPET.encode(), b"") == page


def test_non_ascii_custom_snippet_in_a_charset_that_cannot_carry_it_is_skipped():
    page = b'<html><head><meta charset="iso-8859-1"></head></html>'
    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet="<script>'\u2603'</script>", limit=None)
    assert result.body is None and "cannot be written" in result.reason


def test_utf16_is_transcoded():
    page = "\ufeff<html><head><title>x</title></head></html>".encode("utf-16-le")
    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet=SNIPPET, limit=None)
    assert result.body.decode("utf-16-le") == "\ufeff<html><head>" + SNIPPET + "<title>x</title></head></html>"


def test_scan_limit_is_a_reason():
    page = b"<html><head>" + b"<link rel=x>" * 1000 + b"</head></html>"
    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet=SNIPPET, limit=1024)
    assert result.body is None and "scan limit" in result.reason


def test_corrupt_body_is_a_reason():
    result = inject_buffered(b"not gzip", encoding="gzip", content_type="text/html", snippet=SNIPPET, limit=None)
    assert result.body is None and "cannot be decoded" in result.reason


META = b'<meta http-equiv="Content-Security-Policy" content="script-src \'self\'; connect-src \'self\'">'


def test_meta_csp_page_gets_the_snippet_before_the_meta_and_only_connect_src_widened():
    page = b'<html><head><meta charset="utf-8">' + META + b"<title>t</title></head></html>"
    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet=SNIPPET, limit=None, edit_policy=widen)
    widened = META.replace(b"connect-src 'self'", b"connect-src 'self' https://apm.test:8200")
    assert result.body == b'<html><head><meta charset="utf-8">' + SNIPPET.encode() + widened + b"<title>t</title></head></html>"


def test_meta_policy_that_allows_the_intake_is_left_byte_identical():
    tag = b"<meta http-equiv=Content-Security-Policy content=\"connect-src *\">"
    assert meta_with_policy(tag, widen) is tag


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        (b"<meta http-equiv='Content-Security-Policy' content='default-src \\'self\\''>", None),
        (b"<meta http-equiv=Content-Security-Policy content='default-src &#39;self&#39;'>",
         b"<meta http-equiv=Content-Security-Policy content='default-src &#x27;self&#x27;; connect-src &#x27;self&#x27; https://apm.test:8200'>"),
        (b"<meta http-equiv=Content-Security-Policy content=default-src>", None),
    ],
)
def test_meta_quoting_is_kept_valid(tag, expected):
    out = meta_with_policy(tag, widen)
    if expected is not None:
        assert out == expected
    import html
    import re

    value = re.search(rb"content=(\"[^\"]*\"|'[^']*'|[^\s>]+)", out).group(1)
    text = html.unescape(value.strip(b"\"'").decode())
    assert "https://apm.test:8200" in text or "connect-src" not in text


def test_policy_blocked_leaves_the_page_alone():
    page = b"<html><head>" + META + b"</head></html>"

    def forbid(policy: str) -> str:
        raise PolicyBlocked("blocked by policy")

    result = inject_buffered(page, encoding="identity", content_type="text/html", snippet=SNIPPET, limit=None, edit_policy=forbid)
    assert result.body is None and result.reason == "blocked by policy"


@given(st.binary(max_size=200), st.integers(min_value=0, max_value=200))
def test_splice_without_meta_is_one_insertion(document, offset):
    offset = min(offset, len(document))
    out = splice(document, offset, b"<S>", None, widen)
    assert out[:offset] == document[:offset] and out[offset + 3 :] == document[offset:]
