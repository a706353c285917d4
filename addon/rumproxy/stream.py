"""Streaming injection: the callable behind mitmproxy's `flow.response.stream`.

mitmproxy hands over raw body chunks (content-encoding still applied) at
arbitrary boundaries and a final b"". The stream holds the start of the body
back until the scanner has found the insertion point, then sends the start
with the snippet and passes the rest on with as little work as possible.
Whatever goes wrong, the client gets a well-formed body: before the decision
the original bytes, after it our re-encoded stream followed by the raw rest.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING

from rumproxy import codecs, encoders, gzipblocks, gzipsplice, vectorstate
from rumproxy import memo as memos
from rumproxy.agentpresence import loads_agent
from rumproxy.heldstart import HeldStart, LeaveAlone, RememberHead
from rumproxy.reencodetail import ReencodingTail
from rumproxy.rewrite import PolicyBlocked, PolicyEdit, splice
from rumproxy.splicetail import Recording, SplicingTail

if TYPE_CHECKING:
    from rumproxy.htmlscan import Insertion, InsertionScanner

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StreamOutcome:
    injected: bool
    offset: int | None  # decoded-byte offset where the snippet went
    placement: str | None
    reason: str
    remembered: bool = False  # gzip: the rewrite of an earlier body with the same bytes went out again
    known_head: bool = False  # the point of an earlier body that started with the same bytes (memo.KnownHead)


class StreamState(enum.Enum):
    SCANNING = "scanning"  # holding the body back until the scanner decides
    INJECTED = "injected"  # snippet sent; re-encoding the rest (gzip that splices: the SplicingTail)
    RAW = "raw"  # forwarding the upstream bytes untouched
    ENDED = "ended"


class InjectingStream:
    """Insert `snippet` into a streamed body at the point `scanner` picks.

    `snippet` must already be in the page's charset. `label` (e.g. the URL; any object, str() when logged)
    prefixes log lines. While holding data back a call returns an empty
    `bytearray` rather than b"": mitmproxy sends a non-bytes return value as
    a sequence of chunks (so nothing at all), whereas b"" would go out as a
    zero-length HTTP/1.1 chunk, which ends a chunked body early. The call
    that injects into a compressed body returns a generator of two chunks,
    so that mitmproxy sends the head with the snippet before the rest of
    that upstream chunk is re-encoded (about 2 ms per 64 KB of gzip).
    """

    def __init__(
        self,
        *,
        encoding: str,
        snippet: bytes,
        scanner: InsertionScanner,
        on_done: Callable[[StreamOutcome], None] | None = None,
        label: object = "",
        edit_policy: PolicyEdit | None = None,
        splice: bool = False,
        memo: memos.RewriteMemo | None = None,
        memo_key: Hashable = None,
        body_length: int | None = None,
        known_head: memos.KnownHead | None = None,
        remember_head: RememberHead | None = None,
    ) -> None:
        name = codecs.normalize_encoding(encoding)
        if name is None:
            raise codecs.UnsupportedEncoding(encoding)
        self._encoding = name
        self._identity = name == "identity"
        # gzip: reuse the upstream's deflate blocks from 32 KiB past the snippet on (gzipsplice). The
        # scan's inflater decodes while scanning and then goes to the tail, which does the rest.
        self._splices = splice and name == "gzip" and gzipblocks.available()
        # Raw chunks are kept until the decision so every non-injecting path can send the body byte
        # for byte as received.
        self._held = HeldStart(name, scanner, splices=self._splices, known_head=known_head, remember_head=remember_head)
        self._tail: SplicingTail | ReencodingTail | None = None  # what goes on after the snippet
        # gzip that splices: where this body's rewrite is remembered (gzipmemo) once it reaches its
        # reuse point. gzipreplay.ReplayingStream also sends one remembered earlier again.
        self._memo = memo if memo is not None and memo.budget and self._splices else None
        self._memo_key = memo_key
        self._snippet = snippet
        self._edit_policy = edit_policy  # for a <meta> CSP right after the point (rewrite.splice)
        self._scanner = scanner
        self._on_done = on_done
        self._label = label or "response"
        self._state = StreamState.SCANNING
        self.outcome: StreamOutcome | None = None
        # send_whole: the body is here whole, and its caller decides (and logs) what becomes of a
        # body that may not end in its trailer, or that breaks after the snippet went out.
        self.caller_decides = False
        self.broken_after_injection: str | None = None  # why the rest went on as received
        # The raw body's length when the upstream's framing guarantees it (Content-Length): a gzip
        # tail then knows where the trailer starts and forwards chunks without holding bytes back.
        self._body_length = body_length

    @property
    def reused_from(self) -> int | None:
        """gzip: the decoded offset from which the upstream's blocks went on."""
        return self._tail.reused_from if self._tail is not None else None

    @property
    def trailer_suspect(self) -> str | None:
        """gzip: why the upstream's body may not end in its member's trailer (SplicingTail)."""
        return self._tail.trailer_suspect if self._tail is not None else None

    @property
    def buffered_bytes(self) -> int:
        """Bytes held back right now (raw and decoded)."""
        return self._held.size

    def __call__(self, chunk: bytes) -> bytes | bytearray | Iterator[bytes]:
        end = not chunk
        out = self._dispatch(chunk, end)
        vectorstate.clear()
        if end:
            self._state = StreamState.ENDED
            if isinstance(out, (bytes, bytearray)):
                self._drop_codecs()
            return out
        return out if out else bytearray()

    def _dispatch(self, chunk: bytes, end: bool) -> bytes | bytearray | Iterator[bytes]:
        state = self._state
        if state is StreamState.SCANNING:
            return self._scan(chunk, end)
        if state is StreamState.INJECTED:
            return chunk if self._identity else self._reencode(chunk, end)
        if state is StreamState.ENDED and chunk:
            logger.warning("%s: %d body bytes after the end of the body, passed through", self._label, len(chunk))
        return chunk

    def _drop_codecs(self) -> None:
        # A finished flow, and this stream with it, may live on in reference cycles until Python's
        # cyclic GC runs, which memory allocated by C codecs does not hasten: brotli's state held
        # ~180 MiB at 8 connections in scripts/bench. Free it as soon as the body has ended.
        self._release()
        if self._tail is not None:
            self._tail.close()

    # --- before the decision -------------------------------------------------

    def _scan(self, chunk: bytes, end: bool) -> bytes | Iterator[bytes]:
        try:
            verdict = self._held.scan(chunk, end)
            if verdict is None:
                return b""
            if isinstance(verdict, LeaveAlone):
                return self._pass_raw(verdict.reason, warn=verdict.warn)
            return self._inject(verdict, end)
        except Exception as e:  # fail open: a scanner bug must not break the page
            return self._pass_raw(f"injection failed: {e!r}", warn=True)

    def _inject(self, insertion: Insertion, end: bool) -> bytes | Iterator[bytes]:
        document = self._held.document()
        if loads_agent(document):
            return self._pass_raw("page loads the agent already")
        offset = insertion.offset
        if not 0 <= offset <= len(document):
            raise ValueError(f"insertion offset {offset} outside the {len(document)} bytes seen")
        if self._edit_policy is not None and self._scanner.facts.csp_meta is not None:
            try:
                spliced = splice(document, offset, self._snippet, self._scanner.facts.csp_meta, self._edit_policy)
            except PolicyBlocked as e:
                return self._pass_raw(str(e))
            pieces: tuple[bytes | memoryview, ...] = (spliced,)
        else:
            view = memoryview(document)
            pieces = (view[:offset], self._snippet, view[offset:])
        out: bytes | Iterator[bytes]
        if self._identity:
            out = b"".join(pieces)
        elif len(pieces) == 3:
            if self._held.inflater is not None:
                # Sections that refer to nothing before them: the page before the snippet, the
                # snippet, the page after it; the first and last may be sent again (gzipmemo).
                writer = gzipsplice.GzipWriter()
                before = writer.feed(pieces[0]) + writer.restart()
                head = before + writer.feed(pieces[1]) + writer.restart()
                self._tail = self._new_tail(writer, offset + gzipsplice.WINDOW, before, insertion.placement)
            else:
                tail = self._tail = self._reencoding_tail(end)
                head = b"".join([tail.write(pieces[0]), tail.write(pieces[1]), tail.feed(b"", False)])
            out = self._head_first(head, pieces[2], end)
        else:
            assert self._scanner.facts.csp_meta is not None
            if self._held.inflater is not None:
                self._tail = self._new_tail(gzipsplice.GzipWriter(), self._scanner.facts.csp_meta[1] + gzipsplice.WINDOW)
            else:
                self._tail = self._reencoding_tail(end)
            out = b"".join([*(self._tail.write(p) for p in pieces), self._continue(end)])
        self._state = StreamState.INJECTED
        self._release()
        self._report(StreamOutcome(True, offset, insertion.placement, "injected", known_head=self._held.took_known_head))
        return out

    def _pass_raw(self, reason: str, *, warn: bool = False) -> bytes:
        out = self._held.raw_body()
        if warn:
            logger.warning("%s: %s; body passed through unchanged", self._label, reason)
        self._state = StreamState.RAW
        self._release()
        self._report(StreamOutcome(False, None, None, reason))
        return out

    def _new_tail(
        self, writer: gzipsplice.GzipWriter, splice_after: int, before: bytes | None = None, placement: str = ""
    ) -> SplicingTail:
        """The rest of a splicing gzip body; `splice_after` is where the last edit's window ends (for
        a <meta> CSP edited after the snippet: that tag's end, as received). With `before`, the
        section before the snippet, the tail is remembered once it reaches its reuse point."""
        recording = None
        held = self._held
        if self._memo is not None and before is not None:
            recording = Recording(before, placement, list(held.raw), held.raw_size, self._memo.entry_limit)
            writer.record = []
        inflater, held.inflater = held.inflater, None
        assert inflater is not None
        return SplicingTail(
            inflater=inflater, writer=writer, splice_after=splice_after, recording=recording,
            memo=self._memo, memo_key=self._memo_key, **self._tail_options(),
        )

    def _reencoding_tail(self, end: bool) -> ReencodingTail:
        # At the end of the body the scan has flushed the decoder already.
        decoder = self._held.decoder
        assert decoder is not None  # the scan made it
        return ReencodingTail(codecs.Decoder() if end else decoder, encoders.encoder(self._encoding))

    def _release(self) -> None:
        self._held.release()

    def _report(self, outcome: StreamOutcome) -> None:
        # Not logged here: the caller records the outcome on the flow, and logs a skip's reason. Under
        # mitmproxy a debug record goes through its handlers even when nobody shows it (~3% of the
        # proxy's CPU on a 300 KB gzip page in scripts/bench).
        self.outcome = outcome
        on_done, self._on_done = self._on_done, None  # called once; and it may hold the flow in a cycle
        if on_done is None:
            return
        try:
            on_done(outcome)
        except Exception as e:  # the callback's bug must not cut the body off
            logger.error("%s: on_done callback failed: %r", self._label, e)

    # --- after the decision, encoded bodies --------------------------------

    def _head_first(self, head: bytes, rest: memoryview, end: bool) -> Iterator[bytes]:
        """The injecting call's output: the head (page start and snippet, flushed), then the rest
        of the decoded bytes at hand, re-encoded only once mitmproxy has sent the head."""
        if head:
            yield head
        try:
            assert self._tail is not None
            tail = self._tail.write(rest) + self._continue(end)
        except Exception as e:
            tail = self._abandon(e, b"")
        vectorstate.clear()
        if end:
            self._drop_codecs()
        if tail:
            yield tail

    def _continue(self, end: bool) -> bytes:
        """After the decoded bytes at hand went into the tail: what the upstream's chunk still
        holds (a splicing gzip stream decodes it on demand), then a flush point or the end."""
        return self._tail_feed(b"", end)

    def _reencode(self, chunk: bytes, end: bool) -> bytes:
        try:
            return self._tail_feed(chunk, end)
        except Exception as e:
            return self._abandon(e, chunk)

    def _tail_feed(self, chunk: bytes, end: bool) -> bytes:
        assert self._tail is not None
        out = self._tail.feed(chunk, end)
        if self._tail.member_ended:
            self._state = StreamState.RAW  # what follows the member goes on as received
        return out

    def _tail_options(self) -> dict[str, object]:
        return {"label": self._label, "warn_trailer": not self.caller_decides, "body_length": self._body_length}

    def _abandon(self, error: Exception, chunk: bytes) -> bytes:
        # Close our stream cleanly and send the rest as received: clients
        # then see a complete page prefix instead of a broken encoding.
        self.broken_after_injection = str(error)
        if not self.caller_decides:
            logger.warning("%s: %s after the injection; rest of the body passed through", self._label, error)
        self._state = StreamState.RAW
        try:
            tail = self._tail.abandon() if self._tail is not None else b""
        except Exception:
            tail = b""
        self._release()
        return tail + chunk

