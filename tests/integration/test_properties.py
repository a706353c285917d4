"""The real mitmdump with the addon, on generated pages (hypothesis): sent by the real upstream in
every encoding, sized or chunked in pieces of any size, asked for as a page or as a sub-resource,
the client gets the upstream's page with at most the snippet inserted, framed as its headers say."""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rumproxy import codecs
from tests.certificates import self_signed_certificate
from tests.harness import Mitmdump, Upstream, curl_http2
from tests.http3client import http3_request
from tests.insertion import split_insertion
from tests.pages import pages

SNIPPET_START = b'<script src="/__rum/'


def assert_one_snippet(page: bytes, sent: bytes) -> None:
    """`sent` is `page` with one insertion, the snippet."""
    _, inserted = split_insertion(page, sent)
    assert inserted.startswith(SNIPPET_START) and inserted.endswith(b"</script>")
    assert sent.count(SNIPPET_START) == page.count(SNIPPET_START) + 1


def injected(page: bytes, sent: bytes) -> bool:
    """Whether the client got `page` with the snippet inserted once; if not, it got `page` as it
    was. Each example is counted in hypothesis' statistics as one or the other."""
    event("injected" if sent != page else "left alone")
    if sent == page:
        return False
    assert_one_snippet(page, sent)
    return True


def framing(chunksize: int | None) -> dict[str, str]:
    """The upstream's query for a body with a Content-Length (None) or chunked in pieces of `chunksize`."""
    return {} if chunksize is None else {"chunked": "1", "chunksize": str(chunksize)}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page=pages(),
    encoding=st.sampled_from(["identity", "gzip", "deflate", "br", "zstd"]),
    chunksize=st.sampled_from([None, 1, 7, 512, 65536]),  # None: sized (Content-Length)
    destination=st.sampled_from(["document", None, "empty"]),
    status=st.sampled_from([200, 404]),
    content_type=st.sampled_from(["text/html; charset=utf-8", "text/html", "application/json"]),
    policy=st.sampled_from([None, "script-src 'self'", "default-src 'self'; script-src 'nonce-abc'"]),
)
def test_the_client_gets_the_upstreams_page_with_at_most_the_snippet(http, upstream, proxy, page, encoding,
                                                                     chunksize, destination, status, content_type,
                                                                     policy):
    query: dict[str, str | list[str]] = {"b64": base64.urlsafe_b64encode(page).decode(), "encoding": encoding,
                                         "status": str(status), "ctype": content_type}
    query |= framing(chunksize)
    if policy is not None:
        query["h"] = [f"Content-Security-Policy: {policy}"]
    headers = {"Accept-Encoding": encoding, "Accept": "text/html,*/*;q=0.8"}
    if destination is not None:
        headers["Sec-Fetch-Dest"] = destination
    path = "/page?" + urlencode(query, doseq=True)
    direct = http.get(upstream.url + path, headers=headers, stream=True, timeout=30)
    proxied = http.get(proxy.url + path, headers=headers, stream=True, timeout=30)
    direct_body = direct.raw.read(decode_content=False)
    proxied_body = proxied.raw.read(decode_content=False)

    assert proxied.status_code == direct.status_code == status
    if "content-length" in proxied.headers:
        assert int(proxied.headers["content-length"]) == len(proxied_body)
    if destination == "empty":  # a sub-resource: passed on without a look
        assert proxied_body == direct_body
        assert "x-rum-injected" not in proxied.headers
        return
    assert proxied.headers.get("content-encoding") == direct.headers.get("content-encoding")
    document = codecs.decode(direct_body, encoding)
    assert document == page
    if injected(document, codecs.decode(proxied_body, encoding)):
        assert content_type.startswith("text/html")
        assert proxied.headers["x-rum-injected"] == "rumproxy"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl with HTTP/2 (Debian's curl)")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page=pages(),
    encoding=st.sampled_from(["identity", "gzip", "br"]),
    chunksize=st.sampled_from([None, 1, 512, 65536]),
)
def test_over_http2_the_client_gets_the_upstreams_page_with_at_most_the_snippet(upstream, proxy, page, encoding,
                                                                                chunksize):
    """The same through TLS and HTTP/2 to the client, where a body has no Transfer-Encoding and a
    Content-Length only when it is right."""
    query = {"b64": base64.urlsafe_b64encode(page).decode(), "encoding": encoding, **framing(chunksize)}
    lines, raw = curl_http2(f"https://127.0.0.1:{proxy.port}/page?{urlencode(query)}",
                            {"Sec-Fetch-Dest": "document", "Accept-Encoding": encoding})
    assert lines[0].startswith("http/2 200")
    assert not any(line.startswith("transfer-encoding") for line in lines)
    lengths = [line.split(":", 1)[1].strip() for line in lines if line.startswith("content-length")]
    assert lengths in ([], [str(len(raw))])
    injected(page, codecs.decode(raw, encoding))


@pytest.fixture(scope="module")
def h3_upstream(tmp_path_factory) -> Iterator[Upstream]:
    """The upstream again, serving HTTP/3 over QUIC (mitmproxy speaks HTTP/3 to a client only where
    the upstream does)."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("h3-upstream"))
    with Upstream(args=["--http3", str(cert), str(key)]) as app:
        yield app


@pytest.fixture(scope="module", params=["never", "always"], ids=["buffered", "streaming"])
def h3_proxy(request, h3_upstream: Upstream, rules_file: Path) -> Iterator[Mitmdump]:
    # The upstream's certificate is self-signed.
    with Mitmdump(mode=f"reverse:http3://127.0.0.1:{h3_upstream.port}", rules=rules_file,
                  args=["--set", f"rum_stream={request.param}", "--set", "ssl_insecure=true"]) as mitmdump:
        yield mitmdump


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page=pages(),
    encoding=st.sampled_from(["identity", "gzip", "br", "zstd"]),
    chunksize=st.sampled_from([None, 1, 512, 65536]),
)
def test_over_http3_the_client_gets_the_upstreams_page_with_at_most_the_snippet(h3_proxy, page, encoding, chunksize):
    """The same over QUIC and HTTP/3, end to end: HTTP/3 frames the body itself, so a response has
    no Transfer-Encoding, and a Content-Length only when it is right. The page goes to the upstream
    as a form's POST body (a URL that long does not fit HTTP/3's header limits), and comes back."""
    query = {"encoding": encoding, **framing(chunksize)}
    response = http3_request(f"https://127.0.0.1:{h3_proxy.port}/page?{urlencode(query)}",
                             {"Sec-Fetch-Dest": "document", "Accept-Encoding": encoding}, page)
    assert response.status == 200
    assert response.headers("transfer-encoding") == []
    assert response.headers("content-length") in ([], [str(len(response.body))])
    if injected(page, codecs.decode(bytes(response.body), encoding)):
        assert response.headers("x-rum-injected") == ["rumproxy"]

