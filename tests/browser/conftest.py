"""Fixtures of the browser suite: one Playwright per session, one Chromium per module (a module
may override `browser_args` or `browser_executable`), a fresh context and page per test, and a
screenshot plus the console log under artifacts/browser/ for every failed test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, VIOLATION_LISTENER, BrowserPage, artifact_stem
from tests.harness import Intake, Process


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("setup", "call"):
        return
    values = getattr(item, "funcargs", {}).values()
    pages = [value for value in values if isinstance(value, BrowserPage)]
    for index, browser_page in enumerate(pages):
        stem = artifact_stem(item.nodeid) + (f"-{index}" if index else "")
        saved = browser_page.save_artifacts(stem)
        report.sections.append(("browser artifacts", "\n".join(str(path) for path in saved)))
    # What the proxy and the apps logged: a browser's network error names no cause.
    for process in (value for value in values if isinstance(value, Process)):
        report.sections.append((f"{process.name} log (last lines)", process.log_tail(60)))


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH: the browser suite drives a real Chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser suite needs the playwright package")

    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser_args() -> list[str]:
    """Extra Chromium switches for the module's browser (a proxy, trusted certificates, …)."""
    return []


@pytest.fixture(scope="module")
def browser_executable() -> str | None:
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(playwright: Any, browser_args: list[str], browser_executable: str) -> Iterator[Any]:
    base_args = CHROMIUM_ARGS
    if "--enable-quic" in browser_args:  # the HTTP/3 module's: Chromium's --disable-quic would win
        base_args = [arg for arg in CHROMIUM_ARGS if arg != "--disable-quic"]
    browser = playwright.chromium.launch(
        executable_path=browser_executable, args=[*base_args, *browser_args], headless=True,
        # Playwright turns Chromium's back/forward cache off; a user's Chromium has it.
        ignore_default_args=["--disable-back-forward-cache"],
    )
    yield browser
    browser.close()


@pytest.fixture
def browser_page(browser: Any) -> Iterator[BrowserPage]:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    browser_page = BrowserPage(page=None)
    context.expose_function("__rumproxyViolation", lambda violation: browser_page.violations.append(violation))
    context.add_init_script(VIOLATION_LISTENER)
    browser_page.page = context.new_page()
    browser_page.attach()
    yield browser_page
    context.close()


@pytest.fixture(scope="module")
def intake() -> Iterator[Intake]:
    with Intake() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_intake(request: pytest.FixtureRequest) -> None:
    """Every test starts from an empty intake (tests that use one)."""
    if "intake" in request.fixturenames:
        request.getfixturevalue("intake").reset()
