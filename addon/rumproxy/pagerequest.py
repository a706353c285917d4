"""What the proxy changes in a page request a rule matched before it goes upstream: the trace it
starts or continues (tracing) and the compressions it asks for (acceptencoding)."""

from __future__ import annotations

from typing import NamedTuple

from rumproxy import acceptencoding, decision, tracing
from rumproxy.headerview import Edit, HeaderView
from rumproxy.redirects import FollowedTrace
from rumproxy.rules import Rule
from rumproxy.snippet import PageTrace


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class Upstream(NamedTuple):
    edits: dict[bytes, Edit]  # for the request's headers
    trace: PageTrace | None = None
    tracestate: str | None = None  # as the request goes upstream


UNCHANGED = Upstream({})
# A page that carries its load's trace ids must come from the upstream whole: a 304 would have the
# browser show its cached copy, with the ids of the load that fetched it, while the backend's
# transaction for this request waits for a page load that never names it.
CONDITIONALS: dict[bytes, Edit] = {b"if-none-match": None, b"if-modified-since": None}


def prepare(
    method: str, headers: HeaderView, rule: Rule, *, prefer_gzip: bool, follows: FollowedTrace | None = None
) -> Upstream:
    """Only page navigations change: other requests neither start a trace nor get rewritten; a
    page's prefetch (decision.is_prefetch) is rewritten, but starts no trace. A navigation that
    `follows` a traced redirect continues its trace (redirects)."""
    navigation = decision.is_navigation(method, headers)
    if not navigation and not decision.is_prefetch(headers):
        return UNCHANGED
    edits: dict[bytes, Edit] = {}
    if rule.inject and prefer_gzip and b"accept-encoding" in headers:
        accept_encoding = acceptencoding.preferring_gzip(headers.text(b"accept-encoding"))
        if accept_encoding is not None:
            edits[b"accept-encoding"] = accept_encoding
    if not navigation or not rule.trace.propagate:
        return Upstream(edits)
    begun = tracing.begin(headers, rule.trace, follows)
    if rule.inject and (b"if-none-match" in headers or b"if-modified-since" in headers):
        edits.update(CONDITIONALS)
    return Upstream({**edits, **begun.upstream_edits}, begun.trace, begun.tracestate)
