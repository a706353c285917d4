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

from rumproxy import codecs, gzipblocks, gzipmemo, gzipsplice
from rumproxy import memo as memos
from rumproxy.gzipreplay import Replay
from rumproxy.reencodetail import ReencodingTail
from rumproxy.htmlscan import loads_agent
from rumproxy.rewrite import PolicyBlocked, PolicyEdit, splice
from rumproxy.splicetail import Recording, SplicingTail

if TYPE_CHECKING:
    from rumproxy.htmlscan import Insertion, InsertionScanner

logger = logging.getLogger(__name__)

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclasses.dataclass(frozen=True)
class StreamOutcome:
    injected: bool
    offset: int | None  # decoded-byte offset where the snippet went
    placement: str | None
    reason: str
    remembered: bool = False  # gzip: the rewrite of an earlier body with the same bytes went out again


def send_whole(stream: InjectingStream, raw: bytes) -> bytes:
    """What `stream` sends for a body that is here whole: how the buffered path reuses a large gzip
    page's deflate blocks instead of re-compressing all of it. The caller checks
    `stream.trailer_suspect` (and may rewrite the body another way) instead of a warning."""
    stream.warn_trailer = False
    pieces: list[bytes | bytearray] = []
    for chunk in (raw, b""):
        out = stream(chunk)
        if isinstance(out, (bytes, bytearray)):
            pieces.append(out)
        else:
            pieces.extend(out)
    return b"".join(pieces)


class _State(enum.Enum):
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
        snippet_fixed: int = 0,
        body_length: int | None = None,
    ) -> None:
        name = codecs.normalize_encoding(encoding)
        if name is None:
            raise codecs.UnsupportedEncoding(encoding)
        self._encoding = name
        self._identity = name == "identity"
        # Made when the body is first scanned (_start_decoding): a body that a remembered rewrite
        # covers never needs one, and setting up an inflater costs some 100,000 instructions.
        self._decoder: codecs.Decoder | None = None
        # gzip: reuse the upstream's deflate blocks from 32 KiB past the snippet on (gzipsplice). The
        # inflater decodes while scanning and then goes to the tail, which does the rest.
        self._splices = splice and name == "gzip" and gzipblocks.available()
        self._inflater: gzipblocks.BlockInflater | None = None
        self._tail: SplicingTail | ReencodingTail | None = None  # what goes on after the snippet
        # gzip that splices: the rewrite of an earlier body with the same bytes up to the reuse point
        # (gzipmemo), and what is kept of this body's to remember it.
        self._memo = memo if memo is not None and memo.budget and self._splices else None
        self._memo_key = memo_key
        self._replay = self._replayed(snippet, snippet_fixed)
        self._snippet = snippet
        self._edit_policy = edit_policy  # for a <meta> CSP right after the point (rewrite.splice)
        self._scanner = scanner
        self._on_done = on_done
        self._label = label or "response"
        # Raw chunks are kept until the decision so every non-injecting path
        # can send the body byte for byte as received.
        self._raw: list[bytes] = []
        self._raw_size = 0
        # Decoded copy of the held bytes; identity bodies use `_raw` instead.
        self._decoded = bytearray()
        self._start = bytearray()  # the first two decoded bytes, to spot a UTF-16 BOM
        self._state = _State.SCANNING
        self.outcome: StreamOutcome | None = None
        self.warn_trailer = True  # send_whole leaves a suspect trailer to its caller
        # The raw body's length when the upstream's framing guarantees it (Content-Length): a gzip
        # tail then knows where the trailer starts and forwards chunks without holding bytes back.
        self._body_length = body_length

    def _replayed(self, snippet: bytes, snippet_fixed: int) -> Replay | None:
        """The remembered rewrite of a body with the same start, made by a stream (a whole-body
        one is the addon's business), to send while this body turns out the same."""
        candidate = self._memo.get(self._memo_key) if self._memo is not None else None
        if not isinstance(candidate, gzipmemo.GzipRewrite):
            return None
        if candidate.splice is None and candidate.decided_at is None:
            return None  # would hold the whole body back: one rewritten whole is sent whole
        return Replay(candidate, snippet, snippet_fixed)

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
        return self._raw_size + len(self._decoded)

    def __call__(self, chunk: bytes) -> bytes | bytearray | Iterator[bytes]:
        end = not chunk
        out = self._dispatch(chunk, end)
        if end:
            self._state = _State.ENDED
            if isinstance(out, (bytes, bytearray)):
                self._drop_codecs()
            return out
        return out if out else bytearray()

    def _dispatch(self, chunk: bytes, end: bool) -> bytes | bytearray | Iterator[bytes]:
        state = self._state
        if state is _State.SCANNING:
            return self._scan(chunk, end) if self._replay is None else self._match(chunk, end)
        if state is _State.INJECTED:
            return chunk if self._identity else self._reencode(chunk, end)
        if state is _State.ENDED and chunk:
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
        if chunk:
            self._raw.append(chunk)
            self._raw_size += len(chunk)
        decoder = self._decoder
        if decoder is None:
            try:
                decoder = self._start_decoding()
            except Exception as e:  # fail open: without a decoder the body goes on as received
                return self._pass_raw(f"no {self._encoding} decoder: {e!r}", warn=True)
        try:
            decoded = decoder.flush() if end else decoder.feed(chunk)
        except ValueError as e:
            return self._pass_raw(f"decode error: {e}", warn=True)
        try:
            if not self._identity:
                self._decoded += decoded
            if len(self._start) < 2 and decoded:
                self._start += decoded[: 2 - len(self._start)]
                if bytes(self._start) in UTF16_BOMS:
                    # Tags are two bytes a character there: the ASCII tokenizer must not cut into them.
                    return self._pass_raw("UTF-16 page: only ASCII-compatible pages are injected while streaming")
            insertion = self._scanner.feed(decoded) if decoded else None
            if self._scanner.facts.amp:
                return self._pass_raw("amp page")
            if insertion is None:
                if self._scanner.exhausted:
                    scanned = self._raw_size if self._identity else len(self._decoded)
                    return self._pass_raw(f"scan limit reached: no insertion point in the first {scanned} bytes")
                if not end:
                    return b""
                if not (self._raw_size if self._identity else self._decoded):
                    # Also covers HEAD-like responses: a snippet would invent a body.
                    return self._pass_raw("empty body")
                insertion = self._scanner.finish()
            return self._inject(insertion, end)
        except Exception as e:  # fail open: a scanner bug must not break the page
            return self._pass_raw(f"injection failed: {e!r}", warn=True)

    def _start_decoding(self) -> codecs.Decoder:
        decoder: codecs.Decoder
        if self._splices:
            decoder = gzipblocks.SplicingDecoder(window=max(self._scanner.limit, 16 * 1024))
            self._inflater = decoder.inflater
        else:
            decoder = codecs.decoder(self._encoding)
        self._decoder = decoder
        return decoder

    def _inject(self, insertion: Insertion, end: bool) -> bytes | Iterator[bytes]:
        if self._identity:
            document = self._raw[0] if len(self._raw) == 1 else b"".join(self._raw)
        else:
            document = bytes(self._decoded)
        if self._scanner.facts.amp:
            return self._pass_raw("amp page")
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
            if self._inflater is not None:
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
            if self._inflater is not None:
                self._tail = self._new_tail(gzipsplice.GzipWriter(), self._scanner.facts.csp_meta[1] + gzipsplice.WINDOW)
            else:
                self._tail = self._reencoding_tail(end)
            out = b"".join([*(self._tail.write(p) for p in pieces), self._continue(end)])
        self._state = _State.INJECTED
        self._release()
        self._report(StreamOutcome(True, offset, insertion.placement, "injected"))
        return out

    def _pass_raw(self, reason: str, *, warn: bool = False) -> bytes:
        out = self._raw[0] if len(self._raw) == 1 else b"".join(self._raw)
        if warn:
            logger.warning("%s: %s; body passed through unchanged", self._label, reason)
        self._state = _State.RAW
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
        if self._memo is not None and before is not None:
            recording = Recording(before, placement, list(self._raw), self._raw_size, self._memo.entry_limit)
            writer.record = []
        inflater, self._inflater = self._inflater, None
        return SplicingTail(
            label=self._label, inflater=inflater, writer=writer, splice_after=splice_after, recording=recording,
            memo=self._memo, memo_key=self._memo_key, warn_trailer=self.warn_trailer, body_length=self._body_length,
        )

    def _reencoding_tail(self, end: bool) -> ReencodingTail:
        # At the end of the body the scan has flushed the decoder already.
        decoder = self._decoder
        assert decoder is not None  # the scan made it
        return ReencodingTail(codecs.Decoder() if end else decoder, codecs.encoder(self._encoding))

    def _release(self) -> None:
        # A tail that decodes on has the decoder or the inflater; the stream lets go of them (a
        # brotli window can be megabytes).
        self._decoder = codecs.Decoder()
        if self._inflater is not None:
            self._inflater.close()
            self._inflater = None
        self._raw = []
        self._raw_size = 0
        self._decoded = bytearray()

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
            self._state = _State.RAW  # what follows the member goes on as received
        return out

    # --- a body whose start is that of a remembered rewrite (gzipmemo) ------

    def _match(self, chunk: bytes, end: bool) -> bytes:
        """While the body goes on as the one the remembered rewrite was made from: send what of
        the rewrite the bytes so far allow (gzipreplay), and hold them in case it does not."""
        replay = self._replay
        assert replay is not None
        try:
            same = True
            if chunk:
                same = replay.same(chunk, self._raw_size)
                self._raw.append(chunk)
                self._raw_size += len(chunk)
            if same and replay.complete(self._raw_size):
                return self._reuse(replay, end)
            if same and not end:
                return replay.due(self._raw_size)
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
        held = b"".join(self._raw)
        self._raw, self._raw_size = [], 0
        out = _joined(self._scan(held, False)) if held else b""
        if end:
            out += _joined(self._dispatch(b"", True))
        return out

    def _reuse(self, replay: Replay, end: bool) -> bytes:
        """The body matched all the remembered source: the rest of the rewrite goes out, then the
        upstream's blocks (a spliced rewrite) or our trailer (a whole one)."""
        rewrite, rendered = replay.rewrite, replay.rendered
        held = self._raw[0] if len(self._raw) == 1 else b"".join(self._raw)
        start = rendered.start[replay.sent_bytes :]
        if rewrite.splice is not None:
            tail = SplicingTail.remembered(
                rewrite, rendered, held, label=self._label, warn_trailer=self.warn_trailer, body_length=self._body_length
            )
            out = start + tail.feed(b"", end)
            # Nothing above changed the stream: should it fail, _match goes on without the memo.
            self._tail = tail
            self._state = _State.INJECTED
        else:
            out = b"".join((start, gzipsplice.gzip_trailer(rendered.crc, rendered.size), held[len(rewrite.source) :]))
            self._state = _State.RAW  # what follows the member goes on as received, as it did the first time
        self._replay = None
        self._release()  # nothing more to decode: the tail forwards
        self._report(StreamOutcome(True, rewrite.head_size, rewrite.placement, "injected", remembered=True))
        return out

    def _resume(self, replay: Replay, end: bool) -> bytes:
        """Part of a remembered rewrite went out and the body turns out different after it: decode
        the body held from its start and go on compressing where what went out stopped."""
        rewrite = replay.rewrite
        held = b"".join(self._raw)
        self._state = _State.INJECTED
        self._release()
        self._report(StreamOutcome(True, rewrite.head_size, rewrite.placement, "injected"))
        try:
            inflater = gzipblocks.BlockInflater()
            self._tail = SplicingTail(
                label=self._label, inflater=inflater, writer=replay.writer(),
                splice_after=rewrite.head_size + gzipsplice.WINDOW, warn_trailer=self.warn_trailer,
                body_length=self._body_length,
            )
            inflater.push(held)
            return self._tail.write(replay.page_after_sent(inflater)) + self._continue(end)
        except Exception as e:  # what went out ends cleanly (see _abandon)
            return self._abandon(e, b"")

    def _abandon(self, error: Exception, chunk: bytes) -> bytes:
        # Close our stream cleanly and send the rest as received: clients
        # then see a complete page prefix instead of a broken encoding.
        logger.warning("%s: %s after the injection; rest of the body passed through", self._label, error)
        self._state = _State.RAW
        try:
            tail = self._tail.abandon() if self._tail is not None else b""
        except Exception:
            tail = b""
        self._release()
        return tail + chunk


def _joined(out: bytes | bytearray | Iterator[bytes]) -> bytes:
    return bytes(out) if isinstance(out, (bytes, bytearray)) else b"".join(out)
