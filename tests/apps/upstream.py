"""A configurable upstream for the integration tests: every response property the
proxy must cope with (charset, compression, framing, status, headers) is a query knob,
and the headers the proxy sent upstream are recorded so tests can check them.

    python -m tests.apps.upstream --port 0 [--apm-server-url URL] [--service-name NAME] [--http3 CERT KEY]

GET|POST /page          body: ?body=NAME (see BODIES) or ?b64=BASE64 (raw bytes); a POST with
                                       neither: the request's body (a page too long for a URL)
                        ?ctype=…       Content-Type; default text/html; charset=utf-8, except
                                       the bodies in BODY_CONTENT_TYPES (not UTF-8, XHTML); empty: none
                        ?encoding=…    gzip | deflate | br | zstd | identity | "gzip, br" (stacked,
                                       applied left to right, as Content-Encoding lists them);
                                       negotiate: br, zstd or gzip, the first the request's
                                       Accept-Encoding accepts, else identity (Vary: Accept-Encoding)
                        ?status=404    ?h=Name: value (repeatable)
                        ?chunked=1     no Content-Length, chunked framing; ?chunksize=N (bytes,
                                       default 1024) and ?delay=SECONDS between chunks;
                                       ?hold=NAME: the first chunk, then nothing until
                                       POST /__release?name=NAME (an app that flushed its head;
                                       the next response with the same name waits again)
                        ?tick=NAME     a paragraph at 3/5 of the body counts the requests made
                                       with NAME: the page changes on every request, after its head
                        ?etag=V        ETag "V"; a GET whose If-None-Match names it (weak or
                                       strong) gets 304 without a body
GET /echo-headers       {lowercased name: [values…]} of the request as received
GET /__last-request-headers   [[name, value], …] of the last request (any path, not /__*)
GET /__last-request     {"method", "path", "query", "headers"} of that request
GET /__requests         the last 100 such requests; DELETE /__requests forgets them
POST /__release?name=N  lets a ?hold=N response go on
GET /api/items          JSON; ?cors=1 adds CORS headers; OPTIONS is always a CORS preflight
"""

from __future__ import annotations

import argparse
import base64
import codecs
import collections
import gzip
import random
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import zstandard
from flask import Flask, Response, abort, jsonify, request
from werkzeug.serving import WSGIRequestHandler

from demo.serving import serve, trace_with_elastic_apm
from tests.apps.items import items_response

BASIC = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    "<title>basic</title>\n</head>\n<body>\n<h1>basic</h1>\n<p>A small valid page.</p>\n"
    "</body>\n</html>\n"
)
LATIN1 = (
    '<!doctype html>\n<html lang="fr">\n<head>\n<meta charset="iso-8859-1">\n'
    "<title>Café crème</title>\n</head>\n<body>\n<p>Crème brûlée, façade, naïve, £ ± ½ ÿ</p>\n"
    "</body>\n</html>\n"
)
SJIS = (
    '<!doctype html>\n<html lang="ja">\n<head>\n<meta charset="shift_jis">\n'
    "<title>日本語のページ</title>\n</head>\n<body>\n<p>こんにちは、世界。表示と予約</p>\n"
    "</body>\n</html>\n"
)


def _big(size: int = 2 * 1024 * 1024) -> bytes:
    head = BASIC.split("<body>")[0].replace("<title>basic", "<title>big") + "<body>\n"
    line = "<p>" + "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 4 + "</p>\n"
    filler = line * (size // len(line) + 1)
    return (head + filler + "</body>\n</html>\n").encode()


def _prose(size: int = 100_000) -> bytes:
    """Seeded varied text: gzip shrinks it ~3x, not ~100x as it does the repeated lines of "big"."""
    words = "the of and a to in is you that it he was for on are as with his they at be this from".split()
    rng = random.Random(5)
    head = BASIC.split("<body>")[0].replace("<title>basic", "<title>prose") + "<body>\n"
    paragraphs = []
    while sum(map(len, paragraphs)) < size:
        count = rng.randrange(20, 80)
        paragraphs.append(f"<p id=p{len(paragraphs)}>" + " ".join(rng.choices(words, k=count)) + f" {rng.random()}</p>\n")
    return (head + "".join(paragraphs) + "</body>\n</html>\n").encode()


BODIES: dict[str, bytes] = {
    "basic": BASIC.encode(),
    "nohead": b"<!doctype html>\n<html>\n<body>\n<p>No head element.</p>\n</body>\n</html>\n",
    "nohtml": b"<p>A fragment: no doctype, html, head or body.</p>\n",
    "upper": (
        b'<!DOCTYPE HTML>\n<HTML LANG="EN">\n<HEAD>\n<META CHARSET="UTF-8">\n'
        b"<TITLE>upper</TITLE>\n</HEAD>\n<BODY>\n<P>Upper-case tags.</P>\n</BODY>\n</HTML>\n"
    ),
    "comment": (
        b'<!doctype html>\n<!-- <head><script>not here</script></head> -->\n<html lang="en">\n'
        b'<head>\n<meta charset="utf-8">\n<title>comment</title>\n</head>\n'
        b'<body>\n<script>var s = "</head><body>";</script>\n<p>Decoys.</p>\n</body>\n</html>\n'
    ),
    "amp": (
        '<!doctype html>\n<html ⚡ lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<script async src="https://cdn.ampproject.org/v0.js"></script>\n<title>amp</title>\n'
        '<link rel="canonical" href="/page?body=basic">\n'
        '<meta name="viewport" content="width=device-width">\n'
        "<style amp-boilerplate>body{visibility:hidden}</style>\n</head>\n"
        "<body>\n<h1>AMP page</h1>\n</body>\n</html>\n"
    ).encode(),
    "withagent": (
        b'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        b"<title>withagent</title>\n"
        b'<script src="/static/elastic-apm-rum.umd.min.js" crossorigin></script>\n'
        b'<script>elasticApm.init({serviceName: "own-agent", serverUrl: "http://localhost:8200"})'
        b"</script>\n</head>\n<body>\n<p>Loads its own agent.</p>\n</body>\n</html>\n"
    ),
    "metacsp": (
        b'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        b"<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'self'\">\n"
        b"<title>metacsp</title>\n</head>\n<body>\n<p>CSP in a meta tag.</p>\n</body>\n</html>\n"
    ),
    # Joomla's head for a page that is not HTML5: its <base> first, then the charset meta.
    "joomla": (
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        b'"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en-gb" lang="en-gb" dir="ltr">\n<head>\n'
        b'  <base href="https://www.example.org/" />\n'
        b'  <meta http-equiv="content-type" content="text/html; charset=utf-8" />\n'
        b"  <title>Home</title>\n</head>\n<body>\n<p>A CMS page.</p>\n</body>\n</html>\n"
    ),
    # A tag manager's snippet first, "as high in the head as possible", then the charset meta.
    "scriptfirst": (
        b'<!doctype html>\n<html lang="en">\n<head>\n<script>(function(w,d,s,l,i){w[l]=w[l]||[];'
        + b"w[l].push({'gtm.start':new Date().getTime(),event:'gtm.js'});" * 6
        + b"})(window,document,'script','dataLayer','GTM-XXXX');</script>\n"
        b'<meta charset="utf-8">\n<title>script first</title>\n</head>\n<body>\n<p>Caf\xc3\xa9 cr\xc3\xa8me.</p>\n</body>\n</html>\n'
    ),
    # XHTML as an XML parser reads it: a prolog, entities, a script's text in CDATA.
    "xhtml": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n'
        b'<meta http-equiv="content-type" content="application/xhtml+xml; charset=utf-8" />\n'
        b"<title>Caf\xc3\xa9 &amp; cr\xc3\xa8me</title>\n</head>\n<body>\n<p>XHTML &lt;strict&gt;.</p>\n"
        b"<script>//<![CDATA[\nif (window.a && a.b) a.b();\n//]]></script>\n</body>\n</html>\n"
    ),
    # What only an XML parser reads as the browser does: an internal subset with "]>" and a tag in an
    # entity's value, empty elements (`<title/>` would be a title running to the page's end in
    # HTML), a comment opened by `<!-->`, a CDATA section; past the scan limit.
    "xhtml-xml": (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<!DOCTYPE html [\n  <!ENTITY dish "cr\xc3\xa8me <b>br\xc3\xbbl\xc3\xa9e</b>">\n  <!ENTITY shut "]><script>">\n]>\n'
        b'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n<title/>\n<style/>\n'
        b'<!--><script>--><![CDATA[ <script> ]]>\n<meta http-equiv="X-UA-Compatible" content="IE=edge" />\n'
        b'<script src="/static/app.js"/>\n</head>\n<body>\n<h1>&dish;</h1>\n'
        + b"<p>A paragraph of the menu, &amp; its &dish;.</p>\n" * 2000
        + b"</body>\n</html>\n"
    ),
    "big": _big(),
    "prose": _prose(),
    "latin1": LATIN1.encode("iso-8859-1"),
    "sjis": SJIS.encode("shift_jis"),
    "utf8bom": codecs.BOM_UTF8 + BASIC.replace("basic", "utf8bom").encode(),
    "utf16": codecs.BOM_UTF16_LE + BASIC.replace("utf-8", "utf-16").encode("utf-16-le"),
    "empty": b"",
}
# A charset=utf-8 header would contradict these bodies; the browser and the proxy
# must find their charset in the BOM or the meta tag.
BODY_CONTENT_TYPES = {
    "latin1": "text/html",
    "sjis": "text/html",
    "utf16": "text/html",
    "xhtml": "application/xhtml+xml; charset=utf-8",
    "xhtml-xml": "application/xhtml+xml",
}
DEFAULT_CONTENT_TYPE = "text/html; charset=utf-8"

ENCODERS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),  # mtime=0: identical bytes on every call
    "x-gzip": lambda data: gzip.compress(data, mtime=0),
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "identity": lambda data: data,
}

app = Flask(__name__)
_lock = threading.Lock()
_requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=100)
_holds: dict[str, threading.Event] = {}  # ?hold=NAME responses, set by POST /__release
_ticks: collections.Counter[str] = collections.Counter()  # ?tick=NAME requests so far
HOLD_TIMEOUT = 60.0


class RawHeadersRequestHandler(WSGIRequestHandler):
    # WSGI folds repeated headers into one comma-joined value; tests that check the
    # proxy did not add a second traceparent need the headers as they came on the wire.
    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        environ["upstream.raw_headers"] = [[k, v] for k, v in self.headers.items()]
        return environ


def _raw_headers() -> list[list[str]]:
    raw = request.environ.get("upstream.raw_headers")
    return raw if raw is not None else [[k, v] for k, v in request.headers.items()]


@app.before_request
def _record() -> None:
    if request.path.startswith("/__"):
        return
    entry = {
        "method": request.method,
        "path": request.path,
        "query": request.query_string.decode("latin-1"),
        "headers": _raw_headers(),
    }
    with _lock:
        _requests.append(entry)


@app.get("/__last-request")
def last_request() -> Response:
    with _lock:
        return jsonify(_requests[-1] if _requests else None)


@app.get("/__last-request-headers")
def last_request_headers() -> Response:
    with _lock:
        return jsonify(_requests[-1]["headers"] if _requests else [])


@app.route("/__requests", methods=["GET", "DELETE"])
def all_requests() -> Response:
    with _lock:
        if request.method == "DELETE":
            _requests.clear()
        return jsonify(list(_requests))


@app.get("/echo-headers")
def echo_headers() -> Response:
    headers: dict[str, list[str]] = {}
    for name, value in _raw_headers():
        headers.setdefault(name.lower(), []).append(value)
    return jsonify(headers)


def _encode(body: bytes, encoding: str) -> bytes:
    for coding in (c.strip().lower() for c in encoding.split(",")):
        if coding not in ENCODERS:
            abort(400, f"unknown encoding {coding!r}")
        body = ENCODERS[coding](body)
    return body


def _negotiated(accept_encoding: str) -> str:
    """What a server preferring br, then zstd, then gzip sends for this Accept-Encoding."""
    accepted = set()
    for item in accept_encoding.lower().split(","):
        coding, _, parameters = item.partition(";")
        if parameters.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            accepted.add(coding.strip())
    return next((coding for coding in ("br", "zstd", "gzip") if coding in accepted), "identity")


def _b64decode(text: str) -> bytes:
    # Accept standard and URL-safe alphabets, missing padding, and a "+" that an
    # unencoded query string turned into a space.
    text = text.replace(" ", "+").replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _hold(name: str) -> threading.Event:
    with _lock:
        return _holds.setdefault(name, threading.Event())


@app.post("/__release")
def release() -> Response:
    with _lock:  # the next response held under this name waits again
        hold = _holds.pop(request.args["name"], None)
    if hold is not None:
        hold.set()
    return Response("released\n", content_type="text/plain")


def _chunks(body: bytes, size: int, delay: float, hold: threading.Event | None = None) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        if start and hold is not None and not hold.wait(HOLD_TIMEOUT):
            return  # nobody released it: end the body short rather than hang the server
        if start and delay:
            time.sleep(delay)
        yield body[start : start + size]


def ticked(body: bytes, count: int) -> bytes:
    """`body` as ?tick= sends it the `count`th time: with a paragraph at three fifths of it."""
    at = body.index(b"</p>\n", len(body) * 3 // 5) + len(b"</p>\n")
    return body[:at] + b"<p class=tick>request %d</p>\n" % count + body[at:]


def _ticked(body: bytes, name: str) -> bytes:
    with _lock:
        _ticks[name] += 1
        count = _ticks[name]
    return ticked(body, count)


@app.route("/page", methods=["GET", "POST"])
def page() -> Response:
    args = request.args
    name = args.get("body", "basic")
    if "b64" in args:
        body = _b64decode(args["b64"])
    elif request.method == "POST" and "body" not in args:
        body = request.get_data()
    elif name in BODIES:
        body = BODIES[name]
    else:
        abort(400, f"unknown body {name!r}; known: {', '.join(BODIES)}")
    if "tick" in args:
        body = _ticked(body, args["tick"])
    encoding = args.get("encoding")
    if encoding == "negotiate":
        encoding = _negotiated(request.headers.get("Accept-Encoding", ""))
    if encoding is not None:
        body = _encode(body, encoding)
    if args.get("chunked") == "1":
        size = max(1, int(args.get("chunksize", 1024)))
        hold = _hold(args["hold"]) if "hold" in args else None
        response = Response(_chunks(body, size, float(args.get("delay", 0)), hold))
    else:
        response = Response(body)
    response.status_code = int(args.get("status", 200))
    ctype = args.get("ctype", BODY_CONTENT_TYPES.get(name, DEFAULT_CONTENT_TYPE))
    if ctype:
        response.headers["Content-Type"] = ctype
    else:
        del response.headers["Content-Type"]
    if args.get("encoding") == "negotiate":
        response.headers["Vary"] = "Accept-Encoding"
        if encoding != "identity":
            response.headers["Content-Encoding"] = encoding
    elif encoding is not None:
        response.headers["Content-Encoding"] = encoding
    for header in args.getlist("h"):
        key, sep, value = header.partition(":")
        if not sep or not key.strip():
            abort(400, f"h={header!r}: expected 'Name: value'")
        response.headers.add(key.strip(), value.strip())
    if "etag" in args:
        etag = f'"{args["etag"]}"'
        if request.if_none_match.contains_weak(args["etag"]):
            return Response(status=304, headers={"ETag": etag})
        response.headers["ETag"] = etag
    return response


@app.route("/api/items", methods=["GET", "OPTIONS"], provide_automatic_options=False)
def api_items() -> Response:
    if request.method != "OPTIONS" and request.args.get("cors") != "1":
        return items_response(allow_origin=None)
    response = items_response(allow_origin=request.headers.get("Origin", "*"))
    response.headers["Vary"] = "Origin"
    return response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.apps.upstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--apm-server-url", help="report to this APM server; without it the agent is off")
    parser.add_argument("--service-name", default="upstream")
    parser.add_argument("--http3", nargs=2, metavar=("CERT", "KEY"),
                        help="serve HTTP/3 over QUIC (UDP) with this certificate and key (PEM) instead "
                             "(the recorded request headers are then WSGI's: repeated names folded)")
    options = parser.parse_args(argv)
    trace_with_elastic_apm(app, options.apm_server_url, options.service_name)
    if options.http3:
        from tests.apps.http3 import serve_http3

        cert, key = options.http3
        return serve_http3(app, name="upstream", host=options.host, port=options.port, cert=cert, key=key)
    serve(app, name="upstream", host=options.host, port=options.port, request_handler=RawHeadersRequestHandler)


if __name__ == "__main__":
    main()
