"""HTTP content-codings: their names, and decoders, buffered and incremental (the encoders are
in `encoders`).

Decoders follow what browsers accept rather than the strictest reading of the
RFCs (raw deflate, multi-member gzip, trailing bytes after a gzip/deflate end).
"""

from __future__ import annotations

import logging
import zlib

import brotli
import zstandard

try:
    # ISA-L's deflate: at its level 1 about 4x as fast as zlib's fastest level at the same ratio on
    # HTML, its inflate about 2.5x zlib's, and no zlib state (~67 µs) to set up per stream (measured on
    # scripts/bench's pages). zlib stands in where it is not installed.
    from isal import isal_zlib as deflate_lib
except ImportError:  # pragma: no cover - isal is a dependency; a platform without its wheel
    deflate_lib = zlib

logger = logging.getLogger(__name__)

SUPPORTED = ("identity", "gzip", "deflate", "br", "zstd")
_ALIASES = {name: name for name in SUPPORTED} | {"x-gzip": "gzip"}
# What the codec libraries raise on bad data; decoders and encoders raise ValueError instead.
CODEC_ERRORS = (zlib.error, deflate_lib.error, brotli.error, zstandard.ZstdError)
_GZIP_MAGIC = b"\x1f\x8b"


class UnsupportedEncoding(Exception):
    """The content-coding is unknown or stacked; the body must pass untouched."""


def normalize_encoding(header_value: str | None) -> str | None:
    """Map a Content-Encoding value to one of SUPPORTED, or None if unsupported.

    A stacked value ("gzip, br") is unsupported: re-encoding several layers
    would cost more than the injection is worth.
    """
    if header_value is None:
        return "identity"
    value = header_value.strip().lower()
    if not value:
        return "identity"
    return _ALIASES.get(value)


def canonical(encoding: str) -> str:
    """normalize_encoding, raising UnsupportedEncoding where it gives None."""
    name = normalize_encoding(encoding)
    if name is None:
        raise UnsupportedEncoding(encoding)
    return name


class Decoder:
    """Incremental decoder; this base class is the identity coding."""

    encoding = "identity"

    def feed(self, chunk: bytes) -> bytes:
        """Decode the next piece of the body; may return b""."""
        try:
            return self._feed(chunk)
        except CODEC_ERRORS as e:
            raise ValueError(f"corrupt {self.encoding} data: {e}") from e

    def flush(self) -> bytes:
        """End of body: return what is left, ValueError if the stream is cut short."""
        try:
            return self._flush()
        except CODEC_ERRORS as e:
            raise ValueError(f"corrupt {self.encoding} data: {e}") from e

    def _feed(self, chunk: bytes) -> bytes:
        return chunk

    def _flush(self) -> bytes:
        return b""

    def _truncated(self) -> ValueError:
        return ValueError(f"truncated {self.encoding} data")


class _ZlibDecoder(Decoder):
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._obj = None
        # Bytes that cannot go to a decompressobj yet: the first bytes while
        # sniffing the deflate flavour, or the start of the next gzip member.
        self._pending = b""
        self._ignoring = False

    def _feed(self, chunk: bytes) -> bytes:
        if self._ignoring or not chunk:
            return b""
        data = self._pending + chunk if self._pending else chunk
        self._pending = b""
        out = []
        while data:
            if self._obj is None or self._obj.eof:
                data = self._start_member(data)
                if not data:
                    break
            out.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b""
        return b"".join(out)

    def _start_member(self, data: bytes) -> bytes:
        """Open a decompressobj for the member starting at data; return what to feed it."""
        after_end = self._obj is not None
        if after_end and self.encoding == "gzip":
            data = data.lstrip(b"\0")  # servers pad gzip files with zeros
        if len(data) < 2 and (after_end or self.encoding == "deflate"):
            self._pending = data
            return b""
        if after_end and (self.encoding != "gzip" or not data.startswith(_GZIP_MAGIC)):
            # Browsers and mitmproxy ignore junk after the end; so do we.
            logger.debug("ignoring %d+ bytes after the end of the %s data", len(data), self.encoding)
            self._ignoring = True
            return b""
        if self.encoding == "gzip":
            self._obj = deflate_lib.decompressobj(31)
        else:
            self._obj = deflate_lib.decompressobj(15 if _is_zlib_header(data) else -15)
        return data

    def _flush(self) -> bytes:
        if self._ignoring:
            return b""
        if self._obj is None:
            if self._pending:
                raise self._truncated()
            return b""  # an empty body, as mitmproxy treats it
        tail = self._obj.flush()
        if not self._obj.eof:
            raise self._truncated()
        return tail


def _is_zlib_header(data: bytes) -> bool:
    # Browsers accept "deflate" with or without the zlib wrapper. Encoders put
    # zero padding after a raw stored block header, so a raw stream essentially
    # never passes this check (method 8, window <= 32K, FCHECK, no preset dict).
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0 and not flg & 0x20


class _BrotliDecoder(Decoder):
    encoding = "br"

    def __init__(self) -> None:
        self._obj = brotli.Decompressor()
        self._seen = False

    def _feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        self._seen = True
        return self._drain(self._obj.process(chunk))

    def _drain(self, first: bytes) -> bytes:
        # brotli 1.2's process() may return only its first 32 KiB output block and keep the rest
        # until the next call, so output lags and input piles up inside (scripts/bench saw +35 MiB
        # per streamed 20 MB page); empty calls hand over what it holds.
        pieces = [first]
        while more := self._obj.process(b""):
            pieces.append(more)
        return first if len(pieces) == 1 else b"".join(pieces)

    def _flush(self) -> bytes:
        tail = self._drain(b"") if self._seen else b""
        if self._seen and not self._obj.is_finished():
            raise self._truncated()
        return tail


class _ZstdDecoder(Decoder):
    encoding = "zstd"

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = None

    def _feed(self, chunk: bytes) -> bytes:
        # decompressobj stops at the end of a frame; a body may hold several.
        data = chunk
        out = []
        while data:
            if self._obj is None or self._obj.eof:
                self._obj = self._dctx.decompressobj()
            out.append(self._obj.decompress(data))
            data = self._obj.unused_data if self._obj.eof else b""
        return b"".join(out)

    def _flush(self) -> bytes:
        if self._obj is not None and not self._obj.eof:
            raise self._truncated()
        return b""


def decoder(encoding: str) -> Decoder:
    name = canonical(encoding)
    if name in ("gzip", "deflate"):
        return _ZlibDecoder(name)
    if name == "br":
        return _BrotliDecoder()
    if name == "zstd":
        return _ZstdDecoder()
    return Decoder()


def decode(data: bytes, encoding: str) -> bytes:
    """Decode a whole body; ValueError if it is corrupt or truncated."""
    d = decoder(encoding)
    return d.feed(data) + d.flush()
