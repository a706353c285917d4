"""A local stand-in for Elastic APM Server: records what the agents send and prints each trace.

    python -m rumproxy.intake [--host 127.0.0.1] [--port 8200] [--jsonl FILE] [--quiet]

Both the backend agents (`/intake/v2/events`) and the RUM agent (`/intake/v2|v3/rum/events`)
report here, so the demo can show the browser page load and the backend request as one tree
without an Elasticsearch/Kibana stack. Tests use `IntakeServer` in-process.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO
from urllib.parse import urlsplit

from .intake_events import IntakeError, decode_body, parse_ndjson
from .intake_tree import TracePrinter, render_trace_tree

__all__ = ["IntakeServer", "render_trace_tree", "main"]

logger = logging.getLogger(__name__)

# endpoint path -> (which agent reports there, whether it speaks the abbreviated v3 protocol)
INTAKE_PATHS = {
    "/intake/v2/events": ("backend", False),
    "/intake/v2/rum/events": ("rum", False),
    "/intake/v3/rum/events": ("rum", True),
}
CONFIG_PATHS = ("/config/v1/agents", "/config/v1/rum/agents")
EVENTS_PATH = "/__intake/events"
RESET_PATH = "/__intake/reset"
MAX_BODY = 64 * 1024 * 1024
SERVER_INFO = {
    "build_date": "2024-08-01T00:00:00Z",
    "build_sha": "rumproxy-intake",
    "publish_ready": True,
    "version": "8.15.0",
}
CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, Accept",
    "Access-Control-Max-Age": "3600",
}


class _Store:
    def __init__(self, jsonl: str | os.PathLike[str] | None, printer: TracePrinter | None) -> None:
        self._records: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._jsonl = jsonl
        self._printer = printer

    def add(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        with self._changed:
            self._records.extend(records)
            if self._jsonl is not None:
                with open(self._jsonl, "a", encoding="utf-8") as file:
                    file.writelines(json.dumps(record, sort_keys=True) + "\n" for record in records)
            self._changed.notify_all()
        if self._printer is not None:
            self._printer.add(records)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._changed:
            return copy.deepcopy(self._records)

    def reset(self) -> None:
        with self._changed:
            self._records.clear()
        if self._printer is not None:
            self._printer.reset()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                events = copy.deepcopy(self._records)
                if predicate(events):
                    return events
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    summary = [(e["kind"], e["event"].get("name"), e["trace_id"]) for e in events]
                    raise TimeoutError(f"no match within {timeout} s; {len(events)} events: {summary}")
                self._changed.wait(min(remaining, 0.2))


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: the agents pool their connections.
    protocol_version = "HTTP/1.1"
    server_version = "rumproxy-intake"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        origin = self.headers.get("Origin")
        if origin:
            # Like APM Server with the default allowed origins ("*"): echo the caller.
            self.send_header("Access-Control-Allow-Origin", origin)
        self.send_header("Vary", "Origin")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise IntakeError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise IntakeError("body too large")
        return self.rfile.read(length)

    def do_OPTIONS(self) -> None:
        self._send(200, headers=CORS_PREFLIGHT_HEADERS)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/":
            self._send(200, SERVER_INFO)
        elif path in CONFIG_PATHS:
            self._send(200, {})
        elif path == EVENTS_PATH:
            self._send(200, self.server.store.snapshot())
        else:
            self._send(404, {"error": f"unknown path {path}"})

    def do_DELETE(self) -> None:
        # Same as POST /__intake/reset, for clients that treat the event list as a resource.
        if urlsplit(self.path).path == EVENTS_PATH:
            self.server.store.reset()
            self._send(200, {})
        else:
            self._send(404, {"error": f"unknown path {self.path}"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            body = self._read_body()
        except (IntakeError, ValueError) as exc:
            self.close_connection = True
            self._send(400, {"errors": [{"message": f"cannot read body: {exc}"}]})
            return
        if path == RESET_PATH:
            self.server.store.reset()
            self._send(200, {})
            return
        if path not in INTAKE_PATHS:
            self._send(404, {"error": f"unknown path {path}"})
            return
        endpoint, v3 = INTAKE_PATHS[path]
        try:
            text = decode_body(body, self.headers.get("Content-Encoding")).decode("utf-8")
        except (IntakeError, UnicodeDecodeError) as exc:
            logger.warning("rejected POST %s: %s", path, exc)
            self._send(400, {"errors": [{"message": str(exc)}]})
            return
        records, errors = parse_ndjson(text, endpoint, v3)
        received = time.time()
        for record in records:
            record["received"] = received
        self.server.store.add(records)
        if errors:
            logger.warning("rejected part of POST %s: %s", path, "; ".join(errors))
            self._send(400, {"accepted": len(records), "errors": [{"message": e} for e in errors]})
        else:
            self._send(202)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    store: _Store


class IntakeServer:
    """An in-process intake; `start()` serves in a daemon thread (ephemeral port by default)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        jsonl: str | os.PathLike[str] | None = None,
        print_traces: bool = False,
        quiet_seconds: float = 1.5,
        out: TextIO | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._printer = TracePrinter(out, quiet_seconds) if print_traces else None
        self._store = _Store(jsonl, self._printer)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> IntakeServer:
        server_class = _HTTPServer
        if ":" in self._host:
            server_class = type("_HTTPServer6", (_HTTPServer,), {"address_family": socket.AF_INET6})
        self._httpd = server_class((self._host, self._port), _Handler)
        self._httpd.store = self._store
        self._port = self._httpd.server_address[1]
        # A short poll interval keeps stop() (and so every test using the server) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="intake", daemon=True
        )
        self._thread.start()
        if self._printer is not None:
            self._printer.start()
        return self

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    def events(self) -> list[dict[str, Any]]:
        return self._store.snapshot()

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        return self._store.wait_for(predicate, timeout)

    def reset(self) -> None:
        self._store.reset()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._printer is not None:
            self._printer.stop()

    def __enter__(self) -> IntakeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rumproxy.intake", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8200, help="port, 0 for an ephemeral one (default 8200)")
    parser.add_argument("--jsonl", metavar="FILE", help="append every normalized event to FILE as a JSON line")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the listening line")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING, format="intake: %(message)s", stream=sys.stderr
    )
    server = IntakeServer(args.host, args.port, jsonl=args.jsonl, print_traces=not args.quiet)
    try:
        server.start()
    except OSError as exc:
        print(f"intake: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"intake: listening at {server.url}", file=sys.stderr, flush=True)
    stopping = threading.Event()
    # SIGTERM (what scripts send) gets the same clean exit as Ctrl-C: pending trees are printed.
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
