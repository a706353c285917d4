"""Reading a gzip body deflate block by deflate block: zlib's inflate() with Z_BLOCK, through ctypes
(Python's zlib module does not stop at blocks). gzipsplice needs to know where the upstream's blocks
start, in bits, to send them on as they are."""

from __future__ import annotations

import ctypes
import ctypes.util

from rumproxy import codecs

_OUT_SIZE = 64 * 1024  # inflate's output buffer: allocated once per body, zero-filled by ctypes
_Z_OK, _Z_STREAM_END, _Z_BUF_ERROR, _Z_BLOCK = 0, 1, -5, 5
_END_OF_BLOCK = 128  # data_type: inflate stopped right after a block (or after the gzip header)
_LAST_BLOCK = 64  # data_type: the block being decoded is the last one


class _ZStream(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_uint),
        ("total_in", ctypes.c_ulong),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_uint),
        ("total_out", ctypes.c_ulong),
        ("msg", ctypes.c_char_p),
        ("state", ctypes.c_void_p),
        ("zalloc", ctypes.c_void_p),
        ("zfree", ctypes.c_void_p),
        ("opaque", ctypes.c_void_p),
        ("data_type", ctypes.c_int),
        ("adler", ctypes.c_ulong),
        ("reserved", ctypes.c_ulong),
    ]


def _load_zlib() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("z")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.zlibVersion.restype = ctypes.c_char_p
        lib.inflateInit2_.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.inflate.argtypes = [ctypes.POINTER(_ZStream), ctypes.c_int]
        lib.inflateEnd.argtypes = [ctypes.POINTER(_ZStream)]
        return lib
    except (OSError, AttributeError):
        return None


_ZLIB = _load_zlib()


def available() -> bool:
    return _ZLIB is not None


class BlockInflater:
    """Decodes one gzip member, and can stop at the first deflate block boundary past an offset."""

    def __init__(self) -> None:
        if _ZLIB is None:
            raise RuntimeError("zlib cannot be loaded through ctypes")
        self._stream = _ZStream()
        self._pointer = ctypes.pointer(self._stream)
        version = _ZLIB.zlibVersion()
        if _ZLIB.inflateInit2_(self._pointer, 31, version, ctypes.sizeof(_ZStream)) != _Z_OK:
            raise RuntimeError("inflateInit2 failed")
        self._open = True
        self._input = b""  # what inflate reads from; the stream points into it
        self._used = 0  # bytes of _input inflate has taken
        self._out = ctypes.create_string_buffer(_OUT_SIZE)
        self.decoded = 0  # bytes decoded so far
        self.crc = 0  # CRC-32 of them
        self.ended = False  # the member's end was decoded
        self.after_end = b""  # what followed it: padding, another member
        # Set by pull() at the boundary it stopped at: the upstream's bytes from the one holding
        # the next block's first bit, and how many bits of that byte belong to what came before.
        self.rest: bytes | None = None
        self.bit = 0
        self.rest_at = 0  # where `rest` starts in the upstream's body

    def push(self, data: bytes) -> None:
        if self.ended:
            self.after_end += data
            return
        self._input = self._input[self._used :] + data if self._used < len(self._input) else data
        self._used = 0

    def pull(self, limit: int, splice_after: int | None = None) -> bytes:
        """Up to `limit` decoded bytes of what was pushed. With `splice_after`, stops at the first
        block boundary where at least that many bytes are decoded, and sets `rest` and `bit`."""
        stream, out = self._stream, self._out
        source = ctypes.c_char_p(self._input)  # keeps _input's buffer addressable
        base = ctypes.cast(source, ctypes.c_void_p).value or 0
        pieces: list[bytes] = []
        produced = 0
        while produced < limit and not self.ended and self.rest is None:
            available = len(self._input) - self._used
            stream.next_in = base + self._used
            stream.avail_in = available
            room = min(limit - produced, _OUT_SIZE)
            stream.next_out = ctypes.addressof(out)
            stream.avail_out = room
            status = _ZLIB.inflate(self._pointer, _Z_BLOCK)
            taken = available - stream.avail_in
            made = room - stream.avail_out
            self._used += taken
            if made:
                piece = ctypes.string_at(out, made)
                pieces.append(piece)
                produced += made
                self.decoded += made
                self.crc = codecs.deflate_lib.crc32(piece, self.crc)
            if status == _Z_STREAM_END:
                self.ended = True
                self.after_end = self._input[self._used :]
                break
            if status not in (_Z_OK, _Z_BUF_ERROR):
                message = stream.msg.decode("ascii", "replace") if stream.msg else f"inflate status {status}"
                raise ValueError(f"corrupt gzip data: {message}")
            flags = stream.data_type
            at_boundary = flags & _END_OF_BLOCK and not flags & _LAST_BLOCK and stream.total_out > 0
            if at_boundary and splice_after is not None and self.decoded >= splice_after:
                unused_bits = flags & 7
                start = self._used - 1 if unused_bits else self._used
                self.rest = self._input[start:]
                self.bit = 8 - unused_bits if unused_bits else 0
                self.rest_at = stream.total_in - (self._used - start)
                break
            if not taken and not made:
                break  # needs more input
        return b"".join(pieces)

    def close(self) -> None:
        if self._open:
            _ZLIB.inflateEnd(self._pointer)  # type: ignore[union-attr]
            self._open = False
        self._input = b""

    def __del__(self) -> None:
        self.close()


class SplicingDecoder(codecs.Decoder):
    """The gzip decoder of a stream that may splice: at most `window` decoded bytes a call while
    the page is scanned, so that little past the insertion point is decoded before it is known."""

    encoding = "gzip"

    def __init__(self, window: int) -> None:
        self.inflater = BlockInflater()
        self._window = window
        self._pushed = False

    def _feed(self, chunk: bytes) -> bytes:
        self._pushed = self._pushed or bool(chunk)
        self.inflater.push(chunk)
        decoded = self.inflater.pull(self._window)
        self._check_single_member()
        return decoded

    def _flush(self) -> bytes:
        pieces = []
        while piece := self.inflater.pull(256 * 1024):
            pieces.append(piece)
        if self._pushed and not self.inflater.ended:
            raise self._truncated()
        self._check_single_member()
        return b"".join(pieces)

    def _check_single_member(self) -> None:
        if self.inflater.ended and self.inflater.after_end.strip(b"\0"):
            # The page goes on in another member: the plain decoder's business, not a splicer's.
            raise ValueError("the gzip member ends before the body does")
