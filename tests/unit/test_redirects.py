"""The navigation that follows a traced redirect continues its trace (rumproxy.redirects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy.test import taddons

from rumproxy import tracing
from rumproxy.addon import RumInject
from rumproxy.redirects import FOLLOW_WITHIN_S, MAX_REMEMBERED, FollowedTrace, RedirectTraces, target_path
from rumproxy.rules import TraceSpec
from rumproxy.snippet import PageTrace
from tests.unit.rulesfiles import write_rules
from tests.unit.test_addon import page_flow, run
from tests.unit.test_decision import view

TRACE = PageTrace("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", True, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
FOLLOWED = FollowedTrace(TRACE, "es=s:1")


@pytest.mark.parametrize(
    ("request_path", "location", "path"),
    [
        ("/login", "/", "/"),
        ("/login", " /account?tab=orders#top ", "/account?tab=orders"),
        ("/a/b?x=1", "c", "/a/c"),
        ("/login", "https://shop.test/home", "/home"),
        ("/login", "//shop.test/home?x", "/home?x"),
        ("/login", "mailto:someone@shop.test", None),
    ],
)
def test_a_location_is_resolved_to_the_path_the_browser_asks_for(request_path, location, path):
    assert target_path(request_path, location) == path


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


BROWSER = ("192.0.2.7", "Mozilla/5.0 (X11; Linux x86_64) Chrome/142.0.0.0", "https://shop.test/login")


@pytest.mark.parametrize(
    "other",
    [
        ("192.0.2.8", BROWSER[1], BROWSER[2]),  # another address
        (BROWSER[0], "Mozilla/5.0 (Macintosh) Safari/605.1.15", BROWSER[2]),  # another browser behind the same address
        (BROWSER[0], BROWSER[1], "https://shop.test/"),  # a navigation from another page
        (BROWSER[0], BROWSER[1], None),
    ],
)
def test_a_redirect_is_followed_once_by_its_own_client_within_the_window(other):
    clock = Clock()
    redirects = RedirectTraces(clock)
    redirects.remember(BROWSER, "/login", "/home", FOLLOWED)
    assert redirects.take(other, "/home") is None
    assert redirects.take(BROWSER, "/other") is None
    assert redirects.take(BROWSER, "/home") == FOLLOWED
    assert redirects.take(BROWSER, "/home") is None  # once
    redirects.remember(BROWSER, "/login", "/home", FOLLOWED)
    clock.now += FOLLOW_WITHIN_S + 0.1
    assert redirects.take(BROWSER, "/home") is None
    assert not redirects.waiting


def test_remembered_redirects_are_bounded():
    clock = Clock()
    redirects = RedirectTraces(clock)
    clients = [(f"192.0.2.{index % 250}", f"agent {index}", None) for index in range(MAX_REMEMBERED + 10)]
    for client in clients:
        redirects.remember(client, "/login", "/home", FOLLOWED)
    assert len(redirects.waiting) == MAX_REMEMBERED
    assert redirects.take(clients[0], "/home") is None  # the oldest went first
    assert redirects.take(clients[-1], "/home") == FOLLOWED


def test_a_followed_trace_goes_upstream_with_the_same_ids():
    begun = tracing.begin(view(elastic_apm_traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"), TraceSpec(), FOLLOWED)
    assert begun.trace == TRACE and begun.tracestate == "es=s:1"
    assert begun.upstream_edits == {b"traceparent": TRACE.traceparent, b"tracestate": "es=s:1", b"elastic-apm-traceparent": None}


def test_an_incoming_traceparent_wins_over_a_followed_trace():
    incoming = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    begun = tracing.begin(view(traceparent=incoming), TraceSpec(), FOLLOWED)
    assert begun.trace.trace_id == "a" * 32 and begun.trace.continued and not begun.upstream_edits
    invalid = tracing.begin(view(traceparent="00-zz", tracestate="other=1"), TraceSpec(), FOLLOWED)
    assert invalid.trace == TRACE and invalid.tracestate == "es=s:1"


def test_the_addon_continues_a_redirects_trace_for_the_same_client(tmp_path: Path):
    rules = write_rules(tmp_path)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        redirect = page_flow(body=b"<p>Redirecting...</p>")
        redirect.request.headers["user-agent"] = BROWSER[1]
        redirect.response.status_code = 303
        redirect.response.headers["location"] = "/home?welcome=1"
        run(rum, redirect)
        assert redirect.response.content == b"<p>Redirecting...</p>"
        traceparent = redirect.request.headers["traceparent"]

        page = page_flow()  # on a new connection, from the same address
        page.request.headers["user-agent"] = BROWSER[1]
        page.request.path = "/home?welcome=1"
        run(rum, page)
        assert page.request.headers["traceparent"] == traceparent
        meta = page.metadata["rumproxy"]
        assert meta["traceparent"] == traceparent and meta["action"].startswith("injected")
        assert traceparent.split("-")[1].encode() in page.response.content

        again = page_flow()  # the same client and path once more: a trace of its own
        again.request.headers["user-agent"] = BROWSER[1]
        again.request.path = "/home?welcome=1"
        run(rum, again)
        assert again.request.headers["traceparent"].split("-")[1] != traceparent.split("-")[1]
