"""A remembered gzip rewrite sent while the body arrives (gzipreplay): never later than the first
body's own stream sent the same part, whatever the chunking, and a body that turns out different
after part of the rewrite went out still decodes to exactly its page with its snippet."""

from __future__ import annotations

import gzip
import logging
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumproxy import gzipblocks, gzipmemo, gzipreplay, htmlscan
from rumproxy.memo import RewriteMemo
from rumproxy.gzipreplay import ReplayingStream
from tests.unit.test_gzipmemo import FIRST, MIB, SECOND, injected, run
from tests.unit.test_gzipsplice import gzip_stream, page, stream_through
from tests.unit.wire import chunks_of
from tests.unit.wire import on_the_wire

pytestmark = pytest.mark.skipif(not gzipblocks.available(), reason="zlib cannot be loaded through ctypes")


def page_sent_after_each_call(raw: bytes, chunks: list[bytes], snippet: bytes, memo: RewriteMemo) -> tuple[list[int], ReplayingStream]:
    """How many bytes of the page (the snippet not counted) the client can decode after each call."""
    stream = ReplayingStream(encoding="gzip", snippet=snippet, scanner=htmlscan.InsertionScanner(64 * 1024),
                             splice=True, memo=memo, memo_key="page")
    inflate, decoded, progress = zlib.decompressobj(31), 0, []
    for chunk in [*chunks, b""]:
        for piece in on_the_wire(stream(chunk), end=not chunk):
            decoded += len(inflate.decompress(piece))
        progress.append(decoded - len(snippet) if stream.outcome is not None and stream.outcome.injected else decoded)
    return progress, stream


@settings(max_examples=30, deadline=None)
@given(
    size=st.sampled_from([10_000, 90_000, 300_000]),
    seed=st.integers(0, 5),
    level=st.sampled_from([1, 6]),
    flush_every=st.sampled_from([None, 4096]),
    cuts=st.lists(st.integers(0, 10**7), max_size=12),
)
def test_the_remembered_rewrite_goes_out_no_later_than_the_first_time(size, seed, level, flush_every, cuts):
    document = page(size, seed)
    raw = gzip_stream(document, level, flush_every)
    chunks = chunks_of(raw, cuts)
    memo = RewriteMemo(16 * MIB)
    first, first_stream = page_sent_after_each_call(raw, chunks, FIRST, memo)
    assert memo.count == 1  # whole members and spliced pages alike
    again, again_stream = page_sent_after_each_call(raw, chunks, SECOND, memo)
    assert again_stream.outcome.remembered and not first_stream.outcome.remembered
    assert all(a >= f for a, f in zip(again, first)), (first, again)
    assert again[-1] == first[-1] == len(document)


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([10_000, 90_000, 300_000]),
    seed=st.integers(0, 5),
    flush_every=st.sampled_from([None, 2048]),
    where=st.floats(0, 1),
    cuts=st.lists(st.integers(0, 10**7), max_size=12),
)
def test_a_body_that_differs_anywhere_decodes_to_itself(size, seed, flush_every, where, cuts):
    document = page(size, seed)
    raw = gzip_stream(document, 6, flush_every)
    memo = RewriteMemo(16 * MIB)
    run(raw, chunks_of(raw, cuts), FIRST, memo)
    position = int(where * len(document))
    changed = document[:position] + b"<b>changed</b>" + document[position:]
    changed_raw = gzip_stream(changed, 6, flush_every)
    output, stream = run(changed_raw, chunks_of(changed_raw, cuts), SECOND, memo)
    alone, alone_stream = run(changed_raw, chunks_of(changed_raw, cuts), SECOND, RewriteMemo(0))
    assert (stream.outcome.injected, stream.outcome.offset) == (alone_stream.outcome.injected, alone_stream.outcome.offset)
    assert gzip.decompress(output) == gzip.decompress(alone)  # the trailer's CRC-32 and length too
    assert SECOND in gzip.decompress(output)


@pytest.mark.parametrize("size", [60_000, 300_000])
def test_a_body_that_differs_after_the_head_went_out_goes_on_from_there(size):
    document = page(size, 7)
    raw = gzip_stream(document, 6, 2048)  # a server that flushes as it renders
    memo = RewriteMemo(16 * MIB)
    run(raw, chunks_of(raw, range(0, len(raw), 1500)), FIRST, memo)
    offset = document.index(b"<title>")
    changed = document[: offset + 20_000] + b"<b>changed</b>" + document[offset + 20_000 :]
    changed_raw = gzip_stream(changed, 6, 2048)
    differs_at = next(i for i, (a, b) in enumerate(zip(raw, changed_raw)) if a != b)
    chunks = chunks_of(changed_raw, range(0, len(changed_raw), 1500))
    before = [c for c in chunks if sum(map(len, chunks[: chunks.index(c) + 1])) <= differs_at]
    assert before, "the change must come after the first chunks"
    _, _, sent_before = stream_through(changed_raw, before, SECOND, memo=memo, memo_key="page")
    assert SECOND in zlib.decompressobj(31).decompress(b"".join(sent_before))  # the head went out already

    run(raw, chunks_of(raw, range(0, len(raw), 1500)), FIRST, memo)  # remembered again
    output, stream = run(changed_raw, chunks, SECOND, memo)
    assert gzip.decompress(output) == injected(changed, SECOND)
    assert stream.outcome.injected and not stream.outcome.remembered
    assert memo.count == 0  # the stale rewrite is forgotten


@pytest.mark.parametrize("where", ["soon after the head", "just before the reuse point"])
def test_a_body_cut_short_after_the_head_went_out_ends_cleanly(where):
    document = page(60_000, 8)
    raw = gzip_stream(document, 6, 2048)
    memo = RewriteMemo(16 * MIB)
    run(raw, chunks_of(raw, range(0, len(raw), 1500)), FIRST, memo)
    rewrite = memo.get("page")
    assert rewrite.splice is not None and rewrite.decided_at + 3000 < len(rewrite.source)
    cut = rewrite.decided_at + 1000 if where == "soon after the head" else len(rewrite.source) - 200
    short = raw[:cut]
    output, _ = run(short, chunks_of(short, range(0, len(short), 1500)), SECOND, memo)
    alone, _ = run(short, chunks_of(short, range(0, len(short), 1500)), SECOND, RewriteMemo(0))
    inflate = zlib.decompressobj(31)
    decoded = inflate.decompress(output)
    assert inflate.eof  # our member ends: the client sees a complete page prefix
    assert decoded == zlib.decompressobj(31).decompress(alone)


def test_a_whole_member_remembered_by_a_stream_serves_a_whole_body():
    document = page(10_000, 9)
    raw = gzip_stream(document, 6, None)
    memo = RewriteMemo(16 * MIB)
    run(raw, chunks_of(raw, [700, 3000]), FIRST, memo)
    rewrite = memo.get("page")
    assert isinstance(rewrite, gzipmemo.GzipRewrite) and rewrite.splice is None and rewrite.source == raw
    assert gzip.decompress(gzipmemo.whole_body(rewrite, SECOND)) == injected(document, SECOND)


def test_bytes_after_the_remembered_member_go_on_as_received():
    document = page(10_000, 10)
    raw = gzip_stream(document, 6, None)
    memo = RewriteMemo(16 * MIB)
    run(raw, [raw], FIRST, memo)
    padded = raw + b"\0" * 6
    output, stream = run(padded, chunks_of(padded, [900, len(raw) - 3]), SECOND, memo)
    assert stream.outcome.remembered
    inflate = zlib.decompressobj(31)
    assert inflate.decompress(output) == injected(document, SECOND) and inflate.unused_data == b"\0" * 6


def test_a_resume_that_fails_ends_what_went_out_cleanly(monkeypatch, caplog):
    document = page(60_000, 7)
    raw = gzip_stream(document, 6, 2048)
    memo = RewriteMemo(16 * MIB)
    run(raw, chunks_of(raw, range(0, len(raw), 1500)), FIRST, memo)
    offset = document.index(b"<title>")
    changed = document[: offset + 20_000] + b"<b>changed</b>" + document[offset + 20_000 :]
    changed_raw = gzip_stream(changed, 6, 2048)

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(gzipreplay.Replay, "page_after_sent", explode)
    with caplog.at_level(logging.WARNING, logger="rumproxy"):
        output, stream = run(changed_raw, chunks_of(changed_raw, range(0, len(changed_raw), 1500)), SECOND, memo)
    inflate = zlib.decompressobj(31)
    decoded = inflate.decompress(output)
    assert inflate.eof  # our member ends where what went out ended; the rest went on as received
    assert decoded.startswith(injected(changed, SECOND)[: offset + len(SECOND)])
    assert "boom" in caplog.text and stream.outcome.injected
