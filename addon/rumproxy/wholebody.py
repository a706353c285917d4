"""Rewriting a whole (buffered) body: from a remembered rewrite (memo), through the block-reusing
gzip stream (a gzip page larger than the scan window), or decoded, scanned and re-encoded
(rewrite.inject_buffered). Knows nothing of mitmproxy: the addon says what decides the rewrite."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable

from rumproxy import gzipblocks, gzipmemo, gzipsplice, memo
from rumproxy.rewrite import PolicyEdit, Rewritten, inject_buffered
from rumproxy.stream import InjectingStream

logger = logging.getLogger(__name__)


# Not frozen: a frozen dataclass sets each of these fields through object.__setattr__, which made
# this bag of arguments, made once per page, cost 3.7 µs instead of 0.8.
@dataclasses.dataclass(slots=True)
class Job:
    encoding: str  # normalized (codecs.normalize_encoding)
    content_type: str | None
    markup: str  # the snippet
    markup_fixed: int  # characters at its start that every page of the rule has (snippet.fixed_length)
    edit_policy: PolicyEdit | None  # for a <meta> CSP that would block the agent (rewrite.splice)
    scan_limit: int
    memo: memo.RewriteMemo
    memo_key: Hashable
    label: object  # for log lines, str() when one is written: the URL
    # A gzip page may reuse the upstream's deflate blocks (rum_gzip_splice): the stream that does it.
    splicing_stream: Callable[[], InjectingStream] | None = None


def rewrite(raw: bytes, job: Job) -> Rewritten:
    remembers = job.memo.budget > 0
    known = job.memo.get(job.memo_key) if remembers else None
    try:
        result = _remembered(raw, job, known) if known is not None else None
    except Exception as e:  # the memo only saves work: the body is rewritten anew
        logger.warning("%s: remembered rewrite not usable (%r); rewriting the body anew", job.label, e)
        job.memo.forget(job.memo_key)
        known = result = None
    if result is None and job.encoding == "gzip" and _splices(raw, job):
        result = _spliced(raw, job)
    if result is None:
        known_head = job.memo.get(memo.head_key(job.memo_key)) if remembers else None
        assert known_head is None or isinstance(known_head, memo.KnownHead)
        result = inject_buffered(
            raw,
            encoding=job.encoding,
            content_type=job.content_type,
            snippet=job.markup,
            limit=job.scan_limit,
            edit_policy=job.edit_policy,
            known_head=known_head,
            # A page that differs from its last body will likely differ from this one too: not
            # worth compressing as sections that only a body with the same bytes could reuse.
            sections=known is None,
        )
        if result.head is not None and remembers:
            job.memo.put(memo.head_key(job.memo_key), result.head)
    if result.reusable is not None and remembers:
        job.memo.put(job.memo_key, result.reusable)
    return result


def _remembered(raw: bytes, job: Job, known: memo.Remembered) -> Rewritten | None:
    """A body that is byte for byte `known`'s, rewritten before, with this job's snippet."""
    if isinstance(known, gzipmemo.GzipRewrite) and known.splice is not None:
        # Its source is the body's start, up to where the upstream's blocks are reused: for a body
        # the splicing stream would take.
        if job.splicing_stream is None or not raw.startswith(known.source):
            return None
    elif known.source != raw:
        return None
    try:
        markup = job.markup.encode(known.codec)
    except (UnicodeEncodeError, LookupError):
        return None
    detail = memo.REMEMBERED
    if isinstance(known, gzipmemo.GzipRewrite):
        # Where the page's charset writes the markup a byte per character, the fixed part is as long in bytes.
        fixed = job.markup_fixed if len(markup) == len(job.markup) else 0
        if known.splice is None:
            body = gzipmemo.whole_body(known, markup, fixed)
        else:
            body = gzipmemo.spliced_whole_body(known, markup, raw, fixed)
            if body is None:
                return None  # the splicing stream decides what to do with this body's end
            detail = _reused(known.splice.original_size) + detail
    else:
        assert isinstance(known, memo.KnownPage)
        if job.encoding == "gzip" and known.document is not None:
            # Came again after all (see `sections`): remembered as sections from now on.
            body, sections = gzipmemo.rewrite_whole(raw, known.document, known.offset, markup, known.placement, known.codec)
            job.memo.put(job.memo_key, sections)
        else:
            body = known.body(markup, job.encoding)
    return Rewritten(body, "injected", known.offset, known.placement, detail)


def _splices(raw: bytes, job: Job) -> bool:
    """Whether a gzip body is large enough for block reuse to pay: its decoded size (the trailer's
    ISIZE) goes past the scan window and deflate's window after it."""
    if job.splicing_stream is None or not gzipblocks.available():
        return False
    decoded_size = int.from_bytes(raw[-4:], "little")
    return decoded_size > max(job.scan_limit, 16 * 1024) + gzipsplice.WINDOW


def _spliced(raw: bytes, job: Job) -> Rewritten | None:
    """The page sent through a splicing stream; None where the stream leaves the page alone, for
    inject_buffered to decide (a UTF-16 page, say, it can transcode), where the body may not end in
    its member's trailer (bytes after it), which inject_buffered ignores, and where it breaks after
    the snippet (truncated, corrupt), which inject_buffered leaves as received."""
    assert job.splicing_stream is not None
    stream = job.splicing_stream()
    body = send_whole(stream, raw)
    outcome = stream.outcome
    if outcome is None or not outcome.injected or stream.trailer_suspect is not None or stream.broken_after_injection:
        if outcome is not None and outcome.remembered:
            job.memo.forget(job.memo_key)
        return None
    detail = _reused(stream.reused_from) if stream.reused_from is not None else ""
    if outcome.remembered:
        detail += memo.REMEMBERED
    return Rewritten(body, "injected", outcome.offset, outcome.placement, detail)


def _reused(decoded_offset: int) -> str:
    return f"; the upstream's gzip blocks reused from decoded byte {decoded_offset}"


def send_whole(stream: InjectingStream, raw: bytes) -> bytes:
    """What `stream` sends for a body that is here whole: how the buffered path reuses a large gzip
    page's deflate blocks instead of re-compressing all of it. The caller checks
    `stream.trailer_suspect` and `stream.broken_after_injection` (and may rewrite the body another
    way, or leave it) instead of a warning."""
    stream.caller_decides = True
    pieces: list[bytes | bytearray] = []
    for chunk in (raw, b""):
        out = stream(chunk)
        if isinstance(out, (bytes, bytearray)):
            pieces.append(out)
        else:
            pieces.extend(out)
    return b"".join(pieces)
