"""A single-page app and a page with its own copy of the agent, in a real Chromium behind the
reverse proxy: route changes are reported after the page load, and no page gets two agents."""

from __future__ import annotations

from tests.browser.support import (
    FRONTEND,
    BrowserPage,
    app_behind_proxy,
    backend_transaction,
    browser_suite,
    page_loads,
    page_url,
    rum_spans,
    transactions,
    wait_for_page_load,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite

# The agents send a page load about 1 s after `load`; a second agent's would come as soon.
SECOND_AGENT_GRACE_MS = 2500


app, proxy = app_behind_proxy("spa")


def route_changes(events: list[dict]) -> list[dict]:
    return transactions(events, endpoint="rum", type="route-change", service=FRONTEND)


def test_route_changes_follow_the_page_load(browser_page: BrowserPage, proxy: Mitmdump, intake: Intake) -> None:
    url = f"{proxy.url}/spa"
    browser_page.goto(url)
    load = wait_for_page_load(intake, browser_page, url)

    reported = []
    for route in ("a", "b"):
        # One click at a time: a click while the last route change is open would redefine it.
        browser_page.page.click(f"#route-{route}")
        browser_page.page.wait_for_selector(f"#view[data-state='shown {route}']")
        changes = browser_page.wait_for_intake(
            intake, lambda events: [t for t in route_changes(events) if page_url(t).endswith(f"/spa/{route}")],
            what=f"the route-change transaction of /spa/{route}",
        )
        reported.append(changes[0])

    events = intake.events()
    # In the order the intake received them: the page load, then one route change per click.
    rum = [(t["type"], t["id"]) for t in transactions(events, endpoint="rum", service=FRONTEND)]
    assert rum == [("page-load", load["id"])] + [("route-change", t["id"]) for t in reported]
    for change in reported:
        assert change["trace_id"] != load["trace_id"]
        # Each route's API call carried the route change's trace to the backend.
        [fetch] = [s for s in rum_spans(events, change["trace_id"]) if s["type"] == "external"]
        called = browser_page.wait_for_intake(
            intake, lambda events: backend_transaction(events, change["trace_id"], "GET /api/items"),
            what="the backend transaction of the route's API call",
        )
        assert called["parent_id"] == fetch["id"]
    browser_page.assert_clean()


def test_a_page_with_its_own_agent_gets_one_page_load(browser_page: BrowserPage, proxy: Mitmdump,
                                                      intake: Intake) -> None:
    url = f"{proxy.url}/own-agent"
    browser_page.goto(url)
    wait_for_page_load(intake, browser_page, url, service=None)
    assert browser_page.own_script_ran()
    # A second agent would report its own page load about as soon as the first did.
    browser_page.page.wait_for_timeout(SECOND_AGENT_GRACE_MS)
    loads = page_loads(intake.events(), url)
    assert len(loads) == 1, f"{len(loads)} page loads: {[(t['id'], t['name']) for t in loads]}"
    assert browser_page.page.evaluate("document.querySelectorAll('script[src*=\"elastic-apm-rum\"]').length") == 1
    browser_page.assert_clean()
