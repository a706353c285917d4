"""HTTP content-codings' encoders, incremental and whole.

The proxy re-encodes every injected page on the hot path, so encoders always
run at the fastest level: brotli at quality 11 costs about a second per MB.
"""

from __future__ import annotations

import zlib

import brotli
import zstandard

from rumproxy import codecs
from rumproxy.codecs import CODEC_ERRORS, canonical


class Encoder:
    """Incremental encoder; this base class is the identity coding."""

    encoding = "identity"

    def feed(self, chunk: bytes) -> bytes:
        """Compress the next piece; may return b"" while the codec buffers."""
        return self._wrap(self._feed, chunk)

    def sync(self) -> bytes:
        """Emit everything fed so far without ending the stream.

        Lets a proxy keep the upstream's flush points, so a streamed page
        still renders progressively.
        """
        return self._wrap(self._sync)

    def flush(self) -> bytes:
        """Finish the stream; the encoder must not be used afterwards."""
        return self._wrap(self._flush)

    def _wrap(self, method, *args: bytes) -> bytes:
        try:
            return method(*args)
        except CODEC_ERRORS as e:
            raise ValueError(f"{self.encoding} encoder failed: {e}") from e

    def _feed(self, chunk: bytes) -> bytes:
        return chunk

    def _sync(self) -> bytes:
        return b""

    def _flush(self) -> bytes:
        return b""


class _ZlibEncoder(Encoder):
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # wbits 31 writes a gzip header with mtime 0: deterministic output.
        self._obj = deflater(31 if encoding == "gzip" else 15)

    def _feed(self, chunk: bytes) -> bytes:
        return self._obj.compress(chunk)

    def _sync(self) -> bytes:
        return self._obj.flush(zlib.Z_SYNC_FLUSH)

    def _flush(self) -> bytes:
        return self._obj.flush(zlib.Z_FINISH)


def deflater(wbits: int):  # noqa: ANN201 - zlib's or ISA-L's compressobj
    """A compressobj at the fastest level; wbits as for zlib (31 gzip, 15 zlib, -15 raw)."""
    return codecs.deflate_lib.compressobj(1, zlib.DEFLATED, wbits)  # as it is at the call, like the decoders


class _BrotliEncoder(Encoder):
    encoding = "br"

    def __init__(self) -> None:
        self._obj = brotli.Compressor(quality=1)

    def _feed(self, chunk: bytes) -> bytes:
        return self._obj.process(chunk) if chunk else b""

    def _sync(self) -> bytes:
        return self._obj.flush()

    def _flush(self) -> bytes:
        return self._obj.finish()


class _ZstdEncoder(Encoder):
    encoding = "zstd"

    def __init__(self) -> None:
        self._obj = zstandard.ZstdCompressor(level=1).compressobj()

    def _feed(self, chunk: bytes) -> bytes:
        return self._obj.compress(chunk)

    def _sync(self) -> bytes:
        return self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def _flush(self) -> bytes:
        return self._obj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def encoder(encoding: str) -> Encoder:
    name = canonical(encoding)
    if name in ("gzip", "deflate"):
        return _ZlibEncoder(name)
    if name == "br":
        return _BrotliEncoder()
    if name == "zstd":
        return _ZstdEncoder()
    return Encoder()


def encode(data: bytes, encoding: str) -> bytes:
    """Encode a whole body at the fastest level."""
    name = canonical(encoding)
    if name == "identity":
        return data
    if name == "zstd":
        # The one-shot API records the content size in the frame header.
        return zstandard.ZstdCompressor(level=1).compress(data)
    e = encoder(name)
    return e.feed(data) + e.flush()
