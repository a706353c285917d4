"""The rest of a gzip stream after its snippet, when the upstream's deflate blocks are reused
(gzipsplice): our own sections up to the first block boundary 32 KiB past the last edit, then the
upstream's bytes as they are and a trailer of our own. A tail that reaches that boundary is
remembered (gzipmemo); a remembered one starts right at it."""

from __future__ import annotations

import logging
from collections.abc import Hashable

from rumproxy import gzipblocks, gzipmemo, gzipsplice
from rumproxy import memo as memos

logger = logging.getLogger(__name__)


class Recording:
    """What a tail keeps until its reuse point, to remember its rewrite: the first section the
    stream sent, the upstream's bytes (up to `limit`; beyond that it is too large to keep), and
    the sync points of the tail with the upstream bytes each needed (gzipreplay)."""

    def __init__(self, head: bytes, placement: str, raw: list[bytes], size: int, limit: int) -> None:
        self.head = head
        self.placement = placement
        self.raw: list[bytes] | None = raw if size <= limit else None
        self.size = size
        self.limit = limit
        self.decided_at = size  # the bytes the scan had when it decided
        self.marks: list[gzipmemo.Mark] = []

    def mark(self, writer: gzipsplice.GzipWriter) -> None:
        """The tail so far ends on a byte: a point where a replay may send it up to here."""
        if self.raw is None or writer.record is None:
            return
        crc, decoded = writer.section
        self.marks.append(gzipmemo.Mark(self.size, sum(map(len, writer.record)), decoded, crc))

    def keep(self, chunk: bytes) -> None:
        if self.raw is None:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            self.raw = None
        else:
            self.raw.append(chunk)


class SplicingTail:
    """Fed the upstream's gzip bytes after the injection; returns what goes to the client."""

    def __init__(
        self,
        *,
        label: object,
        inflater: gzipblocks.BlockInflater | None = None,
        writer: gzipsplice.GzipWriter | None = None,
        splice_after: int = 0,
        recording: Recording | None = None,
        memo: memos.RewriteMemo | None = None,
        memo_key: Hashable = None,
        forwarder: gzipsplice.Forwarder | None = None,
        reused_from: int | None = None,
        warn_trailer: bool = True,
        body_length: int | None = None,
    ) -> None:
        self._label = label
        self._inflater, self._writer = inflater, writer
        self._splice_after = splice_after
        self._recording, self._memo, self._memo_key = recording, memo, memo_key
        self._forwarder = forwarder
        self.reused_from = reused_from  # the upstream's blocks went on from this decoded offset
        self.member_ended = False  # the gzip member ended before the reuse point: the rest goes as received
        # Why the upstream's body may not end in its member's trailer, which the new trailer replaced
        # (rum_gzip_splice's help: several members, bytes after the member); logged unless told not to.
        self.trailer_suspect: str | None = None
        self._warn_trailer = warn_trailer
        self._body_length = body_length  # the upstream body's, when known (gzipsplice.Forwarder)

    @classmethod
    def remembered(
        cls, rewrite: gzipmemo.GzipRewrite, rendered: gzipmemo.Rendered, body: bytes, *, label: object,
        warn_trailer: bool = True, body_length: int | None = None,
    ) -> SplicingTail:
        """A tail at the reuse point of `rewrite`, for a body that starts with its source, after
        `rendered.start` (the remembered sections around a snippet)."""
        splice = rewrite.splice
        assert splice is not None
        forwarder = gzipmemo.forwarder(rewrite, rendered, memoryview(body)[splice.rest_at :], body_length)
        return cls(label=label, forwarder=forwarder, reused_from=splice.original_size, warn_trailer=warn_trailer)

    def write(self, decoded: bytes | memoryview) -> bytes:
        """Decoded page bytes after the snippet that the stream holds already."""
        assert self._writer is not None
        return self._writer.feed(decoded)

    def feed(self, chunk: bytes, end: bool) -> bytes:
        if self._forwarder is not None:
            return self._forward(chunk, end)
        if self.member_ended:
            return chunk
        if self._recording is not None:
            self._recording.keep(chunk)
        return self._splice(chunk, end)

    def abandon(self) -> bytes:
        """Our deflate data, ended cleanly, for the rest of the body to pass as received."""
        writer = self._writer
        self.close()
        return writer.flush() if writer is not None else b""

    def close(self) -> None:
        if self._inflater is not None:
            self._inflater.close()
            self._inflater = None
        self._writer = None
        self._recording = None

    def _splice(self, chunk: bytes, end: bool) -> bytes:
        """Re-encode until a block boundary 32 KiB past the last edit, then forward the rest."""
        inflater, writer = self._inflater, self._writer
        assert inflater is not None and writer is not None
        inflater.push(chunk)
        out = []
        while decoded := inflater.pull(256 * 1024, splice_after=self._splice_after):
            out.append(writer.feed(decoded))
        if inflater.rest is None:
            if inflater.ended:
                # The member ended first: close ours; padding or further members go on as received.
                out += [writer.flush(), inflater.after_end]
                if self._recording is not None and not inflater.after_end:
                    self._try_remember(self._recording, inflater, writer, whole=True)
                self.member_ended = True
                self.close()
            elif end:
                raise ValueError("truncated gzip data")
            else:
                out.append(writer.sync())
                if self._recording is not None:
                    self._recording.mark(writer)
            return b"".join(out)
        out.append(writer.sync())
        if self._recording is not None:
            self._try_remember(self._recording, inflater, writer, whole=False)
        trailer = gzipsplice.TrailerMaker(
            original_crc=inflater.crc,
            original_size=inflater.decoded,
            new_crc=writer.crc,
            new_size=writer.size,
            original_compressed=inflater.rest_at,
        )
        self._forwarder = gzipsplice.Forwarder(inflater.rest, inflater.bit, trailer, self._body_length)
        self.reused_from = inflater.decoded
        self.close()
        out.append(self._forward(b"", end))
        return b"".join(out)

    def _try_remember(
        self, recording: Recording, inflater: gzipblocks.BlockInflater, writer: gzipsplice.GzipWriter, *, whole: bool
    ) -> None:
        try:
            self._remember(recording, inflater, writer, whole)
        except Exception as e:  # the memo only saves work: this body goes on all the same
            logger.warning("%s: rewrite not remembered: %r", self._label, e)

    def _remember(
        self, recording: Recording, inflater: gzipblocks.BlockInflater, writer: gzipsplice.GzipWriter, whole: bool
    ) -> None:
        """The rewrite up to the reuse point, or (`whole`) of a member that ended before it with
        nothing after it: the body as received, the tail with its final block."""
        source_end = recording.size if whole else inflater.rest_at + (1 if inflater.bit else 0)
        if self._memo is None or recording.raw is None or writer.record is None or recording.size < source_end:
            return
        raw = b"".join(recording.raw)
        (head_crc, head_size), _ = writer.sections
        tail_crc, tail_size = writer.section
        rewrite = gzipmemo.GzipRewrite(
            source=raw[:source_end],
            head=recording.head,
            head_crc=head_crc,
            head_size=head_size,
            tail=b"".join(writer.record),
            tail_crc=tail_crc,
            tail_size=tail_size,
            placement=recording.placement,
            splice=None if whole else gzipmemo.Splice(inflater.rest_at, inflater.bit, inflater.crc, inflater.decoded),
            decided_at=recording.decided_at,
            marks=tuple(recording.marks),
        )
        writer.record = None
        self._memo.put(self._memo_key, rewrite)

    def _forward(self, chunk: bytes, end: bool) -> bytes:
        forwarder = self._forwarder
        assert forwarder is not None
        out = forwarder.feed(chunk)
        if not end:
            return out
        try:
            trailer = forwarder.finish()
        except ValueError as e:
            # The upstream's body ended without its trailer: so does ours, as cut short as theirs.
            logger.warning("%s: %s", self._label, e)
            return out + forwarder.held
        self.trailer_suspect = forwarder.suspect
        if forwarder.suspect is not None and self._warn_trailer:
            logger.warning("%s: gzip body may not end in its member's trailer (%s); "
                           "set rum_gzip_splice=false for this upstream", self._label, forwarder.suspect)
        return out + trailer
