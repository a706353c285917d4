"""A page's WebSocket through the proxy: its handshake is passed on as it came, untraced."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Event, Message, Request, TextMessage

from tests.harness import Mitmdump, WebSocketApp

# Chromium's handshake, as it reached mitmproxy from a page on http://localhost and on a plain-HTTP
# site alike: no fetch metadata and no Accept (wsproto adds Host, Upgrade, Connection and the
# Sec-WebSocket-Key and -Version).
CHROMIUM_HANDSHAKE = [
    ("Pragma", "no-cache"),
    ("Cache-Control", "no-cache"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"),
    ("Origin", "http://127.0.0.1"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
    ("Accept-Language", "en-US,en;q=0.9"),
]


@pytest.fixture(scope="module")
def socket_app() -> Iterator[WebSocketApp]:
    with WebSocketApp() as app:
        yield app


@pytest.fixture(scope="module")
def proxy(socket_app: WebSocketApp, rules_file: Path) -> Iterator[Mitmdump]:
    with Mitmdump(mode=f"reverse:{socket_app.url}", rules=rules_file) as mitmdump:
        yield mitmdump


class Client:
    """A WebSocket client on a plain socket (wsproto for the protocol)."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Event] = []
        self.send(Request(host=f"{host}:{port}", target=path, extra_headers=CHROMIUM_HANDSHAKE))

    def send(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def next_event(self) -> Event:
        while not self.pending:
            data = self.sock.recv(65536)
            self.ws.receive_data(data or None)
            self.pending.extend(self.ws.events())
            if not data and not self.pending:
                raise ConnectionError("closed without another event")
        return self.pending.pop(0)

    def text(self) -> str:
        event = self.next_event()
        assert isinstance(event, TextMessage), event
        return event.data

    def close(self) -> None:
        self.send(CloseConnection(code=1000))
        self.sock.close()


def test_a_pages_websocket_goes_upstream_untraced_and_works(proxy):
    """Chromium's handshake looks like a client that accepts anything; it is no page: no
    traceparent upstream, no log line, and the socket carries messages both ways."""
    mark = proxy.mark()
    client = Client(proxy.host, proxy.port, "/live?room=1")
    try:
        accepted = client.next_event()
        assert isinstance(accepted, AcceptConnection), accepted
        received = {name.lower() for name, _ in json.loads(client.text())}
        assert {"upgrade", "sec-websocket-key", "origin"} <= received
        assert not received & {"traceparent", "tracestate"}
        client.send(Message(data="hello"))
        assert client.text() == "hello"
    finally:
        client.close()
    proxy.wait_for_log(r"/live\?room=1", since=mark, timeout=10)
    log = proxy.log_text(since=mark)
    assert "not injected" not in log and "rumproxy" not in log.lower(), log


def test_the_rule_traces_a_page_request_to_the_same_upstream(proxy):
    """The counterpart: a client that accepts anything, without Upgrade, starts a trace there."""
    response = requests.get(f"{proxy.url}/live?room=1", headers={"Accept": "*/*"}, timeout=10)
    assert response.status_code == 426
    received = {name.lower() for name, _ in response.json()}
    assert "traceparent" in received
