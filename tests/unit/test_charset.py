"""Tests for rumproxy.charset: each source, the label quirks, and the ASCII-compatibility verdict."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumproxy._htmltokens import attribute_items
from rumproxy.charset import (
    Charset,
    declared_in_header,
    declares_charset_to_every_browser,
    detect_charset,
    may_declare_charset,
    read_as_xml,
)

DEFAULT = Charset("cp1252", "windows-1252", "default", b"", True)


@pytest.mark.parametrize(
    ("bom", "codec", "label"),
    [(codecs.BOM_UTF8, "utf-8", "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16le"), (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16be")],
)
def test_bom_wins_over_header_and_meta(bom: bytes, codec: str, label: str) -> None:
    body = bom + "<meta charset=shift_jis>".encode(codec)
    found = detect_charset("text/html; charset=iso-8859-2", body)
    assert found == Charset(codec, label, "bom", bom, codec == "utf-8")


@pytest.mark.parametrize(
    ("content_type", "codec", "label"),
    [
        ("text/html; charset=utf-8", "utf-8", "utf-8"),
        ("text/html;charset=UTF-8", "utf-8", "utf-8"),
        ('text/html; charset="Shift_JIS"', "shift_jis", "shift_jis"),
        ("text/html; Charset = ISO-8859-2 ; foo=bar", "iso8859-2", "iso-8859-2"),
        ("text/html; foo=bar; charset=koi8-r", "koi8-r", "koi8-r"),
        ("TEXT/HTML; CHARSET=windows-1251", "cp1251", "windows-1251"),
    ],
)
def test_header(content_type: str, codec: str | None, label: str) -> None:
    found = detect_charset(content_type, b"<meta charset=euc-jp>")
    assert (found.codec, found.label, found.source, found.bom) == (codec, label, "header", b"")


@pytest.mark.parametrize("content_type", [None, "", "text/html", "text/html; charset=", 'text/html; charset=""', "text/html; xcharset=utf-8"])
def test_header_without_a_charset_falls_through_to_meta(content_type: str | None) -> None:
    assert detect_charset(content_type, b"<meta charset=euc-jp>") == Charset("euc_jp", "euc-jp", "meta", b"", True)


@pytest.mark.parametrize(
    ("body", "codec", "label"),
    [
        (b"<!DOCTYPE html><html><head><meta charset=utf-8>", "utf-8", "utf-8"),
        (b'<META CHARSET=" Shift_JIS ">', "shift_jis", "shift_jis"),
        (b"<meta http-equiv=Content-Type content='text/html; charset=EUC-JP'>", "euc_jp", "euc-jp"),
        (b'<meta content="text/html;charset=\'gb2312\'" http-equiv="content-type">', "gb18030", "gb2312"),
        (b'<meta name=description content="charset=koi8-r"><meta charset=iso-8859-15>', "iso8859-15", "iso-8859-15"),
        (b"<!-- <meta charset=koi8-r> --><meta charset=big5>", "big5hkscs", "big5"),
        (b"<!--><meta charset=koi8-r>", "koi8-r", "koi8-r"),
        (b'<link href="<meta charset=koi8-r>"><meta charset=euc-kr>', "cp949", "euc-kr"),
        (b"<?xml version='1.0'?><![CDATA[x]]></br ><meta/charset=utf8>", "utf-8", "utf8"),
        (b"<p>\xe9t\xe9 <meta charset=latin1>", "cp1252", "latin1"),
        # As Chromium reads a meta (checked in Chromium): a charset attribute wins over a content,
        # and the last of duplicate attributes counts.
        (b'<meta http-equiv=content-type content="text/html; charset=koi8-r" charset=utf-8>', "utf-8", "utf-8"),
        (b'<meta content="text/html; charset=koi8-r" charset=utf-8><meta charset=big5>', "utf-8", "utf-8"),
        (b'<meta content="width=device-width" charset=euc-jp>', "euc_jp", "euc-jp"),
        (b"<meta charset=koi8-r charset=utf-8>", "utf-8", "utf-8"),
        (b'<meta content="text/html; charset=koi8-r" content="text/html; charset=euc-jp" http-equiv=content-type>', "euc_jp", "euc-jp"),
        (b'<meta http-equiv=x-ua-compatible content="text/html; charset=koi8-r" http-equiv=content-type>', "koi8-r", "koi8-r"),
    ],
)
def test_meta_prescan(body: bytes, codec: str, label: str) -> None:
    assert detect_charset(None, body) == Charset(codec, label, "meta", b"", True)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<p>no declaration</p>",
        b"<!-- <meta charset=utf-8> -->",
        b"<!-- <meta charset=utf-8>",
        b'<meta name="x" content="a',
        b"<meta http-equiv=refresh content='0; charset=utf-8'>",
        b"<meta charset=''>",
        b"<metax charset=utf-8>",
        b"x" * 1020 + b"<meta charset=utf-8>",
        b"<meta charset='' http-equiv=content-type content='text/html; charset=koi8-r'>",
    ],
    ids=["empty", "text", "comment", "open comment", "open tag", "not a pragma", "empty label", "other tag", "past 1024", "empty label first"],
)
def test_default(body: bytes) -> None:
    assert detect_charset(None, body) == DEFAULT


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("latin1", "cp1252"), ("iso-8859-1", "cp1252"), ("ascii", "cp1252"), ("us-ascii", "cp1252"), ("windows-1252", "cp1252"),
        ("iso-8859-9", "cp1254"), ("tis-620", "cp874"),
        ("x-sjis", "shift_jis"), ("shift_jis", "shift_jis"), ("sjis", "shift_jis"), ("windows-31j", "shift_jis"),
        ("utf8", "utf-8"), ("unicode-1-1-utf-8", "utf-8"), ("gbk", "gb18030"), ("ks_c_5601-1987", "cp949"),
        ("x-mac-cyrillic", "mac-cyrillic"), ("iso-8859-8-i", "iso8859-8"), ("windows-1250", "cp1250"), ("koi8-u", "koi8-u"),
        ("x-user-defined", None), ("iso-2022-kr", None), ("no-such-charset", None), ("base64", None), ("idna", None),
    ],
)
def test_label_quirks(label: str, codec: str | None) -> None:
    assert detect_charset(f"text/html; charset={label.upper()}", b"").codec == codec
    assert detect_charset(None, f"<meta charset={label}>".encode()).codec == codec


@pytest.mark.parametrize("label", ["utf-16", "UTF-16LE", "utf-16be", "unicode"])
def test_utf16_in_a_meta_means_utf8(label: str) -> None:
    assert detect_charset(None, f"<meta charset={label}>".encode()) == Charset("utf-8", label.lower(), "meta", b"", True)
    assert detect_charset(f"text/html; charset={label}", b"").ascii_compatible is False


@pytest.mark.parametrize(
    ("label", "compatible"),
    [
        ("utf-8", True), ("windows-1252", True), ("shift_jis", True), ("euc-jp", True), ("gb18030", True), ("big5", True),
        ("koi8-r", True), ("utf-16le", False), ("utf-32", False), ("utf-7", False), ("iso-2022-jp", False), ("cp037", False),
        ("cp500", False), ("x-user-defined", False), ("bogus", False),
    ],
)
def test_ascii_compatible(label: str, compatible: bool) -> None:
    assert detect_charset(f"text/html; charset={label}", b"").ascii_compatible is compatible


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=40)), st.binary(max_size=1500))
def test_never_raises_and_names_a_real_codec(content_type: str | None, body: bytes) -> None:
    found = detect_charset(content_type, body)
    assert found.source in ("bom", "header", "meta", "default")
    assert body.startswith(found.bom)
    if found.codec is not None:
        codecs.lookup(found.codec)
    if found.ascii_compatible:
        assert b'<script src="x"></script>'.decode(found.codec or "") == '<script src="x"></script>'


@pytest.mark.parametrize(
    ("content_type", "declared"),
    [
        ("text/html; charset=utf-8", True),
        ('text/html;charset="ISO-8859-1"', True),
        ("text/html; Charset = windows-1252; q=1", True),
        ("text/html", False),
        ("text/html; charset=", False),
        ("text/html; boundary=x", False),
        ("", False),
        (None, False),
    ],
)
def test_declared_in_header(content_type, declared):
    # A charset in the Content-Type: the browser reads none from the page's metas (htmlscan's charset_declared).
    assert declared_in_header(content_type) is declared


XHTML = "application/xhtml+xml"
LATIN1_META = b'<html xmlns="http://www.w3.org/1999/xhtml"><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"/>'


@pytest.mark.parametrize(
    ("content_type", "body", "codec", "label", "source"),
    [
        # An XML parser reads no meta: the XML declaration's encoding, else UTF-8.
        (XHTML, LATIN1_META, "utf-8", "utf-8", "default"),
        (XHTML, b'<?xml version="1.0" encoding="ISO-8859-1"?>\n' + LATIN1_META, "cp1252", "iso-8859-1", "xml-declaration"),
        (XHTML, b"<?xml version='1.0' encoding='Shift_JIS' standalone='yes'?><html/>", "shift_jis", "shift_jis", "xml-declaration"),
        (XHTML, b'<?xml version="1.0" encoding="UTF-16"?><html/>', "utf-8", "utf-16", "xml-declaration"),  # read as ASCII: no UTF-16
        (XHTML, b'<?xml version="1.0"?>\n' + LATIN1_META, "utf-8", "utf-8", "default"),
        (XHTML, b'\n<?xml version="1.0" encoding="ISO-8859-1"?><html/>', "utf-8", "utf-8", "default"),  # not at the start
        (XHTML + "; charset=windows-1251", b'<?xml version="1.0" encoding="ISO-8859-1"?>', "cp1251", "windows-1251", "header"),
        ("text/html", LATIN1_META, "cp1252", "iso-8859-1", "meta"),
    ],
)
def test_a_page_read_as_xml_takes_its_charset_as_xml_does(content_type: str, body: bytes, codec: str, label: str, source: str) -> None:
    found = detect_charset(content_type, body)
    assert (found.codec, found.label, found.source) == (codec, label, source)


@pytest.mark.parametrize(
    ("content_type", "xml"),
    [(XHTML, True), ("Application/XHTML+XML ; charset=utf-8", True), ("text/html", False), ("application/xml", False), (None, False), ("", False)],
)
def test_read_as_xml(content_type: str | None, xml: bool) -> None:
    # Only the XML type a rule can instrument (xhtml: true).
    assert read_as_xml(content_type) is xml


@pytest.mark.parametrize(
    ("attributes", "declares"),
    [
        (b' charset="utf-8">', True),
        (b' http-equiv="Content-Type" content="text/html; charset=utf-8">', True),
        (b' content="text/html; charset=utf-8" http-equiv=content-type>', True),
        # Chromium reads every duplicate: the second http-equiv makes the first content a pragma.
        (b' http-equiv=x-ua-compatible content="text/html; charset=utf-8" http-equiv=content-type>', True),
        (b' name=viewport content="width=device-width" http-equiv=content-type content="text/html; charset=utf-8">', True),
        (b' http-equiv=x-ua-compatible content="text/html; charset=utf-8">', False),
        (b' http-equiv=content-type content="text/html">', False),
        (b' charset="">', False),
        (b' name=description content="charset=utf-8">', False),
        (b' http-equiv=refresh content="0; charset=koi8-r">', False),
    ],
)
def test_a_meta_that_may_declare_a_charset_to_some_browser(attributes: bytes, declares: bool) -> None:
    assert may_declare_charset(attribute_items(attributes)) is declares


@pytest.mark.parametrize(
    ("attributes", "to_every_browser", "to_some"),
    [
        (b" charset=utf-8>", True, True),
        (b' http-equiv=content-type content="text/html; charset=utf-8">', True, True),
        (b' charset=utf-8 content="text/html; charset=koi8-r">', True, True),
        (b' content="width=device-width" charset=utf-8>', True, True),
        # The spec's prescan takes the first of charset and a content naming one, Chromium the charset.
        (b' content="text/html; charset=koi8-r" charset=utf-8>', False, True),
        (b' http-equiv=refresh content="0; charset=koi8-r" charset=utf-8>', False, True),
        # The spec's prescan reads the first of duplicate attributes, Chromium the last.
        (b' http-equiv=x-ua-compatible content="text/html; charset=utf-8" http-equiv=content-type>', False, True),
        (b' content="width=1" content="text/html; charset=utf-8" http-equiv=content-type>', False, True),
        (b' charset="" charset=utf-8>', False, True),
        (b' http-equiv=content-type content="text/html">', False, False),
    ],
)
def test_which_browsers_take_a_charset_from_a_meta(attributes: bytes, to_every_browser: bool, to_some: bool) -> None:
    items = attribute_items(attributes)
    assert declares_charset_to_every_browser(items) is to_every_browser
    assert may_declare_charset(items) is to_some
