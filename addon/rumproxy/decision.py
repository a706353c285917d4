"""Whether a request is a document navigation, and whether its response may be instrumented,
judged from headers alone (the body checks live with the rewriters)."""

from __future__ import annotations

from mitmproxy import http

from rumproxy import codecs
from rumproxy.rules import Rule

MARKER_HEADER = "x-rum-injected"
HTML_TYPES = ("text/html",)
XHTML_TYPES = ("application/xhtml+xml",)
NAVIGATION_DESTINATIONS = ("document", "iframe", "frame")
NO_BODY_STATUSES = (204, 206, 304)


def is_navigation(request: http.Request) -> bool:
    """A browser loading a page: `Sec-Fetch-Dest: document`, or, from clients that do not send
    fetch metadata, a GET that accepts HTML."""
    destination = request.headers.get("sec-fetch-dest")
    if destination is not None:
        return destination.strip().lower() in NAVIGATION_DESTINATIONS
    if request.method != "GET":
        return False
    accept = request.headers.get("accept", "")
    return not accept or "text/html" in accept or "application/xhtml+xml" in accept or "*/*" in accept


def media_type(response: http.Response) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def response_skip_reason(flow: http.HTTPFlow, rule: Rule) -> str | None:
    """Why this response is left exactly as received, or None when it may be instrumented."""
    request, response = flow.request, flow.response
    assert response is not None
    if request.method == "HEAD":
        return "HEAD request"
    if response.status_code < 200 or response.status_code in NO_BODY_STATUSES:
        return f"status {response.status_code}"
    kind = media_type(response)
    if kind not in HTML_TYPES and not (rule.xhtml and kind in XHTML_TYPES):
        if kind in XHTML_TYPES:
            return "application/xhtml+xml (set xhtml: true on the rule to instrument it)"
        return f"not HTML (content-type {kind or 'missing'})"
    destination = request.headers.get("sec-fetch-dest")
    if destination is not None and destination.strip().lower() not in NAVIGATION_DESTINATIONS:
        return f"not a page navigation (Sec-Fetch-Dest: {destination})"
    if MARKER_HEADER in response.headers:
        return f"already instrumented ({MARKER_HEADER} present)"
    disposition = response.headers.get("content-disposition", "")
    if disposition.split(";", 1)[0].strip().lower() == "attachment":
        return "Content-Disposition: attachment"
    if "no-transform" in response.headers.get("cache-control", "").lower():
        return "Cache-Control: no-transform"
    if codecs.normalize_encoding(response.headers.get("content-encoding")) is None:
        return f"unsupported Content-Encoding {response.headers.get('content-encoding')!r}"
    if "content-range" in response.headers:
        return "partial content (Content-Range)"
    return None
