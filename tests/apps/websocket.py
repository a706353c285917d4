"""A WebSocket upstream: at any path a socket's first message is the handshake's headers as the
server got them (JSON: [[name, value], …]); after that it echoes every text message. GET /page is
an HTML page that opens such a socket, puts its first message into `document.body.dataset.handshake`,
sends "hello" and puts the echo into `dataset.echo`. Any other plain HTTP request gets 426 Upgrade
Required, with its headers as the body, in the same JSON.

    python -m tests.apps.websocket --port 0

hypercorn serves it (ASGI, over TCP), as it serves the HTTP/3 upstream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config
from hypercorn.utils import wrap_app


PAGE = b"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>socket</title>
</head>
<body>
<script>
var socket = new WebSocket(location.origin.replace(/^http/, "ws") + "/live");
socket.onmessage = function (event) {
  if (document.body.dataset.handshake === undefined) {
    document.body.dataset.handshake = event.data;
    socket.send("hello");
  } else {
    document.body.dataset.echo = event.data;
  }
};
</script>
</body>
</html>
"""


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = json.dumps([[name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]])
    if scope["type"] == "http" and scope["path"] == "/page":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html; charset=utf-8")]})
        await send({"type": "http.response.body", "body": PAGE})
        return
    if scope["type"] != "websocket":
        response_headers = [(b"upgrade", b"websocket"), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 426, "headers": response_headers})
        await send({"type": "http.response.body", "body": headers.encode()})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": headers})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.apps.websocket", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    options = parser.parse_args(argv)
    config = Config()
    config.bind = [f"{options.host}:{options.port}"]
    config.accesslog = None
    config.graceful_timeout = 0.5
    sockets = config.create_sockets()
    host, port = sockets.insecure_sockets[0].getsockname()[:2]
    print(f"websocket: listening at http://{host}:{port}", file=sys.stderr, flush=True)
    asyncio.run(worker_serve(wrap_app(app, config.wsgi_max_body_size, "asgi"), config, sockets=sockets))


if __name__ == "__main__":
    main()
