"""The stream an instrumented page goes out through (`flow.response.stream`): which kind, wired to
the memo, and the framing its response's headers need."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from rumproxy import decision, htmlscan, memo
from rumproxy.charset import declared_in_header, read_as_xml
from rumproxy.flownotes import UrlLabel
from rumproxy.gzipreplay import ReplayingStream
from rumproxy.headerview import Edit, HeaderView
from rumproxy.stream import InjectingStream, StreamOutcome

if TYPE_CHECKING:
    from mitmproxy import http

    from rumproxy.planning import Plan
    from rumproxy.settings import Settings


def page_stream(
    request: http.Request,
    response: http.Response | None,
    plan: Plan,
    encoding: str,
    headers: HeaderView,
    settings: Settings,
    store: memo.RewriteMemo,
    *,
    on_done: Callable[[StreamOutcome], None] | None = None,
    key: memo.PageKey | None = None,
) -> InjectingStream:
    """A stream that injects `plan`'s markup into the page `request` asked for. With a memo budget it
    takes the head remembered for the page (`key`, made here if not given) and remembers its own;
    a gzip body also sends the remembered rewrite of an earlier body with the same bytes again."""
    content_type = headers.get(b"content-type")
    options = dict(
        encoding=encoding,
        snippet=plan.markup.encode("ascii"),
        scanner=htmlscan.InsertionScanner(
            settings.scan_limit, charset_declared=declared_in_header(content_type), xml=read_as_xml(content_type)
        ),
        on_done=on_done,
        label=UrlLabel(request),
        edit_policy=plan.edit_policy,
        splice=settings.gzip_splice,
        body_length=decision.declared_body_length(response.http_version, headers) if response else None,
    )
    if not store.budget:
        return InjectingStream(**options)
    if key is None:
        key = memo.page_key(request, headers, settings.scan_limit)
    options["known_head"] = store.get(memo.head_key(key))
    options["remember_head"] = functools.partial(memo.remember_head, store, key, content_type)
    if encoding != "gzip":
        return InjectingStream(**options)
    return ReplayingStream(**options, snippet_fixed=plan.markup_fixed, memo=store, memo_key=key)


def streamed_framing(http_version: str, headers: HeaderView) -> dict[bytes, Edit]:
    """Header edits for a body whose length the stream changes: no Content-Length, and on HTTP/1.1
    chunked framing (on HTTP/2 the stream's frames end it)."""
    framing: dict[bytes, Edit] = {b"content-length": None}
    if http_version == "HTTP/1.1" and "chunked" not in headers.get(b"transfer-encoding", ""):
        framing[b"transfer-encoding"] = "chunked"
    return framing
