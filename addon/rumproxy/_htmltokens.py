"""The WHATWG HTML tokenizer, simplified, on bytes: the regexes charset's meta
prescan shares, and the incremental Tokenizer that htmlscan builds its rules on.

Everything works on bytes of an ASCII-compatible encoding: tag syntax is ASCII,
so multi-byte characters of Shift_JIS, EUC-JP, GB18030 … never look like it.
"""

from __future__ import annotations

import functools
import re

# HTML's whitespace is exactly these five; \v is not one, so `\s` would be wrong.
_WS = rb"\t\n\f\r "

# A tag name runs until whitespace, "/" or ">" (so `<div<p>` is one name).
TAG_NAME = re.compile(rb"[A-Za-z][^" + _WS + rb"/>]*+")
# What may end a tag name; a pending name can only complete once one arrives.
NAME_END = re.compile(rb"[" + _WS + rb"/>]")
GT = re.compile(rb">")
# Only these "<" can open markup ("a < b" is text); one at the buffer's end may yet.
_MARKUP_OPEN = re.compile(rb"<(?:[A-Za-z/!?]|\Z)")

# One attribute as the tokenizer's attribute states read it. A name may start
# with "=" and holds quotes and "<" literally; a quote only opens a value right
# after "=". Once "=" is seen the value is mandatory (the lookahead), so an
# unterminated quoted value fails the match instead of being re-read as names:
# that failure is what "the tag is not complete yet" looks like.
_ATTR = (
    rb"((?:=|[^" + _WS + rb"/>=])[^" + _WS + rb"/>=]*+)"
    rb"(?:[" + _WS + rb"]*+=[" + _WS + rb"]*+"
    rb"(\"[^\"]*+\"|'[^']*+'|[^" + _WS + rb">\"'][^" + _WS + rb">]*+|(?=>))"
    rb"|(?![" + _WS + rb"]*+=))"
)
# The rest of a tag after its name, through the closing ">". Possessive
# throughout: an incomplete tag fails in linear time instead of backtracking.
TAG_REST = re.compile(rb"(?:[" + _WS + rb"/]++|" + _ATTR + rb")*+>")
# A whole start tag after its "<", in one match: the common case of a tag that is all in the buffer.
_WHOLE_START_TAG = re.compile(rb"([A-Za-z][^" + _WS + rb"/>]*+)((?:[" + _WS + rb"/]++|" + _ATTR + rb")*+>)")
_ATTR_AT = re.compile(rb"[" + _WS + rb"/]*+" + _ATTR)

# `--!>` ends a comment too; both ends are at most 4 bytes, so 3 bytes of tail
# are enough to carry a partial end across chunks.
COMMENT_END = re.compile(rb"--!?>")
COMMENT_END_KEEP = 3

# In HTML every `<!…>` and `<?…>` but a comment ends at the first ">" (GT); in XML each has its own
# end, and a doctype may hold an internal subset in brackets (`<!ENTITY …>` in there).
_XML_COMMENT_END = re.compile(rb"-->")
_XML_CDATA_END = re.compile(rb"]]>")
_XML_INSTRUCTION_END = re.compile(rb"\?>")
_XML_DOCTYPE_END = re.compile(rb"[\[>]")
# A doctype's internal subset, from its "[" through the doctype's ">": "]" and ">" in quoted
# entity values and in comments are part of it.
_XML_SUBSET = re.compile(
    rb"\[(?:[^\]\"'<]++|\"[^\"]*+\"|'[^']*+'|<!--(?:[^-]++|-(?!->))*+-->|<(?!!--))*+][" + _WS + rb"]*+>"
)
_XML_OPENINGS = (b"<!--", b"<![CDATA[", b"<!DOCTYPE")
# How much of an end may be cut off at the buffer's end ("]]" of "]]>", "?" of "?>").
_PARTIAL_END = {_XML_CDATA_END: 2, _XML_INSTRUCTION_END: 1}
_OPENING_LENGTH = 9  # of the longest opening


# A tag's attributes in order, duplicates included: the tree reads the first of duplicates, the
# charset prescans read them otherwise (charset).
AttributeItems = list[tuple[bytes, bytes]]


def attribute_items(rest: bytes | bytearray) -> AttributeItems:
    """Attributes of a complete tag, given the bytes after its name (TAG_REST matched), in order,
    duplicates included. Names are ASCII-lowercased, values unquoted."""
    items: AttributeItems = []
    pos = 0
    while (m := _ATTR_AT.match(rest, pos)) is not None:
        value = m.group(2)
        if value is None:
            value = b""
        elif value[:1] in (b'"', b"'"):
            value = value[1:-1]
        items.append((bytes(m.group(1)).lower(), bytes(value)))
        pos = m.end()
    return items


def attributes(rest: bytes | bytearray) -> dict[bytes, bytes]:
    """Attributes of a complete tag as attribute_items, the first of duplicate names winning, as
    in the tokenizer."""
    found: dict[bytes, bytes] = {}
    for name, value in attribute_items(rest):
        found.setdefault(name, value)
    return found


@functools.lru_cache(maxsize=32)
def raw_text_end(name: bytes) -> re.Pattern[bytes]:
    """The "appropriate end tag" that closes raw text: `</name` plus a delimiter, any case."""
    if name == b"plaintext":
        return _NEVER  # its text runs to the end of the document
    return re.compile(rb"</" + re.escape(name) + rb"[" + _WS + rb"/>]", re.IGNORECASE)


_NEVER = re.compile(rb"(?!)")
# noscript's content is raw text too where scripting is on, the only place a snippet runs: a
# `</noscript>` in what looks like an attribute or a comment in there ends it all the same.
RAW_TEXT = frozenset(
    {b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes", b"noscript", b"plaintext"}
)

# A script's text, as the tokenizer's script data states read it: `<!--` escapes it, and a
# `<script` in there (document.write("<script …></script>"), say) makes the next `</script>` part
# of the text, not its end, until `-->`. The patterns per state: plain, escaped, double escaped.
_SCRIPT_END = raw_text_end(b"script").pattern
_SCRIPT_STATES = (
    re.compile(rb"<!--|" + _SCRIPT_END, re.IGNORECASE),
    re.compile(rb"-->|" + _SCRIPT_END + rb"|<script[" + _WS + rb"/>]", re.IGNORECASE),
    re.compile(rb"-->|" + _SCRIPT_END, re.IGNORECASE),
)
_SCRIPT_PLAIN, _SCRIPT_ESCAPED, _SCRIPT_DOUBLE_ESCAPED = range(3)
_SCRIPT_KEEP = len(b"</script")  # the longest partial token at the buffer's end

_DATA, _COMMENT, _BOGUS, _RAW, _SCRIPT = range(5)
_SLASH, _BANG, _QUESTION, _GT, _DASH = 0x2F, 0x21, 0x3F, 0x3E, 0x2D
_WAIT = -1  # a token handler's answer: the token is not complete in the buffer yet
_STOP = -2  # a token handler's answer: a hook asked to stop


class Tokenizer:
    """Walks the bytes fed so far, keeps only the unfinished tail, and reports
    tags to the hooks below (a subclass overrides them). Offsets are absolute.

    `xml`: the bytes are read as an XML parser reads them (a page served as
    application/xhtml+xml): no element's content is raw text (`<title/>` and
    `<script src="…"/>` are whole elements), a comment ends at `-->` only, a
    CDATA section at `]]>`, a processing instruction at `?>`, and a doctype
    after its internal subset."""

    # Slots: a scanner is made for every page, and its many fields outgrow the instance dicts
    # that attribute reads are fastest on.
    __slots__ = (
        "_xml", "_comment_end", "_buf", "_base", "_pos", "_state", "_raw_end", "_raw_keep", "_script_state",
        "_doctype", "_instruction_start", "_bogus_end", "_wait_for", "_wait_from",
    )  # fmt: skip

    def __init__(self, *, xml: bool = False) -> None:
        self._xml = xml
        self._comment_end = _XML_COMMENT_END if xml else COMMENT_END
        # _buf[0] is at document offset _base; scanning resumes at _buf[_pos].
        self._buf = bytearray()
        self._base = 0
        self._pos = 0
        self._state = _DATA
        self._raw_end: re.Pattern[bytes] | None = None
        self._raw_keep = 0
        self._script_state = _SCRIPT_PLAIN
        self._doctype = False
        self._instruction_start: int | None = None  # of the `<?…>` being read
        self._bogus_end: re.Pattern[bytes] = GT  # what ends the `<!…>` or `<?…>` being read
        # A pending tag is re-examined only once a byte that could complete it
        # has arrived, so a huge tag fed in tiny chunks stays linear.
        self._wait_for: re.Pattern[bytes] | None = None
        self._wait_from = 0

    def _on_start_name(self, name: bytes, offset: int) -> bool:
        """A start tag's lowercased name is complete; True stops the scan for good."""
        return False

    def _on_start_tag(self, name: bytes, rest: bytes, start: int, end: int) -> bool:
        """A whole start tag was read, from `start` ("<") to `end` (after ">"); `rest` is what
        follows the name. True stops the scan for good."""
        return False

    def _on_end_name(self, name: bytes, offset: int) -> bool:
        """An end tag's lowercased name is complete, its "</" at `offset`; True stops the scan for good."""
        return False

    def _on_end_tag(self, name: bytes) -> None:
        """A whole end tag was read."""

    def _on_doctype(self, end: int) -> None:
        """A doctype ends just before offset `end`."""

    def _on_processing_instruction(self, start: int, end: int) -> None:
        """A `<?…>` (a bogus comment to HTML, an XML declaration to some) spans `start` to `end`."""

    def _tokenize(self, chunk: bytes) -> bool:
        """Scan `chunk` after what came before it; True once a hook asked to stop."""
        self._buf += chunk
        if self._scan():
            self._buf = bytearray()
            return True
        del self._buf[: self._pos]
        self._base += self._pos
        self._pos = 0
        return False

    def _unfinished_markup(self) -> tuple[int, int | None] | None:
        """Where the markup left unread begins, and its byte after the "<" if that came; None when
        nothing is left unread in data (text is read whole; a comment or raw text is no markup)."""
        buf = self._buf
        if self._state != _DATA or not buf:
            return None
        return self._base, (buf[1] if len(buf) > 1 else None)

    def _wait(self, needed: re.Pattern[bytes]) -> int:
        self._wait_for = needed
        self._wait_from = self._base + len(self._buf)
        return _WAIT

    def _scan(self) -> bool:
        buf = self._buf
        n = len(buf)
        if self._wait_for is not None:
            if self._wait_for.search(buf, self._wait_from - self._base) is None:
                self._wait_from = self._base + n
                return False
            self._wait_for = None
        pos = self._pos
        while True:
            state = self._state
            if state == _DATA:
                opening = _MARKUP_OPEN.search(buf, pos)
                if opening is None:
                    pos = n
                    break
                lt = opening.start()
                if lt + 1 >= n:
                    pos = lt
                    break
                after = buf[lt + 1]
                if after == _SLASH:
                    step = self._end_tag(buf, lt)
                elif after == _BANG:
                    step = self._markup_declaration(buf, lt)
                elif after == _QUESTION:
                    self._state, self._doctype, self._instruction_start = _BOGUS, False, self._base + lt
                    self._bogus_end = _XML_INSTRUCTION_END if self._xml else GT
                    step = lt + 2
                else:
                    step = self._start_tag(buf, lt)
                if step == _STOP:
                    return True
                if step == _WAIT:
                    pos = lt
                    break
                pos = step
            elif state == _COMMENT:
                m = self._comment_end.search(buf, pos)
                if m is None:
                    pos = max(pos, n - COMMENT_END_KEEP)
                    break
                pos, self._state = m.end(), _DATA
            elif state == _BOGUS:
                if self._bogus_end is GT:
                    end = buf.find(b">", pos) + 1
                    if not end:
                        pos = n
                        break
                else:
                    end, pos = self._xml_bogus_end(buf, pos)
                    if end < 0:
                        break
                if self._doctype:
                    self._on_doctype(self._base + end)
                elif self._instruction_start is not None:
                    self._on_processing_instruction(self._instruction_start, self._base + end)
                    self._instruction_start = None
                pos, self._state = end, _DATA
            else:
                if state == _SCRIPT:
                    m, keep = _SCRIPT_STATES[self._script_state].search(buf, pos), _SCRIPT_KEEP
                else:
                    assert self._raw_end is not None
                    m, keep = self._raw_end.search(buf, pos), self._raw_keep
                if m is None:
                    pos = max(pos, n - keep)
                    break
                if state == _SCRIPT and (goes_on := self._script_text(m)) is not None:
                    pos = goes_on
                    continue
                # The end tag's own attributes are skipped like any tag's.
                rest = TAG_REST.match(buf, m.end() - 1)
                if rest is None:
                    self._wait(GT)
                    pos = m.start()
                    break
                pos, self._state = rest.end(), _DATA
        self._pos = pos
        return False

    def _xml_bogus_end(self, buf: bytearray, pos: int) -> tuple[int, int]:
        """(end, pos): where the XML `<!…>` or `<?…>` being read ends, and where reading stands (at
        its internal subset's "[" once one began). While its end is not in the buffer, end is -1
        and pos where reading resumes."""
        if self._bogus_end is not _XML_SUBSET:
            m = self._bogus_end.search(buf, pos)
            if m is None:
                return -1, max(pos, len(buf) - _PARTIAL_END.get(self._bogus_end, 0))
            if m.group() != b"[":
                return m.end(), pos
            self._bogus_end, pos = _XML_SUBSET, m.start()
        m = _XML_SUBSET.match(buf, pos)
        if m is None:
            self._wait(GT)  # read again from its "[" once a ">" that may end it comes
            return -1, pos
        return m.end(), pos

    def _script_text(self, m: re.Match[bytes]) -> int | None:
        """A token of a script's text moves it between its escaped states: where reading goes on,
        or None at the script's end tag."""
        token = m.group()
        if token == b"<!--":
            self._script_state = _SCRIPT_ESCAPED
            return m.start() + 2  # its dashes may be those of a "-->" right after (`<!-->` escapes nothing)
        if token == b"-->":
            self._script_state = _SCRIPT_PLAIN
        elif token[1] != _SLASH:
            self._script_state = _SCRIPT_DOUBLE_ESCAPED
        elif self._script_state == _SCRIPT_DOUBLE_ESCAPED:
            self._script_state = _SCRIPT_ESCAPED
        else:
            return None
        return m.end()

    def _start_tag(self, buf: bytearray, lt: int) -> int:
        whole = _WHOLE_START_TAG.match(buf, lt + 1)
        if whole is not None:
            name = whole.group(1).lower()
            if self._on_start_name(name, self._base + lt):
                return _STOP
            return self._start_tag_read(name, whole.group(2), lt, whole.end())
        name_match = TAG_NAME.match(buf, lt + 1)
        if name_match is None:
            return lt + 1  # "<" plus a non-letter is text
        if name_match.end() == len(buf):
            return self._wait(NAME_END)
        name = name_match.group().lower()
        if self._on_start_name(name, self._base + lt):
            return _STOP
        rest = TAG_REST.match(buf, name_match.end())
        if rest is None:
            return self._wait(GT)
        return self._start_tag_read(name, bytes(buf[name_match.end() : rest.end()]), lt, rest.end())

    def _start_tag_read(self, name: bytes, rest: bytes, lt: int, end: int) -> int:
        """A start tag read whole, from `lt` ("<") to `end` (after ">"): the hook, then its raw text."""
        if self._on_start_tag(name, rest, self._base + lt, self._base + end):
            return _STOP
        if name in RAW_TEXT and not self._xml:
            if name == b"script":
                self._state, self._script_state = _SCRIPT, _SCRIPT_PLAIN
            else:
                self._state = _RAW
                self._raw_end = raw_text_end(name)
                self._raw_keep = len(name) + 2  # the longest partial "</name" at the buffer's end
        return end

    def _end_tag(self, buf: bytearray, lt: int) -> int:
        if lt + 2 >= len(buf):
            return _WAIT
        name_match = TAG_NAME.match(buf, lt + 2)
        if name_match is None:
            if buf[lt + 2] == _GT:
                return lt + 3  # "</>" is dropped
            self._state, self._doctype, self._bogus_end = _BOGUS, False, GT
            return lt + 2
        if name_match.end() == len(buf):
            return self._wait(NAME_END)
        name = name_match.group().lower()
        if self._on_end_name(name, self._base + lt):
            return _STOP
        rest = TAG_REST.match(buf, name_match.end())
        if rest is None:
            return self._wait(GT)
        self._on_end_tag(name)
        return rest.end()

    def _markup_declaration(self, buf: bytearray, lt: int) -> int:
        if self._xml:
            return self._xml_markup_declaration(buf, lt)
        n = len(buf)
        dashes = buf[lt + 2 : lt + 4]
        if dashes == b"--":
            if lt + 4 >= n:
                return _WAIT
            if buf[lt + 4] == _GT:
                return lt + 5  # "<!-->"
            if buf[lt + 4] == _DASH:
                if lt + 5 >= n:
                    return _WAIT
                if buf[lt + 5] == _GT:
                    return lt + 6  # "<!--->"
            self._state = _COMMENT
            return lt + 4
        if len(dashes) < 2 and b"--".startswith(dashes):
            return _WAIT
        word = bytes(buf[lt : lt + 9]).lower()
        if len(word) < 9 and b"<!doctype".startswith(word):
            return _WAIT
        # Doctypes, CDATA, `<![if !IE]>` and other `<!…>` all end at the first ">".
        self._state, self._doctype = _BOGUS, word == b"<!doctype"
        return lt + 2

    def _xml_markup_declaration(self, buf: bytearray, lt: int) -> int:
        opening = bytes(buf[lt : lt + _OPENING_LENGTH])
        if opening.startswith(b"<!--"):
            self._state = _COMMENT  # `<!-->` opens one as well: its text starts with ">"
            return lt + 4
        if len(opening) < _OPENING_LENGTH and any(known.startswith(opening) for known in _XML_OPENINGS):
            return _WAIT
        self._state, self._doctype = _BOGUS, opening == b"<!DOCTYPE"
        if opening == b"<![CDATA[":
            self._bogus_end = _XML_CDATA_END
            return lt + len(opening)
        self._bogus_end = _XML_DOCTYPE_END if self._doctype else GT
        return lt + 2
