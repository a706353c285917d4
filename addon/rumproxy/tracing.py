"""Trace context on the wire: start or continue the trace on a document request, and expose it
on the response. The W3C grammar itself lives in `tracecontext`."""

from __future__ import annotations

from mitmproxy import http

from rumproxy import tracecontext
from rumproxy.rules import TraceSpec
from rumproxy.snippet import PageTrace

ELASTIC_KEY = "es"


def begin(request: http.Request, spec: TraceSpec) -> PageTrace:
    """Continue a valid incoming trace untouched, or start one and send it upstream."""
    values = request.headers.get_all("traceparent")
    incoming = tracecontext.parse_traceparent(values)
    if incoming is not None:
        return PageTrace(
            trace_id=incoming.trace_id,
            span_id=incoming.parent_id,
            sampled=incoming.sampled,
            traceparent=incoming.header(),
            continued=True,
        )
    # An invalid traceparent invalidates its tracestate; with none at all, other vendors' members stay.
    members = tracecontext.parse_tracestate(request.headers.get_all("tracestate")) if not values else []
    sampled = tracecontext.decide_sampled(spec.sample_rate)
    parent = tracecontext.new_traceparent(sampled)
    state = tracecontext.with_member(members, ELASTIC_KEY, tracecontext.elastic_member_value(spec.sample_rate if sampled else 0.0))
    request.headers["traceparent"] = parent.header()
    request.headers["tracestate"] = tracecontext.format_tracestate(state)
    # The Python agent falls back to the legacy header; a stale one must not win over ours.
    request.headers.pop("elastic-apm-traceparent", None)
    return PageTrace(trace_id=parent.trace_id, span_id=parent.parent_id, sampled=sampled, traceparent=parent.header())


def expose(headers: http.Headers, trace: PageTrace, spec: TraceSpec, tracestate: str | None) -> None:
    """Let a person or a script find the page's trace from the response alone."""
    if spec.server_timing:
        metric = f'traceparent;desc="{trace.traceparent}"'
        existing = ", ".join(headers.get_all("server-timing"))
        headers["server-timing"] = f"{existing}, {metric}" if existing else metric
    if spec.response_headers:
        headers["traceparent"] = trace.traceparent
        if tracestate:
            headers["tracestate"] = tracestate
    if spec.timing_allow_origin and "timing-allow-origin" not in headers:
        headers["timing-allow-origin"] = spec.timing_allow_origin
