"""A page that opens a WebSocket, in a real Chromium behind the reverse proxy: the page is
instrumented, its socket's handshake (no fetch metadata, no Accept) goes upstream untraced."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.browser.support import BrowserPage, browser_suite, reverse_proxy
from tests.harness import Intake, Mitmdump, WebSocketApp

pytestmark = browser_suite


@pytest.fixture(scope="module")
def socket_app() -> Iterator[WebSocketApp]:
    with WebSocketApp() as app:
        yield app


@pytest.fixture(scope="module")
def proxy(socket_app: WebSocketApp, intake: Intake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
    with reverse_proxy(socket_app, intake, tmp_path_factory.mktemp("websocket")) as mitmdump:  # type: ignore[arg-type]
        yield mitmdump


def test_a_pages_websocket_goes_upstream_untraced(browser_page: BrowserPage, proxy: Mitmdump) -> None:
    mark = proxy.mark()
    browser_page.goto(f"{proxy.url}/page")
    assert browser_page.injected()
    page = browser_page.page
    page.wait_for_function("document.body.dataset.echo === 'hello'")
    handshake = {name.lower(): value for name, value in json.loads(page.evaluate("document.body.dataset.handshake"))}
    assert handshake.get("upgrade", "").lower() == "websocket"
    assert "traceparent" not in handshake and "tracestate" not in handshake
    assert "sec-fetch-dest" not in handshake and "accept" not in handshake  # what the proxy has to go by
    log = proxy.log_text(since=mark)
    assert "/live" in log and "not injected" not in log
    browser_page.assert_clean()
