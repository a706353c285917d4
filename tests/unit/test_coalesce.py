"""Coalescing a stream's output: the same bytes in fewer pieces, and nothing held past a short read."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from rumproxy import htmlscan
from rumproxy.coalesce import HOLD_LIMIT, READ_SIZE, CoalescingStream
from rumproxy.stream import InjectingStream
from tests.unit.wire import on_the_wire

SNIPPET = b"<script>rum()</script>"


def send(stream, chunk: bytes) -> list[bytes]:
    return on_the_wire(stream(chunk), end=not chunk)


def forward(chunk: bytes) -> bytes:
    return chunk


def test_full_reads_after_the_first_bytes_are_held_until_a_short_read():
    stream = CoalescingStream(forward)
    first, full, short = b"a" * READ_SIZE, b"b" * READ_SIZE, b"c" * 100
    assert send(stream, first) == [first]  # the page's first byte is never held
    assert send(stream, full) == []
    assert send(stream, full) == []
    assert send(stream, short) == [full + full + short]
    assert send(stream, short) == [short]
    assert send(stream, full) == []
    assert send(stream, b"") == [full]


def test_the_hold_is_limited():
    stream = CoalescingStream(forward)
    full = bytes(READ_SIZE)
    send(stream, b"x")
    pieces = [piece for _ in range(10) for piece in send(stream, full)]
    assert [len(p) for p in pieces] == [-(-HOLD_LIMIT // READ_SIZE) * READ_SIZE] * 2
    assert b"".join(pieces + send(stream, b"")) == full * 10


def test_an_injecting_call_keeps_its_pieces_and_their_pace():
    """The injecting call of a compressed body yields the head before it re-encodes the rest:
    whatever was held goes first, then each piece as the inner stream makes it."""
    made: list[str] = []

    def pieces():
        made.append("head")
        yield b"head"
        made.append("rest")
        yield b"rest"

    outputs = iter([b"start", b"", pieces()])
    stream = CoalescingStream(lambda chunk: next(outputs))
    send(stream, b"s")
    assert send(stream, bytes(READ_SIZE)) == []  # the inner stream held it: nothing to send
    result = stream(b"more")
    assert made == []
    assert next(result) == b"head" and made == ["head"]
    assert list(result) == [b"rest"]


def test_an_empty_inner_output_sends_nothing():
    stream = CoalescingStream(lambda chunk: bytearray())
    assert send(stream, b"x") == [] and send(stream, b"") == []


chunk_sizes = st.lists(st.one_of(st.just(READ_SIZE), st.integers(1, READ_SIZE - 1)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(sizes=chunk_sizes, gzipped=st.booleans())
def test_the_client_gets_the_same_bytes_and_nothing_waits_past_a_short_read(sizes, gzipped):
    page = b"<!doctype html><html><head><title>t</title></head><body>" + b"<p>words and more words</p>\n" * 30_000
    body = gzip.compress(page, 1, mtime=0) if gzipped else page
    bounds = [0]
    for size in sizes:
        bounds.append(min(len(body), bounds[-1] + size))
    bounds.append(len(body))
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

    def injecting() -> InjectingStream:
        return InjectingStream(encoding="gzip" if gzipped else "identity", snippet=SNIPPET,
                               scanner=htmlscan.InsertionScanner(64 * 1024), splice=gzipped)

    plain, coalesced = injecting(), CoalescingStream(injecting())
    expected, received = b"", b""
    for chunk in chunks:
        expected += b"".join(send(plain, chunk))
        received += b"".join(send(coalesced, chunk))
        if len(chunk) < READ_SIZE:
            assert received == expected  # the upstream's bytes at hand are all sent
        else:
            assert len(expected) - len(received) <= HOLD_LIMIT
    expected += b"".join(send(plain, b""))
    received += b"".join(send(coalesced, b""))
    assert received == expected
    assert (gzip.decompress(received) if gzipped else received).replace(SNIPPET, b"", 1) == page
