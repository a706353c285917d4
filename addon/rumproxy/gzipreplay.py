"""Sending a remembered gzip rewrite (gzipmemo) while a streamed body is still arriving.

Each chunk is compared with the body the rewrite was made from. The gzip header, the head and the
snippet go out once the body has matched as far as the first body had come when its scan decided,
so a page whose head the app flushes early goes out as early as it would without the memo; the
remembered sections after the snippet follow as the bytes they were made from arrive again. A body
that turns out to differ goes on from what went out: `writer()` continues our deflate data and
`page_after_sent()` decodes what the stream holds from where it stopped.
"""

from __future__ import annotations

import functools

from rumproxy import gzipblocks, gzipmemo
from rumproxy.gzipsplice import GzipWriter, crc32_combine

_NOTHING_AFTER_SNIPPET = gzipmemo.Mark(source_end=0, tail_end=0, decoded=0, crc=0)


class Replay:
    """A remembered stream rewrite sent around `snippet`, as far as the matched bytes allow."""

    def __init__(self, rewrite: gzipmemo.GzipRewrite, snippet: bytes, snippet_fixed: int = 0) -> None:
        self.rewrite = rewrite
        self._snippet = snippet
        self._snippet_fixed = snippet_fixed  # bytes every page of the rule starts its snippet with
        source_size = len(rewrite.source)
        # A rewrite made from a body that came in one piece (or by the whole-body path) decided
        # only with all of it: nothing goes out before the whole source has matched.
        self._decided_at = min(rewrite.decided_at if rewrite.decided_at is not None else source_size, source_size)
        self._next_mark = 0
        self.sent: gzipmemo.Mark | None = None  # None: nothing went out yet

    @functools.cached_property
    def rendered(self) -> gzipmemo.Rendered:
        # Only once something goes out: a body that differs from the start never needs it.
        return gzipmemo.render(self.rewrite, self._snippet, self._snippet_fixed)

    @property
    def sent_bytes(self) -> int:
        """How much of `rendered.start` went out."""
        return 0 if self.sent is None else self.rendered.opening + self.sent.tail_end

    def same(self, chunk: bytes, at: int) -> bool:
        """Whether `chunk`, which starts `at` bytes into the body, goes on as the source did."""
        source = self.rewrite.source
        if len(chunk) <= len(source) - at:
            return source.startswith(chunk, at)
        return chunk.startswith(memoryview(source)[at:])

    def complete(self, matched: int) -> bool:
        return matched >= len(self.rewrite.source)

    def due(self, matched: int) -> bytes:
        """What may go out now that the body's first `matched` bytes are the source's."""
        if matched < self._decided_at:
            return b""
        sent = self.sent or _NOTHING_AFTER_SNIPPET
        marks, index = self.rewrite.marks, self._next_mark
        while index < len(marks) and marks[index].source_end <= matched:
            sent = marks[index]
            index += 1
        start = self.sent_bytes
        out = self.rendered.start[start : self.rendered.opening + sent.tail_end]
        self.sent, self._next_mark = sent, index
        return out

    def writer(self) -> GzipWriter:
        """The writer that goes on after what went out (which ends on a byte: a sync point)."""
        sent, rendered = self.sent, self.rendered
        assert sent is not None
        crc = crc32_combine(rendered.opening_crc, sent.crc, sent.decoded)
        return GzipWriter.after(crc, rendered.opening_size + sent.decoded)

    def page_after_sent(self, inflater: gzipblocks.BlockInflater) -> bytes:
        """The page bytes `inflater` holds (pushed the body from its start) after the ones that
        went out. Those came from bytes that matched the source, so they are this body's too."""
        assert self.sent is not None
        pieces = []
        while piece := inflater.pull(256 * 1024):
            pieces.append(piece)
        page = b"".join(pieces)
        skip = self.rewrite.head_size + self.sent.decoded
        if len(page) < skip:
            raise ValueError(f"the body decodes to {len(page)} bytes, {skip} went out already")
        return page[skip:]
