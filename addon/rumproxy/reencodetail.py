"""The rest of a body after its snippet where the upstream's blocks are not reused (deflate, br,
zstd, and gzip without rum_gzip_splice): decoded and encoded again. Every upstream chunk that
decodes to something ends in a flush point, so the page still renders as the upstream flushed it.
What splicetail.SplicingTail is for gzip that splices, with the same calls."""

from __future__ import annotations

from rumproxy import codecs, encoders


class ReencodingTail:
    member_ended = False  # as SplicingTail: never, the decoder reads any further members itself
    reused_from: int | None = None
    trailer_suspect: str | None = None

    def __init__(self, decoder: codecs.Decoder, encoder: encoders.Encoder) -> None:
        self._decoder: codecs.Decoder | None = decoder
        self._encoder: encoders.Encoder | None = encoder

    def write(self, decoded: bytes | memoryview) -> bytes:
        """Decoded page bytes the stream holds already."""
        assert self._encoder is not None
        return self._encoder.feed(decoded)

    def feed(self, chunk: bytes, end: bool) -> bytes:
        """The upstream's next chunk (b"": nothing new, but a flush point for what was written)."""
        decoder, encoder = self._decoder, self._encoder
        assert decoder is not None and encoder is not None
        if end:
            rest = decoder.flush()
            return (encoder.feed(rest) if rest else b"") + encoder.flush()
        decoded = decoder.feed(chunk) if chunk else b""
        if chunk and not decoded:
            return b""  # nothing to flush: an empty flush block would only add bytes
        return (encoder.feed(decoded) if decoded else b"") + encoder.sync()

    def abandon(self) -> bytes:
        """Our encoded data, ended cleanly, for the rest of the body to pass as received."""
        encoder = self._encoder
        self.close()
        return encoder.flush() if encoder is not None else b""

    def close(self) -> None:
        self._decoder = self._encoder = None
