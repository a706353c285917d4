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

from collections.abc import Iterator

import pytest

from tests.browser.namespaces.netns import (
    Network,
    assert_page_linked_through,
    checked,
    client_and_router,
    router_app,
    router_mitmdump,
)
from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    JsonlIntakeReader,
    browser_suite,
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
def app(network: Network, intake: JsonlIntakeReader) -> Iterator[BrowserApp]:
    with router_app(network, ROUTER_IP, intake, "router-backend") as server:
        yield server


@pytest.fixture(scope="module")
def proxy(network: Network, app: BrowserApp, intake: JsonlIntakeReader, tmp_path_factory) -> Iterator[Mitmdump]:
    with router_mitmdump(network, intake, tmp_path_factory.mktemp("transparent"), mode="transparent",
                         hosts=[ROUTER_IP], args=["--listen-host", ROUTER_IP]) as mitmdump:
        # Only the app's port: the agents' reports to the intake go straight to it.
        checked(*network.exec_in(network.router), "iptables", "-t", "nat", "-A", "PREROUTING",
                "-i", network.router_veth, "-p", "tcp", "--dport", str(app.port),
                "-j", "REDIRECT", "--to-ports", str(mitmdump.port))
        yield mitmdump


def test_page_in_transparent_mode_is_one_trace_with_its_backend(browser_page: BrowserPage, proxy: Mitmdump,
                                                                app: BrowserApp, intake: JsonlIntakeReader) -> None:
    assert_page_linked_through(browser_page, proxy, intake, f"http://{ROUTER_IP}:{app.port}/", CLIENT_IP)
