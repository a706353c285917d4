import logging
import zlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from mitmproxy.net import encoding as mitm_encoding

from rumproxy import agentpresence, codecs, encoders, htmlscan, memo
from rumproxy.charset import detect_charset
from rumproxy.stream import InjectingStream, StreamOutcome
from tests.unit.wire import chunks_of, on_the_wire, sent_through

ENCODINGS = ["identity", "gzip", "deflate", "br", "zstd"]
# gzip with splicing on (gzipsplice): small pages end before a block may be reused, large ones below.
STREAMS = [*((enc, False) for enc in ENCODINGS), ("gzip", True)]
SNIPPET = b'<script src="/__rum/agent.js"></script><script>rum()</script>'

FRAGMENTS = [
    b"<!DOCTYPE html>", b"<html>", b"<html lang='en'>", b"<html amp>", b"<head>", b"<HEAD>", b"</head>",
    b"<body>", b"<body class=x>", b"</body>", b"</html>", b'<meta charset="utf-8">',
    b'<meta http-equiv="Content-Type" content="text/html">', b"<title>a</title>", b"<title></head></title>",
    b"<!-- <head><body> -->", b"<script>x='</head>'</script>", b"<style>p{}</style>", b"<link rel=x href=y>",
    b"<header>", b"<p>", b"text ", "é€ ".encode(), b"\xef\xbb\xbf", b"<", b">", b"\n",
]  # fmt: skip
documents = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=8)), max_size=40).map(b"".join)
limits = st.sampled_from([48, 300, 64 * 1024])


def split(data: bytes, cuts: list[int] | None) -> list[bytes]:
    """Non-empty chunks at the given positions; None = one byte each."""
    if cuts is None:
        return [data[i : i + 1] for i in range(len(data))]
    return chunks_of(data, cuts)


splits = st.one_of(st.none(), st.lists(st.integers(0, 10**6), max_size=12))


def send(stream: InjectingStream, chunk: bytes) -> list[bytes]:
    return on_the_wire(stream(chunk), end=not chunk)


def make(
    encoding: str = "identity", limit: int = 64 * 1024, *, charset_declared: bool = False, **kwargs
) -> tuple[InjectingStream, list]:
    outcomes: list[StreamOutcome] = []
    stream = InjectingStream(
        encoding=encoding,
        snippet=SNIPPET,
        scanner=htmlscan.InsertionScanner(limit, charset_declared=charset_declared),
        on_done=outcomes.append,
        **kwargs,
    )
    return stream, outcomes


def buffered(document: bytes, limit: int) -> htmlscan.Insertion | None:
    """The whole-body answer: where the snippet goes, or None to leave the page alone."""
    if not document or document[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return None  # empty, or UTF-16: the stream passes it through (the buffered path transcodes)
    insertion, facts = htmlscan.find_insertion_point(document, limit)
    scanner = htmlscan.InsertionScanner(limit)
    if scanner.feed(document) is None and scanner.exhausted:
        return None
    return None if facts.amp else insertion


def inject(document: bytes, offset: int) -> bytes:
    return document[:offset] + SNIPPET + document[offset:]


@pytest.mark.parametrize("enc, splice", STREAMS)
@settings(max_examples=120, deadline=None)
@given(document=documents, cuts=splits, limit=limits)
def test_streamed_equals_buffered(enc, splice, document, cuts, limit):
    assume(not agentpresence.loads_agent(document))
    raw = encoders.encode(document, enc)
    expected = buffered(document, limit)
    stream, outcomes = make(enc, limit, splice=splice)
    upstream, client = codecs.decoder(enc), codecs.decoder(enc)
    seen, received = b"", b""
    output = []
    for chunk in split(raw, cuts):
        seen += upstream.feed(chunk)
        for piece in send(stream, chunk):
            output.append(piece)
            received += client.feed(piece)
        # The client always has everything that can be decided so far.
        if not outcomes:
            assert received == b""
        elif outcomes[0].injected:
            assert received == inject(seen, outcomes[0].offset)
        else:
            assert received == seen
    output.extend(send(stream, b""))
    output = b"".join(output)

    assert len(outcomes) == 1 and stream.outcome == outcomes[0]
    if expected is None:
        assert not outcomes[0].injected
        assert output == raw
        return
    assert outcomes[0] == StreamOutcome(True, expected.offset, expected.placement, "injected")
    result = inject(document, expected.offset)
    assert codecs.decode(output, enc) == result
    assert mitm_encoding.decode(output, enc) == result
    if enc == "identity":
        assert output == result


def remembered_head(enc: str, splice: bool, document: bytes) -> memo.KnownHead | None:
    """The head a stream remembers of `document` (InjectingStream's remember_head)."""
    heads: list[memo.KnownHead | None] = []

    def remember(page: bytes | bytearray, insertion: htmlscan.Insertion, facts: htmlscan.PageFacts, through: int | None) -> None:
        charset = detect_charset("text/html", page[:1024])
        heads.append(memo.known_head(page, insertion, facts, through, charset))

    stream, _ = make(enc, splice=splice, remember_head=remember)
    sent_through(stream, [encoders.encode(document, enc)])
    return heads[0] if heads else None


@pytest.mark.parametrize("enc, splice", STREAMS)
@settings(max_examples=60, deadline=None)
@given(head=documents, rest=documents, other_rest=documents, cuts=splits)
def test_a_known_head_streams_what_a_scan_would(enc, splice, head, rest, other_rest, cuts):
    # A page that changes below its head: the second body goes out as its own scan would send it.
    filler = b"<p>" + b"y" * 1100  # a decision by then, and the charset prescan's bytes
    first, second = head + filler + rest, head + filler + other_rest
    assume(not agentpresence.loads_agent(first) and not agentpresence.loads_agent(second))
    known = remembered_head(enc, splice, first)
    assume(known is not None)
    raw = encoders.encode(second, enc)
    chunks = split(raw, cuts) if cuts is not None else [raw[i : i + 97] for i in range(0, len(raw), 97)]
    scanning, scanned = make(enc, splice=splice)
    taking, took = make(enc, splice=splice, known_head=known)
    assert codecs.decode(sent_through(taking, chunks), enc) == codecs.decode(sent_through(scanning, chunks), enc)
    assert (took[0].offset, took[0].placement) == (scanned[0].offset, scanned[0].placement)
    first_chunk = codecs.decode(chunks[0], enc) if enc == "identity" else None
    if first_chunk is not None:
        assert took[0].known_head == first_chunk.startswith(known.source)


def test_a_known_head_waits_for_no_bytes_an_app_has_not_sent_yet():
    head = b"<html><head><meta charset=utf-8><title>t</title><script src=a.js></script></head><body>"
    known = remembered_head("identity", False, head + b"<p>first</p>" * 100)
    assert known is not None and len(known.source) == 1024  # the charset prescan's bytes
    stream, outcomes = make(known_head=known)
    # The app flushes its head, then takes its time over the rest: the head goes out now, scanned.
    out = on_the_wire(stream(head), end=False)
    point = head.index(b"<title>")
    assert outcomes and not outcomes[0].known_head and b"".join(out) == head[:point] + SNIPPET + head[point:]


@pytest.mark.parametrize("enc, splice", STREAMS)
def test_one_byte_chunks(enc, splice):
    document = b"<!doctype html><html><head><title>x</title></head><body>" + "ü".encode() * 3000 + b"</body>"
    raw = encoders.encode(document, enc)
    stream, outcomes = make(enc, splice=splice)
    output = sent_through(stream, split(raw, None))
    assert outcomes == [StreamOutcome(True, 27, "after-head", "injected")]
    assert codecs.decode(output, enc) == inject(document, 27)


@pytest.mark.parametrize("enc, splice", STREAMS)
@pytest.mark.parametrize(
    "document, reason",
    [
        (b"<!doctype html><html amp><head><script async src=v0.js></script></head>", "amp page"),
        ("<html \u26a14email><head></head>".encode(), "amp page"),
        (
            # The preload comes before the deciding <script, so every split sees it.
            b'<html><head><link rel=preload as=script href="/js/elastic-apm-rum.umd.min.js">'
            b'<script src="/js/elastic-apm-rum.umd.min.js"></script></head>',
            "page loads the agent already",
        ),
        (b"<!doctype html>" + b"<!-- padding -->" * 100 + b"<html><head>", "scan limit reached"),
    ],
)
@pytest.mark.parametrize("cuts", [[], None, [7, 100]])
def test_raw_passthrough_is_byte_identical(enc, splice, document, reason, cuts):
    raw = encoders.encode(document, enc)
    stream, outcomes = make(enc, limit=1024, splice=splice)
    output = sent_through(stream, split(raw, cuts))
    assert output == raw
    assert len(outcomes) == 1 and not outcomes[0].injected
    assert outcomes[0].reason.startswith(reason)


def test_agent_loaded_in_one_chunk_with_the_head():
    document = b"<html><head><title>x</title><script>elasticApm.init({})</script></head><body>"
    stream, outcomes = make(charset_declared=True)  # by the Content-Type: nothing waits for a charset meta
    chunks = [document, b"<p>more</p>"]
    sent = [send(stream, c) for c in chunks]
    assert sent[0] == [document] and sent[0][0] is document  # handed back untouched, not copied
    assert sent[1][0] is chunks[1]
    assert outcomes[0].reason == "page loads the agent already"


def test_identity_chunks_after_the_decision_are_the_same_objects():
    stream, outcomes = make(charset_declared=True)  # by the Content-Type: nothing waits for a charset meta
    assert send(stream, b"<html><head><body>") == [b"<html><head>" + SNIPPET + b"<body>"]
    later = [bytes([65 + i]) * 1000 for i in range(5)]
    for chunk in later:
        assert stream(chunk) is chunk
    assert stream(b"") == b""
    assert outcomes[0].offset == 12


def test_holding_back_sends_nothing_rather_than_an_empty_chunk():
    stream, _ = make(charset_declared=True)  # by the Content-Type: nothing waits for a charset meta
    held = stream(b"<!doctype html>")
    assert not isinstance(held, bytes) and len(held) == 0
    assert send(stream, b"<html>") == []
    assert b"".join(send(stream, b"<body>")) == b"<!doctype html><html>" + SNIPPET + b"<body>"


@pytest.mark.parametrize("where, limit", [(0, 64 * 1024), (200 * 1024, 64 * 1024)])
def test_memory_stays_bounded_on_a_large_identity_page(where, limit):
    chunk_size = 64 * 1024
    page = bytearray(b"<!-- x -->" * (2 * 1024 * 1024))  # 20 MiB
    page[where : where + 18] = b"<html><head><body>"
    page = bytes(page)
    chunks = [page[i : i + chunk_size] for i in range(0, len(page), chunk_size)]
    stream, outcomes = make(limit=limit)
    peak, total, same = 0, 0, 0
    for chunk in chunks:
        out = stream(chunk)
        peak = max(peak, stream.buffered_bytes)
        total += len(out)
        same += out is chunk
    total += len(stream(b""))
    assert peak <= limit + chunk_size
    assert stream.buffered_bytes == 0
    assert same >= len(chunks) - 2
    if where == 0:
        assert outcomes[0].injected and total == len(page) + len(SNIPPET)
    else:
        assert outcomes[0].reason.startswith("scan limit reached") and total == len(page)


def test_large_gzip_page_streams_with_little_held_back():
    body = b"<html><head><title>t</title></head><body>" + b"".join(b"<p>%d</p>" % i for i in range(300_000))
    raw = encoders.encode(body, "gzip")
    stream, outcomes = make("gzip")
    peak, out = 0, []
    for chunk in split(raw, list(range(0, len(raw), 16 * 1024))):
        out.extend(send(stream, chunk))
        peak = max(peak, stream.buffered_bytes)
    out.extend(send(stream, b""))
    assert peak == 0  # decided inside the first chunk
    assert codecs.decode(b"".join(out), "gzip") == inject(body, outcomes[0].offset)


def test_corrupt_gzip_before_the_decision_passes_the_body_through(caplog):
    raw = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 200
    stream, outcomes = make("gzip", label="http://example.com/")
    with caplog.at_level(logging.WARNING):
        assert sent_through(stream, split(raw, [3, 50])) == raw
    assert outcomes[0].reason.startswith("decode error")
    assert "http://example.com/" in caplog.text


def _gzip_page(cut: int) -> tuple[bytes, bytes, bytes]:
    """A page, and a gzip body that is valid up to byte-aligned `cut` of it and broken after."""
    body = b"<html><head></head><body>" + b"".join(b"<p>%d</p>" % (i * 7919 % 100003) for i in range(40_000))
    obj = zlib.compressobj(1, zlib.DEFLATED, 31)
    good = obj.compress(body[:cut]) + obj.flush(zlib.Z_SYNC_FLUSH)
    # BFINAL=1 with the reserved block type 11: zlib rejects it at once.
    bad = b"\x07" + bytes(range(256)) * 40
    return body[:cut], good, bad


def test_corrupt_gzip_after_the_decision_fails_open(caplog):
    valid, good, bad = _gzip_page(200_000)
    chunks = split(good, list(range(0, len(good), 4096))) + split(bad, [1000, 5000])
    stream, outcomes = make("gzip")
    with caplog.at_level(logging.WARNING):
        output = sent_through(stream, chunks)
    assert outcomes[0].injected and "after the injection" in caplog.text
    assert output.endswith(bad)  # nothing the upstream sent is lost
    assert mitm_encoding.decode(output[: -len(bad)], "gzip") == inject(valid, outcomes[0].offset)


def test_truncated_gzip_after_the_decision_still_ends_cleanly():
    valid, good, _ = _gzip_page(300_000)
    stream, outcomes = make("gzip")
    output = sent_through(stream, split(good, list(range(0, len(good), 4096))))
    assert outcomes[0].injected
    assert codecs.decode(output, "gzip") == inject(valid, outcomes[0].offset)


class ExplodingScanner:
    def __init__(self, where: str) -> None:
        self.where = where
        self.exhausted = False
        self.facts = htmlscan.PageFacts(amp=False)

    def feed(self, data: bytes):
        if self.where == "feed":
            raise RuntimeError("scanner bug")
        return htmlscan.Insertion(10**9 if self.where == "offset" else 0, "start")

    def finish(self):
        raise RuntimeError("scanner bug")


@pytest.mark.parametrize("where", ["feed", "offset"])
@pytest.mark.parametrize("enc", ["identity", "br"])
def test_scanner_failures_fail_open(where, enc, caplog):
    raw = encoders.encode(b"<html><head>", enc)
    stream = InjectingStream(encoding=enc, snippet=SNIPPET, scanner=ExplodingScanner(where))
    with caplog.at_level(logging.WARNING):
        assert sent_through(stream, [raw[:5], raw[5:]]) == raw
    assert not stream.outcome.injected and "injection failed" in stream.outcome.reason


def test_on_done_errors_are_logged_and_it_runs_once(caplog):
    calls = []

    def on_done(outcome):
        calls.append(outcome)
        raise KeyError("boom")

    stream = InjectingStream(
        encoding="gzip", snippet=SNIPPET, scanner=htmlscan.InsertionScanner(1024), on_done=on_done
    )
    raw = encoders.encode(b"<html><head></head><body>hi</body>", "gzip")
    with caplog.at_level(logging.ERROR):
        output = sent_through(stream, split(raw, None))
    assert len(calls) == 1 and "on_done callback failed" in caplog.text
    assert codecs.decode(output, "gzip") == b"<html><head>" + SNIPPET + b"</head><body>hi</body>"


@pytest.mark.parametrize("enc", ENCODINGS)
def test_short_document_gets_the_snippet_at_the_end(enc):
    document = b"<!doctype html><html lang=en>"
    stream, outcomes = make(enc)
    output = sent_through(stream, [encoders.encode(document, enc)])
    assert outcomes[0] == StreamOutcome(True, len(document), "after-html", "injected")
    assert codecs.decode(output, enc) == document + SNIPPET


@pytest.mark.parametrize("enc", ENCODINGS)
def test_empty_body_stays_empty(enc):
    raw = b"" if enc == "identity" else encoders.encode(b"", enc)
    stream, outcomes = make(enc)
    assert sent_through(stream, [raw] if raw else []) == raw
    assert outcomes == [StreamOutcome(False, None, None, "empty body")]


def test_unsupported_encoding_is_refused_up_front():
    with pytest.raises(codecs.UnsupportedEncoding):
        InjectingStream(encoding="gzip, br", snippet=SNIPPET, scanner=htmlscan.InsertionScanner(10))


def test_bytes_after_the_end_are_passed_on(caplog):
    # An HTTP/2 upstream may send an empty DATA frame mid-body, which reaches
    # the stream as b"" just like the real end: no byte may get lost.
    stream, outcomes = make()
    first = b"".join(send(stream, b"<html lang=en>")) + b"".join(send(stream, b""))
    with caplog.at_level(logging.WARNING):
        rest = stream(b"<body>late</body>")
    assert first + rest == b"<html lang=en>" + SNIPPET + b"<body>late</body>"
    assert "after the end" in caplog.text


@pytest.mark.parametrize("bom", [b"\xff\xfe", b"\xfe\xff"])
def test_utf16_pages_pass_through_untouched(bom):
    page = bom + "<html><head><title>x</title></head></html>".encode("utf-16-le" if bom == b"\xff\xfe" else "utf-16-be")
    stream, outcomes = make("identity", 1024)
    output = b"".join(send(stream, page[:1])) + b"".join(send(stream, page[1:])) + b"".join(send(stream, b""))
    assert output == page
    assert not outcomes[0].injected and "UTF-16" in outcomes[0].reason
