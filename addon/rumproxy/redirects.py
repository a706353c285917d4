"""Redirects that answered a traced navigation, remembered for a few seconds, so the navigation that
follows one (POST /login → 303 → GET /) continues its trace with the same span id: the page load
that finally comes then reports both backend transactions, the redirect's and the page's, under its
"Requesting and receiving the document" span, instead of leaving the redirect's on its own.

A browser follows a redirect at once, but often on a new connection (an upstream that answers with
`Connection: close`, as gunicorn's sync workers do, has mitmproxy close the client's too), so a
redirect is remembered for its client: its address, User-Agent and Referer (a followed redirect
keeps the Referer of the request it answered), and the path the Location leads to. It is taken by
the first navigation that matches, within seconds; another user would have to share all of that
and navigate to the same path in that moment. A navigation that matches none gets a trace of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urljoin, urlsplit

from mitmproxy import http

from rumproxy.snippet import PageTrace

FOLLOW_WITHIN_S = 10.0
MAX_REMEMBERED = 1024


class FollowedTrace(NamedTuple):
    trace: PageTrace
    tracestate: str | None


class _Remembered(NamedTuple):
    followed: FollowedTrace
    expires: float


def target_path(request_path: str, location: str) -> str | None:
    """The path and query a redirect's Location leads to (resolved against the request's path);
    None for a Location that is not an http(s) URL or a reference."""
    target = urlsplit(urljoin(request_path, location.strip()))
    if target.scheme not in ("", "http", "https") or not target.path.startswith("/"):
        return None
    return f"{target.path}?{target.query}" if target.query else target.path


Client = tuple[str, str | None, str | None]  # address, User-Agent, Referer


def client_of(flow: http.HTTPFlow, user_agent: str | None, referer: str | None) -> Client:
    peer = flow.client_conn.peername
    return (peer[0] if peer else "", user_agent, referer)


class RedirectTraces:
    """Redirects awaiting the navigation that follows them, by client and target path."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # Public so the request hook can tell "none waiting" without a call.
        self.waiting: dict[tuple[Client, str], _Remembered] = {}

    def remember(self, client: Client, request_path: str, location: str, followed: FollowedTrace) -> None:
        path = target_path(request_path, location)
        if path is None:
            return
        now = self._clock()
        if len(self.waiting) >= MAX_REMEMBERED:
            self._forget_expired(now)
            if len(self.waiting) >= MAX_REMEMBERED:
                del self.waiting[next(iter(self.waiting))]  # the oldest
        self.waiting[client, path] = _Remembered(followed, now + FOLLOW_WITHIN_S)

    def take(self, client: Client, path: str) -> FollowedTrace | None:
        """The trace of the redirect this request follows, if it follows one (once)."""
        remembered = self.waiting.pop((client, path), None)
        if remembered is None or remembered.expires < self._clock():
            return None
        return remembered.followed

    def _forget_expired(self, now: float) -> None:
        for key in [key for key, remembered in self.waiting.items() if remembered.expires < now]:
            del self.waiting[key]
