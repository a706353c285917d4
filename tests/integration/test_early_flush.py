"""An app that flushes its head before the rest of the page is ready (a slow query after it) gets
the head, with the snippet, to the browser before the rest exists, through the real mitmdump in
its shipped mode: the first time, when the stream scans the page, and the times after, when it
sends the remembered rewrite of the same bytes (rum_memo) while checking them as they come. And
when the page turns out to differ from the remembered one after its head, the client still gets
exactly this page with its snippet (the proxy goes on from what went out)."""

from __future__ import annotations

import gzip
import uuid
import zlib
from collections.abc import Iterator

import pytest
import requests

from tests.apps.upstream import BODIES, ticked
from tests.harness import Mitmdump, Upstream
from tests.insertion import split_insertion

pytestmark = pytest.mark.integration

NAVIGATION = {"Sec-Fetch-Dest": "document", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
# Generous: reached only when the proxy holds the head back, which fails the test.
HEAD_TIMEOUT = 20


@pytest.fixture(scope="module")
def auto_proxy(upstream: Upstream, rules_file) -> Iterator[Mitmdump]:
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules_file, args=["--set", "rum_stream=auto"]) as proxy:
        yield proxy


class Decoder:
    def __init__(self, encoding: str) -> None:
        self._inflate = zlib.decompressobj(31) if encoding == "gzip" else None
        self.text = b""

    def feed(self, chunk: bytes) -> None:
        self.text += self._inflate.decompress(chunk) if self._inflate is not None else chunk


@pytest.mark.parametrize("encoding, changing", [("identity", False), ("gzip", False), ("gzip", True)],
                         ids=["identity", "gzip", "gzip-changing"])
def test_the_head_goes_out_before_the_app_sends_the_rest(http: requests.Session, upstream: Upstream, auto_proxy,
                                                         encoding: str, changing: bool):
    """gzip-changing: the page differs from the remembered one after its head on every request,
    so the remembered head goes out early and the proxy goes on from there with this page's bytes."""
    hold = f"{encoding}-{uuid.uuid4().hex}"
    query = f"body=prose&encoding={encoding}&chunked=1&chunksize=4000&hold={hold}"
    if changing:
        query += f"&tick={hold}"
    for count in range(1, 4):  # the same URL: scanned the first time, then the remembered rewrite (gzip)
        page = ticked(BODIES["prose"], count) if changing else BODIES["prose"]
        try:
            response = http.get(f"{auto_proxy.url}/page?{query}", stream=True, timeout=(10, HEAD_TIMEOUT),
                                headers={**NAVIGATION, "Accept-Encoding": encoding})
            assert response.status_code == 200 and "content-length" not in response.headers
            trace_id = response.headers["traceparent"].split("-")[1]
            snippet_end = f'"pageLoadTraceId":"{trace_id}"'.encode()
            decoder, raw = Decoder(encoding), b""
            chunks = response.raw.read_chunked(decode_content=False)
            # The upstream sent 4000 bytes and waits: all of the head must come through meanwhile.
            for chunk in chunks:
                raw += chunk
                decoder.feed(chunk)
                if snippet_end in decoder.text:
                    break
            assert snippet_end in decoder.text
            assert len(raw) < len(gzip.compress(page)) if encoding == "gzip" else len(raw) < len(page)
        finally:
            http.post(f"{upstream.url}/__release", params={"name": hold}, timeout=10)
        for chunk in chunks:
            raw += chunk
        output = gzip.decompress(raw) if encoding == "gzip" else raw
        offset, inserted = split_insertion(page, output, starts_with=b"<script")
        assert page[:offset].endswith(b'<meta charset="utf-8">') and snippet_end in inserted


def test_a_large_flush_reaches_the_client_whole_before_the_app_sends_the_rest(http: requests.Session,
                                                                             upstream: Upstream, auto_proxy):
    """mitmproxy reads the upstream 64 KB at a time, and the proxy holds what full reads give to
    send it in fewer pieces (coalesce), never past the read that takes the last of what the app
    has sent."""
    hold, flushed, page = f"large-{uuid.uuid4().hex}", 600_000, BODIES["big"]
    try:
        response = http.get(f"{auto_proxy.url}/page?body=big&chunked=1&chunksize={flushed}&hold={hold}",
                            stream=True, timeout=(10, HEAD_TIMEOUT), headers={**NAVIGATION, "Accept-Encoding": "identity"})
        assert response.status_code == 200
        raw = b""
        chunks = response.raw.read_chunked(decode_content=False)
        for chunk in chunks:
            raw += chunk
            if len(raw) > flushed and raw.endswith(page[flushed - 100 : flushed]):
                break
        assert b"pageLoadTraceId" in raw and raw.endswith(page[flushed - 100 : flushed])
    finally:
        http.post(f"{upstream.url}/__release", params={"name": hold}, timeout=10)
    for chunk in chunks:
        raw += chunk
    offset, inserted = split_insertion(page, raw, starts_with=b"<script")
    assert b"pageLoadTraceId" in inserted
