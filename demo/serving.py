"""What the demo shop and the test apps share: tracing a Flask app with the real elastic-apm agent,
and serving it until SIGTERM with a "listening at" line that scripts and tests read the port from."""

from __future__ import annotations

import signal
import sys
from typing import Any

from flask import Flask
from werkzeug.serving import make_server


def trace_with_elastic_apm(app: Flask, server_url: str | None, service_name: str) -> None:
    """Report to `server_url` (an APM Server or `python -m rumproxy.intake`); off without one."""
    from elasticapm.contrib.flask import ElasticAPM

    app.config["ELASTIC_APM"] = {
        "SERVICE_NAME": service_name,
        "SERVER_URL": server_url or "http://127.0.0.1:8200",
        "ENABLED": server_url is not None,
        "CENTRAL_CONFIG": False,
        "CLOUD_PROVIDER": "none",
        "METRICS_INTERVAL": "0ms",
        "API_REQUEST_TIME": "200ms",
        "TRANSACTION_SAMPLE_RATE": 1.0,
        "CAPTURE_HEADERS": True,
    }
    # app.debug stays False: the Flask agent records nothing in debug mode.
    ElasticAPM(app)


def serve(app: Flask, *, name: str, host: str, port: int, **server_options: Any) -> None:
    """Serve until Ctrl-C or SIGTERM; port 0 picks a free port, announced on stderr."""
    server = make_server(host, port, app, threaded=True, **server_options)
    # SIGTERM → SystemExit, so elastic-apm's atexit flush still sends the last transactions.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    scheme = "https" if server_options.get("ssl_context") else "http"
    shown = f"[{host}]" if ":" in host else host
    print(f"{name}: listening at {scheme}://{shown}:{server.server_port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
