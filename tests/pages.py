"""Generated HTML pages for the property tests (hypothesis): pieces that put the head in different
places or hide tags from the scanner, in every order they go together."""

from __future__ import annotations

import random

from hypothesis import strategies as st


def varied_text(size: int) -> bytes:
    """Paragraphs of some `size` bytes, varied enough that gzip -6 ends deflate blocks every ~50 KB,
    as on real pages; the same every time."""
    rng = random.Random(7)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(2000)]
    return "".join(f"<p>{' '.join(rng.choices(words, k=12))}</p>\n" for _ in range(size // 80)).encode()


# Pieces of pages: where the head is, what hides a tag from the scanner, charsets it must keep.
DOCTYPES = [b"", b"<!doctype html>\n", b"<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0//EN\">"]
HEAD_STARTS = [b"", b"<html>", b"<html lang=en><head>", b"<HEAD data-x='<head>'>", b"<html><head >"]
HEAD_CONTENTS = [
    b"",
    b'<meta charset="utf-8">',
    b"<meta http-equiv=Content-Type content='text/html; charset=iso-8859-1'>",
    b"<title>caf\xc3\xa9 </head></title>",
    b"<!-- <head></head> --><title>t</title>",
    b"<script>var s = '</head><body>';</script>",
    b"<style>body::after { content: '</head>' }</style>",
    b'<link rel=stylesheet href="a.css"><base href="/">',
    b"<script src=\"/app.js\"></script>",
]
BODIES = [b"", b"<body>", b"</head><body class=x>", b"</head>\n<body>"]
TEXTS = [b"<p>hello</p>", b"\xc3\xa9t\xc3\xa9 <b>\xe2\x80\xa8</b>", b"<p>" + b"lorem ipsum " * 400 + b"</p>", b"plain text", b""]
# A comment longer than the scan limit, and a page large enough for the gzip block reuse.
LARGE_DOCTYPES = [b"<!-- " + b"long comment " * 6000 + b"-->"]
LARGE_TEXTS = [varied_text(150_000)]
ENDS = [b"", b"</body></html>", b"</body></html>\n\n"]


@st.composite
def page_pieces(draw, *, large: bool = False) -> list[bytes]:
    """One piece of each kind, in order (doctype, head start, head content, body start, text, end);
    `large` adds pieces past the scan limit and past 100 KB (too large for a URL: the integration
    tests send pages through the upstream's query string)."""
    doctypes, texts = (DOCTYPES + LARGE_DOCTYPES, TEXTS + LARGE_TEXTS) if large else (DOCTYPES, TEXTS)
    return [draw(st.sampled_from(pieces)) for pieces in (doctypes, HEAD_STARTS, HEAD_CONTENTS, BODIES, texts, ENDS)]


def pages(*, large: bool = False) -> st.SearchStrategy[bytes]:
    return page_pieces(large=large).map(b"".join)
