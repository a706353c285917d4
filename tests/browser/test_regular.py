"""The modes a browser is configured for, regular (an HTTP proxy) and SOCKS5, in a real Chromium:
only the sites the rules name are instrumented, others pass byte for byte, and HTTPS sites work
through mitmproxy's CA. Every test runs in both modes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from tests.certificates import self_signed_certificate, spki_sha256
from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    assert_document_linked,
    browser_suite,
    linked_backend,
    rule,
    wait_for_page_load,
    write_rules,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite


@pytest.fixture(scope="module")
def app(intake: Intake) -> Iterator[BrowserApp]:
    """The site the rules name."""
    with BrowserApp(apm_server_url=intake.url, service_name="named-backend") as server:
        yield server


@pytest.fixture(scope="module")
def other_app() -> Iterator[BrowserApp]:
    """A site on the same host, another port, that the rules do not name."""
    with BrowserApp(service_name="other-backend") as server:
        yield server


@pytest.fixture(scope="module")
def tls_app(intake: Intake, tmp_path_factory) -> Iterator[BrowserApp]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with BrowserApp(apm_server_url=intake.url, service_name="tls-backend",
                    args=["--tls-cert", str(cert), "--tls-key", str(key)]) as server:
        yield server


# mitmproxy's mode, and the scheme of the browser's --proxy-server for it.
PROXY_SCHEMES = {"regular": "http", "socks5": "socks5"}


@pytest.fixture(scope="module", params=list(PROXY_SCHEMES))
def proxy(request: pytest.FixtureRequest, app: BrowserApp, other_app: BrowserApp, tls_app: BrowserApp,
          intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = write_rules(
        tmp_path_factory.mktemp(request.param) / "rules.yaml",
        server_url=intake.url,
        rules=[rule("named", [f"127.0.0.1:{app.port}", f"127.0.0.1:{tls_app.port}"])],
    )
    # The TLS site's certificate is self-signed.
    with Mitmdump(mode=request.param, rules=rules, args=["--set", "ssl_insecure=true"]) as mitmdump:
        yield mitmdump


@pytest.fixture(scope="module")
def browser_args(proxy: Mitmdump) -> list[str]:
    scheme = PROXY_SCHEMES[proxy.mode]
    return [
        f"--proxy-server={scheme}://127.0.0.1:{proxy.port}",
        "--proxy-bypass-list=<-loopback>",  # Chromium sends loopback around the proxy otherwise
        f"--ignore-certificate-errors-spki-list={spki_sha256(proxy.ca_cert)}",
    ]


def test_the_named_site_is_instrumented(browser_page: BrowserPage, app: BrowserApp, intake: Intake) -> None:
    url = f"{app.url}/"
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()


def test_a_site_the_rules_do_not_name_passes_byte_for_byte(browser_page: BrowserPage, proxy: Mitmdump,
                                                           other_app: BrowserApp) -> None:
    direct = requests.Session()
    direct.trust_env = False
    expected = direct.get(f"{other_app.url}/", timeout=10)
    mark = proxy.mark()
    response = browser_page.goto(f"{other_app.url}/")
    proxy.wait_for_log(re.escape(f"GET {other_app.url}/"), since=mark)  # it did go through the proxy
    assert response.body() == expected.content
    assert "x-rum-injected" not in response.headers
    assert not browser_page.injected()
    browser_page.page.wait_for_selector("#items[data-state=loaded]")
    browser_page.assert_clean()


def test_https_site_through_the_proxy(browser_page: BrowserPage, tls_app: BrowserApp, intake: Intake) -> None:
    url = f"{tls_app.url}/"
    assert url.startswith("https://")
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()


def test_an_https_page_the_site_sends_as_br_comes_as_gzip(browser_page: BrowserPage, tls_app: BrowserApp,
                                                          intake: Intake) -> None:
    """Over HTTPS Chromium accepts br and zstd as well as gzip, and this page is br when br is
    accepted: the proxy asks the site for gzip instead (rum_prefer_gzip), splices into it, and the
    page renders whole with the agent reporting its load."""
    paragraphs = 4000
    url = f"{tls_app.url}/large?paragraphs={paragraphs}&br=1"
    response = browser_page.goto(url)
    sent = response.request.all_headers()
    assert "br" in sent["accept-encoding"] and "gzip" in sent["accept-encoding"]
    assert response.headers.get("content-encoding") == "gzip"
    assert response.headers.get("x-rum-injected") == "rumproxy"
    browser_page.assert_large_page_whole(paragraphs)
    wait_for_page_load(intake, browser_page, url)
    browser_page.assert_clean()
