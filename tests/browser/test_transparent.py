"""Transparent mode in a real Chromium: the browser does not know about the proxy at all.

Two network namespaces joined by a veth pair stand in for a client and its router:

    client ns  10.231.0.2 ── veth ── 10.231.0.1  router ns: app, intake, mitmdump --mode transparent
                                                 iptables: PREROUTING tcp dport <app> → mitmdump

Chromium runs in the client namespace (through a wrapper script given to Playwright as its
executable) and loads http://10.231.0.1:<app>/; the router redirects that connection into
mitmdump, which finds the original destination and forwards it. The tests read the intake's
--jsonl file: the intake is not reachable from the tests' own namespace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.browser.netns import Network, checked, chromium_in, client_and_router, router_app, router_intake
from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    JsonlIntakeReader,
    assert_document_linked,
    browser_suite,
    linked_backend,
    rule,
    write_rules,
)
from tests.harness import Mitmdump

pytestmark = browser_suite

ROUTER_IP = "10.231.0.1"
CLIENT_IP = "10.231.0.2"


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    with client_and_router(CLIENT_IP, ROUTER_IP, purpose="transparent mode", tools=("ip", "iptables")) as network:
        yield network


@pytest.fixture(scope="module")
def intake(network: Network, tmp_path_factory) -> Iterator[JsonlIntakeReader]:
    """Overrides the suite's intake: this one runs in the router namespace."""
    with router_intake(network, ROUTER_IP, tmp_path_factory.mktemp("intake")) as reader:
        yield reader


@pytest.fixture(scope="module")
def app(network: Network, intake: JsonlIntakeReader) -> Iterator[BrowserApp]:
    with router_app(network, ROUTER_IP, intake, "router-backend") as server:
        yield server


@pytest.fixture(scope="module")
def proxy(network: Network, app: BrowserApp, intake: JsonlIntakeReader, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = write_rules(tmp_path_factory.mktemp("transparent") / "rules.yaml",
                        server_url=intake.url, rules=[rule("router", [ROUTER_IP])])
    with Mitmdump(mode="transparent", rules=rules, args=["--listen-host", ROUTER_IP],
                  wrapper=network.exec_in(network.router)) as mitmdump:
        # Only the app's port: the agents' reports to the intake go straight to it.
        checked(*network.exec_in(network.router), "iptables", "-t", "nat", "-A", "PREROUTING",
                "-i", network.router_veth, "-p", "tcp", "--dport", str(app.port),
                "-j", "REDIRECT", "--to-ports", str(mitmdump.port))
        yield mitmdump


@pytest.fixture(scope="module")
def browser_executable(network: Network, tmp_path_factory) -> str:
    """Chromium, started inside the client namespace."""
    return chromium_in(network, network.client, tmp_path_factory.mktemp("chromium"))


def test_page_in_transparent_mode_is_one_trace_with_its_backend(browser_page: BrowserPage, proxy: Mitmdump,
                                                                app: BrowserApp, intake: JsonlIntakeReader) -> None:
    url = f"http://{ROUTER_IP}:{app.port}/"
    mark = proxy.mark()
    response = browser_page.goto(url)
    assert response.headers.get("x-rum-injected") == "rumproxy"
    proxy.wait_for_log(re.escape(f"{CLIENT_IP}:") + r"\d+: GET " + re.escape(url), since=mark)  # via mitmdump
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    assert browser_page.page.locator("#items").get_attribute("data-state") == "loaded"
    browser_page.assert_clean()
