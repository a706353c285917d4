"""Network namespaces for the browser tests of the modes a client is not configured for
(transparent, TUN, WireGuard): a client namespace and a router namespace joined by a veth pair.

    client ns  client_ip ── veth ── router_ip  router ns

Chromium runs in the client namespace through a wrapper script given to Playwright as its
executable; the intake and mitmdump run in the router namespace, and so does the app unless a
module puts it behind the router in a namespace of its own (`veth_pair`).
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.support import (
    CHROMIUM,
    BrowserApp,
    BrowserPage,
    JsonlIntakeReader,
    assert_document_linked,
    is_root,
    linked_backend,
    rule,
    write_rules,
)
from tests.harness import Mitmdump, PythonApp


@dataclass(frozen=True)
class Network:
    client: str  # namespace names
    router: str
    client_veth: str  # the client's interface towards the router
    router_veth: str  # the router's interface towards the client
    suffix: str  # unique to this network: for other names that must not collide

    @staticmethod
    def exec_in(namespace: str) -> list[str]:
        return ["ip", "netns", "exec", namespace]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def checked(*argv: str) -> None:
    result = run(*argv)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")


@contextlib.contextmanager
def client_and_router(client_ip: str, router_ip: str, *, purpose: str, tools: Sequence[str] = ("ip",)) -> Iterator[Network]:
    """The two namespaces, up, with /24 addresses on the veth pair; skips the test (`purpose` says
    what for) without root or one of `tools`."""
    if not is_root():
        pytest.skip(f"{purpose} needs root, to create network namespaces")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{purpose} needs `{tool}`")
    suffix = secrets.token_hex(3)  # unique names: runs in parallel do not collide
    network = Network(client=f"rumproxy-c-{suffix}", router=f"rumproxy-r-{suffix}",
                      client_veth=f"rpc{suffix}", router_veth=f"rpr{suffix}", suffix=suffix)
    created: list[str] = []
    try:
        result = run("ip", "netns", "add", network.client)
        if result.returncode != 0:
            pytest.skip(f"cannot create a network namespace (`ip netns add`): {result.stderr.strip()}")
        created.append(network.client)
        checked("ip", "netns", "add", network.router)
        created.append(network.router)
        veth_pair((network.client, network.client_veth, client_ip), (network.router, network.router_veth, router_ip))
        yield network
    finally:
        # Deleting a namespace takes its interfaces, their peers and its iptables rules with it.
        for namespace in reversed(created):
            run("ip", "netns", "del", namespace)


def veth_pair(*ends: tuple[str, str, str]) -> None:
    """A veth pair between two namespaces, each end (namespace, interface, address) up with its /24
    address, and each namespace's loopback up."""
    (first, first_veth, _), (second, second_veth, _) = ends
    checked("ip", "link", "add", first_veth, "netns", first, "type", "veth", "peer", "name", second_veth, "netns", second)
    for namespace, veth, address in ends:
        inside = Network.exec_in(namespace)
        checked(*inside, "ip", "link", "set", "lo", "up")
        checked(*inside, "ip", "addr", "add", f"{address}/24", "dev", veth)
        checked(*inside, "ip", "link", "set", veth, "up")


def chromium_in(network: Network, namespace: str, directory: Path) -> str:
    """A script that starts Chromium inside `namespace`, for Playwright's `executable_path`."""
    assert CHROMIUM is not None
    script = directory / f"chromium-in-{namespace}"
    script.write_text(
        "#!/bin/sh\n"
        f"exec {shlex.join(network.exec_in(namespace))} {shlex.quote(CHROMIUM)} \"$@\"\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)


@contextlib.contextmanager
def router_intake(network: Network, host: str, directory: Path) -> Iterator[JsonlIntakeReader]:
    """The local intake in the router namespace, on `host`: the tests read its --jsonl file, since
    it is not reachable from their own namespace."""
    events = directory / "events.jsonl"
    events.touch()
    server = PythonApp("rumproxy.intake", ["--quiet", "--host", host, "--jsonl", str(events)], name="intake")
    server.argv = [*network.exec_in(network.router), *server.argv]
    with server:
        yield JsonlIntakeReader(events, server.url)


def router_app(network: Network, host: str, intake: JsonlIntakeReader, service_name: str,
               namespace: str | None = None, args: Sequence[str] = ()) -> BrowserApp:
    """The browser suite's app on `host` in the router namespace (or `namespace`), reporting to `intake`."""
    return BrowserApp(apm_server_url=intake.url, service_name=service_name,
                      args=["--host", host, *args], wrapper=network.exec_in(namespace or network.router))


def router_mitmdump(network: Network, intake: JsonlIntakeReader, directory: Path, *, mode: str, hosts: Sequence[str],
                    args: Sequence[str] = (), kind: type[Mitmdump] = Mitmdump) -> Mitmdump:
    """mitmdump with the addon in the router namespace, in `mode`, with one rule for `hosts` whose
    agent reports to `intake`."""
    rules = write_rules(directory / "rules.yaml", server_url=intake.url, rules=[rule("namespaced", hosts)])
    return kind(mode=mode, rules=rules, args=args, wrapper=network.exec_in(network.router))


def assert_page_linked_through(browser_page: BrowserPage, proxy: Mitmdump, intake: JsonlIntakeReader, url: str,
                               client_address: str, *, protocol: str | None = None) -> None:
    """Chromium loads `url` (over `protocol`, as the browser names it: "http/1.1", "h3"): the page
    comes instrumented, through mitmdump (which names the client by `client_address`), and its page
    load and the backend's transaction are one trace."""
    mark = proxy.mark()
    response = browser_page.goto(url)
    if protocol is not None:
        assert browser_page.document_protocol() == protocol
    assert response.headers.get("x-rum-injected") == "rumproxy"
    proxy.wait_for_log(re.escape(f"{client_address}:") + r"\d+: GET " + re.escape(url), since=mark)
    load, backend = browser_page.wait_for_intake(
        intake, lambda events: linked_backend(events, url), what="the page load and its backend transaction"
    )
    assert_document_linked(intake.events(), load, backend)
    assert browser_page.page.locator("#items").get_attribute("data-state") == "loaded"
    browser_page.assert_clean()
