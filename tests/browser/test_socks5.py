"""SOCKS5 mode in a real Chromium: the browser's proxy is `socks5://`, and its pages, HTTP and
HTTPS (with mitmproxy's CA), are instrumented and linked like through the regular proxy."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    assert_document_linked,
    browser_suite,
    linked_backend,
    rule,
    self_signed_certificate,
    spki_sha256,
    write_rules,
)
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite


@pytest.fixture(scope="module")
def app(intake: Intake) -> Iterator[BrowserApp]:
    with BrowserApp(apm_server_url=intake.url, service_name="socks-backend") as server:
        yield server


@pytest.fixture(scope="module")
def tls_app(intake: Intake, tmp_path_factory) -> Iterator[BrowserApp]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with BrowserApp(apm_server_url=intake.url, service_name="socks-tls-backend",
                    args=["--tls-cert", str(cert), "--tls-key", str(key)]) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(app: BrowserApp, tls_app: BrowserApp, intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = write_rules(
        tmp_path_factory.mktemp("socks5") / "rules.yaml",
        server_url=intake.url,
        rules=[rule("socks", [f"127.0.0.1:{app.port}", f"127.0.0.1:{tls_app.port}"])],
    )
    # The TLS site's certificate is self-signed.
    with Mitmdump(mode="socks5", rules=rules, args=["--set", "ssl_insecure=true"]) as mitmdump:
        yield mitmdump


@pytest.fixture(scope="module")
def browser_args(proxy: Mitmdump) -> list[str]:
    return [
        f"--proxy-server=socks5://127.0.0.1:{proxy.port}",
        "--proxy-bypass-list=<-loopback>",  # Chromium sends loopback around the proxy otherwise
        f"--ignore-certificate-errors-spki-list={spki_sha256(proxy.ca_cert)}",
    ]


@pytest.mark.parametrize("site", ["app", "tls_app"], ids=["http", "https"])
def test_page_through_socks5_is_one_trace_with_its_backend(request: pytest.FixtureRequest, site: str,
                                                           browser_page: BrowserPage, proxy: Mitmdump,
                                                           intake: Intake) -> None:
    server: BrowserApp = request.getfixturevalue(site)
    url = f"{server.url}/"
    mark = proxy.mark()
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    proxy.wait_for_log(r"GET " + re.escape(url), since=mark)  # it did go through the proxy
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()
