"""The start of a streamed body, held back until the scan decides where the snippet goes.

The raw chunks are kept as received, so that every way of leaving the page alone can send it byte
for byte; the decoded copy is what the scanner has seen. Knows nothing of what goes out: the stream
(rumproxy.stream) asks `scan` for a verdict and sends accordingly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from rumproxy import codecs, gzipblocks
from rumproxy.htmlscan import Insertion, PageFacts

if TYPE_CHECKING:
    from rumproxy.htmlscan import InsertionScanner
    from rumproxy.memo import KnownHead

UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# The page so far (read during the call only), its point, its facts and htmlscan's decided_through.
RememberHead = Callable[[bytes | bytearray, Insertion, PageFacts, int | None], None]


class LeaveAlone(NamedTuple):
    """The scan's verdict that the page goes on as received, and why."""

    reason: str
    warn: bool = False  # a fault (the client gets the page, the log a warning), not a page we skip


class HeldStart:
    """Raw chunks held, decoded and fed to `scanner` until it finds the insertion point."""

    def __init__(
        self,
        encoding: str,
        scanner: InsertionScanner,
        *,
        splices: bool,
        known_head: KnownHead | None = None,
        remember_head: RememberHead | None = None,
    ) -> None:
        self.encoding = encoding  # normalized (codecs.normalize_encoding)
        self.identity = encoding == "identity"
        self.scanner = scanner
        # Where the snippet went in an earlier body of the page: taken if the first bytes scanned
        # are that body's (memo.KnownHead), without a scan. A scan's point goes to `remember_head`
        # with the page so far and the bytes it was decided on (htmlscan's decided_through).
        self.known_head = known_head
        self.took_known_head = False
        self._remember_head = remember_head
        self._splices = splices
        self.raw: list[bytes] = []
        self.raw_size = 0
        # Decoded copy of the held bytes; identity bodies use `raw` instead.
        self.decoded = bytearray()
        self._start = bytearray()  # the first two decoded bytes, to spot a UTF-16 BOM
        # Made when the body is first scanned: a body that a remembered rewrite covers never needs
        # one, and setting up an inflater costs some 100,000 instructions.
        self.decoder: codecs.Decoder | None = None
        # A splicing gzip decoder's inflater: once the snippet is placed it goes to the stream's
        # tail (gzipsplice), which decodes on from where the scan stopped.
        self.inflater: gzipblocks.BlockInflater | None = None

    @property
    def size(self) -> int:
        """Bytes held right now (raw and decoded)."""
        return self.raw_size + len(self.decoded)

    def hold(self, chunk: bytes) -> None:
        self.raw.append(chunk)
        self.raw_size += len(chunk)

    def raw_body(self) -> bytes:
        return self.raw[0] if len(self.raw) == 1 else b"".join(self.raw)

    def document(self) -> bytes:
        """The decoded page so far, which the insertion offset counts in."""
        return self.raw_body() if self.identity else bytes(self.decoded)

    def starts_with(self, prefix: bytes) -> bool:
        """Whether the decoded page so far starts with `prefix`."""
        return self._page_so_far().startswith(prefix)

    def _page_so_far(self) -> bytes | bytearray:
        # document() without copying a decoded page: for reading before the next chunk is held.
        return self.raw_body() if self.identity else self.decoded

    def scan(self, chunk: bytes, end: bool) -> Insertion | LeaveAlone | None:
        """Hold `chunk` (b"" with `end`: the body ended) and scan what it decodes to: where the
        snippet goes, that the page goes on as received, or None while the scan needs more. A
        fault of the scanner itself raises."""
        if chunk:
            self.hold(chunk)
        decoder = self.decoder
        if decoder is None:
            try:
                decoder = self._start_decoding()
            except Exception as e:  # without a decoder the body goes on as received
                return LeaveAlone(f"no {self.encoding} decoder: {e!r}", warn=True)
        try:
            decoded = decoder.flush() if end else decoder.feed(chunk)
        except ValueError as e:
            return LeaveAlone(f"decode error: {e}", warn=True)
        if not self.identity:
            self.decoded += decoded
        if len(self._start) < 2 and decoded:
            self._start += decoded[: 2 - len(self._start)]
            if bytes(self._start) in UTF16_BOMS:
                # Tags are two bytes a character there: the ASCII tokenizer must not cut into them.
                return LeaveAlone("UTF-16 page: only ASCII-compatible pages are injected while streaming")
        known, self.known_head = self.known_head, None
        if known is not None and self.starts_with(known.source):
            # One look, at the first bytes scanned: a body that starts shorter than the known
            # head (an app that flushes part of its head early) is scanned as it comes.
            self.took_known_head = True
            return Insertion(known.offset, known.placement)
        scanner = self.scanner
        insertion = scanner.feed(decoded) if decoded else None
        if scanner.facts.amp:
            return LeaveAlone("amp page")
        if insertion is not None:
            if self._remember_head is not None:
                self._remember_head(self._page_so_far(), insertion, scanner.facts, scanner.decided_through)
            return insertion
        if scanner.exhausted:
            scanned = self.raw_size if self.identity else len(self.decoded)
            return LeaveAlone(f"scan limit reached: no insertion point in the first {scanned} bytes")
        if not end:
            return None
        if not (self.raw_size if self.identity else self.decoded):
            # Also covers HEAD-like responses: a snippet would invent a body.
            return LeaveAlone("empty body")
        return scanner.finish()

    def _start_decoding(self) -> codecs.Decoder:
        decoder: codecs.Decoder
        if self._splices:
            decoder = gzipblocks.SplicingDecoder(window=max(self.scanner.limit, 16 * 1024))
            self.inflater = decoder.inflater
        else:
            decoder = codecs.decoder(self.encoding)
        self.decoder = decoder
        return decoder

    def release(self) -> None:
        """Let go of the held bytes and the codecs (a brotli window can be megabytes); a tail that
        decodes on took the decoder or the inflater before."""
        self.decoder = codecs.Decoder()
        if self.inflater is not None:
            self.inflater.close()
            self.inflater = None
        self.raw = []
        self.raw_size = 0
        self.decoded = bytearray()
