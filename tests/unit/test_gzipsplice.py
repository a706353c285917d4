"""gzip bodies that reuse the upstream's deflate blocks after the snippet: the client must decode
exactly the page with the snippet (CRC and length checked), for any chunking and any encoder."""

from __future__ import annotations

import gzip
import logging
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.net import encoding as mitm_encoding

from rumproxy import gzipblocks, gzipsplice, htmlscan
from rumproxy.gzipreplay import ReplayingStream
from rumproxy.stream import InjectingStream
from tests.unit.wire import chunks_of, on_the_wire

pytestmark = pytest.mark.skipif(not gzipblocks.available(), reason="zlib cannot be loaded through ctypes")

SNIPPET = b'<script src="/__rum/agent.js"></script><script>rum()</script>'
WORDS = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore".split()


def page(size: int, seed: int, head: bytes = b"<!doctype html><html><head><meta charset=utf-8><title>t</title>") -> bytes:
    rng = random.Random(seed)
    body = bytearray(head + b"</head><body>")
    while len(body) < size:
        body += b"<p class=c%d>" % rng.randrange(50) + b" ".join(rng.choices(WORDS, k=rng.randrange(3, 40))) + b"</p>\n"
    return bytes(body) + b"</body></html>"


def gzip_stream(document: bytes, level: int, flush_every: int | None) -> bytes:
    """As servers send it: one member, optionally with sync flushes while the page is produced."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    step = flush_every or len(document)
    parts = []
    for start in range(0, len(document), step):
        parts.append(compressor.compress(document[start : start + step]))
        if flush_every:
            parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    parts.append(compressor.flush())
    return b"".join(parts)


def stream_through(
    raw: bytes, chunks: list[bytes], snippet: bytes = SNIPPET, **kwargs
) -> tuple[bytes, InjectingStream, list[bytes]]:
    """With a `memo`, the stream the addon makes for a gzip page: one that may replay from it."""
    kind = ReplayingStream if "memo" in kwargs else InjectingStream
    stream = kind(encoding="gzip", snippet=snippet, scanner=htmlscan.InsertionScanner(64 * 1024), splice=True, **kwargs)
    out = []
    for chunk in [*chunks, b""]:
        out.extend(on_the_wire(stream(chunk), end=not chunk))
    return b"".join(out), stream, out


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([20_000, 90_000, 300_000]),
    seed=st.integers(0, 5),
    level=st.sampled_from([0, 1, 6, 9]),
    flush_every=st.sampled_from([None, 4096, 65536]),
    cuts=st.lists(st.integers(0, 10**7), max_size=10),
)
def test_spliced_body_decodes_to_the_page_with_the_snippet(size, seed, level, flush_every, cuts):
    document = page(size, seed)
    raw = gzip_stream(document, level, flush_every)
    output, stream, _ = stream_through(raw, chunks_of(raw, cuts))
    offset = document.index(b"<title>")
    expected = document[:offset] + SNIPPET + document[offset:]
    assert gzip.decompress(output) == expected  # checks the trailer's CRC-32 and length too
    assert mitm_encoding.decode(output, "gzip") == expected
    if size >= 300_000:
        assert stream.reused_from is not None and stream.reused_from >= offset + gzipsplice.WINDOW
    assert stream.trailer_suspect is None


def test_a_large_page_reuses_most_of_the_upstream_bytes():
    document = page(2_000_000, 1)
    raw = gzip.compress(document, 6)
    output, stream, _ = stream_through(raw, chunks_of(raw, list(range(0, len(raw), 65536))))
    assert stream.reused_from is not None and stream.reused_from < 300_000
    assert gzip.decompress(output) == document.replace(b"<title>", SNIPPET + b"<title>", 1)
    assert abs(len(output) - len(raw)) < 20_000  # re-compressed at level 1 only up to the reuse point


def test_a_meta_policy_edit_is_inside_the_re_encoded_part():
    head = b'<html><head><meta http-equiv="Content-Security-Policy" content="connect-src \'self\'">'
    document = page(400_000, 2, head=head)
    raw = gzip.compress(document, 6)
    edit = lambda policy: policy + " https://apm.test"  # noqa: E731
    output, stream, _ = stream_through(raw, chunks_of(raw, [1000, 50_000]), edit_policy=edit)
    assert stream.reused_from is not None
    expected = b"<html><head>" + SNIPPET + document[len(b"<html><head>") :].replace(b"'self'\"", b"'self' https://apm.test\"", 1)
    assert gzip.decompress(output) == expected


def test_a_second_member_after_the_snippet_goes_on_as_received():
    first, second = page(50_000, 3), b"<p>second member</p>" * 100
    raw = gzip.compress(first, 6) + gzip.compress(second, 6)
    output, stream, _ = stream_through(raw, chunks_of(raw, [500, 40_000]))
    assert stream.reused_from is None
    assert gzip.decompress(output) == first.replace(b"<title>", SNIPPET + b"<title>", 1) + second


def test_a_body_cut_off_after_the_reuse_point_stays_broken_for_the_client():
    document = page(400_000, 4)
    raw = gzip.compress(document, 6)[:-20_000]
    output, stream, _ = stream_through(raw, chunks_of(raw, [30_000]))
    assert stream.reused_from is not None
    with pytest.raises((EOFError, zlib.error, gzip.BadGzipFile)):
        gzip.decompress(output)
    # Up to where the upstream's bytes stop making sense (its last 8 were taken for the trailer):
    decoded = zlib.decompressobj(31).decompress(output)[:-4096]
    assert len(decoded) > 250_000
    assert decoded == document.replace(b"<title>", SNIPPET + b"<title>", 1)[: len(decoded)]


def test_writer_sections_refer_to_nothing_before_them():
    """Each section decodes on its own once the ones before it are gone: no back-reference crosses."""
    document = page(50_000, 1)
    writer = gzipsplice.GzipWriter()
    first = writer.feed(document[:20_000]) + writer.restart()
    second = writer.feed(document[20_000:]) + writer.end() + writer.trailer()
    assert gzip.decompress(first + second) == document  # CRC-32 combined over both sections
    assert writer.sections == [(zlib.crc32(document[:20_000]), 20_000)]
    alone = zlib.decompressobj(-15).decompress(second[:-8])
    assert alone == document[20_000:]


@pytest.mark.parametrize("after", ["newline", "crlf", "zeros", "member"])
def test_bytes_after_the_member_make_the_trailer_suspect(after, caplog):
    """An app that prints a newline after its gzip output, zero padding, a second member: the last 8
    bytes are no trailer of the first member. A stream has sent the rest already and can only say
    so; a whole body is rewritten the other way (tests/unit/test_addon.py)."""
    raw = gzip.compress(page(400_000, 5), 6)
    raw += {"newline": b"\n", "crlf": b"\r\n", "zeros": b"\0" * 8, "member": gzip.compress(b"<p>tail</p>")}[after]
    with caplog.at_level(logging.WARNING, logger="rumproxy"):
        _, stream, _ = stream_through(raw, chunks_of(raw, [30_000, 200_000]))
    assert stream.reused_from is not None
    assert stream.trailer_suspect is not None
    assert "may not end in its member's trailer" in caplog.text


def stream_results(raw: bytes, chunks: list[bytes], **kwargs) -> tuple[list[object], InjectingStream]:
    """What each call returned, as returned (generators drained), to see which chunks went on as they came."""
    stream = InjectingStream(encoding="gzip", snippet=SNIPPET, scanner=htmlscan.InsertionScanner(64 * 1024), splice=True, **kwargs)
    results: list[object] = []
    for chunk in [*chunks, b""]:
        result = stream(chunk)
        results.append(result if isinstance(result, (bytes, bytearray)) else list(result))
    return results, stream


def joined(results: list[object]) -> bytes:
    return b"".join(bytes(p) for r in results for p in (r if isinstance(r, list) else [r]))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 5),
    bit_seed=st.integers(0, 3),
    cuts=st.lists(st.integers(0, 10**7), max_size=12),
    tail_cut=st.integers(0, 20),
)
def test_a_known_body_length_forwards_chunks_as_they_are_with_the_same_bytes(seed, bit_seed, cuts, tail_cut):
    """With the body's length (Content-Length), the upstream's chunks after the reuse point go out as
    the very objects received, not copies that hold their last 8 bytes back; the output is the same."""
    document = page(1_500_000 + 997 * bit_seed, seed)
    raw = gzip.compress(document, 6)
    chunks = chunks_of(raw, [*cuts, 100_000, 200_000, len(raw) - tail_cut])  # the trailer split across chunks too
    known, known_stream = stream_results(raw, chunks, body_length=len(raw))
    unknown, _ = stream_results(raw, chunks)
    assert joined(known) == joined(unknown)
    assert gzip.decompress(joined(known)) == document.replace(b"<title>", SNIPPET + b"<title>", 1)
    assert known_stream.reused_from is not None
    # The reuse point is some 8 KB into this body: from 60 KB on, a chunk that ends before the
    # trailer's 8 bytes goes out as the object it came as.
    end = 0
    for chunk, result in zip(chunks, known):
        start, end = end, end + len(chunk)
        if start >= 60_000 and end <= len(raw) - 8:
            assert result is chunk, f"bytes {start}-{end} were copied"


def test_a_body_longer_or_shorter_than_its_length_says_is_not_cut(caplog):
    """mitmproxy holds a body to its Content-Length; if one did not, nothing is dropped: longer, the
    last 8 bytes are still taken for the trailer; shorter, the last bytes go out as received."""
    document = page(300_000, 7)
    raw = gzip.compress(document, 6)
    chunks = chunks_of(raw, [40_000, 200_000])
    expected = document.replace(b"<title>", SNIPPET + b"<title>", 1)
    longer, _ = stream_results(raw, chunks, body_length=len(raw) - 100)
    assert gzip.decompress(joined(longer)) == expected
    with caplog.at_level(logging.WARNING, logger="rumproxy"):
        shorter, _ = stream_results(raw, chunks, body_length=len(raw) + 100)
    assert "gzip data ends without its trailer" in caplog.text
    assert len(joined(shorter)) == len(joined(longer))
    assert joined(shorter)[-8:] == raw[-8:]  # the upstream's trailer, as received: no longer the page's
    assert zlib.decompressobj(-15).decompress(joined(shorter)[10:]) == expected
