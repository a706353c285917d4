"""A site whose host is an internationalized name, in a real Chromium: the rules name it as people
write it (bücher.example), Chromium sends it in ASCII (xn--bcher-kva.example); the page's call to
an API under another such name carries the page's trace whichever way the page's code writes it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    assert_document_linked,
    backend_transaction,
    browser_app,
    browser_suite,
    linked_backend,
    page_load,
    rule,
    rum_spans,
    write_rules,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite

SITE, SITE_ASCII = "bücher.example", "xn--bcher-kva.example"
API, API_ASCII = "api.bücher.example", "api.xn--bcher-kva.example"


@pytest.fixture(scope="module")
def browser_args() -> list[str]:
    return [f"--host-resolver-rules=MAP {SITE_ASCII} 127.0.0.1, MAP {API_ASCII} 127.0.0.1"]


app = browser_app("idn-backend")
api = browser_app("idn-api")


@pytest.fixture(scope="module")
def proxy(app: BrowserApp, api: BrowserApp, intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = [rule("site", [SITE], trace={"api_origins": [f"http://{API}:{api.port}"]})]
    path = write_rules(tmp_path_factory.mktemp("idn") / "rules.yaml", server_url=intake.url, rules=rules)
    # The client's Host reaches the rules (in reverse mode mitmproxy would write the app's instead).
    with Mitmdump(mode=f"reverse:{app.url}", rules=path, args=["--set", "keep_host_header=true"]) as mitmdump:
        yield mitmdump


@pytest.mark.parametrize("api_host", [API, API_ASCII], ids=["api-as-written", "api-in-ascii"])
def test_a_site_with_an_internationalized_name_is_traced_into_its_api(browser_page: BrowserPage, proxy: Mitmdump,
                                                                     api: BrowserApp, intake: Intake, api_host: str) -> None:
    url = f"http://{SITE_ASCII}:{proxy.port}/?api=http://{api_host}:{api.port}"
    browser_page.goto(f"http://{SITE}:{proxy.port}/?api=http://{api_host}:{api.port}")
    assert browser_page.injected()
    browser_page.page.wait_for_selector("#items[data-state=loaded]")
    load, backend = browser_page.wait_for_intake(intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction")
    assert_document_linked(intake.events(), load, backend)

    def api_call(events):
        return backend_transaction(events, load["trace_id"], "GET /api/items", service="idn-api")

    called = browser_page.wait_for_intake(intake, api_call, what="the API transaction in the page's trace")
    spans = {span["id"]: span for span in rum_spans(intake.events(), load["trace_id"])}
    assert spans[called["parent_id"]]["subtype"] == "http"
    assert page_load(intake.events(), url) == load
    browser_page.assert_clean()
