"""TUN mode in a real Chromium: mitmdump makes a TUN interface, and a router sends
its client's traffic into it, as a Linux gateway would.

    client ns  10.233.0.2 ── 10.233.0.1  router ns  10.234.0.1 ── 10.234.0.2  server ns: the app
                             mitmdump --mode tun:<name>, the intake on 10.233.0.1
                             ip rule: from the client's interface, table 100: default dev <tun>

What comes in from the client for another host goes into the TUN interface; mitmproxy's own
connection to the app goes out by the main table, to the server namespace. The intake is the
router's own address, which the kernel delivers before any rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy.proxy import mode_specs

from tests.browser.namespaces.netns import (
    Network,
    assert_page_linked_through,
    checked,
    client_and_router,
    router_app,
    router_mitmdump,
    run,
    veth_pair,
)
from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    JsonlIntakeReader,
    browser_suite,
)
from tests.harness import Mitmdump

pytestmark = browser_suite

ROUTER_IP = "10.233.0.1"
CLIENT_IP = "10.233.0.2"
ROUTER_SERVER_SIDE_IP = "10.234.0.1"
APP_IP = "10.234.0.2"
CLIENT_TABLE = "100"  # the router's routing table for what comes from the client


class TunMitmdump(Mitmdump):
    """mitmdump in TUN mode, started once its interface is."""

    listening = re.compile(r"TUN interface created: (?P<name>\S+)")


def has_tun_mode() -> bool:
    try:
        mode_specs.ProxyMode.parse("tun")
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    if not has_tun_mode():
        pytest.skip("this mitmproxy has no TUN mode")
    if not Path("/dev/net/tun").exists():
        pytest.skip("TUN mode needs a TUN device, /dev/net/tun")
    with client_and_router(CLIENT_IP, ROUTER_IP, purpose="TUN mode") as network:
        checked(*network.exec_in(network.client), "ip", "route", "add", "default", "via", ROUTER_IP)
        checked(*network.exec_in(network.router), "sysctl", "-qw", "net.ipv4.ip_forward=1")
        yield network


@pytest.fixture(scope="module")
def server(network: Network) -> Iterator[str]:
    """A third namespace for the app: behind the router, not one of its own addresses (those the
    kernel would deliver to the router itself, never into the TUN interface)."""
    namespace = f"rumproxy-s-{network.suffix}"
    server_veth, router_veth = f"rps{network.suffix}", f"rpq{network.suffix}"
    checked("ip", "netns", "add", namespace)
    try:
        veth_pair((namespace, server_veth, APP_IP), (network.router, router_veth, ROUTER_SERVER_SIDE_IP))
        checked(*network.exec_in(namespace), "ip", "route", "add", "default", "via", ROUTER_SERVER_SIDE_IP)
        yield namespace
    finally:
        run("ip", "netns", "del", namespace)


@pytest.fixture(scope="module")
def app(network: Network, server: str, intake: JsonlIntakeReader) -> Iterator[BrowserApp]:
    with router_app(network, APP_IP, intake, "tun-backend", namespace=server) as app_server:
        yield app_server


@pytest.fixture(scope="module")
def proxy(network: Network, app: BrowserApp, intake: JsonlIntakeReader, tmp_path_factory) -> Iterator[Mitmdump]:
    interface = f"rpt{network.suffix}"
    inside = network.exec_in(network.router)
    with router_mitmdump(network, intake, tmp_path_factory.mktemp("tun"), mode=f"tun:{interface}", hosts=[APP_IP],
                         kind=TunMitmdump) as mitmdump:
        checked(*inside, "ip", "route", "add", "default", "dev", interface, "table", CLIENT_TABLE)
        checked(*inside, "ip", "rule", "add", "iif", network.router_veth, "lookup", CLIENT_TABLE)
        yield mitmdump


def test_page_in_tun_mode_is_one_trace_with_its_backend(browser_page: BrowserPage, proxy: Mitmdump,
                                                        app: BrowserApp, intake: JsonlIntakeReader) -> None:
    assert_page_linked_through(browser_page, proxy, intake, f"http://{APP_IP}:{app.port}/", CLIENT_IP)
