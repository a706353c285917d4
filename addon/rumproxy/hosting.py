"""Serving local agent bundles on the page's own origin under /__rum/, so no CDN is needed.

The URL carries a digest of the file, so it can be cached for a year and still change the
moment the file does.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import mimetypes
from collections.abc import Iterable
from pathlib import Path

from mitmproxy import http

from rumproxy import acceptencoding

PREFIX = "/__rum/"
CACHE_FOREVER = "public, max-age=31536000, immutable"


@dataclasses.dataclass(frozen=True)
class HostedFile:
    path: str  # the URL path, e.g. /__rum/1a2b3c4d5e6f/elastic-apm-rum.umd.min.js
    content: bytes
    gzipped: bytes
    content_type: str
    etag: str


@dataclasses.dataclass(frozen=True)
class HostedResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def host_files(files: Iterable[Path]) -> dict[Path, HostedFile]:
    """Read each file once (at rules load) and give it its URL path."""
    hosted: dict[Path, HostedFile] = {}
    for file in files:
        content = file.read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if content_type in ("application/javascript", "text/javascript"):
            content_type = "text/javascript; charset=utf-8"
        entry = HostedFile(
            path=f"{PREFIX}{digest[:16]}/{file.name}",
            content=content,
            gzipped=gzip.compress(content, compresslevel=9, mtime=0),
            content_type=content_type,
            etag=f'"{digest[:32]}"',
        )
        hosted[file] = entry
    return hosted


def respond(entry: HostedFile, method: str, if_none_match: str | None, accept_encoding: str | None) -> HostedResponse:
    if method not in ("GET", "HEAD"):
        return HostedResponse(405, (("allow", "GET, HEAD"), ("content-length", "0")), b"")
    headers = [
        ("cache-control", CACHE_FOREVER),
        ("etag", entry.etag),
        ("vary", "Accept-Encoding"),
        ("x-content-type-options", "nosniff"),
        # The bootstrap loads it with `crossorigin`, so error reports from it keep their details
        ("access-control-allow-origin", "*"),
        ("cross-origin-resource-policy", "cross-origin"),
    ]
    if if_none_match and _etag_matches(if_none_match, entry.etag):
        return HostedResponse(304, tuple(headers), b"")
    body = entry.content
    if accept_encoding and acceptencoding.accepts_gzip(accept_encoding):
        body = entry.gzipped
        headers.append(("content-encoding", "gzip"))
    headers += [("content-type", entry.content_type), ("content-length", str(len(body)))]
    return HostedResponse(200, tuple(headers), b"" if method == "HEAD" else body)


def as_response(answer: HostedResponse) -> http.Response:
    response = http.Response.make(answer.status)
    # The body is already gzip-encoded when the headers say so: .content would encode it again,
    # and a HEAD answer keeps the Content-Length of the GET.
    response.raw_content = answer.body
    response.headers.clear()
    for name, value in answer.headers:
        response.headers.add(name, value)
    return response


def _etag_matches(if_none_match: str, etag: str) -> bool:
    candidates = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in candidates or etag in candidates
