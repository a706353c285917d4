"""The addon's hooks as a whole, on generated requests and responses (hypothesis): whatever comes,
the client gets the upstream's page with at most the one snippet inserted, in a body its headers
describe, and a response that is not instrumented stays exactly as the upstream sent it."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mitmproxy.test import taddons, tflow, tutils

from rumproxy import codecs, encoders
from rumproxy.addon import RumInject
from tests.pages import page_pieces
from tests.unit.rulesfiles import INTAKE, write_rules
from tests.unit.wire import chunks_of, sent_through

TRACE_ONLY_RULE = """\
    - name: traced
      hosts: ["traced.test"]
      inject: false
"""
SNIPPET_START = b'<script src="/__rum/'
UTF16_BOM = b"\xff\xfe"
META_POLICY = b'<meta http-equiv="Content-Security-Policy" content="%s">'
META_POLICY_VALUE = re.compile(r'(<meta http-equiv="Content-Security-Policy" content=")([^"]*)(">)')
TRACE_HEADERS = (b"server-timing", b"traceparent", b"tracestate")  # what a trace-only rule adds to a response

# Each field of an exchange: the value of a page the addon instruments first, then the others. An
# exchange is such a page with a few fields changed, so that half the examples check an insertion
# (with every field drawn at random, a page that gets one would be rare).
FIELDS: dict[str, list] = {
    "host": ["shop.test", "traced.test", "other.test"],  # a rule that injects, one that only traces, none
    "path": ["/", "/a", "/b?q=1"],
    "method": ["GET", "POST", "HEAD"],
    "destination": ["document", None, "iframe", "empty", "script"],
    "accept": ["text/html,*/*;q=0.8", None, "*/*", "application/json"],
    "requested_with": [None, "XMLHttpRequest", "com.example.app"],
    "traceparent": [None, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "garbage"],
    "accept_encoding": ["gzip, deflate, br, zstd", None, "gzip", "identity"],
    "status": [200, 404, 500, 204, 304, 206],
    "content_type": [
        "text/html; charset=utf-8", "text/html", "TEXT/HTML; Charset=ISO-8859-1", "text/html;charset=windows-1252",
        "application/json", "application/xhtml+xml", None,
    ],
    "encoding": ["gzip", None, "identity", "deflate", "br", "zstd", "x-gzip", "gzip, br", "compress"],
    "policy": [None, "script-src 'self'", "default-src 'none'", "script-src 'nonce-abc' 'strict-dynamic'",
               "connect-src 'self'; script-src 'self' 'unsafe-inline'"],
    "extra": [(), (("etag", '"abc"'),), (("etag", 'W/"abc"'),), (("set-cookie", "a=1"), ("set-cookie", "b=2")),
              (("server-timing", "db;dur=2"),), (("cache-control", "no-transform"),),
              (("content-disposition", "attachment; filename=x.html"),), (("x-rum-injected", "elsewhere"),),
              (("content-range", "bytes 0-9/10"),)],
    "sized": [True, False],
    "utf16": [False, True],  # the page in UTF-16 with a BOM: the snippet goes in transcoded
    # A <meta> policy in the head: the snippet goes before it, and its connect-src may widen.
    "meta_policy": [None, "connect-src 'self'", "default-src 'self' 'unsafe-inline'", "script-src 'self'",
                    f"connect-src {INTAKE}"],
    "corrupt": [False, True],
}


@st.composite
def exchanges(draw) -> dict:
    exchange = {name: values[0] for name, values in FIELDS.items()}
    for name in draw(st.lists(st.sampled_from(list(FIELDS)), max_size=3)):
        exchange[name] = draw(st.sampled_from(FIELDS[name]))
    pieces = draw(page_pieces(large=True))
    if exchange["meta_policy"] is not None:
        pieces.insert(2, META_POLICY % exchange["meta_policy"].encode())  # after the head's start
    page = b"".join(pieces)
    exchange["page"] = UTF16_BOM + page.decode("utf-8").encode("utf-16-le") if exchange["utf16"] else page
    exchange["cuts"] = draw(st.lists(st.integers(min_value=0, max_value=10**6), max_size=6))  # positions
    return exchange


def upstream_body(page: bytes, encoding: str | None, corrupt: bool) -> bytes:
    name = codecs.normalize_encoding(encoding)
    if name is None:  # stacked or unknown: the bytes are whatever they are
        return page
    body = gzip.compress(page, 6, mtime=0) if name == "gzip" else encoders.encode(page, name)
    if corrupt and name != "identity" and len(body) > 12:
        body = body[: len(body) // 2]
    return body


def make_flow(x: dict, body: bytes):
    request_headers = [(b"host", x["host"].encode())]
    for name, key in (("sec-fetch-dest", "destination"), ("accept", "accept"), ("traceparent", "traceparent"),
                      ("accept-encoding", "accept_encoding"), ("x-requested-with", "requested_with")):
        if x[key] is not None:
            request_headers.append((name.encode(), x[key].encode()))
    flow = tflow.tflow(req=tutils.treq(host=x["host"], port=80, method=x["method"].encode(), path=x["path"].encode(),
                                       headers=tuple(request_headers)))
    response_headers = []
    if x["content_type"] is not None:
        response_headers.append((b"content-type", x["content_type"].encode()))
    if x["encoding"] is not None:
        response_headers.append((b"content-encoding", x["encoding"].encode()))
    if x["policy"] is not None:
        response_headers.append((b"content-security-policy", x["policy"].encode()))
    response_headers += [(name.encode(), value.encode()) for name, value in x["extra"]]
    if x["sized"]:
        response_headers.append((b"content-length", str(len(body)).encode()))
    else:
        response_headers.append((b"transfer-encoding", b"chunked"))
    flow.response = tutils.tresp(status_code=x["status"], content=body, headers=tuple(response_headers))
    return flow


def delivered(rum: RumInject, flow, body: bytes, cuts: list[int]) -> bytes:
    """The body the client gets, after the hooks as mitmproxy calls them (streamed or whole)."""
    response = flow.response
    flow.response = None
    rum.request(flow)
    flow.response = response
    rum.responseheaders(flow)
    if response.stream:
        out = sent_through(response.stream, chunks_of(body, cuts))
        response.raw_content = None  # as mitmproxy leaves a streamed body
        rum.response(flow)
        return out
    rum.response(flow)
    return response.raw_content


def text(document: bytes) -> str:
    """A page's characters: UTF-16 with its BOM, or (as the pieces of pages are) UTF-8."""
    return document[2:].decode("utf-16-le") if document.startswith(UTF16_BOM) else document.decode("utf-8", "surrogateescape")


def without_snippet(document: str) -> str:
    start = document.index(SNIPPET_START.decode())
    first_end = document.index("</script>", start) + len("</script>")
    end = document.index("</script>", first_end) + len("</script>")
    return document[:start] + document[end:]


class Proxy(NamedTuple):
    addon: RumInject
    context: taddons.context


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[Proxy]:
    """One addon for all examples (mitmproxy's test context holds an event loop its log handler
    uses): its remembered rewrites carry over from one example to the next, as in a proxy."""
    rules = write_rules(tmp_path_factory.mktemp("rules"), TRACE_ONLY_RULE)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        yield Proxy(rum, tctx)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(x=exchanges(), stream=st.sampled_from(["auto", "always", "never"]), repeat=st.integers(min_value=1, max_value=2))
def test_the_client_gets_the_upstreams_page_with_at_most_the_snippet(proxy, caplog, x, stream, repeat):
    body = upstream_body(x["page"], x["encoding"], x["corrupt"])
    corrupted = body != upstream_body(x["page"], x["encoding"], corrupt=False)
    rum = proxy.addon
    proxy.context.configure(rum, rum_stream=stream)
    with caplog.at_level(logging.DEBUG, logger="rumproxy"):
        for _ in range(repeat):  # the second time from the remembered rewrite, where one was made
            caplog.clear()
            flow = make_flow(x, body)
            before = flow.copy()
            sent = delivered(rum, flow, body, x["cuts"])
            headers = flow.response.headers

            assert not [record for record in caplog.records if record.levelno >= logging.ERROR], caplog.text
            assert ": error" not in flow.comment
            if "content-length" in headers:
                assert int(headers["content-length"]) == len(sent)
            # What was done, as the flow tells it (a stream's headers say "instrumented" before its
            # body is seen, and stay when it passes the body on after all).
            injected = flow.metadata.get("rumproxy", {}).get("action", "").startswith("injected")
            assert not injected or "x-rum-injected" in headers
            event(f"{'injected' if injected else 'left alone'}, {'streamed' if flow.response.stream else 'whole'}"
                  f"{', remembered' if 'remembered' in flow.comment else ''}{', blocks reused' if 'reused' in flow.comment else ''}"
                  f"{', past the scan limit' if 'scan limit' in flow.comment else ''}{', UTF-16' if x['utf16'] else ''}"
                  f"{', meta policy' if x['meta_policy'] else ''}")
            if not injected:
                # Left alone: the upstream's bytes, and its headers unless a stream had sent them
                # already (they describe the instrumented page; the body fits them either way), or
                # a trace-only rule told the client its trace.
                assert sent == body
                if not flow.response.stream:
                    exposed = TRACE_HEADERS if x["host"] == "traced.test" else ()
                    assert [f for f in headers.fields if f[0].lower() not in exposed] == \
                        [f for f in before.response.headers.fields if f[0].lower() not in exposed]
                continue
            assert x["host"] == "shop.test"
            if corrupted:
                # Only a stream injects into a body it finds broken later: its head went out with the
                # snippet before the break came, the rest as the upstream sent it (and as broken).
                assert flow.response.stream
                continue
            encoding = headers.get("content-encoding")
            assert encoding == before.response.headers.get("content-encoding")
            document = codecs.decode(sent, encoding)
            page, sent_page = text(x["page"]), text(document)
            assert sent_page.count(SNIPPET_START.decode()) == page.count(SNIPPET_START.decode()) + 1
            rest = without_snippet(sent_page)
            if x["meta_policy"] is not None:
                # The one other edit there may be: the <meta> policy lets the beacons reach the intake.
                assert sent_page.index(SNIPPET_START.decode()) < sent_page.index("<meta http-equiv")
                policy = META_POLICY_VALUE.search(rest).group(2)
                assert policy == x["meta_policy"] or (INTAKE in policy and INTAKE not in x["meta_policy"])
                rest = META_POLICY_VALUE.sub(lambda m: m.group(1) + x["meta_policy"] + m.group(3), rest, count=1)
            assert rest == page
            assert document.startswith(UTF16_BOM) == x["utf16"]
            trace_id = flow.metadata["rumproxy"].get("trace_id")
            if trace_id is None:  # a page no navigation asked for (a POST without fetch metadata): no trace
                assert "pageLoadTraceId" not in sent_page
            else:
                assert f'"pageLoadTraceId":"{trace_id}"' in sent_page
