"""Instrument a gzip body without re-compressing all of it.

Once the snippet is in, the page after it is the upstream's page byte for byte, and so is its
deflate data from any block boundary on, with one catch: back-references reach up to 32 KiB back,
so the first boundary that may be reused lies 32 KiB past the last edit. So: decode the upstream's
gzip block by block (gzipblocks), compress the page from its start to such a boundary with the
snippet in it, end that with a sync flush and empty blocks that reach the bit where the upstream's
next block starts (Forwarder), then send the upstream's bytes on as they are, and a trailer whose
CRC-32 is combined from the upstream's without decoding the rest. zlib's examples/gzjoin.c and
Varnish's ESI stitching reuse deflate blocks the same way. A whole (buffered) gzip body goes
through the same stream in one piece (wholebody.send_whole).

Limits: when the body goes on after its gzip member (another member, padding, a newline an app
printed after its gzip output) and that member ends after the reuse point, the last 8 bytes are no
trailer of it, and the new trailer lands in the wrong place. The held-back bytes are checked
(TrailerMaker.implausible): a whole body that fails is rewritten by full re-compression instead; a
stream, which has sent the rest already, logs a warning. Servers send HTML as one member, and the
option `rum_gzip_splice` turns reuse off.
"""

from __future__ import annotations

import struct
import zlib

from rumproxy import codecs, crc32, encoders

WINDOW = 32 * 1024  # deflate's longest back-reference
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no mtime, OS unknown


def gzip_trailer(crc: int, size: int) -> bytes:
    """A gzip member's last 8 bytes: the CRC-32 and the length (modulo 2^32) of what it decodes to."""
    return struct.pack("<II", crc, size & 0xFFFFFFFF)


class GzipWriter:
    """A gzip encoder whose deflate data can be continued by another stream's blocks, and can be
    cut into sections that refer to nothing before them (`restart`): what lets gzipmemo reuse the
    sections around a snippet for the next response with the same upstream bytes."""

    def __init__(self) -> None:
        self._deflate = encoders.deflater(-15)
        self._header = _GZIP_HEADER  # goes out with the first output
        self._done_crc = self._done_size = 0  # the sections before the current one
        self._crc = self._size = 0  # the current section
        self.sections: list[tuple[int, int]] = []  # CRC-32 and length of each finished section
        self.record: list[bytes] | None = None  # when a list, every output goes into it too

    @classmethod
    def after(cls, crc: int, size: int) -> GzipWriter:
        """A writer that goes on where another stopped at a sync point: after the gzip header and
        deflate data for `size` page bytes whose CRC-32 is `crc`."""
        writer = cls()
        writer._header = b""
        writer._done_crc, writer._done_size = crc, size
        return writer

    @property
    def crc(self) -> int:
        return crc32.combine(self._done_crc, self._crc, self._size)

    @property
    def size(self) -> int:
        return self._done_size + self._size

    @property
    def section(self) -> tuple[int, int]:
        """CRC-32 and length of what went into the current section so far."""
        return self._crc, self._size

    def feed(self, data: bytes | memoryview) -> bytes:
        self._crc = codecs.deflate_lib.crc32(data, self._crc)
        self._size += len(data)
        return self._out(self._deflate.compress(data))

    def sync(self) -> bytes:
        """Everything so far, ending on a byte: the point where other deflate blocks may follow."""
        return self._out(self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def restart(self) -> bytes:
        """Ends the section on a byte (sync) and starts a new one whose back-references stay in it."""
        out = self.sync()
        self.sections.append((self._crc, self._size))
        self._done_crc, self._done_size = self.crc, self.size
        self._crc = self._size = 0
        self._deflate = encoders.deflater(-15)
        return out

    def end(self) -> bytes:
        """The rest of the deflate data, with the final block; the trailer() comes next."""
        return self._out(self._deflate.flush(zlib.Z_FINISH))

    def trailer(self) -> bytes:
        return gzip_trailer(self.crc, self.size)

    def flush(self) -> bytes:
        """The end of the body: the rest of the deflate data and the trailer."""
        return self.end() + self.trailer()

    def _out(self, compressed: bytes) -> bytes:
        header, self._header = self._header, b""
        out = header + compressed if header else compressed
        if self.record is not None and out:
            self.record.append(out)
        return out


class Forwarder:
    """The upstream's deflate data from a block boundary on, after our own blocks.

    Our data ends on a byte (sync flush); the upstream's next block starts `bit` bits into its
    byte. Rather than shifting every byte after it, empty blocks of the right length in bits take
    ours to that same bit, so the upstream's bytes go on as they are, stored blocks' padding and the
    end of the stream included. Only the gzip trailer (the last 8 bytes) is held back and replaced."""

    def __init__(
        self, first: bytes | memoryview, bit: int, trailer: TrailerMaker, body_length: int | None = None
    ) -> None:
        self._trailer = trailer
        self._received = len(first)  # upstream bytes from the boundary's byte on
        self.suspect: str | None = None  # set by finish() when the held bytes look like no trailer
        self._pending = b""  # what has not gone out yet: the trailer's bytes, as far as they came
        # Upstream bytes still to come before its trailer, when the body's length says where that
        # starts (`body_length`: Content-Length, checked by mitmproxy): chunks then go on as they
        # are. Otherwise every chunk is copied to hold its last 8 bytes back.
        self._before_trailer: int | None = None
        if body_length is not None and body_length - 8 - trailer.original_compressed >= len(first):
            self._before_trailer = body_length - 8 - trailer.original_compressed
        lead = b""
        if bit:
            lead = _lead(bit, first[0])
            first = memoryview(first)[1:]
            if self._before_trailer is not None:
                self._before_trailer -= 1
        if self._before_trailer is None:
            self._pending = lead
            self._first: bytes | None = self._push(first)  # goes out with the first feed()
        else:
            self._first = lead + bytes(self._push(first))

    def feed(self, chunk: bytes) -> bytes:
        self._received += len(chunk)
        out = self._push(chunk)
        if self._first is not None:
            first, self._first = self._first, None
            out = first + out if out else first
        return out

    def _push(self, chunk: bytes | memoryview) -> bytes | memoryview:
        before_trailer = self._before_trailer
        if before_trailer is not None:
            if len(chunk) <= before_trailer:
                self._before_trailer = before_trailer - len(chunk)
                return chunk
            self._before_trailer = 0
            self._pending += bytes(chunk[before_trailer:])
            return bytes(chunk[:before_trailer])
        if len(chunk) < 8:
            data = self._pending + bytes(chunk)
            self._pending = data[-8:]
            return data[:-8]
        # One copy of the chunk, not two.
        out = b"".join((self._pending, memoryview(chunk)[:-8]))
        self._pending = bytes(chunk[-8:])
        return out

    @property
    def held(self) -> bytes:
        return self._pending

    def finish(self) -> bytes:
        """The new trailer in place of the held-back one; ValueError if the body was too short.
        Sets `suspect` when the held bytes do not read like the member's trailer."""
        if len(self._pending) < 8:
            raise ValueError("gzip data ends without its trailer")
        # More than 8 only when the body went on past its Content-Length, which mitmproxy does not let
        # happen: the last 8 are the trailer all the same.
        trailer, self.suspect = self._trailer.replacing(self._pending[-8:], self._received)
        return self._pending[:-8] + trailer


def forward_whole(rest: bytes | memoryview, bit: int, trailer: TrailerMaker) -> tuple[bytes, memoryview, bytes] | None:
    """What a Forwarder sends of `rest` (the upstream's body from the byte that holds the boundary
    on) when it is here whole, as pieces to join, the upstream's blocks not copied; None where the
    Forwarder would have to say more (`rest` too short to hold a trailer, or its last 8 bytes
    implausible as one: Forwarder.suspect)."""
    skip = 1 if bit else 0
    if len(rest) < skip + 8:
        return None
    new_trailer, suspect = trailer.replacing(rest[-8:], len(rest))
    if suspect is not None:
        return None
    lead = _lead(bit, rest[0]) if bit else b""
    return lead, memoryview(rest)[skip:-8], new_trailer


def _lead(bit: int, first: int) -> bytes:
    """Empty blocks that take our data, which ends on a byte, to `bit` bits into `first`, the
    upstream's byte in which its next block starts: that byte's low bits end its previous block."""
    value, length = _ALIGNING_BLOCKS[bit]
    ours = value.to_bytes((length + 7) // 8, "little")
    keep = (1 << bit) - 1
    return ours[:-1] + bytes([(ours[-1] & keep) | (first & ~keep & 0xFF)])


def _aligning_blocks() -> dict[int, tuple[int, int]]:
    """For each bit offset 1-7: empty deflate blocks, LSB first, whose length in bits is that
    offset modulo 8. An empty fixed-Huffman block is 10 bits; for odd offsets one empty dynamic
    block of 99 bits comes first (complete codes only: literal 0 and end-of-block of one bit each,
    two distance codes of one bit)."""
    value, length = 0, 0

    def put(bits: int, count: int) -> None:  # a number, least significant bit first
        nonlocal value, length
        value |= bits << length
        length += count

    def code(bits: int, count: int) -> None:  # a Huffman code, most significant bit first
        put(int(format(bits, f"0{count}b")[::-1], 2), count)

    def fixed() -> None:
        put(0, 1)  # not the last block
        put(1, 2)  # fixed Huffman codes
        code(0, 7)  # end of block

    def dynamic() -> None:
        put(0, 1)
        put(2, 2)  # dynamic Huffman codes
        put(0, 5)  # 257 literal/length codes
        put(1, 5)  # 2 distance codes
        put(14, 4)  # 18 code length codes, in the order below
        lengths = {1: 1, 17: 2, 18: 2}  # canonical codes: 1 -> 0, 17 -> 10, 18 -> 11
        for symbol in (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1):
            put(lengths.get(symbol, 0), 3)
        code(0, 1)  # literal 0: length 1
        code(3, 2), put(138 - 11, 7)  # 138 zeros
        code(3, 2), put(114 - 11, 7)  # 114 zeros
        code(2, 2), put(3 - 3, 3)  # 3 zeros: literals 1-255 unused
        code(0, 1)  # end of block: length 1
        code(0, 1), code(0, 1)  # distance codes 0 and 1: length 1
        code(1, 1)  # end of block (literal 0 is 0, end of block is 1)

    blocks = {}
    for bit in range(1, 8):
        value, length = 0, 0
        if bit % 2:
            dynamic()
        while length % 8 != bit:
            fixed()
        blocks[bit] = (value, length)
    return blocks


# How far a page's compression ratio may stray from that of its first blocks before a trailer is
# doubted: generous, since a head of inline images and a body of repetitive tables differ a lot.
_RATIO_SLACK = 8


class TrailerMaker:
    """The new trailer from the upstream's: `original_*` are the CRC and length of the decoded bytes
    the upstream's blocks before the boundary held (and how many bytes those blocks took), `new_*`
    those of what was sent instead."""

    def __init__(
        self, *, original_crc: int, original_size: int, new_crc: int, new_size: int, original_compressed: int = 0
    ) -> None:
        self._original_crc, self._original_size = original_crc, original_size
        self._new_crc, self._new_size = new_crc, new_size
        self.original_compressed = original_compressed  # upstream bytes before the boundary

    def implausible(self, size: int, compressed_after: int) -> str | None:
        """Why an upstream trailer's ISIZE of `size` cannot be right, or None. Bytes after the gzip
        member (a newline an app printed after its gzip output, padding, another member) read as
        a trailer give a size below what was already decoded, or far above what the compression
        ratio so far predicts for `compressed_after` more bytes."""
        if size < self._original_size:
            return f"the trailer's size {size} is below the {self._original_size} bytes decoded before the reuse point"
        if self.original_compressed <= 0:
            return None
        estimate = self._original_size * (self.original_compressed + compressed_after) / self.original_compressed
        if estimate * _RATIO_SLACK < 1 << 32 and size > estimate * _RATIO_SLACK:
            return f"the trailer's size {size} is over {_RATIO_SLACK}x the {estimate:.0f} bytes the compression ratio predicts"
        return None

    def replacing(self, held: bytes | memoryview, compressed_after: int) -> tuple[bytes, str | None]:
        """The trailer in place of the upstream's `held` one, and why that may be no trailer
        (implausible), after `compressed_after` upstream bytes from the reuse point on."""
        crc, size = struct.unpack("<II", held)
        return self(crc, size), self.implausible(size, compressed_after)

    def __call__(self, crc: int, size: int) -> bytes:
        rest = (size - self._original_size) & 0xFFFFFFFF
        combined = crc ^ crc32.shift(self._original_crc ^ self._new_crc, rest)
        return gzip_trailer(combined, size - self._original_size + self._new_size)


_ALIGNING_BLOCKS = _aligning_blocks()
