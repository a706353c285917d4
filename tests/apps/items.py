"""The JSON API both test apps serve at /api/items, with the CORS answers a cross-origin page's
fetch needs: traceparent and tracestate are not simple headers, so a preflight comes first."""

from __future__ import annotations

from flask import Response, jsonify, request

ITEMS = [
    {"id": 1, "name": "Trail Runner 2", "price": 89.0},
    {"id": 2, "name": "Canvas Daypack", "price": 54.0},
    {"id": 3, "name": "Merino Beanie", "price": 24.0},
]
CORS_ALLOW_HEADERS = "traceparent, tracestate, content-type"


def items_response(allow_origin: str | None) -> Response:
    """The items for a GET, a preflight answer for an OPTIONS; `allow_origin` goes into
    Access-Control-Allow-Origin (a GET without it has no CORS headers)."""
    if request.method == "OPTIONS":
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "GET, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    else:
        response = jsonify(ITEMS)
    if allow_origin is not None:
        response.headers["Access-Control-Allow-Origin"] = allow_origin
    return response
