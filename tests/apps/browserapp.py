"""The site behind the proxy in the browser tests: small pages that exercise what a real site
does to an injected agent (Content-Security-Policy in every form, a single-page app, a page
that loads its own copy of the agent), served by Flask with the real `elastic-apm` agent.

    python -m tests.apps.browserapp --port 0 [--host 127.0.0.1] [--apm-server-url URL]
        [--service-name NAME] [--rum-server-url URL] [--tls-cert PEM --tls-key PEM [--http3]]

GET /                      fetch(API + "/api/items") as the page loads, API from ?api=ORIGIN
                           (default: the page's own origin); the result goes into #items
GET|OPTIONS /api/items     JSON, CORS for any origin (traceparent, tracestate, content-type)
GET /csp/nonce             script-src 'nonce-N'; connect-src 'self'      (N random per response,
GET /csp/strict-dynamic    script-src 'nonce-N' 'strict-dynamic'; …       or fixed by ?nonce=N)
GET /csp/hash              script-src 'sha256-…' of the page's own inline script
GET /csp/meta              the policy in a <meta http-equiv> after <meta charset>
GET /csp/open              a policy that allows everything
GET /csp/report-only       only a Content-Security-Policy-Report-Only header
GET /spa                   #route-a / #route-b: history.pushState + fetch /api/items
GET /own-agent             loads /static/elastic-apm-rum.umd.min.js and calls init itself
GET /static/own-script.js  what the pages whose policy forbids inline script run instead
GET /cached                a page browsers keep: fresh for ten minutes (Cache-Control), then
                           revalidated by its ETag (304); links to /away, which links back
GET /prefetching           <link rel=prefetch> of /cached, and a link to it
GET|POST /login            a form that POSTs to itself; the POST answers 303 to /
GET /based                 Joomla's head for a page that is not HTML5: <base href> (to ?base=ORIGIN/)
                           before the charset meta; the Content-Type names the charset too
GET /script-first          a tag manager's script first in the head, then the charset meta, which
                           the Content-Type does not repeat (text/html only)
GET /xhtml                 an XHTML 1.0 Strict page served as application/xhtml+xml: the browser
                           parses it as XML, where one stray "&" shows an error instead of the page;
                           ?head=xml: what only XML reads so (an internal subset with "]>" in an
                           entity, <title/>, <style/>, "<!-->", CDATA, <script src=…/>), 100 KB
GET /large                 ?paragraphs=N of seeded words, gzip (level 6, as build tools write it)
                           for clients that accept it (?br=1: br, quality 5, for clients that
                           accept br), ?length=no chunked; its script counts the paragraphs and
                           hashes their text into the body's dataset

Every page's own script marks `document.body.dataset.ownScript = "ran"`, so a test can tell a
policy adjusted for the agent from one that broke the page. --rum-server-url (default: the
--apm-server-url) is the serverUrl the /own-agent page gives its agent.
"""

from __future__ import annotations

import argparse
import base64
import functools
import gzip
import hashlib
import html
import json
import random
import secrets

import brotli
from flask import Flask, Response, redirect, request

from demo.serving import serve, trace_with_elastic_apm
from rumproxy.rules import VENDORED_AGENT
from tests.apps.items import items_response

MARK_SCRIPT = 'document.body.dataset.ownScript = "ran";'
OWN_SCRIPT_TAG = '<script src="/static/own-script.js"></script>'

# The API origin comes from the query string, so one page serves the same- and cross-origin cases.
FETCH_ITEMS = """
(function () {
  var api = new URLSearchParams(location.search).get("api") || "";
  var list = document.getElementById("items");
  fetch(api + "/api/items").then(function (response) {
    if (!response.ok) { throw new Error("HTTP " + response.status); }
    return response.json();
  }).then(function (items) {
    items.forEach(function (item) {
      var li = document.createElement("li");
      li.textContent = item.name;
      list.appendChild(li);
    });
    list.dataset.state = "loaded";
  }).catch(function (error) {
    list.dataset.state = "failed: " + error;
  });
})();
document.body.dataset.ownScript = "ran";
"""

SPA_SCRIPT = """
(function () {
  var view = document.getElementById("view");
  function go(route) {
    history.pushState({route: route}, "", "/spa/" + route);
    document.title = "spa " + route;
    view.dataset.state = "loading " + route;
    fetch("/api/items?route=" + route).then(function (response) {
      return response.json();
    }).then(function (items) {
      view.textContent = "route " + route + ": " + items.length + " items";
      view.dataset.state = "shown " + route;
    });
  }
  document.getElementById("route-a").addEventListener("click", function () { go("a"); });
  document.getElementById("route-b").addEventListener("click", function () { go("b"); });
})();
document.body.dataset.ownScript = "ran";
"""

app = Flask(__name__)
app.config["RUM_SERVER_URL"] = "http://127.0.0.1:8200"


def page(title: str, body: str, *, head: str = "") -> str:
    """A complete document: doctype, html, head with meta charset first, then `head`."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"{head}<title>{html.escape(title)}</title>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        f"{body}</body>\n</html>\n"
    )


def html_response(text: str, status: int = 200) -> Response:
    return Response(text, status, content_type="text/html; charset=utf-8")


def nonce() -> str:
    """A fresh nonce per response, unless the test fixes one (?nonce=…) to compare bytes."""
    fixed = request.args.get("nonce", "")
    return fixed if fixed.isalnum() else secrets.token_urlsafe(16).replace("-", "A").replace("_", "B")


def sha256_source(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


@app.get("/")
def index() -> Response:
    return html_response(page("browserapp", f'<ul id="items" data-state="loading"></ul>\n<script>{FETCH_ITEMS}</script>\n'))


CACHED_ETAG = "cached-v1"


@app.get("/cached")
def cached() -> Response:
    headers = {"ETag": f'"{CACHED_ETAG}"', "Cache-Control": "max-age=600"}
    if request.if_none_match.contains_weak(CACHED_ETAG):  # the proxy's W/ form too
        return Response(status=304, headers=headers)
    response = html_response(page("cached", '<p><a id="away" href="/away">away</a></p>\n'))
    response.headers.update(headers)
    return response


@app.get("/prefetching")
def prefetching() -> Response:
    return html_response(page("prefetching", '<p><a id="next" href="/cached">next</a></p>\n', head='<link rel="prefetch" href="/cached">\n'))


@app.route("/login", methods=["GET", "POST"])
def login() -> Response:
    if request.method == "POST":
        return redirect("/", code=303)  # werkzeug's "Redirecting..." page, with a Location
    return html_response(page("login", '<form method="post" action="/login"><button id="sign-in">sign in</button></form>\n'))


@app.get("/away")
def away() -> Response:
    return html_response(page("away", '<p><a id="back" href="/cached">back</a></p>\n'))


@app.route("/api/items", methods=["GET", "OPTIONS"], provide_automatic_options=False)
def api_items() -> Response:
    return items_response(allow_origin="*")


@app.get("/csp/nonce")
def csp_nonce() -> Response:
    value = nonce()
    response = html_response(page("csp nonce", f'<script nonce="{value}">{MARK_SCRIPT}</script>\n'))
    response.headers["Content-Security-Policy"] = f"script-src 'nonce-{value}'; connect-src 'self'"
    return response


@app.get("/csp/strict-dynamic")
def csp_strict_dynamic() -> Response:
    value = nonce()
    response = html_response(page("csp strict-dynamic", f'<script nonce="{value}">{MARK_SCRIPT}</script>\n'))
    response.headers["Content-Security-Policy"] = (
        f"script-src 'nonce-{value}' 'strict-dynamic'; object-src 'none'; base-uri 'none'"
    )
    return response


@app.get("/csp/hash")
def csp_hash() -> Response:
    response = html_response(page("csp hash", f"<script>{MARK_SCRIPT}</script>\n"))
    response.headers["Content-Security-Policy"] = f"script-src {sha256_source(MARK_SCRIPT)}"
    return response


@app.get("/csp/meta")
def csp_meta() -> Response:
    meta = "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'self'; connect-src 'self'\">\n"
    return html_response(page("csp meta", OWN_SCRIPT_TAG + "\n", head=meta))


@app.get("/csp/open")
def csp_open() -> Response:
    response = html_response(page("csp open", f"<script>{MARK_SCRIPT}</script>\n"))
    response.headers["Content-Security-Policy"] = "default-src * 'unsafe-inline' 'unsafe-eval' data: blob:"
    return response


@app.get("/csp/report-only")
def csp_report_only() -> Response:
    response = html_response(page("csp report-only", OWN_SCRIPT_TAG + "\n"))
    response.headers["Content-Security-Policy-Report-Only"] = "script-src 'self'; connect-src 'self'"
    return response


@app.get("/based")
def based() -> Response:
    base = html.escape(request.args.get("base", ""), quote=True)
    return html_response(
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
        '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" lang="en">\n<head>\n'
        f'  <base href="{base}/" />\n  <meta http-equiv="content-type" content="text/html; charset=utf-8" />\n'
        "  <title>based</title>\n</head>\n<body>\n<h1>based</h1>\n"
        f"<script>{MARK_SCRIPT}</script>\n</body>\n</html>\n"
    )


@app.get("/script-first")
def script_first() -> Response:
    tag_manager = "(function(w){w.dataLayer=w.dataLayer||[];" + "w.dataLayer.push({event:'start'});" * 12 + "})(window);"
    text = (
        f'<!doctype html>\n<html lang="fr">\n<head>\n<script>{tag_manager}</script>\n<meta charset="utf-8">\n'
        f"<title>script first</title>\n</head>\n<body>\n<h1 id=title>Café crème, façade</h1>\n<script>{MARK_SCRIPT}</script>\n"
        "</body>\n</html>\n"
    )
    return Response(text.encode(), content_type="text/html")


XHTML_PARAGRAPHS = 1500


@app.get("/xhtml")
def xhtml() -> Response:
    if request.args.get("head") == "xml":
        return xhtml_as_only_xml_reads_it()
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n'
        '<meta http-equiv="content-type" content="application/xhtml+xml; charset=utf-8" />\n<title>xhtml</title>\n</head>\n'
        '<body>\n<h1 id="title">Café &amp; crème</h1>\n'
        f"<script>//<![CDATA[\n{MARK_SCRIPT}\n//]]></script>\n</body>\n</html>\n"
    )
    return Response(text.encode(), content_type="application/xhtml+xml; charset=utf-8")


def xhtml_as_only_xml_reads_it() -> Response:
    paragraphs = "".join(f"<p>Paragraph {n} of the &dish; menu.</p>\n" for n in range(XHTML_PARAGRAPHS))
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE html [\n  <!ENTITY dish "Café crème">\n  <!ENTITY shut "]><script>">\n]>\n'
        '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n<head>\n<title/>\n<style/>\n'
        "<!--><script>--><![CDATA[ <script> ]]>\n"
        '<meta http-equiv="X-UA-Compatible" content="IE=edge" />\n</head>\n'
        f'<body>\n<h1 id="title">&dish;</h1>\n<main>\n{paragraphs}</main>\n'
        '<script src="/static/own-script.js"/>\n</body>\n</html>\n'
    )
    return Response(text.encode(), content_type="application/xhtml+xml")


@app.get("/spa")
@app.get("/spa/<route>")
def spa(route: str = "") -> Response:
    body = (
        '<nav><button id="route-a">Route A</button> <button id="route-b">Route B</button></nav>\n'
        '<p id="view" data-state="start">start</p>\n'
        f"<script>{SPA_SCRIPT}</script>\n"
    )
    return html_response(page("spa", body))


@app.get("/own-agent")
def own_agent() -> Response:
    config = json.dumps({"serviceName": "own-agent", "serverUrl": app.config["RUM_SERVER_URL"]})
    head = (
        '<script src="/static/elastic-apm-rum.umd.min.js" crossorigin></script>\n'
        f"<script>elasticApm.init({config})</script>\n"
    )
    return html_response(page("own agent", f"<script>{MARK_SCRIPT}</script>\n", head=head))


@app.get("/static/elastic-apm-rum.umd.min.js")
def own_agent_bundle() -> Response:
    response = Response(VENDORED_AGENT.read_bytes(), content_type="text/javascript; charset=utf-8")
    response.headers["Access-Control-Allow-Origin"] = "*"  # loaded with crossorigin
    return response


@app.get("/static/own-script.js")
def own_script() -> Response:
    return Response(MARK_SCRIPT + "\n", content_type="text/javascript; charset=utf-8")


LARGE_SCRIPT = """
(async function () {
  var texts = Array.from(document.querySelectorAll("main p"), function (p) { return p.textContent; });
  var digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(texts.join("\\n")));
  document.body.dataset.paragraphs = texts.length;
  document.body.dataset.sha256 = Array.from(new Uint8Array(digest), function (b) {
    return b.toString(16).padStart(2, "0");
  }).join("");
})();
document.body.dataset.ownScript = "ran";
"""


def large_paragraphs(count: int) -> list[str]:
    """Seeded text varied enough that gzip -6 ends a deflate block every ~50 KB, as on real pages."""
    rng = random.Random(count)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(3000)]
    return [" ".join(rng.choices(words, k=rng.randint(8, 16))) for _ in range(count)]


@functools.lru_cache(maxsize=4)
def large_page(count: int) -> tuple[bytes, bytes]:
    """The page of `count` paragraphs, and its gzip."""
    body = "<main>\n" + "".join(f"<p>{text}</p>\n" for text in large_paragraphs(count)) + "</main>\n"
    text = page("large", body + f"<script>{LARGE_SCRIPT}</script>\n").encode()
    return text, gzip.compress(text, 6, mtime=0)


@functools.lru_cache(maxsize=4)
def large_page_br(count: int) -> bytes:
    return brotli.compress(large_page(count)[0], quality=5)


@app.get("/large")
def large() -> Response:
    """?paragraphs=N, ?length=no (chunked), ?br=1: br for a client that accepts it, as servers
    that prefer br send."""
    count = int(request.args.get("paragraphs", "4000"))
    text, compressed = large_page(count)
    accepted = request.headers.get("Accept-Encoding", "")
    if request.args.get("br") == "1" and "br" in accepted:
        encoding, body = "br", large_page_br(count)
    elif "gzip" in accepted:
        encoding, body = "gzip", compressed
    else:
        encoding, body = None, text
    pieces = (body[start : start + 16384] for start in range(0, len(body), 16384))
    response = Response(pieces if request.args.get("length") == "no" else body, content_type="text/html; charset=utf-8")
    if encoding:
        response.headers["Content-Encoding"] = encoding
    response.headers["Vary"] = "Accept-Encoding"
    return response


@app.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)  # no 404 noise in the console


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.apps.browserapp", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--apm-server-url", help="report to this APM server; without it the agent is off")
    parser.add_argument("--service-name", default="browserapp")
    parser.add_argument("--rum-server-url", help="serverUrl of the /own-agent page (default: --apm-server-url)")
    parser.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", help="the certificate's private key (PEM)")
    parser.add_argument("--http3", action="store_true", help="serve HTTP/3 over QUIC (UDP) instead, with the certificate")
    options = parser.parse_args(argv)
    if bool(options.tls_cert) != bool(options.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if options.http3 and not options.tls_cert:
        parser.error("--http3 needs --tls-cert and --tls-key")
    app.config["RUM_SERVER_URL"] = options.rum_server_url or options.apm_server_url or app.config["RUM_SERVER_URL"]
    trace_with_elastic_apm(app, options.apm_server_url, options.service_name)
    if options.http3:
        from tests.apps.http3 import serve_http3

        return serve_http3(app, name="browserapp", host=options.host, port=options.port,
                           cert=options.tls_cert, key=options.tls_key)
    ssl_context = (options.tls_cert, options.tls_key) if options.tls_cert else None
    serve(app, name="browserapp", host=options.host, port=options.port, ssl_context=ssl_context)


if __name__ == "__main__":
    main()
