"""Remembered gzip rewrites (see rumproxy.memo): what lets a page that comes again as the same
bytes go out without being decoded, scanned or compressed.

gzipsplice.GzipWriter compresses the page before the snippet, the snippet, and the page after it
as sections that refer to nothing before them, so the first and the last can go out again as they
are around another snippet, with a trailer whose CRC-32 is combined from the three. A spliced page
(one that reuses the upstream's deflate blocks) is remembered up to its reuse point: a body that
starts with the same bytes gets the remembered sections, then the upstream's blocks from there.
A rewrite made by a stream also knows which of its bytes each part needed (`decided_at`, `marks`),
so a streamed body gets each part as soon as those bytes have come again (gzipreplay).
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import zlib
from typing import NamedTuple

from rumproxy import codecs, crc32, encoders
from rumproxy.gzipsplice import Forwarder, GzipWriter, TrailerMaker, forward_whole, gzip_trailer


@dataclasses.dataclass(frozen=True)
class Splice:
    """Where a spliced rewrite hands over to the upstream's own deflate blocks (gzipsplice)."""

    rest_at: int  # upstream bytes before the one that holds the next block's first bit
    bit: int  # bits of that byte that belong to the blocks before
    original_crc: int  # CRC-32 and length of the page up to the reuse point
    original_size: int


@dataclasses.dataclass(frozen=True)
class Mark:
    """A point where a stream's rewrite ended on a byte (a sync point): once a body has matched
    `source` up to `source_end`, `tail` up to `tail_end` may go out (gzipreplay)."""

    source_end: int
    tail_end: int
    decoded: int  # page bytes after the snippet that tail[:tail_end] holds, and their CRC-32
    crc: int


@dataclasses.dataclass(frozen=True)
class GzipRewrite:
    """A gzip page's rewrite without its snippet."""

    source: bytes  # the upstream bytes it was made from: the whole body, or up to the reuse point
    head: bytes  # the gzip header and the page before the snippet, a section of its own
    head_crc: int
    head_size: int  # decoded bytes: the snippet's offset
    tail: bytes  # the page after the snippet, to the reuse point (ending on a byte) or to its end
    tail_crc: int
    tail_size: int
    placement: str
    codec: str = "ascii"  # the page's charset, which the snippet is written in
    splice: Splice | None = None  # None: `source` is the whole body, `tail` ends in the final block
    # Made by a stream (None: from a whole body): the bytes of `source` its scan had when it decided,
    # after which the head and the snippet may go out, and the points of `tail` after that.
    decided_at: int | None = None
    marks: tuple[Mark, ...] = ()

    @property
    def offset(self) -> int:
        return self.head_size

    @property
    def cost(self) -> int:
        return len(self.source) + len(self.head) + len(self.tail)


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class Rendered(NamedTuple):
    start: bytes  # the body up to where the upstream's blocks go on, or to the trailer
    opening: int  # bytes of `start` before the tail: the gzip header, the head and the snippet
    opening_crc: int  # CRC-32 and length of the page those hold
    opening_size: int
    crc: int  # CRC-32 and length of the page `start` holds
    size: int


def render(rewrite: GzipRewrite, snippet: bytes, fixed: int = 0) -> Rendered:
    """The remembered page around `snippet`, whose first `fixed` bytes every page of its rule has."""
    section = snippet_section(snippet, fixed)
    opening_crc, crc = _page_crcs(rewrite, snippet)
    opening_size = rewrite.head_size + len(snippet)
    return Rendered(
        start=b"".join((rewrite.head, section, rewrite.tail)),
        opening=len(rewrite.head) + len(section),
        opening_crc=opening_crc,
        opening_size=opening_size,
        crc=crc,
        size=opening_size + rewrite.tail_size,
    )


def whole_body(rewrite: GzipRewrite, snippet: bytes, fixed: int = 0) -> bytes:
    """render() and the trailer, for a rewrite of a whole body: in one join, the body of most small
    gzip pages."""
    assert rewrite.splice is None
    _, crc = _page_crcs(rewrite, snippet)
    trailer = gzip_trailer(crc, rewrite.head_size + len(snippet) + rewrite.tail_size)
    return b"".join((rewrite.head, snippet_section(snippet, fixed), rewrite.tail, trailer))


def spliced_whole_body(rewrite: GzipRewrite, snippet: bytes, raw: bytes, fixed: int = 0) -> bytes | None:
    """A whole body that starts with the source of spliced `rewrite`, around `snippet`: the
    remembered sections, then the upstream's blocks as they are and a new trailer, in one join (a
    stream's replay copies the upstream's bytes on the way several times). None where the stream
    has to decide (forward_whole)."""
    splice = rewrite.splice
    assert splice is not None
    _, crc = _page_crcs(rewrite, snippet)
    trailer = _trailer_maker(splice, crc, rewrite.head_size + len(snippet) + rewrite.tail_size)
    forwarded = forward_whole(memoryview(raw)[splice.rest_at :], splice.bit, trailer)
    if forwarded is None:
        return None
    return b"".join((rewrite.head, snippet_section(snippet, fixed), rewrite.tail, *forwarded))


def _page_crcs(rewrite: GzipRewrite, snippet: bytes) -> tuple[int, int]:
    """CRC-32 of the page up to the snippet's end, and of all of it, with `snippet` in it."""
    opening_crc = codecs.deflate_lib.crc32(snippet, rewrite.head_crc)
    return opening_crc, crc32.combine(opening_crc, rewrite.tail_crc, rewrite.tail_size)


def snippet_section(snippet: bytes, fixed: int = 0) -> bytes:
    """Deflate blocks of `snippet` that refer to nothing before them and end on a byte. Its first
    `fixed` bytes are compressed once for all pages that start with them; the rest, the page's own
    ids (some 100 bytes), goes in stored blocks: compressing a snippet took 8 µs (~55,000
    instructions, most of them setting up Huffman tables), 10 % of what a small page cost."""
    if fixed <= 0:
        return _compressed(snippet)
    if fixed >= len(snippet):
        return _compressed_once(snippet)
    return _compressed_once(snippet[:fixed]) + stored_blocks(snippet[fixed:])


def _compressed(data: bytes) -> bytes:
    deflate = encoders.deflater(-15)
    return deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)


@functools.lru_cache(maxsize=64)
def _compressed_once(data: bytes) -> bytes:
    return _compressed(data)


STORED_MAX = 0xFFFF


def stored_blocks(data: bytes) -> bytes:
    """`data` as non-final stored deflate blocks, written from a byte boundary."""
    if len(data) <= STORED_MAX:
        return _stored_header(len(data)) + data
    view = memoryview(data)
    return b"".join(
        _stored_header(len(chunk)) + chunk for chunk in (view[at : at + STORED_MAX] for at in range(0, len(data), STORED_MAX))
    )


def _stored_header(length: int) -> bytes:
    # BFINAL 0 and BTYPE 00 in the first three bits, padding to the byte, LEN and NLEN.
    return struct.pack("<BHH", 0, length, length ^ 0xFFFF)


def forwarder(
    rewrite: GzipRewrite, rendered: Rendered, first: bytes | memoryview, body_length: int | None = None
) -> Forwarder:
    """What sends the upstream's blocks on after `rendered.start`; `first` is its body from
    `splice.rest_at` on, `body_length` the whole body's when known."""
    splice = rewrite.splice
    assert splice is not None
    return Forwarder(first, splice.bit, _trailer_maker(splice, rendered.crc, rendered.size), body_length)


def _trailer_maker(splice: Splice, crc: int, size: int) -> TrailerMaker:
    """The new trailer's maker for a page of `size` bytes with CRC-32 `crc` up to the reuse point."""
    return TrailerMaker(
        original_crc=splice.original_crc,
        original_size=splice.original_size,
        new_crc=crc,
        new_size=size,
        original_compressed=splice.rest_at,
    )


def rewrite_whole(
    source: bytes, page: bytes, offset: int, snippet: bytes, placement: str, codec: str = "ascii"
) -> tuple[bytes, GzipRewrite]:
    """`page` (decoded from `source`) with `snippet` at `offset`, gzip-encoded in sections, and
    the rewrite to remember."""
    view = memoryview(page)
    writer = GzipWriter()
    head = writer.feed(view[:offset]) + writer.restart()
    section = writer.feed(snippet) + writer.restart()
    tail = writer.feed(view[offset:]) + writer.end()
    (head_crc, head_size), _ = writer.sections
    tail_crc, tail_size = writer.section
    body = b"".join((head, section, tail, writer.trailer()))
    rewrite = GzipRewrite(
        source=source,
        head=head,
        head_crc=head_crc,
        head_size=head_size,
        tail=tail,
        tail_crc=tail_crc,
        tail_size=tail_size,
        placement=placement,
        codec=codec,
    )
    return body, rewrite
