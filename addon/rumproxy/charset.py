"""Which charset a page uses: WHATWG encoding sniffing, simplified.

Order, as in browsers: a byte order mark (UTF-8, UTF-16 LE/BE) wins; then the
`charset=` parameter of the Content-Type header; then a meta prescan of the
first 1024 bytes (`<meta charset>` or `<meta http-equiv=Content-Type
content="…charset=…">`, comments skipped); else windows-1252. A page read as
XML (`read_as_xml`) takes the `encoding` of its XML declaration instead of a
meta's, else UTF-8. The first
declaration found wins even when its label is unknown (codec None): a page
whose charset cannot be named is better left alone than guessed.

Labels go through the WHATWG quirks a browser applies (latin1 and ascii mean
windows-1252, gb2312 means GB18030, "utf-16" in a meta means UTF-8 …) before
Python's codec registry is asked.
"""

from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass

from . import _htmltokens as tok

__all__ = [
    "PRESCAN_BYTES",
    "Charset",
    "declared_in_header",
    "declares_charset_to_every_browser",
    "detect_charset",
    "may_declare_charset",
    "meta_label",
    "read_as_xml",
]


@dataclass(frozen=True)
class Charset:
    codec: str | None  # Python codec name, None if the label is unknown
    label: str  # the label as found (lowercased, stripped)
    source: str  # "bom" | "header" | "meta" | "xml-declaration" | "default"
    bom: bytes  # the BOM bytes at the start of the body, b"" if none
    ascii_compatible: bool  # tag syntax and an ASCII snippet are the same bytes in it


_BOMS = (
    (codecs.BOM_UTF8, "utf-8", "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16le", "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16be", "utf-16-be"),
)
PRESCAN_BYTES = 1024


def _labels(target: str | None, *names: str) -> dict[str, str | None]:
    return dict.fromkeys(names, target)


# The WHATWG Encoding Standard's labels where Python's names differ or where
# the browser decodes with a superset; anything else goes to codecs.lookup.
_QUIRKS: dict[str, str | None] = {
    **_labels("utf-8", "utf-8", "utf8", "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "x-unicode20utf8"),
    **_labels(
        "cp1252", "windows-1252", "x-cp1252", "cp1252", "latin1", "l1", "iso-8859-1", "iso8859-1", "iso88591",
        "iso_8859-1", "iso_8859-1:1987", "iso-ir-100", "csisolatin1", "cp819", "ibm819", "ascii", "us-ascii",
        "ansi_x3.4-1968",
    ),
    **_labels(
        "cp1254", "windows-1254", "x-cp1254", "iso-8859-9", "iso8859-9", "iso88599", "iso_8859-9",
        "iso_8859-9:1989", "iso-ir-148", "latin5", "l5", "csisolatin5",
    ),
    **_labels("cp874", "windows-874", "dos-874", "tis-620", "iso-8859-11", "iso8859-11", "iso885911"),
    **_labels("shift_jis", "shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "ms932", "windows-31j"),
    **_labels("euc_jp", "euc-jp", "x-euc-jp", "cseucpkdfmtjapanese"),
    **_labels("iso2022_jp", "iso-2022-jp", "csiso2022jp"),
    **_labels(
        "gb18030", "gb18030", "gbk", "x-gbk", "gb2312", "gb_2312", "gb_2312-80", "chinese", "csgb2312",
        "csiso58gb231280", "iso-ir-58",
    ),
    **_labels("big5hkscs", "big5", "big5-hkscs", "cn-big5", "csbig5", "x-x-big5"),
    **_labels(
        "cp949", "euc-kr", "cseuckr", "csksc56011987", "iso-ir-149", "korean", "ks_c_5601-1987",
        "ks_c_5601-1989", "ksc5601", "ksc_5601", "windows-949",
    ),
    **_labels("iso8859-8", "iso-8859-8-i", "csiso88598i", "logical"),
    **_labels("koi8-u", "koi8-u", "koi8-ru"),
    **_labels("mac-roman", "macintosh", "mac", "csmacintosh", "x-mac-roman"),
    **_labels("mac-cyrillic", "x-mac-cyrillic", "x-mac-ukrainian"),
    **_labels("cp866", "ibm866", "866", "cp866", "csibm866"),
    **_labels("utf-16-le", "utf-16", "utf-16le", "unicode", "unicodefeff", "ucs-2", "csunicode", "iso-10646-ucs-2"),
    **_labels("utf-16-be", "utf-16be", "unicodefffe"),
    # "replacement" in browsers (the page renders as one U+FFFD), or no Python codec.
    **_labels(None, "replacement", "iso-2022-kr", "csiso2022kr", "iso-2022-cn", "iso-2022-cn-ext", "hz-gb-2312"),
    **_labels(None, "x-user-defined"),
}
# A meta (or an XML declaration) that could be read as ASCII cannot be in UTF-16, so browsers take UTF-8.
_META_UTF16 = frozenset({"utf-16-le", "utf-16-be"})
# Python codecs that are not page charsets, though lookup() knows them.
_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "charmap", "unicode-internal"}
)
# Stateful encodings: ASCII round-trips, yet shifted bytes can look like "<".
_STATEFUL = ("iso2022", "utf-7", "hz")
_PROBE = b"<script src=\"x\">'\"=/ </script><!-- -->"

_CONTENT_TYPE_CHARSET = re.compile(
    rb";[\t ]*charset[\t ]*=[\t ]*(?:\"((?:[^\"\\]|\\.)*)\"|([^;]*))", re.IGNORECASE
)
# WHATWG "extracting a character encoding from a meta element".
_META_CONTENT_CHARSET = re.compile(
    rb"charset[\t\n\f\r ]*=[\t\n\f\r ]*(?:\"([^\"]*)\"|'([^']*)'|([^\t\n\f\r ;\"'][^\t\n\f\r ;]*))",
    re.IGNORECASE,
)


# XML's EncodingDecl, in the declaration that opens the page.
_XML_ENCODING = re.compile(
    rb"<\?xml[\t\n\r ]+version[\t\n\r ]*=[\t\n\r ]*(?:\"[^\"]*\"|'[^']*')"
    rb"[\t\n\r ]+encoding[\t\n\r ]*=[\t\n\r ]*[\"']([A-Za-z][A-Za-z0-9._-]*)[\"']"
)


def detect_charset(content_type: str | None, body_prefix: bytes) -> Charset:
    for bom, label, codec in _BOMS:
        if body_prefix.startswith(bom):
            return Charset(codec, label, "bom", bom, _ascii_compatible(codec))
    if content_type:
        label = _header_label(content_type)
        if label:
            return _charset(label, "header")
    if read_as_xml(content_type):
        m = _XML_ENCODING.match(body_prefix)
        if m is not None:
            return _charset(_normalize(m.group(1)), "xml-declaration")
        return Charset("utf-8", "utf-8", "default", b"", True)
    label = _prescan(bytes(body_prefix[:PRESCAN_BYTES]))
    if label:
        return _charset(label, "meta")
    return Charset("cp1252", "windows-1252", "default", b"", True)


@functools.lru_cache(maxsize=256)
def declared_in_header(content_type: str | None) -> bool:
    """Whether a Content-Type names the page's charset: a browser then reads none from its metas."""
    return bool(content_type) and bool(_header_label(content_type))


XHTML_TYPES = ("application/xhtml+xml",)


@functools.lru_cache(maxsize=256)
def read_as_xml(content_type: str | None) -> bool:
    """Whether a browser parses a page of this Content-Type as XML, which takes no charset from
    a meta (only from a BOM, the Content-Type or the XML declaration) and has no raw text."""
    return bool(content_type) and content_type.split(";", 1)[0].strip().lower() in XHTML_TYPES


def _charset(label: str, source: str) -> Charset:
    codec = _codec(label)
    if source != "header" and codec in _META_UTF16:
        codec = "utf-8"
    return Charset(codec, label, source, b"", codec is not None and _ascii_compatible(codec))


def _normalize(raw: bytes) -> str:
    return raw.decode("latin-1").strip("\t\n\f\r ").lower()


def _header_label(content_type: str) -> str:
    m = _CONTENT_TYPE_CHARSET.search(content_type.encode("latin-1", "replace"))
    if m is None:
        return ""
    if m.group(1) is not None:
        return _normalize(re.sub(rb"\\(.)", rb"\1", m.group(1)))
    return _normalize(m.group(2))


def _prescan(data: bytes) -> str:
    """The label of the first charset-declaring meta, "" if none is complete in `data`."""
    pos = 0
    while (lt := data.find(b"<", pos)) >= 0:
        if data.startswith(b"<!--", lt):
            # As in the prescan, "<!-->" ends the comment: its dashes may be the opener's.
            end = data.find(b"-->", lt + 2)
            if end < 0:
                return ""
            pos = end + 3
            continue
        slash = data[lt + 1 : lt + 2] == b"/"
        name = tok.TAG_NAME.match(data, lt + 2 if slash else lt + 1)
        if name is not None:
            rest = tok.TAG_REST.match(data, name.end())
            if rest is None:
                return ""
            if not slash and name.group().lower() == b"meta":
                label = meta_label(tok.attribute_items(data[name.end() : rest.end()]))
                if label:
                    return label
            pos = rest.end()
        elif data[lt + 1 : lt + 2] in (b"!", b"/", b"?"):
            gt = data.find(b">", lt + 2)
            if gt < 0:
                return ""
            pos = gt + 1
        else:
            pos = lt + 1
    return ""


def meta_label(items: tok.AttributeItems) -> str:
    """The charset label a <meta> with these attributes declares, as Chromium reads it, "" if none."""
    return _chromium_label(items)


def declares_charset_to_every_browser(items: tok.AttributeItems) -> bool:
    """Whether the prescan of every browser takes a charset from this <meta> and stops there."""
    if len(items) == 1:  # `<meta charset=…>`: the readings differ only in what comes with it
        name, value = items[0]
        return name == b"charset" and bool(_normalize(value))
    return bool(_chromium_label(items)) and bool(_spec_label(items))


def may_declare_charset(items: tok.AttributeItems) -> bool:
    """Whether some browser takes a charset from this <meta>: the spec's prescan (Firefox) or
    Chromium, which read it differently (_spec_label, _chromium_label)."""
    return bool(_chromium_label(items)) or bool(_spec_label(items))


def _spec_label(items: tok.AttributeItems) -> str:
    """The prescan's reading: the first of duplicate attributes counts; whichever of `charset` and
    a `content` naming a charset comes first decides, the content only with http-equiv
    Content-Type (`<meta content="text/html; charset=koi8-r" charset=utf-8>` declares nothing)."""
    label, from_content, pragma = "", False, False
    seen: set[bytes] = set()
    for name, value in items:
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            pragma = value.strip().lower() == b"content-type"
        elif label:
            continue
        elif name == b"charset":
            label, from_content = _normalize(value), False
        elif name == b"content":
            label, from_content = _content_charset(value), True
    return label if pragma or not from_content else ""


def _chromium_label(items: tok.AttributeItems) -> str:
    """Chromium's reading (checked in Chromium): the last of duplicate attributes counts, a
    `charset` attribute wins over any `content`, and any http-equiv Content-Type makes a pragma."""
    last = dict(items)
    if b"charset" in last:
        return _normalize(last[b"charset"])
    pragma = any(name == b"http-equiv" and value.strip().lower() == b"content-type" for name, value in items)
    return _content_charset(last[b"content"]) if pragma and b"content" in last else ""


def _content_charset(content: bytes) -> str:
    m = _META_CONTENT_CHARSET.search(content)
    if m is None:
        return ""
    return _normalize(next(group for group in m.groups() if group is not None))


@functools.lru_cache(maxsize=128)
def _codec(label: str) -> str | None:
    if label in _QUIRKS:
        return _QUIRKS[label]
    try:
        info = codecs.lookup(label)
        "".encode(info.name)  # refuses bytes-to-bytes codecs such as base64
    except (LookupError, ValueError):
        return None
    return None if info.name in _NOT_CHARSETS else info.name


@functools.lru_cache(maxsize=128)
def _ascii_compatible(codec: str) -> bool:
    if codec.startswith(_STATEFUL):
        return False
    text = _PROBE.decode("ascii")
    try:
        return text.encode(codec) == _PROBE and _PROBE.decode(codec) == text
    except (UnicodeError, LookupError):
        return False
