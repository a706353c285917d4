"""Trace context on the wire: start or continue the trace on a document request, and expose it
on the response. The W3C grammar itself lives in `tracecontext`."""

from __future__ import annotations

from typing import NamedTuple

from rumproxy import tracecontext
from rumproxy.headerview import Edit, HeaderView
from rumproxy.redirects import FollowedTrace
from rumproxy.rules import TraceSpec
from rumproxy.snippet import PageTrace

ELASTIC_KEY = "es"
LEGACY_TRACEPARENT = b"elastic-apm-traceparent"


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class Begun(NamedTuple):
    trace: PageTrace
    tracestate: str | None  # as the request goes upstream
    upstream_edits: dict[bytes, Edit]  # for the request's headers


def begin(request_headers: HeaderView, spec: TraceSpec, follows: FollowedTrace | None = None) -> Begun:
    """Continue a valid incoming trace untouched, or the trace of the redirect this navigation
    `follows` (the same ids upstream), or start one and send it upstream."""
    has_traceparent = b"traceparent" in request_headers
    if has_traceparent:
        incoming = tracecontext.parse_traceparent(request_headers.get_all(b"traceparent"))
        if incoming is not None:
            trace = PageTrace(
                trace_id=incoming.trace_id,
                span_id=incoming.parent_id,
                sampled=incoming.sampled,
                traceparent=incoming.header(),
                continued=True,
            )
            return Begun(trace, request_headers.get(b"tracestate"), {})
    if follows is not None:
        trace, tracestate = follows
    else:
        members: list[tuple[str, str]] = []
        if not has_traceparent and b"tracestate" in request_headers:
            # Without a traceparent, other vendors' members stay (an invalid one invalidates them).
            members = tracecontext.parse_tracestate(request_headers.get_all(b"tracestate"))
        sampled = tracecontext.decide_sampled(spec.sample_rate)
        trace_id, span_id = tracecontext.new_ids()
        own_value = tracecontext.elastic_member_value(spec.sample_rate if sampled else 0.0)
        if members:
            tracestate = tracecontext.format_tracestate(tracecontext.with_member(members, ELASTIC_KEY, own_value))
        else:
            tracestate = f"{ELASTIC_KEY}={own_value}"  # most pages: our member alone
        traceparent = tracecontext.format_traceparent(trace_id, span_id, tracecontext.FLAG_SAMPLED if sampled else 0)
        trace = PageTrace(trace_id=trace_id, span_id=span_id, sampled=sampled, traceparent=traceparent)
    edits: dict[bytes, Edit] = {b"traceparent": trace.traceparent, b"tracestate": tracestate}
    if LEGACY_TRACEPARENT in request_headers:
        # The Python agent falls back to the legacy header; a stale one must not win over ours.
        edits[LEGACY_TRACEPARENT] = None
    return Begun(trace, tracestate, edits)


def expose(response_headers: HeaderView, trace: PageTrace, spec: TraceSpec, tracestate: str | None) -> dict[bytes, Edit]:
    """Header edits that let a person or a script find the page's trace from the response alone."""
    edits: dict[bytes, Edit] = {}
    if spec.server_timing:
        metric = f'traceparent;desc="{trace.traceparent}"'
        existing = response_headers.get(b"server-timing")  # repeated fields folded
        edits[b"server-timing"] = f"{existing}, {metric}" if existing else metric
    if spec.response_headers:
        edits[b"traceparent"] = trace.traceparent
        if tracestate:
            edits[b"tracestate"] = tracestate
    if spec.timing_allow_origin and b"timing-allow-origin" not in response_headers:
        edits[b"timing-allow-origin"] = spec.timing_allow_origin
    return edits
