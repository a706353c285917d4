"""WireGuard mode in a real Chromium: the client's traffic to the app reaches mitmdump through a
WireGuard tunnel, as a phone's or a laptop's would with mitmproxy's client configuration. Over
HTTP/1.1, and over HTTP/3 to a second app that serves QUIC (Chromium goes there over QUIC, as it
does to a site that offers HTTP/3; mitmproxy's CA is trusted, as on a phone set up for it).

    client ns  10.232.0.2 ── veth ── 10.232.0.1  router ns: intake, mitmdump --mode wireguard
      tunnel interface (wireguard-go)             the app on 10.232.1.1 (lo)
      10.232.1.1/32 → tunnel → mitmdump → the app

The client namespace reaches the app's address only through the tunnel (the route mitmproxy's
client configuration makes for every address), and the intake directly over the veth pair. The
kernel's WireGuard module is not needed: Debian's wireguard-go runs the tunnel in user space on a
TUN device, configured with `wg` (wireguard-tools). The tests read the intake's --jsonl file.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.namespaces.netns import (
    Network,
    assert_page_linked_through,
    checked,
    client_and_router,
    router_app,
    router_mitmdump,
    run,
)
from tests.certificates import self_signed_certificate, spki_sha256
from tests.browser.support import (
    BrowserApp,
    BrowserPage,
    JsonlIntakeReader,
    browser_suite,
)
from tests.harness import Mitmdump

pytestmark = browser_suite

ROUTER_IP = "10.232.0.1"
CLIENT_IP = "10.232.0.2"
APP_IP = "10.232.1.1"
TUNNEL_IP = "10.0.0.1"  # the client's address in mitmproxy's WireGuard client configuration


@pytest.fixture(scope="module")
def network() -> Iterator[Network]:
    if not Path("/dev/net/tun").exists():
        pytest.skip("WireGuard mode's client (wireguard-go) needs a TUN device, /dev/net/tun")
    with client_and_router(CLIENT_IP, ROUTER_IP, purpose="WireGuard mode", tools=("ip", "wg", "wireguard-go")) as network:
        checked(*network.exec_in(network.router), "ip", "addr", "add", f"{APP_IP}/32", "dev", "lo")
        yield network


@pytest.fixture(scope="module")
def app(network: Network, intake: JsonlIntakeReader) -> Iterator[BrowserApp]:
    with router_app(network, APP_IP, intake, "tunnel-backend") as server:
        yield server


@pytest.fixture(scope="module")
def h3_app(network: Network, intake: JsonlIntakeReader, tmp_path_factory) -> Iterator[BrowserApp]:
    """The app again, served over QUIC (UDP) on the same address."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("h3-site"))
    with router_app(network, APP_IP, intake, "tunnel-h3-backend",
                    args=["--http3", "--tls-cert", str(cert), "--tls-key", str(key)]) as server:
        yield server


@pytest.fixture(scope="module")
def proxy(network: Network, app: BrowserApp, h3_app: BrowserApp, intake: JsonlIntakeReader,
          tmp_path_factory) -> Iterator[Mitmdump]:
    # The HTTP/3 app's certificate is self-signed.
    with router_mitmdump(network, intake, tmp_path_factory.mktemp("wireguard"), mode="wireguard",
                         hosts=[APP_IP], args=["--listen-host", ROUTER_IP, "--set", "ssl_insecure=true"]) as mitmdump:
        yield mitmdump


@pytest.fixture(scope="module")
def browser_args(proxy: Mitmdump, h3_app: BrowserApp) -> list[str]:
    return [
        "--enable-quic",
        f"--origin-to-force-quic-on={APP_IP}:{h3_app.port}",
        f"--ignore-certificate-errors-spki-list={spki_sha256(proxy.ca_cert)}",
    ]


@pytest.fixture(scope="module")
def tunnel(network: Network, proxy: Mitmdump, tmp_path_factory) -> Iterator[str]:
    """The client's WireGuard interface, with the keys mitmdump made (its confdir's wireguard.conf)
    and a route to the app's address through it."""
    keys = json.loads((proxy.confdir / "wireguard.conf").read_text(encoding="utf-8"))
    server_public_key = subprocess.run(["wg", "pubkey"], input=keys["server_key"], capture_output=True,
                                       text=True, check=True, timeout=10).stdout.strip()
    directory = tmp_path_factory.mktemp("tunnel")
    private_key = directory / "client.key"
    private_key.touch(mode=0o600)
    private_key.write_text(keys["client_key"], encoding="utf-8")
    interface = f"rpw{network.suffix}"
    inside = network.exec_in(network.client)
    log = (directory / "wireguard-go.log").open("w", encoding="utf-8")
    # wireguard-go refuses to run on Linux, where the kernel module would be the better tunnel,
    # unless told otherwise; -f keeps it in the foreground, as a child of this test.
    env = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}
    daemon = subprocess.Popen([*inside, "wireguard-go", "-f", interface],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 10
        while run(*inside, "wg", "show", interface).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(f"wireguard-go did not bring up {interface}: "
                                   f"{(directory / 'wireguard-go.log').read_text(encoding='utf-8').strip()}")
            time.sleep(0.1)
        checked(*inside, "wg", "set", interface, "private-key", str(private_key),
                "peer", server_public_key, "endpoint", f"{ROUTER_IP}:{proxy.port}", "allowed-ips", f"{APP_IP}/32")
        checked(*inside, "ip", "addr", "add", f"{TUNNEL_IP}/32", "dev", interface)
        checked(*inside, "ip", "link", "set", interface, "up")
        checked(*inside, "ip", "route", "add", f"{APP_IP}/32", "dev", interface)
        yield interface
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()


def test_page_in_wireguard_mode_is_one_trace_with_its_backend(browser_page: BrowserPage, proxy: Mitmdump, tunnel: str,
                                                              app: BrowserApp, intake: JsonlIntakeReader) -> None:
    assert_page_linked_through(browser_page, proxy, intake, f"http://{APP_IP}:{app.port}/", TUNNEL_IP)


def test_page_over_http3_in_wireguard_mode_is_one_trace_with_its_backend(
    browser_page: BrowserPage, proxy: Mitmdump, tunnel: str, h3_app: BrowserApp, intake: JsonlIntakeReader
) -> None:
    url = f"https://{APP_IP}:{h3_app.port}/"
    assert_page_linked_through(browser_page, proxy, intake, url, TUNNEL_IP, protocol="h3")
