import gzip
import subprocess
import sys
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy.net import encoding as mitm_encoding

from rumproxy import codecs, encoders

ENCODINGS = ["identity", "gzip", "deflate", "br", "zstd"]
COMPRESSED = [e for e in ENCODINGS if e != "identity"]

# Random bytes barely compress; repeated text exercises back-references.
bodies = st.one_of(
    st.binary(max_size=3000),
    st.builds(lambda t, n: t.encode() * n, st.text(max_size=60), st.integers(0, 200)),
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split data at the given positions; repeated cuts make empty chunks."""
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def feed_all(dec: codecs.Decoder, chunks: list[bytes]) -> bytes:
    return b"".join(dec.feed(c) for c in chunks) + dec.flush()


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "identity"),
        ("", "identity"),
        ("  ", "identity"),
        ("identity", "identity"),
        ("Identity", "identity"),
        ("gzip", "gzip"),
        (" GZIP ", "gzip"),
        ("x-gzip", "gzip"),
        ("deflate", "deflate"),
        ("br", "br"),
        ("BR", "br"),
        ("zstd", "zstd"),
        ("compress", None),
        ("x-compress", None),
        ("bzip2", None),
        ("gzip, br", None),
        ("br,gzip", None),
        ("identity, gzip", None),
        ("gzip, gzip", None),
    ],
)
def test_normalize_encoding(value, expected):
    assert codecs.normalize_encoding(value) == expected


@pytest.mark.parametrize("name", ["compress", "gzip, br", "bogus"])
def test_unsupported_names_raise(name):
    for call in (
        lambda: codecs.decoder(name),
        lambda: encoders.encoder(name),
        lambda: codecs.decode(b"x", name),
        lambda: encoders.encode(b"x", name),
    ):
        with pytest.raises(codecs.UnsupportedEncoding):
            call()


def test_aliases_work_everywhere():
    assert codecs.decode(encoders.encode(b"abc", "x-gzip"), "GZIP") == b"abc"
    assert codecs.decode(b"abc", "") == b"abc"


@pytest.mark.parametrize("enc", ENCODINGS)
@settings(max_examples=40, deadline=None)
@given(data=bodies, cuts=st.lists(st.integers(0, 10**6), max_size=12), syncs=st.lists(st.booleans()))
def test_incremental_encode_then_buffered_decode(enc, data, cuts, syncs):
    e = encoders.encoder(enc)
    out = []
    for i, chunk in enumerate(split(data, cuts)):
        out.append(e.feed(chunk))
        if i < len(syncs) and syncs[i]:
            out.append(e.sync())
    out.append(e.flush())
    encoded = b"".join(out)
    assert codecs.decode(encoded, enc) == data
    assert mitm_encoding.decode(encoded, enc) == data


@pytest.mark.parametrize("enc", ENCODINGS)
@settings(max_examples=40, deadline=None)
@given(data=bodies, cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_buffered_encode_then_incremental_decode(enc, data, cuts):
    encoded = encoders.encode(data, enc)
    assert mitm_encoding.decode(encoded, enc) == data
    assert feed_all(codecs.decoder(enc), split(encoded, cuts)) == data


@pytest.mark.parametrize("enc", COMPRESSED)
@settings(max_examples=25, deadline=None)
@given(data=bodies, cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_decodes_what_mitmproxy_encodes(enc, data, cuts):
    encoded = mitm_encoding.encode(data, enc)
    assert feed_all(codecs.decoder(enc), split(encoded, cuts)) == data


def test_single_byte_chunks_and_empty_chunks():
    data = b"<p>hello</p>" * 500
    for enc in ENCODINGS:
        encoded = encoders.encode(data, enc)
        chunks = [b""] + [encoded[i : i + 1] for i in range(len(encoded))] + [b""]
        assert feed_all(codecs.decoder(enc), chunks) == data


@pytest.mark.parametrize("enc", ENCODINGS)
def test_empty_body(enc):
    assert codecs.decode(b"", enc) == b""
    assert codecs.decode(encoders.encode(b"", enc), enc) == b""


@pytest.mark.parametrize("enc", COMPRESSED)
def test_every_truncation_raises(enc):
    data = b"<html><head><title>t</title></head><body>" + bytes(range(256)) * 4
    encoded = encoders.encode(data, enc)
    for end in range(1, len(encoded)):
        with pytest.raises(ValueError):
            codecs.decode(encoded[:end], enc)


@pytest.mark.parametrize(
    "enc, garbage",
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", b"\x1f\x8b\x08\x00garbage-after-a-gzip-magic"),
        ("deflate", b"not deflate either, no"),
        ("br", b"\xff" * 32),
        ("zstd", b"not a zstd frame at all"),
    ],
)
def test_garbage_raises_value_error(enc, garbage):
    with pytest.raises(ValueError):
        codecs.decode(garbage, enc)
    dec = codecs.decoder(enc)
    with pytest.raises(ValueError):
        for i in range(len(garbage)):
            dec.feed(garbage[i : i + 1])
        dec.flush()


@pytest.mark.parametrize("enc, header, trailer", [("gzip", 10, 8), ("deflate", 2, 4)])
@settings(max_examples=50, deadline=None)
@given(data=st.binary(min_size=1, max_size=500), where=st.integers(0, 10**6), bit=st.integers(0, 7))
def test_checksummed_corruption_raises(enc, header, trailer, data, where, bit):
    # CRC32/Adler-32 cover the data; only the padding bits of the last deflate byte are unchecked.
    encoded = bytearray(encoders.encode(data, enc))
    last_deflate_byte = len(encoded) - trailer - 1
    positions = [*range(header, last_deflate_byte), *range(last_deflate_byte + 1, len(encoded))]
    encoded[positions[where % len(positions)]] ^= 1 << bit
    with pytest.raises(ValueError):
        codecs.decode(bytes(encoded), enc)


def test_gzip_multi_member_zero_padding_and_trailing_junk():
    body = gzip.compress(b"one ") + gzip.compress(b"two ") + b"\0\0\0" + gzip.compress(b"three")
    assert codecs.decode(body, "gzip") == b"one two three"
    assert feed_all(codecs.decoder("gzip"), [body[i : i + 1] for i in range(len(body))]) == b"one two three"
    # Browsers and mitmproxy ignore what follows the end of the gzip data.
    assert codecs.decode(gzip.compress(b"page") + b"junk", "gzip") == b"page"


@settings(max_examples=40, deadline=None)
@given(data=bodies, level=st.integers(0, 9), cuts=st.lists(st.integers(0, 10**6), max_size=8))
def test_raw_deflate_is_detected(data, level, cuts):
    obj = zlib.compressobj(level, zlib.DEFLATED, -15)
    raw = obj.compress(data) + obj.flush()
    assert feed_all(codecs.decoder("deflate"), split(raw, cuts)) == data
    assert codecs.decode(zlib.compress(data, level), "deflate") == data


def test_zstd_unknown_content_size_and_multiple_frames():
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    unknown_size = cobj.compress(b"streamed ") + cobj.flush()
    known_size = zstandard.ZstdCompressor(level=1).compress(b"frame")
    body = unknown_size + known_size + unknown_size
    assert codecs.decode(body, "zstd") == b"streamed framestreamed "
    assert feed_all(codecs.decoder("zstd"), [body[i : i + 3] for i in range(0, len(body), 3)]) == (
        b"streamed framestreamed "
    )


def test_encoders_use_fast_levels(monkeypatch):
    seen = {}
    real = codecs.brotli.Compressor

    def recording(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(codecs.brotli, "Compressor", recording)
    encoders.encoder("br")
    assert seen == {"quality": 1}
    levels = []
    real_deflate = codecs.deflate_lib.compressobj

    def recording_deflate(level, *args):
        levels.append(level)
        return real_deflate(level, *args)

    monkeypatch.setattr(codecs.deflate_lib, "compressobj", recording_deflate)
    for make in (lambda d: encoders.encode(d, "gzip"), lambda d: _streamed(d, "gzip")):
        out = make(b"x" * 100)
        assert out[4:8] == b"\0\0\0\0"  # mtime 0: deterministic output
        assert gzip.decompress(out) == b"x" * 100
    for make in (lambda d: encoders.encode(d, "deflate"), lambda d: _streamed(d, "deflate")):
        assert zlib.decompress(make(b"x" * 100)) == b"x" * 100
    # zlib's fastest level; ISA-L's levels 0-3 are all faster than that, 1 keeps zlib's ratio.
    assert levels == [1, 1, 1, 1]


def test_deflate_is_isal_where_installed():
    isal = pytest.importorskip("isal.isal_zlib")
    assert codecs.deflate_lib is isal


def _streamed(data: bytes, enc: str) -> bytes:
    e = encoders.encoder(enc)
    return e.feed(data) + e.flush()


@pytest.mark.parametrize("enc", COMPRESSED)
def test_sync_makes_output_decodable_so_far(enc):
    e = encoders.encoder(enc)
    head = e.feed(b"<html><head>") + e.sync()
    d = codecs.decoder(enc)
    assert d.feed(head) == b"<html><head>"
    rest = e.feed(b"</head></html>") + e.flush()
    assert d.feed(rest) + d.flush() == b"</head></html>"


def test_brotli_rejects_data_after_the_end():
    with pytest.raises(ValueError):
        codecs.decode(brotli.compress(b"a", quality=1) + b"x", "br")


FALLBACK_CHECK = """
import gzip, random, sys, zlib
sys.modules["isal"] = None  # importing isal now fails, as on a platform without its wheel
from rumproxy import codecs, crc32, encoders, htmlscan
from rumproxy.stream import InjectingStream
from rumproxy.wholebody import send_whole
assert codecs.deflate_lib is zlib
rng = random.Random(3)
text = " ".join("".join(rng.choices("abcdefghij", k=rng.randint(2, 8))) for _ in range(60000)).encode()
page = b"<!doctype html><html><head><meta charset=utf-8></head><body>" + text + b"</body></html>"
for name in ("gzip", "deflate"):
    assert codecs.decode(encoders.encode(page, name), name) == page
assert crc32.shift(zlib.crc32(b"ab"), 2) ^ zlib.crc32(b"cd") == zlib.crc32(b"abcd")
stream = InjectingStream(encoding="gzip", snippet=b"<script></script>", scanner=htmlscan.InsertionScanner(65536),
                         splice=True)
spliced = send_whole(stream, gzip.compress(page, 6))
assert stream.reused_from is not None
assert gzip.decompress(spliced).replace(b"<script></script>", b"", 1) == page
print("ok")
"""


def test_without_isal_zlib_does_the_work():
    """The fallback for platforms without an isal wheel, in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", FALLBACK_CHECK], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
