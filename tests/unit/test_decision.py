"""Which requests are pages, judged from their headers alone (rumproxy.decision)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy import http

from rumproxy import decision
from rumproxy.rules import parse_rules
from rumproxy.headerview import HeaderView


def view(**fields: str | None) -> HeaderView:
    return HeaderView(http.Headers([(k.replace("_", "-").encode(), v.encode()) for k, v in fields.items() if v is not None]))


@pytest.mark.parametrize(
    ("accept", "never_a_page", "navigation"),
    [
        (None, False, True),  # curl without -H, an old client
        ("", False, True),
        ("*/*", False, True),  # curl, python-requests
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False, True),
        ("TEXT/HTML", False, True),  # media types are case-insensitive
        ("text/*", False, True),
        ("application/xhtml+xml", False, True),
        ("application/json", True, False),  # an API client
        ("application/json, text/plain, */*", False, True),  # axios: takes anything, so may be a page
        ("image/avif,image/webp,image/*", True, False),
        ("text/css", True, False),
    ],
)
def test_a_client_without_fetch_metadata_is_judged_by_its_accept(accept, never_a_page, navigation):
    headers = view(accept=accept)
    assert decision.is_never_a_page(headers) is never_a_page
    assert decision.is_navigation("GET", headers) is navigation
    assert decision.is_navigation("POST", headers) is False


@pytest.mark.parametrize(("destination", "never_a_page"), [("document", False), ("iframe", False), (" Frame ", False), ("empty", True), ("script", True), ("image", True)])
def test_fetch_metadata_decides_whatever_the_accept(destination, never_a_page):
    for accept in (None, "application/json", "text/html"):
        headers = view(sec_fetch_dest=destination, accept=accept)
        assert decision.is_never_a_page(headers) is never_a_page
        assert decision.is_navigation("GET", headers) is not never_a_page


@pytest.mark.parametrize(
    ("fields", "never_a_page"),
    [
        ({"x_requested_with": "XMLHttpRequest", "accept": "text/html, */*; q=0.01"}, True),  # jQuery's .load()
        ({"x_requested_with": " xmlhttprequest "}, True),
        ({"hx_request": "true", "accept": "*/*"}, True),  # htmx
        ({"x_requested_with": "com.example.shop", "accept": "text/html"}, False),  # Android's WebView, on every request
        ({"x_requested_with": "", "accept": "text/html"}, False),
    ],
)
def test_a_client_without_fetch_metadata_is_judged_by_what_its_scripts_mark(fields, never_a_page):
    headers = view(**fields)
    assert decision.is_never_a_page(headers) is never_a_page
    assert decision.is_navigation("GET", headers) is not never_a_page


@pytest.mark.parametrize(
    ("destination", "purpose", "never_a_page", "navigation"),
    [
        ("empty", "prefetch", False, False),  # <link rel=prefetch>: maybe a page, shown from the cache later
        ("empty", " Prefetch ;anonymous-client-ip", False, False),
        ("empty", "prefetchx", True, False),
        ("script", "prefetch", True, False),  # <link rel=prefetch as=script>
        ("document", "prefetch", False, True),  # a speculation rule: a navigation
        ("document", "prefetch;prerender", False, True),
    ],
)
def test_a_prefetch_may_be_a_page_but_is_no_navigation(destination, purpose, never_a_page, navigation):
    headers = view(sec_fetch_dest=destination, sec_purpose=purpose, accept="text/html,*/*;q=0.8")
    assert decision.is_never_a_page(headers) is never_a_page
    assert decision.is_navigation("GET", headers) is navigation


@pytest.mark.parametrize(
    ("fields", "never_a_page"),
    [
        ({"upgrade": "websocket", "connection": "Upgrade"}, True),  # Chromium's: no Accept, no fetch metadata
        ({"upgrade": "WebSocket", "accept": "*/*"}, True),
        ({"upgrade": "h2c", "accept": "text/html"}, False),
        ({"upgrade_insecure_requests": "1", "accept": "text/html"}, False),  # a navigation's, another header
    ],
)
def test_a_websocket_handshake_is_never_a_page(fields, never_a_page):
    headers = view(**fields)
    assert decision.is_never_a_page(headers) is never_a_page
    assert decision.is_navigation("GET", headers) is not never_a_page


# Chromium to a plain-HTTP origin other than localhost sends no fetch metadata (measured through
# mitmproxy): these are its requests' distinguishing headers there.
NAVIGATION_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8"
PLAIN_HTTP_REQUESTS = {
    "typed into the address bar": ({"upgrade_insecure_requests": "1", "accept": NAVIGATION_ACCEPT}, False, True),
    "a link, a frame": ({"upgrade_insecure_requests": "1", "accept": NAVIGATION_ACCEPT, "referer": "http://shop.test/"}, False, True),
    "a stylesheet": ({"accept": "text/css,*/*;q=0.1", "referer": "http://shop.test/"}, True, False),
    "a script": ({"accept": "*/*", "referer": "http://shop.test/"}, True, False),
    "an image, the favicon": ({"accept": "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "referer": "http://shop.test/"}, True, False),
    "fetch(), XMLHttpRequest": ({"accept": "*/*", "referer": "http://shop.test/"}, True, False),
    "a fetch for HTML (Turbo)": ({"accept": "text/vnd.turbo-stream.html, text/html, application/xhtml+xml", "referer": "http://shop.test/"}, True, False),
    "<link rel=prefetch>": ({"sec_purpose": "prefetch", "accept": NAVIGATION_ACCEPT, "referer": "http://shop.test/"}, False, False),
    "a script on a page with Referrer-Policy: no-referrer": ({"accept": "*/*"}, False, True),  # as curl
}


@pytest.mark.parametrize("case", list(PLAIN_HTTP_REQUESTS))
def test_a_browser_without_fetch_metadata_is_judged_by_referer_and_upgrade_insecure_requests(case):
    fields, never_a_page, navigation = PLAIN_HTTP_REQUESTS[case]
    headers = view(**fields)
    assert decision.is_never_a_page(headers) is never_a_page
    assert decision.is_navigation("GET", headers) is navigation


def test_a_form_post_without_fetch_metadata_is_a_page_but_no_navigation():
    headers = view(upgrade_insecure_requests="1", accept=NAVIGATION_ACCEPT, referer="http://shop.test/")
    assert not decision.is_never_a_page(headers)
    assert not decision.is_navigation("POST", headers)


def test_fetch_metadata_decides_before_a_scripts_mark():
    headers = view(sec_fetch_dest="document", x_requested_with="XMLHttpRequest", hx_request="true")
    assert not decision.is_never_a_page(headers)
    assert decision.is_navigation("GET", headers)


@given(
    destination=st.one_of(st.none(), st.sampled_from(["document", "iframe", "frame", "empty", "script", "style", "x"])),
    accept=st.one_of(st.none(), st.text(alphabet="abcdefghijklmnopqrstuvwxyzHTML/*+;=.,0123456789 ", max_size=40)),
    requested_with=st.one_of(st.none(), st.sampled_from(["XMLHttpRequest", "com.example.app", ""])),
    hx_request=st.one_of(st.none(), st.just("true")),
    purpose=st.one_of(st.none(), st.sampled_from(["prefetch", "prefetch;prerender", "x"])),
    upgrade=st.one_of(st.none(), st.sampled_from(["websocket", "h2c"])),
    referer=st.one_of(st.none(), st.just("http://shop.test/")),
    upgrade_insecure_requests=st.one_of(st.none(), st.just("1")),
    method=st.sampled_from(["GET", "POST", "HEAD"]),
)
def test_a_navigation_is_never_taken_for_a_request_that_is_never_a_page(
    destination, accept, requested_with, hx_request, purpose, upgrade, referer, upgrade_insecure_requests, method
):
    headers = view(
        sec_fetch_dest=destination, accept=accept, x_requested_with=requested_with, hx_request=hx_request,
        sec_purpose=purpose, upgrade=upgrade, referer=referer, upgrade_insecure_requests=upgrade_insecure_requests,
    )
    assert not (decision.is_navigation(method, headers) and decision.is_never_a_page(headers))


RULE = parse_rules("version: 1\nrules:\n  - hosts: [shop.test]\n    agent: {script: 'https://cdn.test/rum.js', config: {serviceName: shop}}\n").rules[0]


@pytest.mark.parametrize(
    ("status", "location", "reason"),
    [
        (302, "/next", "redirect (status 302)"),
        (301, "https://shop.test/", "redirect (status 301)"),
        (308, "/next", "redirect (status 308)"),
        (302, None, None),  # no Location: the browser shows the body
        (300, None, None),  # Multiple Choices: its page lists them
        (404, None, None),
    ],
)
def test_a_redirect_is_no_page(status, location, reason):
    headers = view(content_type="text/html; charset=utf-8", location=location)
    assert decision.response_skip_reason("GET", status, headers, RULE) == reason
