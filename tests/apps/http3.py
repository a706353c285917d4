"""Serving a Flask app over HTTP/3 (QUIC) with hypercorn, for the tests of the proxy's HTTP/3 side:
mitmproxy speaks HTTP/3 to a client only where it speaks it to the upstream as well (reverse mode
`reverse:http3://`, WireGuard and local capture), so such a test needs an origin that does."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config
from hypercorn.utils import wrap_app


class _BodyThatStarts:
    """A WSGI body that yields an empty chunk first. hypercorn 0.18's WSGI adapter starts a
    response with its first body chunk, so a response without body (a 204, the favicon's) never
    started and came out as a 500."""

    def __init__(self, body: Iterable[bytes]) -> None:
        self._body = body

    def __iter__(self) -> Iterator[bytes]:
        yield b""
        yield from self._body

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


def _starting_every_body(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    # The app is called here, not on the first iteration: hypercorn 0.17 wants start_response
    # called when the app returns.
    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        return _BodyThatStarts(app(environ, start_response))

    return wsgi


def serve_http3(app: Flask, *, name: str, host: str, port: int, cert: str, key: str) -> None:
    """Serve over QUIC only until SIGTERM or Ctrl-C (hypercorn shuts down gracefully on both, so
    elastic-apm's exit flush still runs); the UDP port, picked when `port` is 0, announced on stderr
    as "NAME: listening at https://HOST:PORT"."""
    config = Config()
    config.bind = []
    config.quic_bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.certfile, config.keyfile = cert, key
    config.accesslog = None
    # On SIGTERM hypercorn waits this long for open connections to go; a proxy keeps its QUIC
    # connection to the origin open, so every stop took the default 3 s.
    config.graceful_timeout = 0.5
    sockets = config.create_sockets()
    bound = sockets.quic_sockets[0].getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    print(f"{name}: listening at https://{shown}:{bound[1]}", file=sys.stderr, flush=True)
    wrapped = wrap_app(_starting_every_body(app), config.wsgi_max_body_size, "wsgi")
    asyncio.run(worker_serve(wrapped, config, sockets=sockets))
