"""Reverse mode in a real Chromium: the injected agent reports a page load that is one trace with
the backend request of the document, and with a cross-origin API call made by the page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.support import (
    FRONTEND,
    BrowserApp,
    BrowserPage,
    assert_document_linked,
    backend_transaction,
    browser_suite,
    linked_backend,
    page_load,
    reverse_proxy,
    rule,
    rum_spans,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite


@pytest.fixture(scope="module")
def app(intake: Intake) -> Iterator[BrowserApp]:
    with BrowserApp(apm_server_url=intake.url, service_name="browser-backend") as server:
        yield server


@pytest.fixture(scope="module")
def api(intake: Intake) -> Iterator[BrowserApp]:
    """A second instance on another port: the page's cross-origin API."""
    with BrowserApp(apm_server_url=intake.url, service_name="browser-api") as server:
        yield server


@pytest.fixture(scope="module")
def proxy(app: BrowserApp, api: BrowserApp, intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = [rule("site", ["127.0.0.1"], config={"distributedTracingOrigins": [api.origin]})]
    with reverse_proxy(app, intake, tmp_path_factory.mktemp("reverse"), rules) as mitmdump:
        yield mitmdump


def test_page_load_and_document_request_are_one_trace(browser_page: BrowserPage, proxy: Mitmdump,
                                                      intake: Intake) -> None:
    url = f"{proxy.url}/"
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    assert browser_page.injected()

    load, backend = browser_page.wait_for_intake(intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction")
    events = intake.events()
    assert page_load(events, url, service=FRONTEND) == load
    assert_document_linked(events, load, backend)
    assert f'traceparent;desc="00-{load["trace_id"]}-' in response.headers.get("server-timing", "")
    assert browser_page.page.locator("#items").get_attribute("data-state") == "loaded"
    browser_page.assert_clean()


def test_cross_origin_api_call_continues_the_page_trace(browser_page: BrowserPage, proxy: Mitmdump, api: BrowserApp,
                                                         intake: Intake) -> None:
    url = f"{proxy.url}/?api={api.origin}"
    browser_page.goto(url)
    browser_page.page.wait_for_selector("#items[data-state=loaded]")

    def api_call(events):
        load = page_load(events, url)
        if load is None:
            return None
        called = backend_transaction(events, load["trace_id"], "GET /api/items", service="browser-api")
        return (load, called) if called else None

    load, called = browser_page.wait_for_intake(intake, api_call, what="the page load and the API transaction")
    spans = {span["id"]: span for span in rum_spans(intake.events(), load["trace_id"])}
    assert called["parent_id"] in spans, "the API transaction's parent is not a span of the page load"
    parent = spans[called["parent_id"]]
    assert (parent["type"], parent["subtype"]) == ("external", "http")
    assert parent["name"] == f"GET {api.origin}/api/items"
    assert parent["transaction_id"] == load["id"]
    # The header the API received (elastic-apm records request headers here).
    sent = called["context"]["request"]["headers"]["traceparent"]
    assert sent == f"00-{load['trace_id']}-{parent['id']}-01"
    browser_page.assert_clean()
