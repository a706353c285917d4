"""HTTP/3 in a real Chromium: mitmproxy in reverse mode speaks HTTP/3 (QUIC) to the browser and to
the site (`--mode reverse:https://` for a browser that comes over QUIC, and `reverse:http3://`;
WireGuard mode does the same for a phone's browser when a site offers HTTP/3), the site being the
browser app served by hypercorn over QUIC with the real elastic-apm agent. The page is instrumented and its load linked to the backend, and long gzip
pages, rewritten whole or streamed, render whole: HTTP/3 frames the body itself, so a streamed
response goes out without a Content-Length and without chunked framing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mitmproxy.version import VERSION as MITMPROXY_VERSION

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

pytestmark = [
    *browser_suite,
    # Seen in CI on mitmproxy 11.0.2 only (never on 12.3, in many more runs): a browser's second or
    # third QUIC connection, opened while an earlier one was still closing, failed with
    # ERR_QUIC_PROTOCOL_ERROR before any request reached the proxy's HTTP layer (mitmdump logged the
    # connection and no request), so before any hook of the addon ran. mitmproxy's QUIC server,
    # not the addon; the HTTP/3 property test and the WireGuard HTTP/3 test still run on 11.0.
    pytest.mark.skipif(int(MITMPROXY_VERSION.split(".")[0]) < 12,
                       reason="mitmproxy 11.0's QUIC server fails some browser connections before any request"),
]


@pytest.fixture(scope="module")
def app(intake: Intake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserApp]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("h3-site"))
    with BrowserApp(apm_server_url=intake.url, service_name="h3-backend",
                    args=["--http3", "--tls-cert", str(cert), "--tls-key", str(key)]) as server:
        yield server


# reverse:https:// listens on TCP and UDP, and serves a client that comes over QUIC with HTTP/3 (to
# the site over QUIC as well): what a user runs. reverse:http3:// listens on UDP only.
@pytest.fixture(scope="module", params=["https", "http3"])
def proxy(request: pytest.FixtureRequest, app: BrowserApp, intake: Intake,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    rules = write_rules(tmp_path_factory.mktemp("h3") / "rules.yaml", server_url=intake.url,
                        rules=[rule("site", ["127.0.0.1"])])
    # The site's certificate is self-signed.
    with Mitmdump(mode=f"reverse:{request.param}://127.0.0.1:{app.port}", rules=rules,
                  args=["--set", "ssl_insecure=true"]) as mitmdump:
        yield mitmdump


@pytest.fixture(scope="module")
def browser_args(proxy: Mitmdump) -> list[str]:
    return [
        "--enable-quic",
        f"--origin-to-force-quic-on=127.0.0.1:{proxy.port}",
        f"--ignore-certificate-errors-spki-list={spki_sha256(proxy.ca_cert)}",
    ]


def test_a_page_over_http3_is_instrumented_and_linked(browser_page: BrowserPage, proxy: Mitmdump,
                                                      intake: Intake) -> None:
    url = f"https://127.0.0.1:{proxy.port}/"
    response = browser_page.goto(url)
    assert browser_page.document_protocol() == "h3"
    assert response.headers.get("x-rum-injected") == "rumproxy"
    assert browser_page.injected()
    browser_page.page.wait_for_selector("#items[data-state=loaded]")  # the page's own fetch, over HTTP/3 too
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    browser_page.assert_clean()


@pytest.mark.parametrize(
    ("paragraphs", "length", "streamed"),
    [(4000, "yes", False), (4000, "no", True), (40000, "yes", True)],
    ids=["whole", "streamed-unsized", "streamed-large"],
)
def test_a_long_gzip_page_over_http3_renders_whole(browser_page: BrowserPage, proxy: Mitmdump, intake: Intake,
                                                   paragraphs: int, length: str, streamed: bool) -> None:
    """~330 KB of HTML (150 KB of gzip) with a Content-Length: rewritten whole; the same without
    one, and ~3.3 MB with one: streamed."""
    url = f"https://127.0.0.1:{proxy.port}/large?paragraphs={paragraphs}&length={length}"
    response = browser_page.goto(url)
    assert browser_page.document_protocol() == "h3"
    assert response.headers.get("content-encoding") == "gzip"
    assert response.headers.get("x-rum-injected") == "rumproxy"
    assert ("content-length" in response.headers) is not streamed
    assert "transfer-encoding" not in response.headers
    browser_page.assert_large_page_whole(paragraphs)
    wait_for_page_load(intake, browser_page, url)
    browser_page.assert_clean()
