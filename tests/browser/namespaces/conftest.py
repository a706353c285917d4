"""What the namespace tests share: the intake on the router's address, Chromium in the client
namespace. A module names the router's address ROUTER_IP and provides the `network` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.namespaces.netns import Network, chromium_in, router_intake
from tests.browser.support import JsonlIntakeReader


@pytest.fixture(scope="module")
def intake(network: Network, request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[JsonlIntakeReader]:
    """Overrides the suite's intake: this one runs in the router namespace, on its ROUTER_IP, where
    the client reaches it without the proxy."""
    with router_intake(network, request.module.ROUTER_IP, tmp_path_factory.mktemp("intake")) as reader:
        yield reader


@pytest.fixture(scope="module")
def browser_executable(network: Network, tmp_path_factory) -> str:
    """Chromium, started inside the client namespace."""
    return chromium_in(network, network.client, tmp_path_factory.mktemp("chromium"))
