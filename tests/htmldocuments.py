"""Generated HTML documents for the placement tests (hypothesis strategies): `documents` shaped like
pages, each token a Frag that says what the placement rules need to know of it, and `noise`, runs
of HTML-ish bytes. test_htmlscan checks the scanner against its model on them; the browser suite
checks the insertion against Chromium's own parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

from hypothesis import strategies as st

BOM = b"\xef\xbb\xbf"
COMMENT_END = re.compile(rb"--!?>")


@dataclass(frozen=True)
class Frag:
    """One token (or a whole raw-text element) of a generated document, with what the model needs."""

    data: bytes
    kind: str  # text | comment | bogus | doctype | start | end | raw
    name: bytes = b""
    moves: bool = False  # a meta declaring a charset or X-UA-Compatible
    amp: bool = False
    base_href: bool = False  # a <base> with an href attribute
    declares: bool = False  # a meta that names the charset to every browser's prescan (it stops there)
    # One that names it to some browser: the prescan's reading or Chromium's, which takes the last
    # of duplicate attributes, a charset over a content, and a pragma from any http-equiv.
    may_declare: bool = False


AMP_NAMES = ["amp", "AMP", "⚡", "⚡4email", "amp4ads", "⚡4ADS"]


@st.composite
def any_case(draw: st.DrawFn, word: str) -> bytes:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if f else c for c, f in zip(word, flips)).encode()


ws = st.sampled_from([b" ", b"  ", b"\n", b"\t", b"\r\n", b"\f", b" / "])
quoted_text = st.lists(
    st.sampled_from([b">", b"<head>", b"<script>", b"</head>", b"<body>", b" ", b"x", b"/>", b"=", b"<!--", b"\xe2\x9a\xa1"]),
    max_size=4,
).map(b"".join)


@st.composite
def attribute(draw: st.DrawFn, name: bytes, value: bytes | None = None) -> bytes:
    style = draw(st.sampled_from(["dq", "sq", "uq", "none"] if value is None else ["dq", "sq", "uq"]))
    if style == "none":
        return name
    eq = draw(st.sampled_from([b"=", b" = ", b"=\n"]))
    if value is None:
        value = draw(quoted_text)
    if style == "dq":
        return name + eq + b'"' + value.replace(b'"', b"") + b'"'
    if style == "sq":
        return name + eq + b"'" + value.replace(b"'", b"") + b"'"
    unquoted = bytes(b for b in value if b not in b" \t\n\f\r>\"'") or b"v"
    return name + eq + unquoted


@st.composite
def start_tag(draw: st.DrawFn, word: str, attrs: list[bytes]) -> bytes:
    out = b"<" + draw(any_case(word))
    for attr in attrs:
        out += draw(ws) + attr
    return out + draw(st.sampled_from([b">", b" >", b"/>", b" />", b"\n>"]))


@st.composite
def plain_attrs(draw: st.DrawFn) -> list[bytes]:
    names = draw(st.lists(st.sampled_from([b"class", b"id", b"data-x", b"title", b"lang", b"x"]), max_size=3))
    return [draw(attribute(n)) for n in names]


@st.composite
def element_start(draw: st.DrawFn) -> Frag:
    word = draw(
        st.sampled_from(
            ["head", "html", "body", "link", "base", "template", "bgsound", "basefont",
             "div", "p", "h1", "header", "bodyx", "headline", "svg", "custom-el", "img", "br", "span"]
        )
    )
    return Frag(draw(start_tag(word, draw(plain_attrs()))), "start", word.encode())


@st.composite
def html_tag(draw: st.DrawFn) -> Frag:
    attrs = draw(plain_attrs())
    amp = draw(st.booleans())
    if amp:
        attrs.insert(draw(st.integers(0, len(attrs))), draw(st.sampled_from(AMP_NAMES)).encode())
    return Frag(draw(start_tag("html", attrs)), "start", b"html", amp=amp)


@st.composite
def meta_tag(draw: st.DrawFn) -> Frag:
    kinds = draw(st.lists(st.sampled_from(["charset", "content-type", "x-ua-compatible", "refresh", "viewport"]), min_size=1, max_size=2))
    attrs: list[bytes] = []
    equiv_seen = None
    moves = False
    for kind in kinds:
        if kind == "charset":
            attrs.append(draw(attribute(draw(any_case("charset")), b"utf-8")))
            moves = True
        elif kind == "viewport":
            attrs.append(b'name="viewport" content="width=device-width"')
        else:
            attrs.append(draw(attribute(draw(any_case("http-equiv")), draw(any_case(kind)))))
            if equiv_seen is None:  # the first of duplicate attributes wins
                equiv_seen = kind
                moves = moves or kind != "refresh"
            attrs.append(b'content="text/html; charset=utf-8"')
    # The spec's prescan: the first of duplicate attributes counts (a viewport's content names no
    # charset), and the first of charset and a content naming one decides, the content's with
    # http-equiv Content-Type only.
    spec_declares = content_seen = False
    for kind in kinds:
        if kind == "charset":
            spec_declares = True
            break
        if not content_seen:
            content_seen = True
            if kind != "viewport":
                spec_declares = equiv_seen == "content-type"
                break
    # Chromium: the last of duplicates counts, a charset attribute wins, any http-equiv Content-Type.
    last_content = next((kind for kind in reversed(kinds) if kind != "charset"), None)
    chromium_declares = "charset" in kinds or (last_content not in (None, "viewport") and "content-type" in kinds)
    declares = spec_declares and chromium_declares
    may_declare = spec_declares or chromium_declares
    moves = moves or may_declare
    return Frag(draw(start_tag("meta", attrs)), "start", b"meta", moves=moves, declares=declares, may_declare=may_declare)


@st.composite
def base_tag(draw: st.DrawFn) -> Frag:
    attrs = draw(plain_attrs())
    href = draw(st.booleans())
    if href:
        # The first of duplicate attributes wins, and any href counts, even one without a value.
        attrs.insert(draw(st.integers(0, len(attrs))), draw(attribute(draw(any_case("href")), b"https://elsewhere.example/")))
    elif draw(st.booleans()):
        attrs.append(draw(st.sampled_from([b"target=_top", b"data-href=x", b'title="href"', b"hrefx=1"])))
    return Frag(draw(start_tag("base", attrs)), "start", b"base", base_href=href)


RAW_TEXT = ("script", "style", "title", "textarea", "xmp", "iframe", "noembed", "noframes", "noscript")


def _without_end(name: bytes, content: bytes) -> bytes:
    """Content that cannot close a `name` raw-text element early."""
    lowered = content.lower()
    for delimiter in b" \t\n\f\r/>":
        if b"</" + name + bytes([delimiter]) in lowered:
            return b"text"
    return content


@st.composite
def raw_element(draw: st.DrawFn, words: tuple[str, ...] = RAW_TEXT) -> Frag:
    word = draw(st.sampled_from(words))
    pieces = draw(
        st.lists(
            st.sampled_from(
                [b"<head>", b"</head>", b"<body>", b"<meta charset=utf-8>", b"<!--", b"-->", b"if (a<b && c>d)",
                 b"</" + word.encode() + b"x>", b"</ " + word.encode() + b">", b'"</scr" + "ipt>"', b"<p>", b"\xc3\xa9"]
            ),
            max_size=5,
        )
    )
    content = _without_end(word.encode(), b"".join(pieces))
    end = draw(st.sampled_from([b"</" + word.encode() + b">", b"</" + word.upper().encode() + b" >", b"</" + word.encode() + b' a=">">']))
    return Frag(draw(start_tag(word, draw(plain_attrs()))) + content + end, "raw", word.encode())


@st.composite
def comment(draw: st.DrawFn) -> Frag:
    fixed = [b"<!-->", b"<!--->", b"<!---->", b"<!--[if IE]><script src=ie.js></script><![endif]-->",
             b"<!--[if lt IE 9]><head><meta charset=utf-8><![endif]-->"]
    if draw(st.booleans()):
        return Frag(draw(st.sampled_from(fixed)), "comment")
    pieces = [b"<head>", b"<script>", b"<body>", b" - ", b"<!--", b"x", b"<html amp>", b"-", b"--", b"!", b">"]
    body = b"".join(draw(st.lists(st.sampled_from(pieces), max_size=6)))
    data = b"<!--" + body + draw(st.sampled_from([b"-->", b"--!>"]))
    first_end = COMMENT_END.search(data, 4)
    if body.startswith((b">", b"->")) or first_end is None or first_end.end() != len(data):
        data = b"<!-- x -->"
    return Frag(data, "comment")


bogus = st.sampled_from(
    [b'<?xml version="1.0" encoding="utf-8"?>', b"<![CDATA[<head]]>", b"<![CDATA[ x ]]>", b"<![if !IE]>", b"<![endif]>",
     b"</ head>", b"</3>", b"<!ELEMENT br EMPTY>", b"<!>", b"</>"]
).map(lambda data: Frag(data, "bogus"))
doctype = st.sampled_from(
    [b"<!DOCTYPE html>", b"<!doctype HTML>", b'<!DocType html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x.dtd">']
).map(lambda data: Frag(data, "doctype"))
text = st.lists(
    # The long piece takes what follows past the 1,024 bytes of the charset prescan (rule 1a).
    st.sampled_from([b"hello", b" ", b"\n", b"a < b", b"<3", b"&lt;head&gt;", b"\xe2\x9a\xa1", b"\xc3\xa9", b"x>y", b"1<=2", b"." * 700]),
    min_size=1, max_size=3,
).map(lambda parts: Frag(b"".join(parts), "text"))
end_tag = st.sampled_from(["head", "template", "div", "body", "html", "title"]).flatmap(
    lambda word: st.tuples(any_case(word), st.sampled_from([b">", b" >", b' x=">">'])).map(
        lambda t: Frag(b"</" + t[0] + t[1], "end", word.encode())
    )
)
fragment = st.one_of(element_start(), html_tag(), meta_tag(), base_tag(), raw_element(), comment(), bogus, doctype, text, end_tag)
head_tag = plain_attrs().flatmap(lambda attrs: start_tag("head", attrs)).map(lambda data: Frag(data, "start", b"head"))
body_tag = plain_attrs().flatmap(lambda attrs: start_tag("body", attrs)).map(lambda data: Frag(data, "start", b"body"))
# Shaped like pages (prologue, html, head, head content, anything) so that every placement is common.
documents = st.tuples(
    st.sampled_from([b"", BOM]),
    st.tuples(
        st.lists(st.one_of(doctype, comment(), bogus, text), max_size=2),
        st.lists(html_tag(), max_size=1),
        st.lists(head_tag, max_size=1),
        st.lists(st.one_of(meta_tag(), base_tag(), comment(), text, raw_element()), max_size=4),
        st.lists(st.one_of(fragment, body_tag, raw_element(("script",))), max_size=8),
    ).map(lambda parts: [frag for part in parts for frag in part]),
)
# Runs of HTML-ish bytes, pages or not.
noise = st.one_of(
    fragment.map(lambda f: f.data),
    st.binary(max_size=12),
    st.sampled_from([b"<", b"</", b"<!", b"<!-", b"-->", b'"', b"'", b">", b"=", b"<head", b"<script", b"<!--", BOM,
                     b"<meta http-equiv=Content-Security-Policy content=x>", b"x" * 400]),
)

# What pages seldom hold before their body, for the browser to judge (the model does not know them):
# foreign content, where <style> and <script> are markup and CDATA sections are real; <plaintext>;
# framesets; elements with their own insertion modes; character references and NUL bytes; metas
# whose charset the tree reads differently from the prescan.
FOREIGN_PIECES = [
    b"<style><meta charset=utf-8></style>", b"<script>var a = 1 < 2</script>", b"<![CDATA[<head><meta charset=utf-8>]]>",
    b"<title><!--</title>-->", b"<foreignObject><p>x</p><meta charset=utf-8></foreignObject>", b"<desc><meta charset=utf-8></desc>",
    b"<path/>", b"<mi>x</mi>", b"<annotation-xml encoding=text/html><meta charset=utf-8></annotation-xml>", b"<!-- c -->",
    b"<font color=red>", b"<b>", b"<g><script>//</script></g>",
]
foreign = st.tuples(
    st.sampled_from([b"<svg>", b"<SVG viewBox='0 0 1 1'>", b"<math>", b"<svg/>"]),
    st.lists(st.sampled_from(FOREIGN_PIECES), max_size=3).map(b"".join),
    st.sampled_from([b"</svg>", b"</math>", b""]),
).map(b"".join)
unusual_element = st.sampled_from(
    [b"<plaintext><meta charset=utf-8></plaintext><p>", b"<frameset><frame src=about:blank></frameset>", b"<frameset>",
     b"<noframes><meta charset=utf-8></noframes>", b"<select><option>a<script>//</script><meta charset=utf-8></select>",
     b"<table><tr><td>x<meta charset=utf-8></td></tr></table>", b"<table><script>//</script>x", b"<object><param name=a value=b></object>",
     b"<embed>", b"<image src=x>", b"<input type=hidden>", b"<input>", b"<hr>", b"<form>", b"<a href=x>", b"<li>", b"<pre>\n",
     b"<listing>\n", b"<nobr>", b"<ruby><rt>", b"<keygen>", b"<isindex>", b"<iframe><meta charset=utf-8></iframe>",
     b"<textarea><meta charset=utf-8></textarea>", b"<xmp></xmp>", b"</p>", b"</br>", b"<head>", b"</html>", b"<html lang=x>",
     b"<body onload=''>", b"<caption>", b"<colgroup>", b"<frame>", b"<template><meta charset=utf-8><script>//</script></template>",
     b"<script type=module>//</script>", b"<script type=text/template><meta charset=utf-8></script>", b"<style>a{}</style>",
     # Which <base> counts: the first with an href, in the HTML namespace, not in a template.
     b'<template><base href="https://elsewhere.example/"></template>', b'<svg><base href="https://elsewhere.example/"/></svg>',
     b'<noscript><base href="https://elsewhere.example/"></noscript>', b'<base HREF="//elsewhere.example/" href=/>',
     b"<base href>", b'<base target=_top><base href="https://elsewhere.example/">', b'<base href="  https://elsewhere.example/ ">']
)
references = st.sampled_from(
    [b"&amp;", b"&#0;", b"\x00", b"\r", b"\r\n", b"&lt;meta charset=utf-8&gt;", b"&", b"&#x3C;head>", b"\xef\xbb\xbf", b"\xff"]
)
unusual_meta = st.sampled_from(
    [b'<meta charset="utf&#45;8">', b"<meta charset=&quot;utf-8&quot;>", b'<meta http-equiv=content-type content="text/html;charset=utf&#x2d;8">',
     b'<meta charset=" UTF-8 ">', b"<meta charset=utf8>", b"<meta charset=unicode>", b"<meta charset=x-user-defined>",
     b"<meta charset=latin1>", b"<meta charset=bogus-label>", b"<meta charset=''>", b"<meta charset>", b"<meta\x00charset=utf-8>",
     b"<meta content='text/html; charset=utf-8' charset=windows-1251>", b"<meta charset=utf-8 charset=koi8-r>",
     b'<meta http-equiv="Content-Type" content="charset=\'utf-8\'">', b'<meta http-equiv=content-type content="text/html; charset">',
     b"<meta/charset=utf-8>", b"<meta charset=utf-8/>", b"<meta name=charset content=utf-8>", b"<META CHARSET=UTF-8>"]
)
unusual = st.one_of(foreign, unusual_element, references, unusual_meta)
# These pages stay short of the charset prescan's end (the snippet moves no meta past it): a charset
# meta the tree reads as no element (in a template, a noscript, an SVG CDATA section) is not kept
# within those bytes (htmlscan's rule 1a), and `documents` already reach that end with everything else.
UNUSUAL_MAX = 900
short_text = st.sampled_from([b"hello", b" ", b"\n", b"a < b", b"<3", b"&lt;head&gt;", b"\xc3\xa9", b"x>y"])
short_fragment = st.one_of(element_start(), html_tag(), meta_tag(), base_tag(), raw_element(), comment(), bogus, doctype, end_tag)
unusual_documents = st.tuples(
    st.sampled_from([b"", BOM]),
    st.lists(st.one_of(doctype.map(lambda f: f.data), comment().map(lambda f: f.data), bogus.map(lambda f: f.data), short_text), max_size=2).map(b"".join),
    st.lists(st.one_of(html_tag(), head_tag, meta_tag(), base_tag(), raw_element()).map(lambda f: f.data), max_size=3).map(b"".join),
    st.lists(st.one_of(unusual, unusual, short_fragment.map(lambda f: f.data)), min_size=1, max_size=6).map(b"".join),
    st.lists(st.one_of(unusual, short_fragment.map(lambda f: f.data), short_text), max_size=4).map(b"".join),
).map(b"".join).filter(lambda document: len(document) <= UNUSUAL_MAX)
