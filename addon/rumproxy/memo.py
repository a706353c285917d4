"""Remembered rewrites: a page that comes again as the same upstream bytes is not scanned again.

Most pages a proxy sends come again and again as the same bytes (static pages, pages a cache in
front of the app holds, generated pages that rarely change), and the rewrite of each differs from
the last one only in its snippet (the trace ids). So the addon remembers, per page, where the
snippet went (KnownPage) or, for gzip, the compressed sections around it (gzipmemo.GzipRewrite),
and a response whose body equals the remembered one byte for byte skips the scan, the decoding and
for gzip the compression. One comparison of bytes decides: nothing is assumed from URLs, ETags or
dates. Pages with a <meta> Content-Security-Policy are not remembered (its edit depends on the rule).
A page that changes on every request is still scanned only once while its head stays the same: its
KnownHead keeps the first bytes its scan decided on (htmlscan's decided_through).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

from rumproxy import encoders
from rumproxy.charset import PRESCAN_BYTES, detect_charset

if TYPE_CHECKING:
    from mitmproxy import http

    from rumproxy.charset import Charset
    from rumproxy.headerview import HeaderView
    from rumproxy.htmlscan import Insertion, PageFacts

REMEMBERED = "; remembered from an earlier response with the same bytes (rum_memo)"  # for the flow's annotation
HEAD_REMEMBERED = "; the point of an earlier response that started with the same bytes (rum_memo)"


class Remembered(Protocol):
    @property
    def source(self) -> bytes: ...  # the upstream bytes the rewrite was made from

    @property
    def codec(self) -> str: ...  # the page's charset, which the snippet is written in

    @property
    def offset(self) -> int: ...

    @property
    def placement(self) -> str: ...

    @property
    def cost(self) -> int: ...


@dataclasses.dataclass(frozen=True)
class KnownPage:
    """Where the snippet went in a page rewritten whole."""

    source: bytes  # the upstream body
    document: bytes | None  # the page decoded from it; None where the body is the page (identity)
    offset: int
    placement: str
    codec: str

    @property
    def cost(self) -> int:
        return len(self.source) + (len(self.document) if self.document is not None else 0)

    def body(self, snippet: bytes, encoding: str) -> bytes:
        view = memoryview(self.document if self.document is not None else self.source)
        return encoders.encode(b"".join((view[: self.offset], snippet, view[self.offset :])), encoding)


@dataclasses.dataclass(frozen=True)
class KnownHead:
    """Where the snippet went in a page whose scan decided early: a page that starts with the same
    bytes gets the same point and charset without a scan, whatever follows (a page that changes
    below its head on every request: a form's token, the latest prices, a timestamp)."""

    source: bytes  # the page's first bytes: those the scan decided on, and the charset prescan's
    offset: int
    placement: str
    charset: Charset

    @property
    def codec(self) -> str:
        return self.charset.codec or "ascii"

    @property
    def cost(self) -> int:
        return len(self.source)


HEAD = "head"


def head_key(key: Hashable) -> Hashable:
    """The memo's key for the head of the page that `key` names, beside its whole rewrite."""
    return (HEAD, key)


def known_head(
    document: bytes | bytearray, insertion: Insertion, facts: PageFacts, through: int | None, charset: Charset
) -> KnownHead | None:
    """The head of a page whose scan decided on its first `through` bytes (htmlscan's
    decided_through), and found `charset` in the first PRESCAN_BYTES. None for a page decided only
    at its end (`through` None), one with a <meta> Content-Security-Policy (its edit depends on the
    rule), or one shorter than those bytes."""
    if through is None or facts.csp_meta is not None:
        return None
    through = max(through, PRESCAN_BYTES)
    if len(document) < through:
        return None
    return KnownHead(bytes(document[:through]), insertion.offset, insertion.placement, charset)


def remember_head(
    store: RewriteMemo,
    key: Hashable,
    content_type: str | None,
    document: bytes | bytearray,
    insertion: Insertion,
    facts: PageFacts,
    through: int | None,
) -> None:
    """Remember the head of a page a stream scanned (InjectingStream's remember_head); `document`,
    the page so far, is only read while this runs."""
    charset = detect_charset(content_type, document[:PRESCAN_BYTES])
    head = known_head(document, insertion, facts, through, charset)
    if head is not None and charset.ascii_compatible:
        store.put(head_key(key), head)


class RewriteMemo:
    """The latest rewrite per key (the page's URL and whatever else decides its rewrite), the least
    recently used dropped first to stay within `budget` bytes; a budget of 0 keeps nothing."""

    def __init__(self, budget: int = 0) -> None:
        self._entries: collections.OrderedDict[Hashable, Remembered] = collections.OrderedDict()
        self._size = 0
        self._budget = budget

    @property
    def budget(self) -> int:
        return self._budget

    @budget.setter
    def budget(self, value: int) -> None:
        self._budget = value
        self._shrink()

    @property
    def entry_limit(self) -> int:
        """The largest rewrite kept, in bytes: one large page must not push out every small one."""
        return self._budget // 4

    @property
    def count(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Remembered | None:
        rewrite = self._entries.get(key)
        if rewrite is not None:
            self._entries.move_to_end(key)
        return rewrite

    def put(self, key: Hashable, rewrite: Remembered) -> None:
        self._drop(key)
        if rewrite.cost > self.entry_limit:
            return
        self._entries[key] = rewrite
        self._size += rewrite.cost
        self._shrink()

    def forget(self, key: Hashable) -> None:
        self._drop(key)

    def _drop(self, key: Hashable) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= old.cost

    def _shrink(self) -> None:
        while self._size > self._budget and self._entries:
            _, old = self._entries.popitem(last=False)
            self._size -= old.cost


PageKey = tuple[bytes, str, int, bytes, str | None, str | None, int]


def page_key(request: http.Request, headers: HeaderView, scan_limit: int) -> PageKey:
    """What decides a page's rewrite besides its bytes: which page it is (the parts of its URL, as
    the request holds them: `request.url` formats them into one string, at 3.4 µs against 0.6, and
    each property decodes its part), the charset its Content-Type names, its encoding, how far the
    scan goes."""
    data = request.data
    return (
        data.scheme, data.host, data.port, data.path,
        headers.get(b"content-type"), headers.get(b"content-encoding"), scan_limit,
    )  # fmt: skip
