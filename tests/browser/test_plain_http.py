"""A site on a plain-HTTP origin other than localhost (an intranet host, a machine on the LAN), in
a real Chromium behind the reverse proxy. Chromium sends no fetch metadata to such an origin: the
proxy tells the page's navigation by its Upgrade-Insecure-Requests, and the page's own requests
by their Referer without it."""

from __future__ import annotations

import pytest

from tests.browser.support import (
    BrowserPage,
    app_behind_proxy,
    assert_document_linked,
    backend_transaction,
    browser_suite,
    linked_backend,
    rum_spans,
    transactions,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite

SITE = "shop.test"
app, proxy = app_behind_proxy("plain-http")


@pytest.fixture(scope="module")
def browser_args() -> list[str]:
    # The proxy under a name: an origin that is not potentially trustworthy, as a LAN host's is.
    return [f"--host-resolver-rules=MAP {SITE} 127.0.0.1"]


def test_the_page_is_traced_and_its_own_requests_are_left_alone(browser_page: BrowserPage, proxy: Mitmdump,
                                                                 intake: Intake) -> None:
    mark = proxy.mark()
    url = f"http://{SITE}:{proxy.port}/"
    browser_page.goto(url)
    assert browser_page.injected()
    load, backend = browser_page.wait_for_intake(intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction")
    assert_document_linked(intake.events(), load, backend)
    sent = {name.lower() for name in backend["context"]["request"]["headers"]}
    assert "sec-fetch-dest" not in sent and "upgrade-insecure-requests" in sent, sorted(sent)

    # The page's fetch carries the agent's trace (its span is the parent), the favicon none: the
    # proxy started no trace for either.
    items = browser_page.wait_for_intake(intake, lambda events: backend_transaction(events, load["trace_id"], "GET /api/items"), what="the backend transaction of the page's fetch")
    assert items["parent_id"] in {span["id"] for span in rum_spans(intake.events(), load["trace_id"])}
    favicons = browser_page.wait_for_intake(
        intake, lambda events: [t for t in transactions(events, endpoint="backend") if t.get("name") == "GET /favicon.ico"],
        what="the backend transaction of the favicon",
    )
    assert [t.get("parent_id") for t in favicons] == [None] * len(favicons)
    assert "not injected" not in proxy.log_text(since=mark)
    browser_page.assert_clean()
