"""A client for HTTP/3 (over QUIC, with aioquic, which mitmproxy brings): Debian's curl has no
HTTP/3. One connection per request; the server's certificate is not verified (mitmproxy's)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset


class Http3Response:
    def __init__(self) -> None:
        self.fields: list[tuple[bytes, bytes]] = []  # as received, pseudo-headers and trailers included
        self.body = bytearray()

    @property
    def status(self) -> int:
        return int(dict(self.fields)[b":status"])

    def headers(self, name: str) -> list[str]:
        """The values of a header, in order ([] when absent)."""
        key = name.lower().encode()
        return [value.decode() for field, value in self.fields if field == key]


class _Client(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._pending: dict[int, tuple[Http3Response, asyncio.Future[Http3Response]]] = {}

    async def request(self, authority: str, path: str, headers: Mapping[str, str], body: bytes | None) -> Http3Response:
        stream_id = self._quic.get_next_available_stream_id()
        fields = [(b":method", b"GET" if body is None else b"POST"), (b":scheme", b"https"),
                  (b":authority", authority.encode()), (b":path", path.encode())]
        fields += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if body is not None:  # as browsers send it: a WSGI app reads no body without one
            fields.append((b"content-length", str(len(body)).encode()))
        done: asyncio.Future[Http3Response] = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (Http3Response(), done)
        self._http.send_headers(stream_id, fields, end_stream=body is None)
        if body is not None:
            self._http.send_data(stream_id, body, end_stream=True)
        self.transmit()
        return await done

    def quic_event_received(self, event: QuicEvent) -> None:
        # A stream the server resets, or a connection either side closes (a protocol error), fails
        # its requests at once, not by the timeout.
        if isinstance(event, StreamReset) and event.stream_id in self._pending:
            self._fail(event.stream_id, f"stream reset by the server (error {event.error_code:#x})")
        elif isinstance(event, ConnectionTerminated):
            for stream_id in list(self._pending):
                self._fail(stream_id, f"connection closed: {event.reason_phrase or event.error_code}")
        for http_event in self._http.handle_event(event):
            self._received(http_event)

    def _fail(self, stream_id: int, reason: str) -> None:
        _, done = self._pending.pop(stream_id)
        if not done.done():
            done.set_exception(ConnectionError(reason))

    def _received(self, event: H3Event) -> None:
        if not isinstance(event, (HeadersReceived, DataReceived)) or event.stream_id not in self._pending:
            return
        response, done = self._pending[event.stream_id]
        if isinstance(event, HeadersReceived):
            response.fields += event.headers
        else:
            response.body += event.data
        if event.stream_ended and not done.done():
            done.set_result(response)


# mitmproxy (11.0 and 12.3) keeps the address of a client's closed QUIC connection for a while
# (measured here: more than 45 s, less than 70 s after its last packet) and drops the packets of a
# new connection from it: the handshake never completes, and the request waits for the idle
# timeout. One port per connection keeps a test's requests apart; the kernel, picking ports at
# random, hands one out again now and then (2 requests in 300 stalled).
_used_ports: set[int] = set()
_ports_lock = threading.Lock()


def _unused_local_port() -> int:
    """A UDP port free now that no earlier connection of this process had."""
    with _ports_lock:
        while True:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:  # as aioquic's connect binds
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                probe.bind(("::", 0))
                port = probe.getsockname()[1]
            if port not in _used_ports:
                _used_ports.add(port)
                return port


async def _request(url: str, headers: Mapping[str, str], body: bytes | None, timeout: float) -> Http3Response:
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.hostname and parts.port
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, verify_mode=ssl.CERT_NONE)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    async with connect(parts.hostname, parts.port, configuration=configuration, create_protocol=_Client,
                       local_port=_unused_local_port()) as client:
        assert isinstance(client, _Client)
        return await asyncio.wait_for(client.request(parts.netloc, path, headers, body), timeout)


def http3_request(url: str, headers: Mapping[str, str], body: bytes | None = None, *,
                  timeout: float = 30.0) -> Http3Response:
    """GET `url` (https://HOST:PORT/…) over HTTP/3, or POST `body` to it."""
    # In a thread of its own: the browser tests' Playwright keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, _request(url, headers, body, timeout)).result()
