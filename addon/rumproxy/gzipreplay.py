"""Sending a remembered gzip rewrite (gzipmemo) while a streamed body is still arriving.

A ReplayingStream is an InjectingStream that starts out comparing the body with the one a
remembered rewrite was made from (Replay), and falls back to its scan when it turns out different.

Each chunk is compared with the body the rewrite was made from. The gzip header, the head and the
snippet go out once the body has matched as far as the first body had come when its scan decided,
so a page whose head the app flushes early goes out as early as it would without the memo; the
remembered sections after the snippet follow as the bytes they were made from arrive again. A body
that turns out to differ goes on from what went out: `writer()` continues our deflate data and
`page_after_sent()` decodes what the stream holds from where it stopped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

from rumproxy import crc32, gzipblocks, gzipmemo
from rumproxy.gzipsplice import WINDOW, GzipWriter, gzip_trailer
from rumproxy.splicetail import SplicingTail
from rumproxy.stream import InjectingStream, StreamOutcome, StreamState

logger = logging.getLogger(__name__)

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

    def finish(self, held: bytes, **tail_options) -> tuple[bytes, SplicingTail | None]:
        """The body matched all of the source (`held`: the body so far): the rest of the rendered
        start and the tail that forwards the upstream's blocks from the reuse point on (a spliced
        rewrite); a whole rewrite ends here, with our trailer and what came after the source, and
        no tail. `tail_options` go to the SplicingTail."""
        rewrite, rendered = self.rewrite, self.rendered
        start = rendered.start[self.sent_bytes :]
        if rewrite.splice is None:
            return b"".join((start, gzip_trailer(rendered.crc, rendered.size), held[len(rewrite.source) :])), None
        return start, SplicingTail.remembered(rewrite, rendered, held, **tail_options)

    def resume(self, held: bytes, **tail_options) -> tuple[SplicingTail, gzipblocks.BlockInflater]:
        """The body turned out different after what went out: the tail that goes on compressing
        from there, and an inflater that was given `held` (the body from its start), from which
        `page_after_sent` takes the page bytes the tail has still to write."""
        inflater = gzipblocks.BlockInflater()
        splice_after = self.rewrite.head_size + WINDOW
        tail = SplicingTail(inflater=inflater, writer=self.writer(), splice_after=splice_after, **tail_options)
        inflater.push(held)
        return tail, inflater

    def writer(self) -> GzipWriter:
        """The writer that goes on after what went out (which ends on a byte: a sync point)."""
        sent, rendered = self.sent, self.rendered
        assert sent is not None
        crc = crc32.combine(rendered.opening_crc, sent.crc, sent.decoded)
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


class ReplayingStream(InjectingStream):
    """An InjectingStream (same arguments, and the `snippet_fixed` of gzipmemo.render) that sends
    the memo's rewrite of an earlier body with the same start again while this body goes on as
    that one did."""

    def __init__(self, *, snippet_fixed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self._replay = self._replayed(kwargs["snippet"], snippet_fixed)

    def _replayed(self, snippet: bytes, snippet_fixed: int) -> Replay | None:
        """The remembered rewrite of a body with the same start, made by a stream (a whole-body
        one is the addon's business), to send while this body turns out the same."""
        candidate = self._memo.get(self._memo_key) if self._memo is not None else None
        if not isinstance(candidate, gzipmemo.GzipRewrite):
            return None
        if candidate.splice is None and candidate.decided_at is None:
            return None  # would hold the whole body back: one rewritten whole is sent whole
        return Replay(candidate, snippet, snippet_fixed)

    def _dispatch(self, chunk: bytes, end: bool) -> bytes | bytearray | Iterator[bytes]:
        if self._replay is not None and self._state is StreamState.SCANNING:
            return self._match(chunk, end)
        return super()._dispatch(chunk, end)

    def _match(self, chunk: bytes, end: bool) -> bytes:
        """While the body goes on as the one the remembered rewrite was made from: send what of
        the rewrite the bytes so far allow, and hold them in case it does not."""
        replay = self._replay
        assert replay is not None
        try:
            held = self._held
            same = True
            if chunk:
                same = replay.same(chunk, held.raw_size)
                held.hold(chunk)
            if same and replay.complete(held.raw_size):
                return self._reuse(replay, end)
            if same and not end:
                return replay.due(held.raw_size)
        except Exception as e:  # fail open: the body goes on as without the memo
            logger.warning("%s: remembered rewrite not usable (%r); rewriting the body anew", self._label, e)
        return self._mismatch(end)

    def _mismatch(self, end: bool) -> bytes:
        """Not the remembered body after all: the held bytes go the usual way, or on from what of
        the remembered rewrite went out already."""
        replay, self._replay = self._replay, None
        if self._memo is not None:
            self._memo.forget(self._memo_key)
        if replay is not None and replay.sent is not None:
            return self._resume(replay, end)
        held = self._held.raw_body()
        self._held.raw, self._held.raw_size = [], 0
        out = _joined(self._scan(held, False)) if held else b""
        if end:
            out += _joined(self._dispatch(b"", True))
        return out

    def _reuse(self, replay: Replay, end: bool) -> bytes:
        """The body matched all the remembered source: the rest of the rewrite goes out, then the
        upstream's blocks (a spliced rewrite) or our trailer (a whole one)."""
        start, tail = replay.finish(self._held.raw_body(), **self._tail_options())
        if tail is not None:
            out = start + tail.feed(b"", end)
            # Nothing above changed the stream: should it fail, _match goes on without the memo.
            self._tail = tail
            self._state = StreamState.INJECTED
        else:
            out = start
            self._state = StreamState.RAW  # what follows the member goes on as received, as it did the first time
        self._replay = None
        self._release()  # nothing more to decode: the tail forwards
        rewrite = replay.rewrite
        self._report(StreamOutcome(True, rewrite.head_size, rewrite.placement, "injected", remembered=True))
        return out

    def _resume(self, replay: Replay, end: bool) -> bytes:
        """Part of a remembered rewrite went out and the body turns out different after it: decode
        the body held from its start and go on compressing where what went out stopped."""
        rewrite = replay.rewrite
        held = self._held.raw_body()
        self._state = StreamState.INJECTED
        self._release()
        self._report(StreamOutcome(True, rewrite.head_size, rewrite.placement, "injected"))
        try:
            self._tail, inflater = replay.resume(held, **self._tail_options())
            return self._tail.write(replay.page_after_sent(inflater)) + self._continue(end)
        except Exception as e:  # what went out ends cleanly (see _abandon)
            return self._abandon(e, b"")


def _joined(out: bytes | bytearray | Iterator[bytes]) -> bytes:
    return bytes(out) if isinstance(out, (bytes, bytearray)) else b"".join(out)
