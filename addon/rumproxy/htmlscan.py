"""Where the RUM snippet goes in an HTML document, found by a tokenizer.

The document is never parsed into a tree or re-serialized: the scanner only
returns a byte offset, so the page reaches the browser byte for byte except for
the inserted snippet. It reads bytes of an ASCII-compatible encoding (UTF-8,
windows-1252, Shift_JIS, EUC-JP …); callers transcode UTF-16 themselves.

Tokenizing follows the WHATWG tokenizer, simplified: comments (`<!-->`,
`<!--->` and `--!>` included; IE conditional comments are plain comments),
bogus comments `<!…>`, `<?…>`, `</…>` and CDATA up to the first `>`, doctypes,
tags with double/single/unquoted attribute values (quoted ones may hold `>`
and `<`), and the raw text of script, style, textarea, title, xmp, iframe,
noembed, noframes and noscript (as a browser with scripting on reads it) up to
their end tag, and of plaintext to the end, a script's with its escaped states
(`<!--<script>…</script>…-->` in a script's text does not end it). A `<` not
followed by a letter, `/`, `!` or `?` is text. A script's text is read only
under rule 1a: a `<script` decides before it otherwise.

Placement rules (the product's spec):

1. After a `<head …>` start tag the point is right after it ("after-head").
   In the head, each `<meta>` with a `charset` attribute, or with http-equiv
   Content-Type or X-UA-Compatible (any case), or one that names a charset
   to some browser (Chromium reads duplicate attributes otherwise than the
   spec's prescan: charset.may_declare_charset), moves the point right
   after itself ("after-meta"). The head scan decides at the first `<script` (the
   point stays before it: never after a page script), at `</head>`, at
   `<body`, or at any start tag that cannot be in a head (anything but meta,
   title, link, style, base, script, noscript, template, bgsound, basefont).
   Other head elements, raw text included, are skipped and the scan goes on.
   A `<meta http-equiv="Content-Security-Policy">` decides too, with the point
   before it: scripts that run before a meta policy is parsed are not subject
   to it (its span is reported in PageFacts.csp_meta, for its connect-src).
   A `<base>` with an `href` changes what the snippet's relative URLs (the
   agent's, `/__rum/…` by default) resolve against, once it is parsed: on a
   page whose charset the browser takes from outside its markup (a BOM, or
   `charset_declared`: a charset in its Content-Type), nothing moves the point
   past such a `<base>`, and a `<script` or `<body` of rule 2 decides at the
   point before it. Elsewhere a meta after it still moves the point, since a
   charset meta pushed past the first 1,024 bytes would go unread.
1a. The charset meta stays in the first 1,024 bytes, which a browser's
   prescan reads (Firefox reloads a page whose meta it finds later): on a
   page whose charset is not declared outside its markup, a decision taken
   within those bytes before any charset-declaring meta (a `<script` in the
   head, say) waits for them. The first such meta that begins within them
   moves the point right after itself ("after-meta"), past what came between
   (Chromium reads a meta that begins there to its end, wherever that is), and
   on past it while some browser reads no charset in it (Chromium and the
   spec's prescan read duplicate attributes, and `charset` after a
   `content`, differently); a `<meta>` Content-Security-Policy or one inside
   a template before it keeps the decision as it was, and so does an
   `<svg`, `<math` or `<frameset` start tag: what follows one is no longer
   read by the browser's tree as by its prescan and this tokenizer (CDATA
   sections, and markup in a `<style>` or `<script>`, in inline SVG and
   MathML), or drops a script (after a frameset).
2. Before any `<head>`: a `<script` start tag decides "before-script" (right
   before it); a `<body` start tag decides "before-body" (right before it);
   any other start tag that cannot be in a head decides at the current point:
   after the first `<html …>` start tag ("after-html"), else after the first
   doctype ("after-doctype"), else after an XML declaration (`<?xml …?>`) at
   the start ("after-xml-declaration": Chromium takes a page's charset from
   one there, and from nowhere else), else the start of the document after a
   UTF-8 BOM ("start"). A qualifying meta seen before that (an implicit head) moves
   the point after itself ("after-meta"); a later `<html>` or `<head>` moves
   it further, never back.
3. finish() without a decision returns the point from rules 1/2 as seen so far
   (after head/metas, else after html, else after the doctype, else start).
4. Tags inside comments, raw text (a noscript's content included) or
   attribute values never count. Nothing inside `<template>` moves the point,
   and a script or body there decides at the point before it: a snippet in
   there would never run.
5. A page the browser parses as XML (`xml`: application/xhtml+xml) is
   tokenized as XML (_htmltokens.Tokenizer) and takes its charset from no
   meta, so rule 1a never waits and a `<base href>` holds the point as where
   the charset is declared outside the markup. Its first element is its root,
   whatever its name, and counts as `<html>`: every point is inside it, or the
   page would not be well-formed. Only a meta that is an empty element
   (`<meta …/>`) moves the point: there it only keeps the head's order (no
   meta names the charset, and X-UA-Compatible is Internet Explorer's), and
   the point must not go inside one. An empty `<template/>` holds nothing.

Decisions are taken as early as the rules allow, i.e. as soon as the name of
the deciding tag is complete (or, under rule 1a, the first 1,024 bytes are),
because the streaming injector holds the page back until then. Only the first
`limit` bytes are read: the answer depends on the document's bytes (and
`charset_declared`) alone, never on how they were split into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _htmltokens as tok
from .charset import PRESCAN_BYTES, declares_charset_to_every_browser, may_declare_charset
from .headtags import (
    AMP_NAMES,
    BEFORE_HEAD_NEUTRAL,
    HEAD_CONTENT,
    INERT,
    has_href,
    is_policy,
    may_be_amp,
    meta_attributes,
    moves_point,
)

__all__ = ["Insertion", "InsertionScanner", "PageFacts", "find_insertion_point"]


@dataclass(frozen=True)
class Insertion:
    offset: int  # byte offset in the document where the snippet is inserted
    placement: str  # after-head, after-meta, before-script, before-body, after-html, after-doctype, after-xml-declaration, start


@dataclass(frozen=True)
class PageFacts:
    amp: bool  # <html amp>, <html ⚡>, <html ⚡4email> …: AMP validators reject foreign scripts
    # (start, end) of the first <meta http-equiv="Content-Security-Policy"> before the point: the
    # scan stops there, so the snippet runs before that policy exists, but its connect-src still
    # governs the agent's beacons later.
    csp_meta: tuple[int, int] | None = None


_BOM = b"\xef\xbb\xbf"
_XML_DECLARATION = b"<?xml"  # as Chromium matches it: lower case, at the very start
_PREFIX = len(_BOM) + len(_XML_DECLARATION)
_BEFORE_THEM = {b"script": "before-script", b"body": "before-body"}  # before a head: right before them
# Rule 1a reads no further than these (found by Chromium): a point after a meta past one of them
# could lie in what the tree reads as a CDATA section or a comment, or in a frameset, which drops
# the script.
_TREE_READS_OTHERWISE = frozenset({b"svg", b"math", b"frameset"})


class InsertionScanner(tok.Tokenizer):
    """Incremental. feed() chunks split anywhere (even inside a tag, a comment, a quoted attribute,
    a multi-byte char); returns the Insertion as soon as it is known, else None."""

    __slots__ = (
        "_charset_declared", "_held_by_base", "_charset_meta_seen", "_pending", "_prescan_through",
        "_lt_ends_prescan", "_limit", "_consumed", "_prefix", "_in_head", "_seen_html", "_seen_doctype", "_inert",
        "_point", "_amp", "_csp_meta", "_decided", "_decided_through", "_exhausted",
    )  # fmt: skip

    def __init__(self, limit: int = 64 * 1024, *, charset_declared: bool = False, xml: bool = False) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, not {limit}")
        super().__init__(xml=xml)
        # In the Content-Type (charset.declared_in_header); an XML parser reads no meta's charset.
        self._charset_declared = charset_declared or xml
        self._held_by_base = False  # a <base href> came, and no meta decides the page's charset
        self._charset_meta_seen = False  # a meta that declares the charset moved the point
        # A decision taken in the prescan's bytes before any charset meta: (insertion, through).
        self._pending: tuple[Insertion, int] | None = None
        # Where a tag that began in the prescan's bytes and ended past them ended: a waiting
        # decision rests on it, for it might have been a charset meta.
        self._prescan_through = 0
        # Whether the prescan's last byte is a "<": the byte after them says whether a tag began there.
        self._lt_ends_prescan = False
        # Never less than a BOM: the start point must not depend on a cut inside it.
        self._limit = max(limit, len(_BOM))
        self._consumed = 0
        self._prefix = b""  # the first bytes: a BOM, an XML declaration
        self._in_head = False
        self._seen_html = False
        self._seen_doctype = False
        self._inert = 0  # open template elements
        self._point: Insertion | None = None
        self._amp = False
        self._csp_meta: tuple[int, int] | None = None
        self._decided: Insertion | None = None
        self._decided_through: int | None = None
        self._exhausted = False

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def decided(self) -> Insertion | None:
        return self._decided

    @property
    def decided_through(self) -> int | None:
        """The bytes of the document that the decision depends on, once it was made before the
        end of the input: every document that starts with the same bytes gets the same insertion
        (whatever follows them). None before a decision and after finish(), which depends on where
        the input ends."""
        return self._decided_through

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    @property
    def facts(self) -> PageFacts:
        return PageFacts(amp=self._amp, csp_meta=self._csp_meta)

    def feed(self, chunk: bytes) -> Insertion | None:
        if self._decided is not None or self._exhausted or not chunk:
            return self._decided
        room = self._limit - self._consumed
        if len(chunk) > room:
            chunk = chunk[:room]
        last = PRESCAN_BYTES - 1 - self._consumed  # the prescan's last byte, if in this chunk
        if 0 <= last < len(chunk):
            self._lt_ends_prescan = chunk[last] == 0x3C
        self._consumed += len(chunk)
        if len(self._prefix) < _PREFIX:
            self._prefix = (self._prefix + bytes(chunk[:_PREFIX]))[:_PREFIX]
        if self._tokenize(chunk):
            return self._decided
        if self._pending is not None and self._consumed >= min(PRESCAN_BYTES, self._limit):
            if self._consumed >= self._limit or not self._may_yet_be_a_meta():
                self._settle()
                return self._decided
        if self._consumed >= self._limit:
            self._exhausted = True
            self._buf = bytearray()
        return None

    def finish(self) -> Insertion:
        """End of input (or the caller gives up): the best point from what was seen.

        The answer is also kept as `decided`; a tag cut off by the end never counts.
        """
        if self._decided is None:
            self._decided = self._pending[0] if self._pending is not None else self._current()
            self._buf = bytearray()
        return self._decided

    def _current(self) -> Insertion:
        if self._point is not None:
            return self._point
        return Insertion(self._start, "start")

    @property
    def _start(self) -> int:
        return len(_BOM) if self._prefix.startswith(_BOM) else 0

    def _advance(self, offset: int, placement: str) -> None:
        if self._held_by_base:
            return
        if self._point is None or offset > self._point.offset:
            self._point = Insertion(offset, placement)

    def _decide(self, insertion: Insertion, through: int, *, may_wait: bool = True) -> bool:
        if may_wait and self._may_push_a_charset_meta(through):
            self._pending = (insertion, through)
            return False
        self._decided = insertion
        self._decided_through = through
        return True

    @property
    def _charset_outside_markup(self) -> bool:
        """Whether the browser takes the page's charset from its Content-Type or its BOM, not a meta."""
        return self._charset_declared or self._prefix.startswith(_BOM)

    def _may_push_a_charset_meta(self, through: int) -> bool:
        """Whether a charset meta could follow in the prescan's bytes (rule 1a)."""
        return through < PRESCAN_BYTES and not (self._charset_meta_seen or self._charset_outside_markup)

    def _may_yet_be_a_meta(self) -> bool:
        """Whether the markup left unread is a start tag that began in the prescan's bytes."""
        unfinished = self._unfinished_markup()
        if unfinished is None or unfinished[0] >= PRESCAN_BYTES:
            return False
        second = unfinished[1]
        return second is None or 0x61 <= (second | 0x20) <= 0x7A

    def _settle(self, insertion: Insertion | None = None, through: int | None = None) -> bool:
        """Take the waiting decision, or `insertion` (after the charset meta) instead; `through`:
        where the tag that settles it ends, if one does."""
        assert self._pending is not None
        waited, waited_through = self._pending
        self._pending = None
        if through is None:
            # No charset meta begins within the prescan's bytes.
            prescan = PRESCAN_BYTES + 1 if self._lt_ends_prescan else PRESCAN_BYTES
            through = max(min(prescan, self._limit), self._prescan_through)
        return self._decide(insertion or waited, max(waited_through, through), may_wait=False)

    def _while_waiting(self, name: bytes, rest: bytes, start: int, end: int) -> bool:
        if start >= PRESCAN_BYTES:
            return self._settle()  # past the prescan's bytes, however the page arrived
        if end > PRESCAN_BYTES:
            self._prescan_through = end
        if name in _TREE_READS_OTHERWISE:
            return self._settle(through=end)
        if name in INERT:
            self._inert += 1
            return False
        attrs = meta_attributes(rest) if name == b"meta" else None
        if attrs is None:
            return False
        if is_policy(attrs):
            self._csp_meta = (start, end)
            return self._settle(through=end)
        if not may_declare_charset(attrs):
            return False
        if self._inert:
            return self._settle(through=end)
        if declares_charset_to_every_browser(attrs):
            return self._settle(Insertion(end, "after-meta"), end)
        # Some browsers read on for another (they read a meta's attributes differently).
        assert self._pending is not None
        self._pending = (Insertion(end, "after-meta"), self._pending[1])
        return False

    def _on_start_name(self, name: bytes, offset: int) -> bool:
        if self._pending is not None:
            return False
        # The decision rests on the "<", the name and the byte that ended it.
        through = offset + len(name) + 2
        if self._in_head:
            if name == b"script" or name not in HEAD_CONTENT:
                return self._decide(self._current(), through)
        elif name not in BEFORE_HEAD_NEUTRAL and not (self._xml and not self._seen_html):
            # A script or body inside a template never runs: stay before it.
            if name in _BEFORE_THEM and not self._inert and not self._held_by_base:
                return self._decide(Insertion(offset, _BEFORE_THEM[name]), through)
            return self._decide(self._current(), through)
        return False

    def _on_start_tag(self, name: bytes, rest: bytes, start: int, end: int) -> bool:
        if self._pending is not None:
            return self._while_waiting(name, rest, start, end)
        if name in INERT:
            if not (self._xml and _is_empty_element(rest)):
                self._inert += 1
        elif self._inert:
            pass  # a point in there would put the snippet where it never runs
        elif name == b"meta":
            attrs = meta_attributes(rest)
            if attrs is None:
                return False
            if is_policy(attrs):
                # Scripts before a meta policy are not subject to it: stop right before it.
                self._csp_meta = (start, end)
                return self._decide(self._current(), end, may_wait=False)
            # A meta that names a charset to one browser only (duplicate attributes) moves it too.
            # In XML a meta names no charset and X-UA-Compatible is for Internet Explorer: only an
            # empty element moves the point, which must not go inside one.
            if (moves_point(attrs) or may_declare_charset(attrs)) and not (self._xml and not _is_empty_element(rest)):
                self._advance(end, "after-meta")
                self._charset_meta_seen = self._charset_meta_seen or declares_charset_to_every_browser(attrs)
        elif name == b"base":
            if self._charset_outside_markup and has_href(rest):
                self._held_by_base = True
        elif name == b"html":
            self._on_html(rest, end)
        elif name == b"head":
            self._in_head = True
            self._advance(end, "after-head")
        elif self._xml and not self._seen_html:
            # An XML document's root, whatever its name (`<h:html xmlns:h=…>`): the point stays
            # inside it, or the page would be no well-formed XML.
            self._on_html(rest, end)
        return False

    def _on_html(self, rest: bytes, end: int) -> None:
        if not self._amp and may_be_amp(rest) and not AMP_NAMES.isdisjoint(tok.attributes(rest)):
            self._amp = True
        if not self._seen_html:
            self._seen_html = True
            self._advance(end, "after-html")

    def _on_end_name(self, name: bytes, offset: int) -> bool:
        if name != b"head" or not self._in_head or self._pending is not None:
            return False
        # "</", the name and the byte that ended it.
        return self._decide(self._current(), offset + len(name) + 3)

    def _on_end_tag(self, name: bytes) -> None:
        if name in INERT and self._inert:
            self._inert -= 1

    def _on_processing_instruction(self, start: int, end: int) -> None:
        # Only a complete "<?xml" counts: a ">" among those bytes ends the instruction first.
        if start == self._start and self._prefix[start : start + len(_XML_DECLARATION)] == _XML_DECLARATION:
            self._advance(end, "after-xml-declaration")

    def _on_doctype(self, end: int) -> None:
        if not (self._seen_doctype or self._seen_html or self._in_head or self._inert):
            self._seen_doctype = True
            self._advance(end, "after-doctype")


def _is_empty_element(rest: bytes) -> bool:
    """Whether a start tag (the bytes after its name) is XML's empty-element tag, `<…/>`."""
    return rest.endswith(b"/>")


def find_insertion_point(
    document: bytes, limit: int | None = None, *, charset_declared: bool = False, xml: bool = False
) -> tuple[Insertion, PageFacts]:
    """Whole-document convenience (None = no limit): feed everything, then finish()."""
    scanner = InsertionScanner(len(document) + 1 if limit is None else limit, charset_declared=charset_declared, xml=xml)
    scanner.feed(document)
    return scanner.finish(), scanner.facts
