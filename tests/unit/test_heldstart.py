"""The held start of a streamed body: what its scan says for every split of the body into chunks."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumproxy import htmlscan
from rumproxy.heldstart import HeldStart, LeaveAlone

PAGE = b"<!doctype html><html><head><title>t</title></head><body>" + b"<p>text</p>" * 400 + b"</body></html>"


def scanned(body: bytes, cuts: list[int], encoding: str = "identity", limit: int = 64 * 1024, splices: bool = False):
    """Every verdict of a HeldStart fed `body` cut at `cuts`, then the end, up to the first one."""
    held = HeldStart(encoding, htmlscan.InsertionScanner(limit), splices=splices)
    bounds = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    chunks = [body[a:b] for a, b in zip(bounds, bounds[1:])]
    verdicts = []
    for chunk in [*chunks, b""]:
        verdict = held.scan(chunk, end=not chunk)
        verdicts.append(verdict)
        if verdict is not None:
            break
    return verdicts, held


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=12), encoding=st.sampled_from(["identity", "gzip", "deflate"]))
def test_the_insertion_point_and_the_held_bytes_do_not_depend_on_the_chunks(cuts, encoding):
    body = {"identity": PAGE, "gzip": gzip.compress(PAGE, 6), "deflate": zlib.compress(PAGE, 6)}[encoding]
    [*waiting, verdict], held = scanned(body, cuts, encoding)
    assert waiting == [None] * len(waiting)
    assert verdict == htmlscan.find_insertion_point(PAGE)[0]
    assert body.startswith(held.raw_body()) and held.raw_size == len(held.raw_body())
    assert PAGE.startswith(held.document()) and len(held.document()) >= verdict.offset


def test_a_splicing_gzip_start_decodes_with_an_inflater_that_can_go_to_the_tail():
    verdicts, held = scanned(gzip.compress(PAGE, 6), [100, 200], "gzip", splices=True)
    assert verdicts[-1] == htmlscan.find_insertion_point(PAGE)[0]
    assert held.inflater is not None
    held.release()
    assert held.inflater is None and held.raw == [] and held.size == 0


@pytest.mark.parametrize(
    ("body", "encoding", "limit", "reason", "warn"),
    [
        (b"<html>" + b"x" * 5000, "identity", 1024, "scan limit reached: no insertion point in the first", False),
        ("<html><head></head></html>".encode("utf-16"), "identity", 1024, "UTF-16 page", False),
        (b"\x1f\x8b\x08\x00 not gzip at all", "gzip", 1024, "decode error", True),
        (b"", "identity", 1024, "empty body", False),
        (b'<html amp><head></head><body>', "identity", 1024, "amp page", False),
    ],
)
def test_a_page_left_alone_says_why(body, encoding, limit, reason, warn):
    verdicts, held = scanned(body, [], encoding, limit)
    assert verdicts[-1] == LeaveAlone(verdicts[-1].reason, warn)
    assert verdicts[-1].reason.startswith(reason)
    assert held.raw_body() == body  # everything it was given, to send as received


def test_a_decoder_that_cannot_be_made_leaves_the_page_alone_with_a_warning(monkeypatch):
    from rumproxy import codecs

    def no_decoder(encoding):
        raise RuntimeError("no such library")

    monkeypatch.setattr(codecs, "decoder", no_decoder)
    [verdict], _ = scanned(b"x" * 10, [], "br")
    assert verdict == LeaveAlone("no br decoder: RuntimeError('no such library')", warn=True)
