"""Whether a request is a document navigation, and whether its response may be instrumented,
judged from headers alone (the body checks live with the rewriters)."""

from __future__ import annotations

from rumproxy import codecs
from rumproxy.charset import XHTML_TYPES
from rumproxy.headerview import HeaderView
from rumproxy.rules import Rule

MARKER_HEADER = "x-rum-injected"
MARKER_HEADER_KEY = MARKER_HEADER.encode()
HTML_TYPES = ("text/html",)
NAVIGATION_DESTINATIONS = ("document", "iframe", "frame")
NO_BODY_STATUSES = (204, 206, 304)


def fetch_destination(request_headers: HeaderView) -> str | None:
    """`Sec-Fetch-Dest`, trimmed and lowercased; None from clients that send no fetch metadata."""
    destination = request_headers.get(b"sec-fetch-dest")
    return None if destination is None else destination.strip().lower()


def is_navigation(method: str, request_headers: HeaderView) -> bool:
    """A browser loading a page: `Sec-Fetch-Dest: document`, or, from clients that do not send
    fetch metadata, a GET that accepts HTML, is no prefetch, and that no page made for itself
    (`made_by_a_page`)."""
    destination = fetch_destination(request_headers)
    if destination is not None:
        return destination in NAVIGATION_DESTINATIONS
    if method != "GET" or is_prefetch(request_headers) or made_by_a_page(request_headers):
        return False
    accept = request_headers.get(b"accept")
    return not accept or accepts_html(accept)


def is_never_a_page(request_headers: HeaderView) -> bool:
    """A request whose response is never a page to instrument, so neither it nor its response is
    changed: a browser's request for something else (a script, an image, a fetch), as its
    `Sec-Fetch-Dest` says, or, from a client without fetch metadata, one a page made for itself
    (`made_by_a_page`) or one whose Accept names types but no HTML (an API client asking for
    JSON). A prefetch may be a page (`is_prefetch`)."""
    destination = fetch_destination(request_headers)
    if destination is not None:
        if destination == "empty" and is_prefetch(request_headers):
            return False  # may be a page a later navigation shows: see is_prefetch
        return destination not in NAVIGATION_DESTINATIONS
    if is_prefetch(request_headers):
        return False
    if made_by_a_page(request_headers):
        return True
    accept = request_headers.get(b"accept")
    return accept is not None and accept.strip() != "" and not accepts_html(accept)


def made_by_a_page(request_headers: HeaderView) -> bool:
    """Whether a request without fetch metadata is one a page made for itself, not a navigation:
    one a script library marked (`sent_by_script`), a WebSocket handshake (`opens_websocket`), or
    one with a `Referer` but without `Upgrade-Insecure-Requests`. Chromium sends no fetch metadata
    to a plain-HTTP origin other than localhost, but every navigation there (a link, a form, a
    frame, a script's `location`) says `Upgrade-Insecure-Requests: 1`, and a page's scripts,
    styles, images and fetches do not, with the page as their `Referer` (curl, health checks and
    the like send neither, and stay judged by their Accept)."""
    return (
        sent_by_script(request_headers)
        or opens_websocket(request_headers)
        or (b"referer" in request_headers and b"upgrade-insecure-requests" not in request_headers)
    )


def is_prefetch(request_headers: HeaderView) -> bool:
    """`Sec-Purpose: prefetch`: a browser fetching a resource ahead, for its cache. With
    `Sec-Fetch-Dest: empty` (`<link rel=prefetch>`, which libraries like instant.page add as the
    pointer rests on a link) that may be a page a navigation then shows from the cache, without
    a request: such a page gets the agent, but no trace ids, which would belong to no page load.
    (A speculation rule's prefetch is `Sec-Fetch-Dest: document`: a navigation, traced as one. To
    a plain-HTTP origin, which gets no fetch metadata, any prefetch is taken for such a page.)"""
    purpose = request_headers.get(b"sec-purpose")
    return purpose is not None and purpose.split(";", 1)[0].strip().lower() == "prefetch"


def sent_by_script(request_headers: HeaderView) -> bool:
    """Whether a script library marked the request as its own: `X-Requested-With: XMLHttpRequest`
    (jQuery, Rails UJS, Prototype and others; Android's WebView puts its app's name in that header
    on every request, so only this value counts) or htmx's `HX-Request`. Asked only of requests
    without fetch metadata: a browser that sends it says `Sec-Fetch-Dest: empty` for these, which
    decides."""
    requested_with = request_headers.get(b"x-requested-with")
    if requested_with is not None and requested_with.strip().lower() == "xmlhttprequest":
        return True
    return b"hx-request" in request_headers


def opens_websocket(request_headers: HeaderView) -> bool:
    """A WebSocket handshake (`Upgrade: websocket`). Asked only of requests without fetch metadata:
    Chromium sends neither that (`Sec-Fetch-Dest: websocket`) nor an Accept with its handshake,
    to any origin, so a page's socket would pass for a client that accepts anything."""
    upgrade = request_headers.get(b"upgrade")
    return upgrade is not None and "websocket" in upgrade.lower()


def accepts_html(accept: str) -> bool:
    """Whether an Accept header's value admits an HTML page (any weight: a refusal by q=0 is rare
    enough to be taken as acceptance, which only costs a look at the response)."""
    accept = accept.lower()
    return any(kind in accept for kind in _HTML_RANGES)


_HTML_RANGES = ("text/html", "application/xhtml+xml", "*/*", "text/*")


def media_type(headers: HeaderView) -> str:
    return headers.get(b"content-type", "").split(";", 1)[0].strip().lower()


def response_skip_reason(method: str, status: int, response: HeaderView, rule: Rule) -> str | None:
    """Why this response is left exactly as received, or None when it may be instrumented. (A
    browser's sub-resource or an API call never gets here: the request hook leaves it alone,
    `is_never_a_page`.)"""
    if method == "HEAD":
        return "HEAD request"
    if status < 200 or status in NO_BODY_STATUSES:
        return f"status {status}"
    if is_redirect(status, response):
        return f"redirect (status {status})"  # the browser follows it without showing the body
    kind = media_type(response)
    if kind not in HTML_TYPES and not (rule.xhtml and kind in XHTML_TYPES):
        if kind in XHTML_TYPES:
            return "application/xhtml+xml (set xhtml: true on the rule to instrument it)"
        return f"not HTML (content-type {kind or 'missing'})"
    if MARKER_HEADER_KEY in response:
        return f"already instrumented ({MARKER_HEADER} present)"
    if b"content-disposition" in response and response.text(b"content-disposition").split(";", 1)[0].strip().lower() == "attachment":
        return "Content-Disposition: attachment"
    if "no-transform" in response.get(b"cache-control", "").lower():
        return "Cache-Control: no-transform"
    if codecs.normalize_encoding(response.get(b"content-encoding")) is None:
        return f"unsupported Content-Encoding {response.get(b'content-encoding')!r}"
    if b"content-range" in response:
        return "partial content (Content-Range)"
    return None


def is_redirect(status: int, response: HeaderView) -> bool:
    """A 3xx with a Location, which a browser follows without showing its body."""
    return 300 <= status < 400 and b"location" in response


# HTTP versions whose body mitmproxy holds to its Content-Length: h11 and h2 end the stream with an
# error when the body is shorter or longer. aioquic (HTTP/3) does not check.
_LENGTH_CHECKED_VERSIONS = ("HTTP/1.1", "HTTP/1.0", "HTTP/2.0")


def declared_body_length(http_version: str, headers: HeaderView) -> int | None:
    """The raw body's length as its Content-Length gives it, when mitmproxy makes sure the body has
    exactly that many bytes; None otherwise (chunked, repeated or missing header, HTTP/3)."""
    if http_version not in _LENGTH_CHECKED_VERSIONS or b"transfer-encoding" in headers:
        return None
    length = headers.get(b"content-length")
    return int(length) if length is not None and length.isdigit() else None
