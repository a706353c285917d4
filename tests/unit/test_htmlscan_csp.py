"""A <meta> Content-Security-Policy: the point stays before it, and its span is reported."""

from __future__ import annotations

import pytest

from rumproxy.htmlscan import InsertionScanner, find_insertion_point

META = b'<meta http-equiv="Content-Security-Policy" content="script-src \'self\'">'


@pytest.mark.parametrize(
    ("document", "placement"),
    [
        (b'<html><head><meta charset="utf-8">' + META + b"<title>t</title></head>", "after-meta"),
        (b"<html><head>" + META + b'<meta charset="utf-8"></head>', "after-head"),
        (b"<!doctype html><html>" + META + b"<body>", "after-html"),
        (b"<html><head><title>" + META + b"</title><script></script>", "after-head"),
    ],
)
def test_point_is_before_the_policy(document, placement):
    insertion, facts = find_insertion_point(document)
    assert insertion.placement == placement
    if b"<title>" + META in document:
        assert facts.csp_meta is None  # inside raw text it is not a tag
        return
    start, end = facts.csp_meta
    assert document[start:end] == META
    assert insertion.offset <= start


def test_http_equiv_is_case_insensitive_and_decides_in_any_split():
    document = b"<html><head><META HTTP-EQUIV='content-security-policy' CONTENT=\"default-src 'none'\"><script>"
    whole, facts = find_insertion_point(document)
    for cut in range(1, len(document)):
        scanner = InsertionScanner()
        first = scanner.feed(document[:cut])
        decided = first or scanner.feed(document[cut:]) or scanner.finish()
        assert decided == whole and scanner.facts == facts
    assert whole.offset == len(b"<html><head>")
