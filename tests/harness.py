"""Real processes for the integration and browser tests.

Every server here listens on port 0 and the harness reads the port back from the
process's own "listening at" log line, so parallel test runs never race for a port.
Output goes to a log file rather than a pipe: a chatty mitmdump (termlog_verbosity=debug)
would otherwise fill the pipe and block. Each process runs in its own session, so
stop() takes down the whole process group.

    with Upstream() as upstream, Mitmdump(mode=f"reverse:{upstream.url}") as proxy:
        requests.get(proxy.url + "/page?body=basic")
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
ADDON_SCRIPT = REPO_ROOT / "addon" / "inject.py"

T = TypeVar("T")

# Never route the harness's own requests through a proxy from the environment.
_http = requests.Session()
_http.trust_env = False


def venv_bin(name: str) -> str:
    """The executable `name` installed next to the running interpreter (tests run in the venv)."""
    # Not resolved: the venv's python is a symlink into the base installation, which has no mitmdump.
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FileNotFoundError(f"{name} is not installed next to {sys.executable}; run scripts/setup")
    return str(path)


def free_port() -> int:
    """A port that was free a moment ago; prefer port 0 plus a "listening" line where possible."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Call `check` until it returns something truthy and return that; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what or check!r}")
        time.sleep(interval)


def curl_http2(url: str, headers: Mapping[str, str]) -> tuple[list[str], bytes]:
    """The response's header lines (lower-case) and raw body, fetched by Debian's curl over TLS and
    HTTP/2 (not verifying the certificate: mitmproxy's)."""
    with tempfile.TemporaryDirectory() as directory:
        head, body = Path(directory) / "head", Path(directory) / "body"
        argv = ["curl", "-s", "-S", "--http2", "-k", "-D", str(head), "-o", str(body)]
        for name, value in headers.items():
            argv += ["-H", f"{name}: {value}"]
        subprocess.run([*argv, url], check=True, timeout=60)
        return head.read_text().lower().splitlines(), body.read_bytes()


class ProcessError(RuntimeError):
    pass


_running: set[Process] = set()


@atexit.register
def _stop_leftovers() -> None:
    # A test that dies before its `with` block unwinds must not leave servers behind.
    for process in list(_running):
        process.stop()


class Process:
    """A subprocess with its output in a log file. Subclasses with a `listening`
    pattern (named group `port`, optional `host`) are started once that line appears."""

    listening: re.Pattern[str] | None = None
    startup_timeout = 20.0

    def __init__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path = REPO_ROOT,
        name: str | None = None,
    ) -> None:
        self.argv = [os.fspath(arg) for arg in argv]
        self.env = dict(env or {})
        self.cwd = cwd
        self.name = name or Path(self.argv[0]).name
        self.popen: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._final_log: bytes | None = None
        self._listen_match: re.Match[str] | None = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> Self:
        if self.popen is not None:
            raise RuntimeError(f"{self.name} was already started")
        fd, path = tempfile.mkstemp(prefix=f"rumproxy-{self.name}-", suffix=".log")
        self.log_path = Path(path)
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                start_new_session=True,
            )
        finally:
            os.close(fd)
        _running.add(self)
        try:
            if self.listening is not None:
                self._listen_match = self.wait_for_log(self.listening, self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after `timeout`. Idempotent."""
        _running.discard(self)
        if self.popen is None or self._final_log is not None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait()
        self._final_log = self.log_bytes()
        assert self.log_path is not None
        self.log_path.unlink(missing_ok=True)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def __enter__(self) -> Self:
        if self.popen is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.stop()
        if exc_type is not None and not isinstance(exc, ProcessError):
            # pytest shows a failed test's captured stderr: put the server's side of the story there.
            print(f"--- {self.name} log (tail) ---\n{self.log_tail()}", file=sys.stderr)

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    # -- log ---------------------------------------------------------------------
    def log_bytes(self) -> bytes:
        if self._final_log is not None:
            return self._final_log
        if self.log_path is None:
            return b""
        return self.log_path.read_bytes()

    def log_text(self, since: int = 0) -> str:
        """The output so far; `since` is a byte offset from mark()."""
        return self.log_bytes()[since:].decode("utf-8", "replace")

    def mark(self) -> int:
        """An offset for wait_for_log(since=…) and log_text(since=…): only output after now."""
        return len(self.log_bytes())

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, since: int = 0) -> re.Match[str]:
        """The first match of `pattern` in the output after `since`; ProcessError, with the
        log tail, if the process exits or `timeout` passes first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            # Read the exit status before the log, so a last line written just before exiting is seen.
            exited = not self.running
            match = regex.search(self.log_text(since))
            if match:
                return match
            if exited:
                reason = f"exited with status {self.returncode}" if self.popen else "was never started"
                raise ProcessError(f"{self.name} {reason} before logging {regex.pattern!r}:\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise ProcessError(f"{self.name}: no {regex.pattern!r} in the log after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    # -- address (processes with a `listening` pattern) ------------------------------
    @property
    def port(self) -> int:
        return int(self._listening()["port"])

    @property
    def host(self) -> str:
        host = (self._listening().groupdict().get("host") or "127.0.0.1").strip("[]")
        return "127.0.0.1" if host in ("*", "0.0.0.0", "::", "") else host

    @property
    def url(self) -> str:
        """http://HOST:PORT, or with the scheme the process announced (https for TLS or HTTP/3)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = self._listening().groupdict().get("scheme") or "http"
        return f"{scheme}://{host}:{self.port}"

    def _listening(self) -> re.Match[str]:
        if self._listen_match is None:
            raise RuntimeError(f"{self.name} is not started or has no listening address")
        return self._listen_match

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.popen.pid if self.popen else None}>"


class Mitmdump(Process):
    """mitmdump with the addon (or plain, with script=None) on an ephemeral port of 127.0.0.1.

    mode: "regular", "transparent", "reverse:http://127.0.0.1:PORT", "upstream:URL", …
    wrapper: a command prefix, e.g. to run mitmdump inside a network namespace.
    """

    # mitmproxy 11 and 12 both log "<mode description> listening at <addr>[ and <addr>]." where
    # an address is "1.2.3.4:PORT", "[::1]:PORT" or "*:PORT"; the description of reverse mode
    # contains the upstream URL (with its port), hence the anchor on "listening at".
    listening = re.compile(r"listening at (?P<host>\*|\[[0-9A-Fa-f:.%\w]+\]|[^\s:\[\]]+):(?P<port>\d+)")
    startup_timeout = 30.0

    def __init__(
        self,
        *,
        mode: str,
        rules: Path | None = None,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        confdir: Path | None = None,
        script: Path | None = ADDON_SCRIPT,
        wrapper: Sequence[str] = (),
    ) -> None:
        if rules is not None and script is None:
            raise ValueError("rum_rules is an option of the addon: rules need a script")
        self.mode = mode
        self._own_confdir = confdir is None
        self.confdir = Path(confdir) if confdir is not None else Path(tempfile.mkdtemp(prefix="rumproxy-confdir-"))
        argv: list[str | os.PathLike[str]] = [*wrapper, venv_bin("mitmdump")]
        if script is not None:
            argv += ["-s", script]
        argv += [
            "--mode", mode,
            "--listen-host", "127.0.0.1",
            "--listen-port", "0",
            "--set", f"confdir={self.confdir}",
            "--set", "termlog_verbosity=debug",
        ]  # fmt: skip
        if rules is not None:
            argv += ["--set", f"rum_rules={rules}"]
        argv += args
        super().__init__(argv, env=env, name="mitmdump")

    @property
    def ca_cert(self) -> Path:
        """mitmproxy's CA certificate (PEM), created at startup: trust it to intercept HTTPS."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    @property
    def proxies(self) -> dict[str, str]:
        """For `requests` in regular mode."""
        return {"http": self.url, "https": self.url}

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        if self._own_confdir:
            shutil.rmtree(self.confdir, ignore_errors=True)


class PythonApp(Process):
    """`python -m MODULE --port 0 ARGS…` for a server that prints "… listening at http://HOST:PORT"
    (https:// when it serves TLS or HTTP/3)."""

    listening = re.compile(r"listening at (?P<scheme>https?)://(?P<host>\[[^\]]+\]|[^\s/:]+):(?P<port>\d+)")

    def __init__(
        self,
        module: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__([sys.executable, "-m", module, "--port", "0", *args], env=env, name=name or module)


class Upstream(PythonApp):
    """tests/apps/upstream.py: the knob-driven upstream of the integration tests."""

    def __init__(self, *, apm_server_url: str | None = None, service_name: str | None = None,
                 args: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
        extra = list(args)
        if apm_server_url:
            extra += ["--apm-server-url", apm_server_url]
        if service_name:
            extra += ["--service-name", service_name]
        super().__init__("tests.apps.upstream", extra, env=env, name="upstream")

    def last_request_headers(self) -> list[tuple[str, str]]:
        """The headers of the last request the upstream received (any path but /__*), as sent."""
        response = _http.get(f"{self.url}/__last-request-headers", timeout=5)
        response.raise_for_status()
        return [(name, value) for name, value in response.json()]

    def requests(self) -> list[dict[str, Any]]:
        """The last 100 requests: {"method", "path", "query", "headers": [[name, value], …]}."""
        response = _http.get(f"{self.url}/__requests", timeout=5)
        response.raise_for_status()
        return response.json()

    def forget_requests(self) -> None:
        _http.delete(f"{self.url}/__requests", timeout=5).raise_for_status()


class WebSocketApp(PythonApp):
    """tests/apps/websocket.py: a WebSocket endpoint at any path, and a page that opens one."""

    def __init__(self) -> None:
        super().__init__("tests.apps.websocket", name="websocket")


class DemoApp(PythonApp):
    """demo/app.py, the bundled demo shop."""

    def __init__(self, *, apm_server_url: str | None = None, env: Mapping[str, str] | None = None) -> None:
        super().__init__("demo.app", ["--apm-server-url", apm_server_url] if apm_server_url else [],
                         env=env, name="demo-app")


class Intake(PythonApp):
    """The local APM intake (`python -m rumproxy.intake`) that records what agents send."""

    def __init__(self, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None) -> None:
        super().__init__("rumproxy.intake", ["--quiet", *args], env=env, name="intake")

    def events(self) -> list[dict[str, Any]]:
        """Every event so far: {"kind", "event" (v2 shape), "service", "endpoint", "trace_id"}."""
        response = _http.get(f"{self.url}/__intake/events", timeout=5)
        response.raise_for_status()
        return response.json()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], T], timeout: float = 15.0,
                 interval: float = 0.1) -> T:
        """Poll events() until `predicate(events)` is truthy and return its result."""
        try:
            return wait_until(lambda: predicate(self.events()), timeout, interval, what="intake events")
        except TimeoutError as error:
            events = self.events()
            raise TimeoutError(f"{error}; {len(events)} events recorded, the last ones: {events[-5:]!r}\n"
                               f"--- intake log ---\n{self.log_tail()}") from None

    def reset(self) -> None:
        _http.delete(f"{self.url}/__intake/events", timeout=5).raise_for_status()
