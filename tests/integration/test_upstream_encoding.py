"""A browser that accepts br and zstd as well as gzip (every current one) gets its pages through
the proxy as gzip from an upstream that prefers br: the proxy asks the upstream for a page without
br or zstd (rum_prefer_gzip, on by default), so the page is spliced into, not decoded and
compressed again. Subresources, and the proxy with the option off, get what the upstream chose."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import brotli
import pytest
import requests

from tests.apps.upstream import BODIES
from tests.harness import Mitmdump, Upstream
from tests.insertion import split_insertion

pytestmark = pytest.mark.integration

CHROMIUM = {
    "Sec-Fetch-Dest": "document",
    "Accept": "text/html,application/xhtml+xml,*/*;q=0.8",
    "Accept-Encoding": "gzip, deflate, br, zstd",
}


@pytest.fixture(scope="module")
def shipped(upstream: Upstream, rules_file) -> Iterator[Mitmdump]:
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules_file) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def keeping_br(upstream: Upstream, rules_file) -> Iterator[Mitmdump]:
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules_file, args=["--set", "rum_prefer_gzip=false"]) as proxy:
        yield proxy


def fetch(http: requests.Session, url: str, headers: dict[str, str]) -> requests.Response:
    response = http.get(url, headers=headers, stream=True, timeout=30)
    response.raw_body = response.raw.read(decode_content=False)  # type: ignore[attr-defined]
    return response


def sent_upstream(upstream: Upstream, name: str) -> list[str]:
    return [value for key, value in upstream.last_request_headers() if key.lower() == name]


@pytest.mark.parametrize("query", ["body=basic", "body=prose", "body=prose&chunked=1&chunksize=4096"], ids=["small", "large", "unsized"])
def test_a_page_comes_as_gzip_from_an_upstream_that_prefers_br(http, upstream, shipped, query):
    url = f"/page?{query}&encoding=negotiate"
    direct = fetch(http, upstream.url + url, CHROMIUM)
    assert direct.headers["content-encoding"] == "br"  # what the upstream sends this browser
    for _ in range(2):  # scanned, then remembered
        proxied = fetch(http, shipped.url + url, CHROMIUM)
        assert sent_upstream(upstream, "accept-encoding") == ["gzip, deflate"]
        assert proxied.headers["content-encoding"] == "gzip"
        assert proxied.headers["vary"] == "Accept-Encoding"
        _, inserted = split_insertion(brotli.decompress(direct.raw_body), gzip.decompress(proxied.raw_body))
        assert b"elasticApm" in inserted


def test_a_subresource_gets_what_the_upstream_chose(http, upstream, shipped):
    url = "/page?body=basic&encoding=negotiate"
    headers = {**CHROMIUM, "Sec-Fetch-Dest": "script"}
    proxied = fetch(http, shipped.url + url, headers)
    assert sent_upstream(upstream, "accept-encoding") == ["gzip, deflate, br, zstd"]
    assert proxied.headers["content-encoding"] == "br"
    assert brotli.decompress(proxied.raw_body) == BODIES["basic"]


def test_a_client_without_gzip_gets_br_with_the_snippet(http, upstream, shipped):
    proxied = fetch(http, shipped.url + "/page?body=basic&encoding=negotiate", {**CHROMIUM, "Accept-Encoding": "br"})
    assert sent_upstream(upstream, "accept-encoding") == ["br"]
    assert proxied.headers["content-encoding"] == "br"
    split_insertion(BODIES["basic"], brotli.decompress(proxied.raw_body))


@pytest.mark.parametrize("query", ["body=basic", "body=prose&chunked=1"], ids=["small", "unsized"])
def test_with_the_option_off_the_page_stays_br(http, upstream, keeping_br, query):
    proxied = fetch(http, keeping_br.url + f"/page?{query}&encoding=negotiate", CHROMIUM)
    assert sent_upstream(upstream, "accept-encoding") == ["gzip, deflate, br, zstd"]
    assert proxied.headers["content-encoding"] == "br"
    name = query.split("&", 1)[0].removeprefix("body=")
    split_insertion(BODIES[name], brotli.decompress(proxied.raw_body))
