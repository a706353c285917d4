"""The real mitmdump with the addon in reverse mode in front of a real upstream: what a browser
or curl gets for every encoding, charset and skip case."""

from __future__ import annotations

import base64
import gzip
import re
import zlib

import brotli
import pytest
import requests
import zstandard

from tests.apps.upstream import BODIES, ticked
from tests.harness import Mitmdump, Upstream
from tests.insertion import split_insertion

pytestmark = pytest.mark.integration

NAVIGATION = {"Sec-Fetch-Dest": "document", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
DECODERS = {
    "identity": lambda data: data,
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}


def fetch(session: requests.Session, url: str, *, method: str = "GET", headers: dict | None = None) -> requests.Response:
    response = session.request(method, url, headers={**NAVIGATION, **(headers or {})}, stream=True, timeout=30)
    response.raw_body = response.raw.read(decode_content=False)  # type: ignore[attr-defined]
    return response


def direct_and_proxied(session, upstream: Upstream, proxy: Mitmdump, query: str, **kwargs):
    direct = fetch(session, f"{upstream.url}/page?{query}", **kwargs)
    proxied = fetch(session, f"{proxy.url}/page?{query}", **kwargs)
    return direct, proxied


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate", "br", "zstd"])
def test_every_encoding_is_injected_and_reencoded(http, upstream, proxy, encoding):
    direct, proxied = direct_and_proxied(http, upstream, proxy, f"body=basic&encoding={encoding}", headers={"Accept-Encoding": encoding})
    assert proxied.status_code == 200
    assert proxied.headers.get("content-encoding", "identity") == direct.headers.get("content-encoding", "identity")
    original = DECODERS[encoding](direct.raw_body)
    assert original == BODIES["basic"]
    output = DECODERS[encoding](proxied.raw_body)
    offset, inserted = split_insertion(original, output)
    assert inserted.startswith(b'<script src="/__rum/') and inserted.endswith(b"</script>")
    assert b"elasticApm" in inserted and b'"serviceName":"shop-frontend"' in inserted
    # right after <meta charset>: the charset declaration stays first
    assert original[:offset].rstrip().lower().endswith(b'<meta charset="utf-8">')
    if proxy.stream_mode == "always":
        assert "content-length" not in proxied.headers
        assert proxied.headers["transfer-encoding"] == "chunked"
    else:
        assert int(proxied.headers["content-length"]) == len(proxied.raw_body)
    assert proxied.headers["x-rum-injected"]
    assert "accept-ranges" not in proxied.headers


@pytest.mark.parametrize("encoding", ["identity", "gzip", "br"])
def test_a_page_that_changes_below_its_head_on_every_request_is_injected_exactly(http, upstream, proxy, encoding):
    """The first response is scanned; the next ones start with the same bytes and get the point
    the proxy remembered (rum_memo), each with this response's own bytes around it."""
    name = f"head-{encoding}-{proxy.stream_mode}"
    trace_ids = set()
    for count in range(1, 4):
        response = fetch(http, f"{proxy.url}/page?body=prose&encoding={encoding}&tick={name}", headers={"Accept-Encoding": encoding})
        page = ticked(BODIES["prose"], count)
        output = DECODERS[encoding](response.raw_body)
        offset, inserted = split_insertion(page, output, starts_with=b"<script")
        assert page[:offset].endswith(b'<meta charset="utf-8">')
        trace_id = response.headers["traceparent"].split("-")[1]
        assert f'"pageLoadTraceId":"{trace_id}"'.encode() in inserted
        trace_ids.add(trace_id)
    assert len(trace_ids) == 3


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
@pytest.mark.parametrize(
    "ctype, before", [("text/html; charset=utf-8", b"<head>"), ("text/html", b'charset=utf-8" />')], ids=["declared", "meta"]
)
def test_the_agent_goes_before_a_base_href_unless_a_charset_meta_must_stay_first(http, upstream, proxy, encoding, ctype, before):
    """A <base href> would send the browser to its origin for /__rum/…: where the Content-Type names
    the charset the snippet goes before the <base>; where the meta after it does, after that meta."""
    for _ in range(2):  # scanned, then remembered
        response = fetch(http, f"{proxy.url}/page?body=joomla&encoding={encoding}&ctype={ctype}", headers={"Accept-Encoding": encoding})
        offset, inserted = split_insertion(BODIES["joomla"], DECODERS[encoding](response.raw_body), starts_with=b"<script")
        assert BODIES["joomla"][:offset].endswith(before)
        assert b"elasticApm" in inserted


@pytest.mark.parametrize("framing", ["", "&chunked=1&chunksize=100"], ids=["sized", "chunked"])
@pytest.mark.parametrize(
    "ctype, before", [("text/html; charset=utf-8", b"<head>"), ("text/html", b'<meta charset="utf-8">')], ids=["declared", "meta"]
)
def test_a_charset_meta_after_a_script_stays_in_the_first_1024_bytes(http, upstream, proxy, framing, ctype, before):
    """Where only the meta names the charset, the snippet goes after it, past the script before it:
    in front of it, the snippet would push it out of the bytes a browser's prescan reads."""
    page = BODIES["scriptfirst"]
    meta = b'<meta charset="utf-8">'
    response = fetch(http, f"{proxy.url}/page?body=scriptfirst&ctype={ctype}{framing}")
    offset, inserted = split_insertion(page, response.raw_body, starts_with=b"<script src=")
    assert page.index(meta) + len(meta) + len(inserted) > 1024  # in front of the meta, the snippet would push it out
    assert page[:offset].endswith(before)
    if ctype == "text/html":
        assert response.raw_body.index(meta) + len(meta) <= 1024


def test_strong_etag_becomes_weak(http, upstream, proxy):
    proxied = fetch(http, f'{proxy.url}/page?body=basic&h=ETag: "v1"&h=Accept-Ranges: bytes')
    assert proxied.headers["etag"] == 'W/"v1"'
    assert "accept-ranges" not in proxied.headers


def test_html_error_pages_are_instrumented(http, proxy):
    proxied = fetch(http, f"{proxy.url}/page?body=basic&status=404")
    assert proxied.status_code == 404
    assert b"elasticApm" in proxied.raw_body


def test_chunked_upstream_body(http, upstream, proxy):
    direct, proxied = direct_and_proxied(http, upstream, proxy, "body=basic&chunked=1")
    split_insertion(direct.raw_body, proxied.raw_body)


@pytest.mark.parametrize("name", ["latin1", "sjis", "utf8bom", "nohead", "nohtml", "upper", "comment"])
def test_charsets_and_shapes(http, upstream, proxy, name):
    direct, proxied = direct_and_proxied(http, upstream, proxy, f"body={name}")
    offset, inserted = split_insertion(direct.raw_body, proxied.raw_body)
    assert inserted.startswith(b"<script")
    if name == "utf8bom":
        assert offset >= 3 and proxied.raw_body.startswith(b"\xef\xbb\xbf")
    if name in ("latin1", "sjis"):
        assert re.search(rb"<meta[^>]*charset", direct.raw_body[:offset], re.I)


def test_utf16_page_gets_a_transcoded_snippet(http, upstream, proxy):
    direct, proxied = direct_and_proxied(http, upstream, proxy, "body=utf16")
    if proxy.stream_mode == "always":
        # The stream sees the BOM only after the headers went out: it passes the page through.
        assert proxied.raw_body == direct.raw_body
        return
    original = direct.raw_body[2:].decode("utf-16-le")
    output = proxied.raw_body[2:].decode("utf-16-le")
    assert proxied.raw_body[:2] == b"\xff\xfe"
    offset, inserted = split_insertion(original.encode(), output.encode())
    assert inserted.startswith(b"<script")


# Reasons only the body shows: when streaming, the headers went out before it was seen.
BODY_REASONS = ("AMP page", "loads the Elastic RUM agent already", "cannot be decoded")
STREAM_REASONS = {"AMP page": "amp page", "loads the Elastic RUM agent already": "page loads the agent already", "cannot be decoded": "decode error"}

SKIPS = [
    ("HEAD", "body=basic", {}, "HEAD request"),
    ("GET", "body=basic&status=204", {}, "status 204"),
    ("GET", "body=basic&status=304", {}, "status 304"),
    ("GET", "body=basic&status=206&h=Content-Range: bytes 0-10/100", {}, "status 206"),
    ("GET", "body=basic&ctype=application/json", {}, "not HTML"),
    ("GET", "body=basic&ctype=application/xhtml%2Bxml", {}, "xhtml"),
    ("GET", "body=basic&h=Content-Disposition: attachment; filename=a.html", {}, "attachment"),
    ("GET", "body=basic&h=Cache-Control: no-transform", {}, "no-transform"),
    ("GET", "body=basic&h=X-RUM-Injected: elsewhere", {}, "already instrumented"),
    ("GET", "body=amp", {}, "AMP page"),
    ("GET", "body=withagent", {}, "loads the Elastic RUM agent already"),
    ("GET", "body=basic&encoding=gzip, br", {}, "unsupported Content-Encoding"),
    ("GET", "body=basic&ctype=text/html; charset=utf-16", {}, "not ASCII-compatible"),
    ("GET", "b64=" + base64.urlsafe_b64encode(b"not gzip at all").decode() + "&h=Content-Encoding: gzip", {}, "cannot be decoded"),
]


@pytest.mark.parametrize(("method", "query", "headers", "reason"), SKIPS, ids=[s[3] for s in SKIPS])
def test_skipped_responses_are_left_exactly_as_received(http, upstream, proxy, method, query, headers, reason):
    mark = proxy.mark()
    direct, proxied = direct_and_proxied(http, upstream, proxy, query, method=method, headers=headers)
    assert proxied.status_code == direct.status_code
    assert proxied.raw_body == direct.raw_body
    streamed = proxy.stream_mode == "always" and reason in BODY_REASONS
    if not streamed:
        assert "x-rum-injected" not in {k.lower() for k in proxied.headers if proxied.headers[k] != "elsewhere"}
        for name in ("content-length", "content-encoding", "content-type", "etag"):
            assert proxied.headers.get(name) == direct.headers.get(name), name
    else:
        reason = STREAM_REASONS[reason]
    proxy.wait_for_log(re.escape("not injected: ") + ".*" + re.escape(reason), since=mark, timeout=10)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_left_exactly_as_received(http, upstream, proxy, status):
    """A browser follows a redirect without showing its HTML body (Flask's "Redirecting..."):
    no snippet, the same bytes and headers; the page it leads to is instrumented."""
    mark = proxy.mark()
    query = f"body=basic&status={status}&h=Location: /page?body=basic%26r={status}"
    responses = [
        http.get(f"{base}/page?{query}", headers=NAVIGATION, allow_redirects=False, timeout=30)
        for base in (upstream.url, proxy.url)
    ]
    direct, proxied = responses
    assert proxied.status_code == direct.status_code == status
    assert proxied.content == direct.content == BODIES["basic"]
    for name in ("content-length", "content-type", "location", "etag"):
        assert proxied.headers.get(name) == direct.headers.get(name), name
    assert "x-rum-injected" not in proxied.headers
    proxy.wait_for_log(re.escape(f"not injected: redirect (status {status})"), since=mark, timeout=10)
    followed = http.get(f"{proxy.url}/page?{query}", headers=NAVIGATION, timeout=30)
    assert followed.status_code == 200 and b"elasticApm" in followed.content


@pytest.mark.parametrize("destination", ["empty", "script"])
def test_a_browsers_subresource_request_is_passed_on_without_a_look(http, upstream, proxy, destination):
    """Sec-Fetch-Dest other than document, iframe or frame: not tracked, nothing changed and no log
    line, even for an HTML response (a fetch of a fragment, say)."""
    mark = proxy.mark()
    direct, proxied = direct_and_proxied(http, upstream, proxy, f"body=basic&d={destination}", headers={"Sec-Fetch-Dest": destination})
    assert proxied.status_code == direct.status_code == 200
    assert proxied.raw_body == direct.raw_body
    for name in ("content-length", "content-encoding", "content-type", "etag"):
        assert proxied.headers.get(name) == direct.headers.get(name), name
    assert "x-rum-injected" not in proxied.headers and "server-timing" not in proxied.headers
    proxy.wait_for_log(rf"/page\?body=basic&d={destination}\s*\n?\s*<< 200", since=mark, timeout=10)
    assert "not injected" not in proxy.log_text(since=mark)


def assert_passed_on_without_a_look(http, upstream, proxy, headers: dict[str, str], tag: str) -> dict[str, list[str]]:
    """A gzip page fetched with `headers` (no fetch metadata) comes through as without the proxy:
    the same bytes and headers, no traceparent upstream, no log line. Returns the headers the
    upstream got."""
    mark = proxy.mark()
    headers = {**headers, "Accept-Encoding": "gzip"}
    query = f"body=basic&encoding=gzip&t={tag}"
    direct = http.get(f"{upstream.url}/page?{query}", headers=headers, stream=True, timeout=30)
    proxied = http.get(f"{proxy.url}/page?{query}", headers=headers, stream=True, timeout=30)
    assert proxied.status_code == direct.status_code == 200
    assert proxied.raw.read(decode_content=False) == direct.raw.read(decode_content=False)
    for name in ("content-length", "content-encoding", "content-type", "etag"):
        assert proxied.headers.get(name) == direct.headers.get(name), name
    assert "x-rum-injected" not in proxied.headers and "server-timing" not in proxied.headers
    echoed = http.get(f"{proxy.url}/echo-headers", headers=headers, timeout=30).json()
    assert "traceparent" not in echoed
    proxy.wait_for_log(r"/echo-headers\s*\n?\s*<< 200", since=mark, timeout=10)  # the page's line came before
    assert "not injected" not in proxy.log_text(since=mark)
    return echoed


@pytest.mark.parametrize("accept", ["application/json", "application/json, text/plain;q=0.5", "image/avif,image/webp"])
def test_an_api_clients_request_is_passed_on_without_a_look(http, upstream, proxy, accept):
    """No fetch metadata and an Accept that names no HTML (a mobile app asking for JSON): not
    tracked, no traceparent upstream, nothing changed and no log line, even for an HTML response."""
    echoed = assert_passed_on_without_a_look(http, upstream, proxy, {"Accept": accept}, f"a{len(accept)}")
    assert echoed["accept-encoding"] == ["gzip"]


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Requested-With": "XMLHttpRequest", "Accept": "text/html, */*; q=0.01"},  # jQuery's .load()
        {"HX-Request": "true", "Accept": "*/*"},  # htmx
    ],
    ids=["jquery", "htmx"],
)
def test_a_scripts_request_without_fetch_metadata_is_passed_on_without_a_look(http, upstream, proxy, headers):
    """An old browser's XHR for an HTML fragment, marked by the library that sent it: the fragment
    goes into a page that has its agent already, so it is passed on as received, untracked."""
    assert_passed_on_without_a_look(http, upstream, proxy, headers, f"s{len(headers['Accept'])}")


@pytest.mark.parametrize(
    "accept",
    ["*/*", "text/css,*/*;q=0.1", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"],
    ids=["script-or-fetch", "stylesheet", "image"],
)
def test_a_pages_own_request_to_a_plain_http_origin_is_passed_on_without_a_look(http, upstream, proxy, accept):
    """Chromium sends no fetch metadata to a plain-HTTP origin other than localhost: a page's
    scripts, styles, images and fetches come with the page as Referer and without the
    Upgrade-Insecure-Requests of a navigation. Untracked, even for an HTML response."""
    headers = {"Accept": accept, "Referer": f"{proxy.url}/page?body=basic"}
    assert_passed_on_without_a_look(http, upstream, proxy, headers, f"r{len(accept)}")


def test_a_navigation_to_a_plain_http_origin_is_traced_and_instrumented(http, upstream, proxy):
    """The same origin's navigations (a link, a form, a frame) say Upgrade-Insecure-Requests: 1."""
    headers = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Referer": f"{proxy.url}/", "Upgrade-Insecure-Requests": "1"}
    proxied = http.get(f"{proxy.url}/page?body=basic&n=uir", headers=headers, timeout=30)
    assert b"elasticApm" in proxied.content and b"pageLoadTraceId" in proxied.content
    received = dict((name.lower(), value) for name, value in upstream.last_request_headers())
    assert received["traceparent"].split("-")[1] in proxied.text


def test_a_prefetch_to_a_plain_http_origin_is_instrumented_without_a_trace(http, upstream, proxy):
    """`<link rel=prefetch>` without fetch metadata: maybe a page the next navigation shows from the
    cache, so it gets the agent, but no ids and no traceparent upstream."""
    headers = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Referer": f"{proxy.url}/", "Sec-Purpose": "prefetch"}
    proxied = http.get(f"{proxy.url}/page?body=basic&n=prefetch", headers=headers, timeout=30)
    assert b"elasticApm" in proxied.content and b"pageLoadTraceId" not in proxied.content
    assert "traceparent" not in {name.lower() for name, _ in upstream.last_request_headers()}


def test_androids_webview_marks_every_request_so_its_pages_are_still_instrumented(http, proxy):
    """Android's WebView sends `X-Requested-With: <app id>` with navigations too (and fetch metadata
    in its newer versions; this one has none)."""
    headers = {"X-Requested-With": "com.example.shop", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    proxied = http.get(f"{proxy.url}/page?body=basic&w=1", headers=headers, timeout=30)
    assert b"elasticApm" in proxied.content and proxied.headers["x-rum-injected"]


@pytest.mark.parametrize("accept", [None, "*/*", "TEXT/HTML", "text/*"])
def test_a_client_without_fetch_metadata_that_takes_html_gets_the_page_instrumented(http, proxy, accept):
    """curl, python-requests, an old browser: what they accept admits a page, so a page gets the snippet."""
    # None: no Accept at all (requests leaves out a header whose value is None).
    proxied = http.get(f"{proxy.url}/page?body=basic&c={accept}", headers={"Accept": accept}, timeout=30)
    assert b"elasticApm" in proxied.content and proxied.headers["x-rum-injected"]


def test_requests_for_hosts_no_rule_names_are_untouched(http, upstream, tmp_path):
    rules = tmp_path / "rules.yaml"
    from tests.integration.conftest import write_rules

    write_rules(rules)
    rules.write_text(rules.read_text().replace('["127.0.0.1"]', '["shop.example.com"]'))
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules) as proxy:
        direct, proxied = direct_and_proxied(http, upstream, proxy, "body=basic")
        assert proxied.raw_body == direct.raw_body
        assert "traceparent" not in dict(upstream.last_request_headers())
        assert fetch(http, f"{proxy.url}/__rum/anything.js").status_code == 404


def test_the_agent_is_served_on_the_page_origin(http, proxy):
    page = fetch(http, f"{proxy.url}/page?body=basic")
    src = re.search(rb'<script src="(/__rum/[^"]+)"', page.raw_body).group(1).decode()
    bundle = http.get(proxy.url + src, timeout=10)
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert "max-age=31536000" in bundle.headers["cache-control"]
    from rumproxy.rules import VENDORED_AGENT

    assert bundle.content == VENDORED_AGENT.read_bytes()
    again = http.get(proxy.url + src, headers={"If-None-Match": bundle.headers["etag"]}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    assert http.get(proxy.url + "/__rum/0000/unknown.js", timeout=10).status_code == 404


def test_mitmproxys_streaming_notice_is_left_out_for_pages_the_addon_streams(http, upstream, rules_file):
    """mitmproxy logs "Streaming response from <host>." for every streamed response: not for the
    pages the addon streams (their flow says what was done), still for what others stream."""
    args = ["--set", "stream_large_bodies=1k"]
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules_file, args=args) as proxy:
        page = fetch(http, f"{proxy.url}/page?body=prose&chunked=1")
        assert page.status_code == 200 and b'<script src="/__rum/' in page.raw_body
        proxy.wait_for_log(r"/page\?body=prose&chunked=1\s*\n?\s*<< 200", timeout=10)
        assert "Streaming response from" not in proxy.log_text()
        mark = proxy.mark()
        text = fetch(http, f"{proxy.url}/page?body=prose&ctype=text/plain")  # no rule injects into text/plain
        assert text.status_code == 200 and text.raw_body == BODIES["prose"]
        proxy.wait_for_log(r"/page\?body=prose&ctype=text/plain\s*\n?\s*<< 200", since=mark, timeout=10)
        assert proxy.log_text(since=mark).count("Streaming response from 127.0.0.1.") == 1
