"""Realistic HTML pages of exact sizes, written with pre-compressed copies for nginx to serve.

A page is what a content site sends: a doctype, a head with `<meta charset>`, a viewport, a title,
a description and an inline stylesheet, then a body of navigation, article cards (headings,
paragraphs of varied words, lists, images, small tables) and a footer with an inline script.
The words are drawn from a seeded generator, so the pages compress like real text (gzip about 3-4x),
not like a repeated block, and every run serves the same bytes.
"""

from __future__ import annotations

import dataclasses
import gzip
import random
from pathlib import Path

import brotli

SIZES = {"10k": 10 * 1024, "300k": 300 * 1024, "2.5M": 5 * 512 * 1024, "20M": 20 * 1024 * 1024}
_UNITS = {"k": 1024, "M": 1024 * 1024}
ENCODINGS = ("identity", "gzip", "br")
GZIP_LEVEL = 6  # what `gzip -6` / most build pipelines write
BROTLI_QUALITY = 5  # quality 11 would take minutes on 20 MB; the proxy's decode cost barely depends on it

_WORDS = (
    "the of and to in is for on with as by at from that this are be or an was it not but have has can "
    "will more about new all one their which your our they we you his her its who what when where how "
    "page site shop order cart price product delivery account search home news blog article review "
    "customer service support contact privacy terms policy cookie update release version feature "
    "performance network server browser request response header content image video audio stream "
    "market report analysis quarter growth revenue profit team project design develop build deploy "
    "monitor trace metric error latency user session region city country weather travel hotel flight "
    "recipe kitchen garden health sport music movie book author library history science nature energy"
).split()
_CSS = """
:root{--fg:#1d1d1f;--bg:#fff;--accent:#0a66c2;--muted:#6e6e73}
*{box-sizing:border-box}html{font-size:16px}body{margin:0;font:1rem/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
header.site{display:flex;align-items:center;justify-content:space-between;padding:.75rem 1.5rem;border-bottom:1px solid #e5e5ea}
nav ul{list-style:none;display:flex;gap:1rem;margin:0;padding:0}nav a{color:var(--fg);text-decoration:none}
nav a:hover,nav a:focus{color:var(--accent);text-decoration:underline}
main{max-width:72rem;margin:0 auto;padding:1.5rem;display:grid;grid-template-columns:repeat(auto-fill,minmax(18rem,1fr));gap:1.5rem}
.card{border:1px solid #e5e5ea;border-radius:.75rem;padding:1rem;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card h2{font-size:1.25rem;margin:.25rem 0 .5rem}.card p{margin:0 0 .75rem;color:#333}
.card img{width:100%;height:auto;border-radius:.5rem;background:#f2f2f7}
.card table{width:100%;border-collapse:collapse;font-size:.875rem}.card td,.card th{padding:.25rem;border-bottom:1px solid #eee;text-align:left}
.tag{display:inline-block;padding:0 .5rem;border-radius:1rem;background:#eef4fb;color:var(--accent);font-size:.75rem}
footer{padding:2rem 1.5rem;color:var(--muted);border-top:1px solid #e5e5ea}
@media (max-width:40rem){main{grid-template-columns:1fr;padding:1rem}header.site{flex-direction:column}}
"""


@dataclasses.dataclass(frozen=True)
class Page:
    name: str  # "10k", "300k", "2.5M", "20M"
    body: bytes  # the document as served with identity encoding
    path: str  # URL path on the origin

    def compressed_size(self, directory: Path, encoding: str) -> int:
        return len(self.body) if encoding == "identity" else (directory / _file(self, encoding)).stat().st_size


def size_of(name: str) -> int:
    """Bytes of a page named like "10k", "2.5M" or "512k" (KiB and MiB); ValueError otherwise."""
    if name in SIZES:
        return SIZES[name]
    number, unit = name[:-1], name[-1:]
    if unit not in _UNITS:
        raise ValueError(f"a page size like 10k or 2.5M, not {name!r}")
    size = int(float(number) * _UNITS[unit])
    if not 4096 <= size <= 256 * 1024 * 1024:
        raise ValueError(f"page sizes from 4k to 256M, not {name!r}")
    return size


def generate(size: int, seed: int = 5) -> bytes:
    """A page of exactly `size` bytes (at least 2 KiB)."""
    rng = random.Random(seed * 1_000_003 + size)
    head = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>Bench page {size} bytes</title>\n"
        "<meta name=\"description\" content=\"A generated page for the rumproxy benchmark\">\n"
        "<link rel=\"icon\" href=\"/favicon.ico\">\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<header class=\"site\"><a href=\"/\" class=\"logo\">Bench</a><nav><ul>"
        + "".join(f"<li><a href=\"/c/{w}\">{w.title()}</a></li>" for w in rng.sample(_WORDS, 6))
        + "</ul></nav></header>\n<main>\n"
    )
    tail = (
        "</main>\n<footer><p>&copy; Bench &middot; <a href=\"/privacy\">Privacy</a></p></footer>\n"
        "<script>document.querySelectorAll('.card').forEach(function(c){c.dataset.seen='1'});</script>\n"
        "</body>\n</html>\n"
    )
    room = size - len(head) - len(tail)
    if room < 64:
        raise ValueError(f"a page needs at least {len(head) + len(tail) + 64} bytes, not {size}")
    parts: list[str] = []
    filled = 0
    card = 0
    while True:
        piece = _card(rng, card)
        if filled + len(piece) > room - 32:
            break
        parts.append(piece)
        filled += len(piece)
        card += 1
    # The last paragraph makes the size exact.
    filler = room - filled - len("<p></p>\n")
    words = " ".join(rng.choices(_WORDS, k=filler // 4 + 2))[:filler]
    parts.append(f"<p>{words}</p>\n")
    document = (head + "".join(parts) + tail).encode("ascii")
    assert len(document) == size, (len(document), size)
    return document


def _card(rng: random.Random, n: int) -> str:
    def words(k: int) -> str:
        return " ".join(rng.choices(_WORDS, k=k))

    items = "".join(f"<li>{words(rng.randint(2, 6))}</li>" for _ in range(rng.randint(2, 5)))
    rows = "".join(
        f"<tr><td>{words(2)}</td><td>{rng.randint(1, 99999)}</td><td>{rng.random():.2f}</td></tr>"
        for _ in range(rng.randint(1, 4))
    )
    return (
        f"<article class=\"card\" id=\"c{n}\"><span class=\"tag\">{rng.choice(_WORDS)}</span>"
        f"<h2><a href=\"/a/{n}\">{words(rng.randint(3, 8)).capitalize()}</a></h2>"
        f"<img src=\"/img/{n}.jpg\" alt=\"{words(3)}\" width=\"320\" height=\"200\" loading=\"lazy\">"
        f"<p>{words(rng.randint(25, 70)).capitalize()}.</p><ul>{items}</ul>"
        f"<table><tr><th>item</th><th>count</th><th>score</th></tr>{rows}</table></article>\n"
    )


def _file(page: Page, encoding: str) -> str:
    name = page.path.lstrip("/")
    return {"identity": name, "gzip": name + ".gz", "br": f"br/{name}"}[encoding]


def write_pages(directory: Path, names: list[str]) -> list[Page]:
    """Write each page as `NAME.html`, `NAME.html.gz` (for gzip_static) and `br/NAME.html`
    (served with Content-Encoding: br when the client accepts br)."""
    (directory / "br").mkdir(parents=True, exist_ok=True)
    pages = []
    for name in names:
        page = Page(name=name, body=generate(size_of(name)), path=f"/{name}.html")
        (directory / _file(page, "identity")).write_bytes(page.body)
        (directory / _file(page, "gzip")).write_bytes(gzip.compress(page.body, GZIP_LEVEL, mtime=0))
        (directory / _file(page, "br")).write_bytes(brotli.compress(page.body, quality=BROTLI_QUALITY))
        pages.append(page)
    return pages
