"""The README's first command as a new user runs it: `scripts/demo`, then the printed URL opened in
Chromium; the demo's own terminal must show one trace with the page load and the backend linked."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator

import pytest

from tests.browser.support import BrowserPage
from tests.harness import REPO_ROOT, Process, free_port, wait_until

pytestmark = pytest.mark.browser

# The embedded default rules point the agent's serverUrl at the intake's default port.
INTAKE_PORT = 8200


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def demo() -> Iterator[Process]:
    if not port_is_free(INTAKE_PORT):
        pytest.skip(f"port {INTAKE_PORT}, where the default rules send the agent's events, is in use")
    env = {**os.environ, "DEMO_PORT": str(free_port()), "INTAKE_PORT": str(INTAKE_PORT)}
    with Process([str(REPO_ROOT / "scripts" / "demo")], env=env, name="demo") as process:
        process.wait_for_log(r"Open (http://127\.0\.0\.1:\d+/)", timeout=120)
        yield process


def test_the_demo_shows_one_linked_trace(demo: Process, browser_page: BrowserPage) -> None:
    url = re.search(r"Open (http://127\.0\.0\.1:\d+/)", demo.log_text()).group(1)
    browser_page.goto(url)
    assert browser_page.injected()

    def linked_tree() -> str | None:
        # A tree with the browser's document span and, indented under it, the backend's "GET /".
        for tree in re.split(r"\n(?=trace [0-9a-f]{32})", demo.log_text()):
            lines = tree.splitlines()
            for i, line in enumerate(lines):
                if "Requesting and receiving the document" in line:
                    indent = len(line) - len(line.lstrip())
                    below = [l for l in lines[i + 1 :] if len(l) - len(l.lstrip()) > indent]
                    if any('"GET /"' in l and "demo-backend" in l for l in below) and "page-load" in tree:
                        return tree
        return None

    tree = wait_until(linked_tree, timeout=30, what="a linked trace tree in the demo's output")
    assert "demo-frontend" in tree
    browser_page.assert_clean()
