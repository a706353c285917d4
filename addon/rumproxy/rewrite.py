"""Inserting the snippet into a whole (buffered) body: decode, find the point, insert bytes in the
page's own charset, re-encode. Pure: bytes in, bytes out, and a reason when nothing was done."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import NamedTuple

from rumproxy import agentpresence, codecs, encoders, gzipmemo, htmlscan, memo
from rumproxy.charset import PRESCAN_BYTES, Charset, declared_in_header, detect_charset, read_as_xml

UTF16_BOMS = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be"}
_CONTENT_ATTRIBUTE = re.compile(rb"""[\s/]content\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))""", re.IGNORECASE)

AGENT_LOADED = "page loads the Elastic RUM agent already"
NO_FACTS = htmlscan.PageFacts(amp=False)

PolicyEdit = Callable[[str], str]  # a page's CSP text -> the text that lets the snippet's beacons through


class PolicyBlocked(Exception):
    """Raised by a PolicyEdit that may not change the page's policy: the page is left alone."""


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class Rewritten(NamedTuple):
    body: bytes | None  # the new raw body, or None: leave the response as received
    reason: str  # "injected" or why not
    offset: int | None = None  # where the snippet went, in decoded bytes
    placement: str | None = None
    detail: str = ""  # for the flow's annotation, e.g. how a gzip body was written
    reusable: memo.Remembered | None = None  # for the next response with the same bytes
    head: memo.KnownHead | None = None  # for the next response that starts with the same bytes


def body_skip_reason(document: bytes, facts: htmlscan.PageFacts) -> str | None:
    if facts.amp:
        return "AMP page (an injected script would invalidate it)"
    if agentpresence.loads_agent(document):
        return AGENT_LOADED
    return None


def snippet_bytes(snippet: str, charset: Charset) -> bytes | None:
    """The snippet in the page's charset, or None if the charset cannot carry it."""
    try:
        return snippet.encode(charset.codec or "ascii")
    except (UnicodeEncodeError, LookupError):
        return None


def splice(document: bytes, offset: int, snippet: bytes, csp_meta: tuple[int, int] | None, edit_policy: PolicyEdit | None) -> bytes:
    """The page with the snippet at `offset`; and, only where a <meta> Content-Security-Policy
    after it would block the agent's beacons, that policy's content widened as little as needed."""
    # One join of views copies the page once; slicing and `+` would copy a large page three times.
    view = memoryview(document)
    if csp_meta is None or edit_policy is None:
        return b"".join((view[:offset], snippet, view[offset:]))
    start, end = csp_meta
    tag = document[start:end]
    return b"".join((view[:offset], snippet, view[offset:start], meta_with_policy(tag, edit_policy), view[end:]))


def meta_with_policy(tag: bytes, edit_policy: PolicyEdit) -> bytes:
    """The meta tag with only its content attribute's value changed, quoted as it was."""
    match = _CONTENT_ATTRIBUTE.search(tag)
    if match is None:
        return tag
    group = next(i for i in (1, 2, 3) if match.group(i) is not None)
    raw = match.group(group).decode("latin-1")  # policies are ASCII; latin-1 keeps any byte as is
    policy = html.unescape(raw)
    edited = edit_policy(policy)
    if edited == policy:
        return tag
    if group == 3:  # unquoted: the edited policy has spaces, so it needs quotes now
        value = '"' + html.escape(edited, quote=True) + '"'
    elif "&" in raw:
        value = html.escape(edited, quote=True)
    else:
        value = edited.replace('"' if group == 1 else "'", "&#34;" if group == 1 else "&#39;")
    start, end = match.span(group)
    return tag[:start] + value.encode("latin-1") + tag[end:]


def inject_buffered(
    raw: bytes,
    *,
    encoding: str,
    content_type: str | None,
    snippet: str,
    limit: int | None,
    edit_policy: PolicyEdit | None = None,
    known_head: memo.KnownHead | None = None,
    sections: bool = True,
) -> Rewritten:
    """`known_head`: where the snippet went in an earlier body of the same page (same URL,
    Content-Type and scan limit); if this one starts with the same bytes, it goes there again.
    `sections`: a gzip page is compressed as the sections a body with the same bytes reuses
    (gzipmemo.rewrite_whole), which costs twice as much as compressing it in one go."""
    try:
        document = codecs.decode(raw, encoding)
    except ValueError as e:
        return Rewritten(None, f"body cannot be decoded as {encoding}: {e}")
    head = None
    detail = ""
    if known_head is not None and document.startswith(known_head.source):
        if agentpresence.loads_agent(document):
            return Rewritten(None, AGENT_LOADED)
        charset, insertion, facts = known_head.charset, htmlscan.Insertion(known_head.offset, known_head.placement), NO_FACTS
        detail = memo.HEAD_REMEMBERED
    else:
        charset = detect_charset(content_type, document[:PRESCAN_BYTES])
        xml = read_as_xml(content_type)
        if charset.bom in UTF16_BOMS:
            return _inject_utf16(document, charset, encoding=encoding, snippet=snippet, limit=limit, xml=xml)
        if not charset.ascii_compatible:
            return Rewritten(None, f"charset {charset.label!r} is not ASCII-compatible")
        # As the stream asks it (pagestream): a BOM the scanner sees for itself.
        insertion, facts, reason, through = locate(document, limit, charset_declared=declared_in_header(content_type), xml=xml)
        if insertion is None:
            return Rewritten(None, reason)
        head = memo.known_head(document, insertion, facts, through, charset)
    encoded_snippet = snippet_bytes(snippet, charset)
    if encoded_snippet is None:
        return Rewritten(None, f"the snippet cannot be written in charset {charset.label!r}")
    codec = charset.codec or "ascii"
    reusable: memo.Remembered | None = None
    if facts.csp_meta is None:  # a <meta> policy's edit depends on the rule: not remembered
        if encoding == "gzip" and sections:
            body, reusable = gzipmemo.rewrite_whole(raw, document, insertion.offset, encoded_snippet, insertion.placement, codec)
            return Rewritten(body, "injected", insertion.offset, insertion.placement, detail, reusable, head)
        kept = None if encoding == "identity" else document
        reusable = memo.KnownPage(raw, kept, insertion.offset, insertion.placement, codec)
    try:
        body = splice(document, insertion.offset, encoded_snippet, facts.csp_meta, edit_policy)
    except PolicyBlocked as e:
        return Rewritten(None, str(e))
    return Rewritten(encoders.encode(body, encoding), "injected", insertion.offset, insertion.placement, detail, reusable, head)


class Located(NamedTuple):
    insertion: htmlscan.Insertion | None  # None: no injection, for `reason`
    facts: htmlscan.PageFacts
    reason: str
    through: int | None  # the document's bytes the insertion depends on (decided_through)


def locate(document: bytes, limit: int | None, *, charset_declared: bool = False, xml: bool = False) -> Located:
    """The insertion point as the streaming scanner would find it, or None and why not."""
    scanner = htmlscan.InsertionScanner(
        limit if limit is not None else len(document) + 1, charset_declared=charset_declared, xml=xml
    )
    insertion = scanner.feed(document)
    if reason := body_skip_reason(document, scanner.facts):
        return Located(None, scanner.facts, reason, None)
    if insertion is None:
        if scanner.exhausted:
            return Located(None, scanner.facts, f"no insertion point within the first {limit} bytes (scan limit)", None)
        insertion = scanner.finish()
    return Located(insertion, scanner.facts, "injected", scanner.decided_through)


def _inject_utf16(
    document: bytes, charset: Charset, *, encoding: str, snippet: str, limit: int | None, xml: bool
) -> Rewritten:
    """UTF-16 pages are found in a UTF-8 view and the snippet is transcoded; every tag boundary
    is a whole character in both."""
    codec = UTF16_BOMS[charset.bom]
    try:
        text = document[len(charset.bom) :].decode(codec)
    except UnicodeDecodeError as e:
        return Rewritten(None, f"body is not valid {codec}: {e}")
    view = text.encode("utf-8", "surrogatepass")
    insertion, _, reason, _ = locate(view, limit, charset_declared=True, xml=xml)  # by its BOM
    if insertion is None:
        return Rewritten(None, reason)
    characters = len(view[: insertion.offset].decode("utf-8", "surrogatepass"))
    offset = len(charset.bom) + len(text[:characters].encode(codec, "surrogatepass"))
    body = document[:offset] + snippet.encode(codec) + document[offset:]
    return Rewritten(encoders.encode(body, encoding), "injected", offset, insertion.placement)
