"""Helpers of the browser suite: the browser app process, rules files, a page that records what
the browser says about it, and predicates over the events the local intake recorded.

Events are intake records: {"kind", "event", "service", "endpoint", "trace_id", …}, `event` in
the APM v2 shape, `endpoint` "rum" (the browser agent) or "backend" (elastic-apm in Flask).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rumproxy.rules import VENDORED_AGENT
from tests.apps.browserapp import large_paragraphs
from tests.harness import REPO_ROOT, Mitmdump, PythonApp

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
ARTIFACTS = REPO_ROOT / "artifacts" / "browser"
FRONTEND = "browser-frontend"
DOCUMENT_SPAN = "Requesting and receiving the document"

browser_suite = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH: the browser suite drives a real Chromium"),
]

Event = dict[str, Any]
T = TypeVar("T")


class BrowserApp(PythonApp):
    """tests/apps/browserapp.py; `url` keeps the scheme it serves (https with --tls-cert)."""

    def __init__(
        self,
        *,
        apm_server_url: str | None = None,
        service_name: str = "browserapp",
        args: Sequence[str] = (),
        wrapper: Sequence[str] = (),
    ) -> None:
        extra = ["--service-name", service_name, *args]
        if apm_server_url:
            extra += ["--apm-server-url", apm_server_url]
        super().__init__("tests.apps.browserapp", extra, name=f"browserapp-{service_name}")
        self.argv = [*wrapper, *self.argv]

    @property
    def origin(self) -> str:
        return self.url


def rule(name: str, hosts: Sequence[str], *, service_name: str = FRONTEND, config: dict[str, Any] | None = None,
         **keys: Any) -> dict[str, Any]:
    """One rule of the rules file; `keys` are further rule keys (csp, paths, trace, …)."""
    return {
        "name": name,
        "hosts": list(hosts),
        "paths": {"exclude": ["/api/*", "/static/*"]},
        "agent": {"config": {"serviceName": service_name, **(config or {})}},
        **keys,
    }


def write_rules(path: Path, *, server_url: str, rules: Sequence[dict[str, Any]]) -> Path:
    """A rules file serving the vendored agent from the proxy and reporting to `server_url`.
    Written as JSON, which is YAML too: no quoting to get wrong."""
    document = {
        "version": 1,
        "defaults": {"agent": {"script": str(VENDORED_AGENT), "config": {"serverUrl": server_url}}},
        "rules": list(rules),
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def reverse_proxy(app: BrowserApp, intake: Any, directory: Path,
                  rules: Sequence[dict[str, Any]] | None = None) -> Iterator[Mitmdump]:
    """mitmdump with the addon in reverse mode before `app`, its agents reporting to `intake`;
    `rules` default to one rule for the whole site (127.0.0.1)."""
    path = write_rules(directory / "rules.yaml", server_url=intake.url, rules=rules or [rule("site", ["127.0.0.1"])])
    with Mitmdump(mode=f"reverse:{app.url}", rules=path) as mitmdump:
        yield mitmdump


def browser_app(service_name: str) -> Any:
    """A module-scoped fixture: the browser app, its backend reporting as `service_name` to the
    intake: `app = browser_app("shop-backend")`."""

    @pytest.fixture(scope="module")
    def app(intake: Any) -> Iterator[BrowserApp]:
        with BrowserApp(apm_server_url=intake.url, service_name=service_name) as server:
            yield server

    return app


def app_behind_proxy(name: str) -> tuple[Any, Any]:
    """The module-scoped `app` (the browser app, reporting as "<name>-backend") and `proxy` (the
    addon in reverse mode before it, one rule for the whole site) fixtures of a browser module:
    `app, proxy = app_behind_proxy("spa")`."""
    app = browser_app(f"{name}-backend")

    @pytest.fixture(scope="module")
    def proxy(app: BrowserApp, intake: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mitmdump]:
        with reverse_proxy(app, intake, tmp_path_factory.mktemp(name)) as mitmdump:
            yield mitmdump

    return app, proxy


# --- what the browser said -------------------------------------------------------------------

# Init script: report every CSP violation the page sees (enforced or report-only) to Python.
VIOLATION_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  window.__rumproxyViolation({directive: e.effectiveDirective, blocked: e.blockedURI,
                              disposition: e.disposition, sample: e.sample, source: e.sourceFile});
}, true);
"""
CSP_WORDS = ("Content Security Policy", "Refused to")
REPORT_ONLY_WORDS = ("[Report Only]", "policy is report-only")
AGENT_WORDS = ("Elastic APM", "elasticApm", "/__rum/")


@dataclass
class BrowserPage:
    """A Playwright page plus everything it logged: console, uncaught errors, CSP violations."""

    page: Any  # playwright.sync_api.Page
    console: list[tuple[str, str]] = field(default_factory=list)  # (type, text)
    errors: list[str] = field(default_factory=list)
    violations: list[dict[str, Any]] = field(default_factory=list)

    def attach(self) -> None:
        self.page.on("console", lambda message: self.console.append((message.type, message.text)))
        self.page.on("pageerror", lambda error: self.errors.append(f"{error.name}: {error.message}"))

    def goto(self, url: str) -> Any:
        response = self.page.goto(url, wait_until="load")
        assert response is not None, f"no response for {url}"
        return response

    def own_script_ran(self) -> bool:
        return self.page.evaluate("document.body.dataset.ownScript") == "ran"

    def document_protocol(self) -> str:
        """The protocol the page's document came over, as the browser names it ("http/1.1", "h2", "h3")."""
        return self.page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol")

    def assert_large_page_whole(self, paragraphs: int) -> None:
        """The browser app's /large page of `paragraphs` rendered whole: its own script counted every
        paragraph and hashed their text."""
        self.page.wait_for_function("document.body.dataset.sha256 !== undefined")
        body = self.page.locator("body")
        texts = large_paragraphs(paragraphs)
        assert body.get_attribute("data-paragraphs") == str(len(texts))
        assert body.get_attribute("data-sha256") == hashlib.sha256("\n".join(texts).encode()).hexdigest()

    def injected(self) -> bool:
        return self.page.locator("script[src*='/__rum/']").count() > 0

    def csp_messages(self, *, allow_report_only: bool = False) -> list[str]:
        """The browser's CSP complaints: console lines and securitypolicyviolation events."""
        console = [f"console {kind}: {text}" for kind, text in self.console if any(w in text for w in CSP_WORDS)]
        violations = self.violations
        if allow_report_only:
            console = [line for line in console if not any(w in line for w in REPORT_ONLY_WORDS)]
            violations = [v for v in violations if v.get("disposition") != "report"]
        return console + [f"violation: {v}" for v in violations]

    def problems(self, *, allow_report_only: bool = False) -> list[str]:
        """CSP trouble, uncaught errors, and agent errors in the console."""
        found = self.csp_messages(allow_report_only=allow_report_only)
        found += [f"pageerror: {error}" for error in self.errors]
        found += [
            f"console error: {text}" for kind, text in self.console
            if kind in ("error", "warning") and any(w in text for w in AGENT_WORDS)
        ]
        return found

    def wait_for_intake(self, intake: Any, predicate: Callable[[list[Event]], T], *, timeout: float = 20.0,
                        what: str = "intake events", allow_report_only: bool = False) -> T:
        """Poll `intake.events()` until `predicate` is truthy and return its result.

        Like Intake.wait_for, but it waits in the browser: Playwright's sync API only takes in
        console messages and page errors while a Playwright call runs. And it fails at once,
        with the browser's own words, when the page reports a violation or an error."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(intake.events())
            if result:
                return result
            problems = self.problems(allow_report_only=allow_report_only)
            if problems:
                raise AssertionError(f"waiting for {what}, the browser reported:\n" + "\n".join(problems))
            if time.monotonic() >= deadline:
                events = intake.events()
                summary = [(e["kind"], e["endpoint"], e["event"].get("type"), e["event"].get("name")) for e in events]
                raise AssertionError(f"no {what} after {timeout} s; the intake has {len(events)} events: {summary}")
            self.page.wait_for_timeout(100)

    def assert_clean(self, *, allow_report_only: bool = False) -> None:
        problems = self.problems(allow_report_only=allow_report_only)
        assert not problems, "the browser reported:\n" + "\n".join(problems)

    def save_artifacts(self, stem: str) -> list[Path]:
        """Screenshot and console log under artifacts/browser/, for a failed test."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = []
        log = ARTIFACTS / f"{stem}.log"
        lines = [f"url: {self._url()}"]
        lines += [f"console {kind}: {text}" for kind, text in self.console]
        lines += [f"pageerror: {error}" for error in self.errors]
        lines += [f"csp violation: {v}" for v in self.violations]
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        saved.append(log)
        try:
            screenshot = ARTIFACTS / f"{stem}.png"
            self.page.screenshot(path=str(screenshot), full_page=True, timeout=5000)
            saved.append(screenshot)
        except Exception as error:  # noqa: BLE001 - a closed or crashed page still gets its log
            with log.open("a", encoding="utf-8") as file:
                file.write(f"no screenshot: {error!r}\n")
        return saved

    def _url(self) -> str:
        try:
            return self.page.url
        except Exception:  # noqa: BLE001
            return "?"


def artifact_stem(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


# --- what the intake recorded ----------------------------------------------------------------

def transactions(events: list[Event], *, endpoint: str | None = None, type: str | None = None,
                 service: str | None = None) -> list[Event]:
    return [
        e["event"] for e in events
        if e["kind"] == "transaction"
        and (endpoint is None or e["endpoint"] == endpoint)
        and (type is None or e["event"].get("type") == type)
        and (service is None or e.get("service") == service)
    ]


def page_url(transaction: Event) -> str:
    return ((transaction.get("context") or {}).get("page") or {}).get("url") or ""


def page_loads(events: list[Event], url: str | None = None, *, service: str | None = None) -> list[Event]:
    """The RUM page-load transactions, of the page at `url` (query string ignored) if given."""
    found = transactions(events, endpoint="rum", type="page-load", service=service)
    if url is not None:
        found = [t for t in found if page_url(t).split("?")[0] == url.split("?")[0]]
    return found


def page_load(events: list[Event], url: str | None = None, *, service: str | None = None) -> Event | None:
    found = page_loads(events, url, service=service)
    return found[0] if found else None


def rum_spans(events: list[Event], trace_id: str) -> list[Event]:
    return [e["event"] for e in events if e["kind"] == "span" and e["endpoint"] == "rum" and e["trace_id"] == trace_id]


def backend_transaction(events: list[Event], trace_id: str, name: str | None = None,
                        service: str | None = None) -> Event | None:
    """The backend (Flask) transaction of `trace_id`, named e.g. "GET /"."""
    return next(
        (
            e["event"] for e in events
            if e["kind"] == "transaction" and e["endpoint"] == "backend" and e["trace_id"] == trace_id
            and (name is None or e["event"].get("name") == name)
            and (service is None or e.get("service") == service)
        ),
        None,
    )


def linked_backend(events: list[Event], url: str, backend_name: str = "GET /") -> tuple[Event, Event] | None:
    """(page load, backend transaction of its document) once both are in."""
    load = page_load(events, url)
    if load is None:
        return None
    backend = backend_transaction(events, load["trace_id"], backend_name)
    return (load, backend) if backend is not None else None


def assert_document_linked(events: list[Event], load: Event, backend: Event) -> None:
    """The backend transaction hangs under the page load's document request span."""
    assert backend["trace_id"] == load["trace_id"]
    spans = {span["name"]: span for span in rum_spans(events, load["trace_id"])}
    assert DOCUMENT_SPAN in spans, f"no {DOCUMENT_SPAN!r} span; RUM spans: {sorted(spans)}"
    document = spans[DOCUMENT_SPAN]
    assert document["id"] == backend["parent_id"], (
        f"backend parent {backend['parent_id']} is not the document span {document['id']}"
    )
    assert document["transaction_id"] == load["id"]


class JsonlIntakeReader:
    """The events of an intake started with --jsonl FILE, read from the file: for an intake the
    tests cannot reach over the network (it runs in another network namespace)."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url  # where the agents report, as they see it

    def events(self) -> list[Event]:
        events = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                break  # a line still being written
        return events

    def reset(self) -> None:
        # The intake appends (O_APPEND): truncating under it is safe.
        with self.path.open("r+", encoding="utf-8") as file:
            file.truncate(0)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def wait_for_page_load(intake: Any, browser_page: BrowserPage, url: str, *, service: str | None = FRONTEND,
                       timeout: float = 20.0, allow_report_only: bool = False) -> Event:
    """The page load of `url` once the intake has it."""
    return browser_page.wait_for_intake(
        intake, lambda events: page_load(events, url, service=service), timeout=timeout,
        what=f"the page-load transaction of {url}", allow_report_only=allow_report_only,
    )
