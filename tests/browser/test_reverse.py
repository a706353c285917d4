"""Reverse mode in a real Chromium: the injected agent reports a page load that is one trace with
the backend request of the document, and with a cross-origin API call made by the page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.apps.browserapp import XHTML_PARAGRAPHS
from tests.browser.support import (
    FRONTEND,
    BrowserApp,
    BrowserPage,
    Event,
    assert_document_linked,
    backend_transaction,
    browser_app,
    browser_suite,
    linked_backend,
    page_load,
    page_loads,
    reverse_proxy,
    rule,
    rum_spans,
    transactions,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite


app = browser_app("browser-backend")
api = browser_app("browser-api")  # a second instance on another port: the page's cross-origin API


@pytest.fixture(scope="module")
def proxy(app: BrowserApp, api: BrowserApp, intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = [rule("site", ["127.0.0.1"], config={"distributedTracingOrigins": [api.origin]}, xhtml=True)]
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


def test_a_base_href_to_another_origin_does_not_take_the_agent_away(browser_page: BrowserPage, proxy: Mitmdump,
                                                                    api: BrowserApp, intake: Intake) -> None:
    """A page whose <base href> names another origin before its charset meta (Joomla's head): the
    agent, at a root-relative URL, still comes from the proxy, and the page load is linked."""
    url = f"{proxy.url}/based?base={api.origin}"
    browser_page.goto(url)
    assert browser_page.own_script_ran()
    assert browser_page.page.evaluate("() => !!(window.elasticApm && window.elasticApm.isActive())")
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url, "GET /based"), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()


def test_a_page_whose_charset_meta_follows_a_script_keeps_its_charset(browser_page: BrowserPage, proxy: Mitmdump,
                                                                      intake: Intake) -> None:
    """Only the meta names the charset: the snippet goes after it, past the page's first script,
    and the page still decodes as UTF-8, runs its script first and reports its linked page load."""
    url = f"{proxy.url}/script-first"
    response = browser_page.goto(url)
    body, meta = response.body(), b'<meta charset="utf-8">'
    assert body.index(b'<script src="/__rum/') == body.index(meta) + len(meta) <= 1024  # where the prescan reads it
    page = browser_page.page
    assert page.evaluate("document.characterSet") == "UTF-8"
    assert page.locator("#title").text_content() == "Café crème, façade"
    assert page.evaluate("window.dataLayer.length") == 12 and browser_page.own_script_ran()
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url, "GET /script-first"), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()


def test_an_xhtml_page_stays_well_formed_xml(browser_page: BrowserPage, proxy: Mitmdump, intake: Intake) -> None:
    """A page served as application/xhtml+xml (the rule says xhtml: true) is parsed as XML, where an
    attribute without a value or a bare "&" in a script is an error the browser shows instead of the
    page: the snippet is well-formed XML there, the page renders whole, and its load is linked."""
    url = f"{proxy.url}/xhtml"
    page = load_xhtml(browser_page, url)
    assert page.locator("#title").text_content() == "Café & crème"
    assert_ran_and_linked(browser_page, intake, url, "GET /xhtml")


def test_an_xhtml_page_is_read_as_an_xml_parser_reads_it(browser_page: BrowserPage, proxy: Mitmdump, intake: Intake) -> None:
    """Empty elements (`<title/>`, `<style/>`), a comment that `<!-->` opens, a CDATA section and a
    doctype whose internal subset has "]>" and a tag in an entity: read as HTML, the snippet went
    into that entity's value (a parser error instead of the page); it goes where XML has it, before
    the page's scripts."""
    url = f"{proxy.url}/xhtml?head=xml"
    page = load_xhtml(browser_page, url)
    assert page.locator("#title").text_content() == "Café crème" and page.title() == ""
    assert page.evaluate("document.querySelectorAll('main p').length") == XHTML_PARAGRAPHS
    assert page.evaluate("[...document.scripts].map(s => s.src.includes('/__rum/'))") == [True, False, False]
    assert_ran_and_linked(browser_page, intake, url, "GET /xhtml")


def load_xhtml(browser_page: BrowserPage, url: str) -> Any:
    """The page at `url`, instrumented and parsed as XML without an error."""
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    page = browser_page.page
    assert page.evaluate("document.contentType") == "application/xhtml+xml"
    assert page.locator("parsererror").count() == 0, page.content()[:2000]
    return page


def assert_ran_and_linked(browser_page: BrowserPage, intake: Intake, url: str, backend_name: str) -> None:
    """The page's own script and the agent ran, and the page load is linked to its backend transaction."""
    assert browser_page.own_script_ran()
    assert browser_page.page.evaluate("() => !!(window.elasticApm && window.elasticApm.isActive())")
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url, backend_name), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()


def new_page_load(url: str, seen: list[Event]) -> Callable[[list[Event]], Event | None]:
    """For wait_for_intake: a page load of `url` that is none of `seen`."""
    known = {load["id"] for load in seen}
    return lambda events: next((load for load in page_loads(events, url) if load["id"] not in known), None)


def navigation_entry(page: Any, attribute: str) -> Any:
    """An attribute of the current document's Navigation Timing entry (deliveryType "cache": the
    browser took the document from its cache)."""
    return page.evaluate(f"performance.getEntriesByType('navigation')[0].{attribute}")


def test_a_page_from_the_browser_cache_gets_a_trace_of_its_own(browser_page: BrowserPage, proxy: Mitmdump,
                                                               intake: Intake) -> None:
    """The ids in a page belong to the load that fetched it. Shown again from Chromium's cache, the
    page load starts a trace of its own (no request reached the backend); reloaded, it is
    revalidated, and the proxy has the upstream send it whole with the ids of the reload."""
    url = f"{proxy.url}/cached"
    page = browser_page.page
    browser_page.goto(url)
    first, _ = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url, "GET /cached"), what="the page load and its backend transaction"
    )
    page.click("#away")
    page.wait_for_url(f"{proxy.url}/away", wait_until="load")
    page.click("#back")
    page.wait_for_url(url, wait_until="load")
    assert navigation_entry(page, "deliveryType") == "cache", "Chromium fetched the page again: this test needs it from its cache"
    again = browser_page.wait_for_intake(intake, new_page_load(url, [first]), what="the page load from the cache")
    assert again["trace_id"] != first["trace_id"]
    assert backend_transaction(intake.events(), again["trace_id"]) is None

    page.reload(wait_until="load")
    assert navigation_entry(page, "deliveryType") == "", "the reload came from Chromium's cache (a 304?)"
    reloaded = browser_page.wait_for_intake(intake, new_page_load(url, [first, again]), what="the page load of the reload")
    backend = browser_page.wait_for_intake(
        intake, lambda events: backend_transaction(events, reloaded["trace_id"], "GET /cached"), what="the reload's backend transaction"
    )
    assert reloaded["trace_id"] not in (first["trace_id"], again["trace_id"])
    assert_document_linked(intake.events(), reloaded, backend)
    browser_page.assert_clean()


def test_a_page_prefetched_into_the_cache_runs_the_agent(browser_page: BrowserPage, proxy: Mitmdump,
                                                         intake: Intake) -> None:
    """`<link rel=prefetch>` fetches the next page for the browser's cache, and the navigation
    shows that copy without a request: it has the agent, but no trace ids (no page load was
    waiting for them), so the prefetch went upstream without a traceparent."""
    url = f"{proxy.url}/cached"
    page = browser_page.page
    events = intake.events()
    known_requests = {t["id"] for t in transactions(events, endpoint="backend") if t.get("name") == "GET /cached"}
    earlier_loads = page_loads(events, url)

    def prefetch(events: list[Event]) -> Event | None:
        return next((t for t in transactions(events, endpoint="backend") if t.get("name") == "GET /cached" and t["id"] not in known_requests), None)

    browser_page.goto(f"{proxy.url}/prefetching")
    prefetched = browser_page.wait_for_intake(intake, prefetch, what="the backend transaction of the prefetch")
    assert not prefetched.get("parent_id"), "the prefetch carried a traceparent"
    page.click("#next")
    page.wait_for_url(url, wait_until="load")
    assert navigation_entry(page, "deliveryType") == "cache", "Chromium fetched the page again: this test needs the prefetched copy"
    assert browser_page.injected()
    load = browser_page.wait_for_intake(intake, new_page_load(url, earlier_loads), what="the page load")
    assert load["trace_id"] != prefetched["trace_id"]
    assert backend_transaction(intake.events(), load["trace_id"]) is None
    browser_page.assert_clean()


def test_a_login_form_and_the_page_its_redirect_leads_to_are_one_trace(browser_page: BrowserPage, proxy: Mitmdump,
                                                                        intake: Intake) -> None:
    """POST /login → 303 → /: the page load of / reports the POST's backend transaction and its own
    under its document span, instead of leaving the POST's in a trace no page load reports."""
    page = browser_page.page
    browser_page.goto(f"{proxy.url}/login")
    page.click("#sign-in")
    page.wait_for_url(f"{proxy.url}/", wait_until="load")
    url = f"{proxy.url}/"
    load, backend = browser_page.wait_for_intake(intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction")
    events = intake.events()
    assert_document_linked(events, load, backend)
    posted = browser_page.wait_for_intake(intake, lambda events: backend_transaction(events, load["trace_id"], "POST /login"), what="the POST's backend transaction in the page load's trace")
    assert posted["parent_id"] == backend["parent_id"]
    browser_page.assert_clean()


def test_an_instrumented_page_stays_eligible_for_the_back_forward_cache(browser_page: BrowserPage, proxy: Mitmdump) -> None:
    """Neither the snippet nor the agent keeps Chromium from keeping the page in its back/forward
    cache (an `unload` handler would): going back restores the page as it was, without a new load."""
    page = browser_page.page
    browser_page.goto(f"{proxy.url}/away")
    assert browser_page.injected()
    page.evaluate("window.addEventListener('pageshow', function (e) { window.restored = e.persisted; })")
    page.evaluate("window.marker = 'still here'")
    page.click("#back")
    page.wait_for_url(f"{proxy.url}/cached", wait_until="load")
    page.go_back(wait_until="commit")  # a page restored from the cache fires no new load
    page.wait_for_function("document.readyState === 'complete'")
    assert page.evaluate("window.marker") == "still here", "the page was loaded again, not restored"
    assert page.evaluate("window.restored") is True
    browser_page.assert_clean()
