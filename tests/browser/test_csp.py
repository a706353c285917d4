"""Pages with a Content-Security-Policy, in a real Chromium behind the reverse proxy: the agent
loads, runs and reports without a single violation, and the page's own scripts still run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    app_behind_proxy,
    browser_suite,
    reverse_proxy,
    rule,
    wait_for_page_load,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite

# Every kind of policy a site sends, each allowing the page's own script in its own way.
POLICY_PAGES = ["/csp/nonce", "/csp/hash", "/csp/strict-dynamic", "/csp/meta", "/csp/open"]


app, proxy = app_behind_proxy("csp")


@pytest.fixture(scope="module")
def keep_csp_proxy(app: BrowserApp, intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    """A second proxy whose rule may not touch a page's policy."""
    rules = [rule("keep-csp", ["127.0.0.1"], csp={"adjust": False})]
    with reverse_proxy(app, intake, tmp_path_factory.mktemp("csp-keep"), rules) as mitmdump:
        yield mitmdump


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.mark.parametrize("path", POLICY_PAGES)
def test_agent_runs_under_the_page_policy(browser_page: BrowserPage, proxy: Mitmdump, intake: Intake,
                                          path: str) -> None:
    url = proxy.url + path
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy", "the page was not instrumented"
    assert browser_page.injected()

    wait_for_page_load(intake, browser_page, url)
    assert browser_page.own_script_ran(), "the page's own script no longer runs"
    # Letting the agent in must not open the page to inline script.
    policies = [response.headers.get("content-security-policy", "")]
    policies += browser_page.page.eval_on_selector_all(
        "meta[http-equiv='Content-Security-Policy' i]", "metas => metas.map(m => m.content)"
    )
    if path != "/csp/open":
        assert all("'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy for policy in policies), policies
    browser_page.assert_clean()


def test_report_only_policy_is_left_alone(browser_page: BrowserPage, proxy: Mitmdump, app: BrowserApp,
                                          intake: Intake, http: requests.Session) -> None:
    direct = http.get(f"{app.url}/csp/report-only", timeout=10)
    url = f"{proxy.url}/csp/report-only"
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    assert response.headers["content-security-policy-report-only"] == direct.headers["content-security-policy-report-only"]
    assert "content-security-policy" not in response.headers

    wait_for_page_load(intake, browser_page, url, allow_report_only=True)  # report-only blocks nothing
    assert browser_page.own_script_ran()
    # It may report the agent, as its owner asked; it must not be enforced.
    browser_page.assert_clean(allow_report_only=True)


def test_csp_adjust_false_leaves_the_page_byte_identical(browser_page: BrowserPage, keep_csp_proxy: Mitmdump,
                                                         app: BrowserApp, http: requests.Session) -> None:
    path = "/csp/nonce?nonce=fixedNonce4test"  # a fixed nonce, so both fetches give the same bytes
    direct = http.get(app.url + path, timeout=10)
    response = browser_page.goto(keep_csp_proxy.url + path)
    assert response.status == 200
    assert response.body() == direct.content
    assert response.headers["content-security-policy"] == direct.headers["content-security-policy"]
    assert "x-rum-injected" not in response.headers
    assert not browser_page.injected()
    assert browser_page.own_script_ran()
    browser_page.assert_clean()
