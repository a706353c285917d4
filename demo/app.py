"""The demo shop behind the proxy: `scripts/demo` starts it; alone it is

    python -m demo.app --port 5000 [--host 127.0.0.1] [--apm-server-url http://127.0.0.1:8200]

Its backend is instrumented with the real `elastic-apm` agent, so each page load the
proxy links shows up as one trace: browser page load → document request → Flask
transaction → the `load-inventory` span of /api/items. Everything is inline: the page
must work offline and without any CDN.
"""

from __future__ import annotations

import argparse
import sys
import time

import elasticapm
from flask import Flask, Response, abort, jsonify, request

from demo.serving import serve, trace_with_elastic_apm

PRODUCTS = [
    {"id": 1, "name": "Trail Runner 2", "kind": "Shoes", "price": 89.00, "hue": 12, "featured": True, "sale": False},
    {"id": 2, "name": "Canvas Daypack", "kind": "Bags", "price": 54.00, "hue": 38, "featured": True, "sale": True},
    {"id": 3, "name": "Merino Beanie", "kind": "Apparel", "price": 24.00, "hue": 205, "featured": False, "sale": True},
    {"id": 4, "name": "Steel Bottle 750 ml", "kind": "Camp", "price": 19.50, "hue": 170, "featured": False, "sale": False},
    {"id": 5, "name": "Storm Rain Shell", "kind": "Apparel", "price": 129.00, "hue": 262, "featured": True, "sale": False},
    {"id": 6, "name": "Wool Hiking Socks, 3 pairs", "kind": "Apparel", "price": 21.00, "hue": 330, "featured": False, "sale": True},
]
ROUTES = {"a": ("Featured", "featured"), "b": ("On sale", "sale")}

CSS = """
:root { --ink: #1d2733; --muted: #5d6b7a; --line: #e3e8ee; --bg: #f6f8fa; --accent: #0b7a75; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; justify-content: space-between; gap: 1rem;
         padding: .9rem 2rem; background: #fff; border-bottom: 1px solid var(--line); }
.brand { font-weight: 700; font-size: 1.15rem; color: var(--ink); text-decoration: none; }
.brand span { color: var(--accent); }
nav a { margin-left: 1.2rem; color: var(--muted); text-decoration: none; }
nav a[aria-current="page"] { color: var(--accent); font-weight: 600; }
main { max-width: 960px; margin: 0 auto; padding: 2rem; }
.hero { padding: 2rem; border-radius: 14px; color: #fff;
        background: linear-gradient(120deg, #0b7a75, #14507a); }
.hero h1 { margin: 0 0 .3rem; font-size: 1.9rem; }
.hero p { margin: 0; opacity: .9; }
.status { color: var(--muted); font-size: .9rem; min-height: 1.5em; }
.grid { list-style: none; padding: 0; display: grid; gap: 1rem;
        grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 12px; overflow: hidden; }
.card .pic { height: 110px; }
.card .body { padding: .8rem 1rem 1rem; }
.card .kind { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .05em; }
.card .name { font-weight: 600; margin: .1rem 0 .4rem; }
.card .price { color: var(--accent); font-weight: 700; }
.badge { float: right; font-size: .75rem; background: #fde8e4; color: #b4361d; padding: 0 .5rem;
         border-radius: 99px; }
.buttons { display: flex; gap: .6rem; margin: 1.2rem 0; }
button { font: inherit; padding: .5rem 1.1rem; border-radius: 8px; border: 1px solid var(--accent);
         background: #fff; color: var(--accent); cursor: pointer; }
button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.prose { background: #fff; border: 1px solid var(--line); border-radius: 12px; padding: 1.5rem 2rem; }
code { background: #eef2f5; padding: .1rem .35rem; border-radius: 4px; font-size: .9em; }
footer { max-width: 960px; margin: 0 auto; padding: 0 2rem 2rem; color: var(--muted); font-size: .85rem; }
footer b { color: var(--ink); }
"""

# Shared by every page: draws the product cards, and tells the visitor whether the
# proxy injected the agent and which trace it linked the page to (the proxy exposes
# it as a Server-Timing "traceparent" entry of the document).
COMMON_JS = """
function renderProducts(list, items) {
  list.replaceChildren(...items.map(function (p) {
    var li = document.createElement("li");
    li.className = "card";
    li.innerHTML = '<div class="pic"></div><div class="body"><div class="kind"></div>' +
      '<div class="name"></div><div class="price"></div></div>';
    li.querySelector(".pic").style.background =
      "linear-gradient(135deg, hsl(" + p.hue + " 70% 62%), hsl(" + (p.hue + 40) + " 65% 42%))";
    li.querySelector(".kind").textContent = p.kind;
    li.querySelector(".name").textContent = p.name;
    li.querySelector(".price").textContent = "$" + p.price.toFixed(2);
    if (p.sale) {
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "sale";
      li.querySelector(".kind").appendChild(badge);
    }
    return li;
  }));
}
function loadProducts(url, list, status) {
  var started = performance.now();
  status.textContent = "Loading products\u2026";
  return fetch(url).then(function (response) {
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }).then(function (data) {
    renderProducts(list, data.items);
    status.textContent = data.items.length + " products, fetched from " + url + " in " +
      Math.round(performance.now() - started) + " ms";
  }).catch(function (error) {
    status.textContent = "Could not load products: " + error.message;
  });
}
(function showTracing() {
  var footer = document.getElementById("rum-status");
  var agent = window.elasticApm && typeof window.elasticApm.init === "function";
  var trace = "";
  var nav = performance.getEntriesByType && performance.getEntriesByType("navigation")[0];
  (nav && nav.serverTiming || []).forEach(function (entry) {
    if (entry.name === "traceparent") trace = entry.description.split("-")[1] || "";
  });
  footer.innerHTML = agent
    ? "RUM agent: <b>injected by the proxy</b>" + (trace ? " \u00b7 trace <b>" + trace + "</b>" : "")
    : "RUM agent: <b>not present</b> \u2014 open the shop through the proxy: scripts/demo prints its URL.";
})();
"""

SHOP_JS = """
loadProducts("/api/items", document.getElementById("products"), document.getElementById("status"));
"""

SPA_JS = """
var routes = {"a": "Featured", "b": "On sale"};
function routeFromPath() {
  var match = location.pathname.match(/^\\/spa\\/([ab])$/);
  return match ? match[1] : "a";
}
function show(route) {
  document.getElementById("route-title").textContent = routes[route];
  Object.keys(routes).forEach(function (name) {
    document.getElementById("route-" + name).setAttribute("aria-pressed", String(name === route));
  });
  return loadProducts("/api/items?route=" + route, document.getElementById("products"),
                      document.getElementById("status"));
}
Object.keys(routes).forEach(function (route) {
  document.getElementById("route-" + route).addEventListener("click", function () {
    if (routeFromPath() === route && location.pathname !== "/spa") return;
    history.pushState({route: route}, "", "/spa/" + route);
    show(route);
  });
});
window.addEventListener("popstate", function () { show(routeFromPath()); });
show(routeFromPath());
"""

# Inline, so the browser's /favicon.ico request does not add a 404 trace to every page load.
FAVICON = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E"
           "%3Crect width='16' height='16' rx='4' fill='%230b7a75'/%3E%3C/svg%3E")

NAV = [("/", "Shop"), ("/spa", "Single-page app"), ("/about", "About")]


def render_page(title: str, active: str, main: str, script: str = "") -> str:
    current = ' aria-current="page"'
    links = "".join(f'<a href="{href}"{current if href == active else ""}>{label}</a>' for href, label in NAV)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="{FAVICON}">
<title>{title} · Northwind Outfitters</title>
<style>{CSS}</style>
</head>
<body>
<header><a class="brand" href="/">Northwind <span>Outfitters</span></a><nav>{links}</nav></header>
<main>
{main}
</main>
<footer id="rum-status"></footer>
<script>{COMMON_JS}{script}</script>
</body>
</html>
"""


SHOP_MAIN = """<section class="hero">
  <h1>Gear for the long way round</h1>
  <p>Boots, packs and layers, tested on wet trails. Free shipping over $75.</p>
</section>
<p id="status" class="status"></p>
<ul id="products" class="grid"></ul>"""

SPA_MAIN = """<h1>Collections: <span id="route-title"></span></h1>
<p>This page never reloads: the buttons change the URL with <code>history.pushState</code>
and fetch the collection, so the RUM agent records a route change, not a page load.</p>
<div class="buttons">
  <button id="route-a" type="button">Featured</button>
  <button id="route-b" type="button">On sale</button>
</div>
<p id="status" class="status"></p>
<ul id="products" class="grid"></ul>"""

ABOUT_MAIN = """<section class="prose">
<h1>About this demo</h1>
<p>Northwind Outfitters is a tiny Flask shop. Its backend is traced by the Elastic APM
Python agent; it knows nothing about the browser.</p>
<p>Open it through <b>rumproxy</b> (mitmproxy with <code>addon/inject.py</code>) and the proxy</p>
<ol>
  <li>starts a W3C trace for the page and sends its <code>traceparent</code> to the backend,</li>
  <li>injects the Elastic RUM agent into the HTML, handing it the same trace and span ids,</li>
  <li>so the browser's page load and the backend request end up in <em>one</em> trace.</li>
</ol>
<p>The terminal that runs <code>scripts/demo</code> prints each trace as a tree. The footer
below shows the trace id of this very page.</p>
</section>"""


def no_store(html: str) -> Response:
    # Every reload must reach the proxy and the backend, or there is no new trace to show.
    return Response(html, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})


def create_app(apm_server_url: str | None = None) -> Flask:
    app = Flask(__name__)
    trace_with_elastic_apm(app, apm_server_url, "demo-backend")

    @app.get("/")
    def shop() -> Response:
        return no_store(render_page("Shop", "/", SHOP_MAIN, SHOP_JS))

    @app.get("/spa")
    @app.get("/spa/<route>")
    def spa(route: str = "a") -> Response:
        if route not in ROUTES:
            abort(404)
        return no_store(render_page("Collections", "/spa", SPA_MAIN, SPA_JS))

    @app.get("/about")
    def about() -> Response:
        return no_store(render_page("About", "/about", ABOUT_MAIN))

    @app.get("/api/items")
    def items() -> Response:
        route = request.args.get("route")
        with elasticapm.capture_span("load-inventory", span_type="db", span_subtype="inventory"):
            time.sleep(0.015)  # a stand-in for a database query, so the span has a visible width
            _, flag = ROUTES.get(route or "", (None, None))
            found = [p for p in PRODUCTS if flag is None or p[flag]]
        return jsonify({"route": route, "items": found})

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.app", description="The rumproxy demo shop.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--apm-server-url", help="APM server (or `python -m rumproxy.intake`) for the backend "
                        "traces; without it the agent is off")
    options = parser.parse_args(argv)
    app = create_app(options.apm_server_url)
    apm = f"reporting to {options.apm_server_url}" if options.apm_server_url else "off (no --apm-server-url)"
    print(f"demo-app: elastic-apm {apm}", file=sys.stderr)
    serve(app, name="demo-app", host=options.host, port=options.port)


if __name__ == "__main__":
    main()
