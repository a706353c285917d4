"""The addon's hooks with mitmproxy's test doubles: fail open, fast paths, flow annotations."""

from __future__ import annotations

import gzip
import logging
import re
import zlib
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons import proxyserver
from mitmproxy.test import taddons, tflow, tutils

from rumproxy import addon as addon_module
from rumproxy import codecs, encoders, memo, vectorstate, wholebody
from rumproxy.addon import RumInject
from rumproxy.headerview import HeaderView
from tests.pages import varied_text
from tests.unit.rulesfiles import write_rules
from tests.unit.wire import sent_through

PAGE = b'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>x</body></html>'


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return write_rules(tmp_path)


def page_flow(host: str = "shop.test", body: bytes = PAGE, **response_headers: str):
    flow = tflow.tflow(
        req=tutils.treq(host=host, port=80, path=b"/", headers=((b"host", host.encode()), (b"sec-fetch-dest", b"document")))
    )
    flow.response = tutils.tresp(
        content=body, headers=((b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()))
    )
    for name, value in response_headers.items():
        flow.response.headers[name.replace("_", "-")] = value
    return flow


def run_headers(addon: RumInject, flow) -> None:
    response = flow.response
    flow.response = None
    addon.request(flow)
    flow.response = response
    addon.responseheaders(flow)


def run(addon: RumInject, flow) -> None:
    run_headers(addon, flow)
    addon.response(flow)


def streamed(flow, chunks: list[bytes]) -> bytes:
    """What the client receives of `flow`'s streamed body sent in `chunks`."""
    return sent_through(flow.response.stream, chunks)


def test_injects_and_annotates(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow()
        run(rum, flow)
        assert b"/__rum/" in flow.response.content
        assert flow.request.headers["traceparent"].startswith("00-")
        meta = flow.metadata["rumproxy"]
        assert meta["rule"] == "shop" and meta["action"].startswith("injected (after-meta")
        assert flow.comment.startswith(f"rumproxy: rule shop, trace {meta['trace_id']}")


def test_reverse_mode_to_a_host_no_rule_names_is_warned_about(rules, caplog):
    """The rules name shop.test; reverse mode would send the upstream's host instead."""
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), mode=["reverse:http://shop.test:8080"])
        assert "reverse mode sends the Host" not in caplog.text
        tctx.configure(rum, mode=["reverse:http://10.0.0.7:8080"])
        assert f"reverse mode sends the Host of 10.0.0.7:8080 upstream and no rule in {rules} names it" in caplog.text


def test_with_keep_host_header_a_page_request_for_a_host_no_rule_names_is_warned_about(rules, caplog):
    """The Host is the browser's: the first page request for one the rules do not name is said."""
    rum = RumInject(default_rules=rules)
    with taddons.context(rum, proxyserver.Proxyserver()) as tctx:  # which declares keep_host_header
        tctx.configure(rum, rum_rules=str(rules), mode=["reverse:http://10.0.0.7:8080"], keep_host_header=True)
        for host in ("www.shop.test", "www.shop.test", "shop.test"):
            flow = page_flow(host=host)
            flow.client_conn.proxy_mode = addon_module.reversehost.ProxyMode.parse("reverse:http://10.0.0.7:8080")
            run(rum, flow)
        said = [r.getMessage() for r in caplog.records if "reverse mode keeps the Host" in r.getMessage()]
        assert len(said) == 1 and f"no rule in {rules} names www.shop.test:80" in said[0]
        assert b"/__rum/" in flow.response.content  # shop.test is named


def test_unmatched_host_is_not_touched_at_all(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow(host="other.test")
        before = flow.copy()
        run(rum, flow)
        assert flow.response.raw_content == before.response.raw_content
        assert flow.response.headers == before.response.headers
        assert flow.request.headers == before.request.headers
        assert "rumproxy" not in flow.metadata and not flow.comment


@pytest.mark.parametrize("destination", ["script", "style", "image", "empty", " Font "])
def test_a_browsers_subresource_request_is_not_tracked_or_touched(rules, caplog, destination):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow()  # an HTML response, even: the request says it is no page
        flow.request.headers["sec-fetch-dest"] = destination
        before = flow.copy()
        response = flow.response
        flow.response = None
        with caplog.at_level(logging.DEBUG, logger="rumproxy"):
            rum.request(flow)
            assert flow not in rum.flows
            flow.response = response
            rum.responseheaders(flow)
            rum.response(flow)
        assert flow.response.raw_content == before.response.raw_content
        assert flow.response.headers == before.response.headers
        assert flow.request.headers == before.request.headers
        assert "rumproxy" not in flow.metadata and not flow.comment
        assert not caplog.records


@pytest.mark.parametrize("destination", ["document", "iframe", "frame"])
def test_navigations_into_frames_are_tracked(rules, destination):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow()
        flow.request.headers["sec-fetch-dest"] = destination
        run(rum, flow)
        assert b"/__rum/" in flow.response.content


def test_a_prefetched_page_gets_the_agent_but_no_trace(rules):
    """<link rel=prefetch>: a later navigation may show this copy from the cache, without a request."""
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow()
        flow.request.headers["sec-fetch-dest"] = "empty"
        flow.request.headers["sec-purpose"] = "prefetch"
        flow.request.headers["accept-encoding"] = CHROMIUM_ACCEPT_ENCODING
        run(rum, flow)
        assert b"/__rum/" in flow.response.content and b"pageLoadTraceId" not in flow.response.content
        assert "traceparent" not in flow.request.headers
        assert flow.request.headers["accept-encoding"] == "gzip, deflate"  # rewritten like a page
        assert "server-timing" not in flow.response.headers
        assert flow.metadata["rumproxy"]["action"].startswith("injected")


CHROMIUM_ACCEPT_ENCODING = "gzip, deflate, br, zstd"


def asked_upstream(rum: RumInject, host: str = "shop.test", destination: str = "document") -> str:
    flow = page_flow(host=host)
    flow.request.headers["sec-fetch-dest"] = destination
    flow.request.headers["accept-encoding"] = CHROMIUM_ACCEPT_ENCODING
    flow.response = None
    rum.request(flow)
    return flow.request.headers["accept-encoding"]


def test_a_page_request_asks_the_upstream_for_gzip_rather_than_br_or_zstd(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        assert asked_upstream(rum) == "gzip, deflate"
        assert asked_upstream(rum, destination="iframe") == "gzip, deflate"
        # Not rewritten, so not asked for anything else: subresources, other hosts.
        assert asked_upstream(rum, destination="script") == CHROMIUM_ACCEPT_ENCODING
        assert asked_upstream(rum, host="other.test") == CHROMIUM_ACCEPT_ENCODING
        tctx.configure(rum, rum_prefer_gzip=False)
        assert asked_upstream(rum) == CHROMIUM_ACCEPT_ENCODING


CONDITIONAL = {"if-none-match": 'W/"v1"', "if-modified-since": "Wed, 21 Oct 2026 07:28:00 GMT"}


def conditionals_upstream(rum: RumInject, host: str = "shop.test", destination: str = "document") -> dict[str, str]:
    flow = page_flow(host=host)
    flow.request.headers["sec-fetch-dest"] = destination
    flow.request.headers.update(CONDITIONAL)
    flow.response = None
    rum.request(flow)
    return {name: flow.request.headers[name] for name in CONDITIONAL if name in flow.request.headers}


def test_a_page_that_gets_trace_ids_is_asked_for_whole_not_revalidated(tmp_path):
    """A 304 would have the browser show its cached copy, with the trace ids of an earlier load."""
    config = "agent: {config: {serviceName: s}}"
    rules = write_rules(
        tmp_path,
        f"- {{name: trace-only, hosts: [trace-only.test], inject: false, {config}}}\n"
        f"- {{name: untraced, hosts: [untraced.test], trace: {{propagate: false}}, {config}}}\n",
    )
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        assert conditionals_upstream(rum) == {}
        assert conditionals_upstream(rum, destination="iframe") == {}
        # No trace ids in the body: a 304 is as good as the page.
        assert conditionals_upstream(rum, host="trace-only.test") == CONDITIONAL
        assert conditionals_upstream(rum, host="untraced.test") == CONDITIONAL
        assert conditionals_upstream(rum, destination="script") == CONDITIONAL
        assert conditionals_upstream(rum, host="other.test") == CONDITIONAL


def test_headers_another_addon_edits_after_responseheaders_are_the_ones_instrumented(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow(etag='"v1"')
        response = flow.response
        flow.response = None
        rum.request(flow)
        flow.response = response
        rum.responseheaders(flow)
        flow.response.headers["etag"] = '"v2"'
        flow.response.headers["server-timing"] = "db;dur=5"
        rum.response(flow)
        assert flow.response.headers["etag"] == 'W/"v2"'
        assert flow.response.headers["server-timing"].startswith("db;dur=5, traceparent;desc=")
        assert b"/__rum/" in flow.response.content


def test_a_trace_only_rule_leaves_accept_encoding_alone(rules):
    rules.write_text(rules.read_text().replace("  - name: shop\n", "  - name: shop\n    inject: false\n"))
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        assert asked_upstream(rum) == CHROMIUM_ACCEPT_ENCODING
        flow = page_flow()
        run(rum, flow)
        assert flow.request.headers["traceparent"].startswith("00-")


@pytest.mark.parametrize("where", ["inject_buffered", "send_whole", "tracing.expose"])
def test_an_exception_leaves_the_response_as_received_and_logs_one_line(rules, monkeypatch, caplog, where):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    if where in ("inject_buffered", "send_whole"):
        monkeypatch.setattr(wholebody, where, explode)
    else:
        monkeypatch.setattr(addon_module.tracing, "expose", explode)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        if where == "send_whole":
            flow = page_flow(body=gzip.compress(large_page()), content_encoding="gzip", etag='"v1"')
        else:
            flow = page_flow(etag='"v1"')
        original = flow.response.copy()
        with caplog.at_level(logging.ERROR, logger="rumproxy"):
            run(rum, flow)
        assert flow.response.raw_content == original.raw_content
        assert flow.response.headers == original.headers
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "response left as received" in errors[0].getMessage() and "boom" in errors[0].getMessage()


def test_a_bad_rules_file_is_an_options_error_naming_file_line_and_key(rules):
    rules.write_text("version: 1\nrules:\n  - hosts: [a]\n    nope: 1\n")
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"rules\.yaml:4: rules\[0\]\.nope: unknown key"):
            tctx.configure(rum, rum_rules=str(rules))


def test_a_bad_reload_keeps_the_last_good_rules(rules, caplog):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        good = rum.active
        rules.write_text("version: 1\nrules: [")
        with caplog.at_level(logging.ERROR, logger="rumproxy"):
            rum._reload(rules)
        assert rum.active is good
        assert "the last good rules stay active" in caplog.text


def test_streaming_is_chosen_for_unsized_bodies(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow()
        del flow.response.headers["content-length"]
        response = flow.response
        flow.response = None
        rum.request(flow)
        flow.response = response
        rum.responseheaders(flow)
        assert callable(flow.response.stream)
        assert "content-length" not in flow.response.headers
        assert flow.response.headers["transfer-encoding"] == "chunked"
        out = streamed(flow, [PAGE[i : i + 7] for i in range(0, len(PAGE), 7)])
        assert out.replace(out[out.index(b"<script") : out.rindex(b"</script>") + 9], b"") == PAGE
        assert flow.metadata["rumproxy"]["action"].startswith("injected while streaming")


@pytest.mark.parametrize(
    "stream_above, length, streams",
    [
        ("384k", 384 * 1024, False),  # the default: up to and including the size, whole
        ("384k", 384 * 1024 + 1, True),
        ("4m", 3 * 1024 * 1024, False),
        ("4M", 4 * 1024 * 1024 + 1, True),
        ("1000", 1000, False),
        ("0", 100, True),
    ],
)
def test_rum_stream_above_is_where_auto_starts_streaming_sized_pages(rules, stream_above, length, streams):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream_above=stream_above)
        flow = page_flow()
        flow.response.headers["content-length"] = str(length)  # only the header decides
        run_headers(rum, flow)
        assert bool(flow.response.stream) is streams
        assert ("content-length" in flow.response.headers) is not streams


def test_rum_stream_above_leaves_unsized_pages_streaming_and_always_and_never_alone(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream_above="1g")
        unsized = page_flow()
        del unsized.response.headers["content-length"]
        run_headers(rum, unsized)
        assert callable(unsized.response.stream)
        tctx.configure(rum, rum_stream="always")
        small = page_flow()
        run_headers(rum, small)
        assert callable(small.response.stream)
        tctx.configure(rum, rum_stream="never", rum_stream_above="0")
        large = page_flow()
        large.response.headers["content-length"] = str(10 << 20)
        run_headers(rum, large)
        assert not large.response.stream


@pytest.mark.parametrize("value", ["", "lots", "2.5m", "-1", "4q"])
def test_a_bad_rum_stream_above_is_refused_and_the_last_good_value_stays(rules, value):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream_above="1m")
        with pytest.raises(exceptions.OptionsError, match=r"rum_stream_above: a size in bytes like 384k"):
            tctx.configure(rum, rum_stream_above=value)
        assert rum.settings.stream_above == 1 << 20


def large_page(size: int = 200_000) -> bytes:
    return PAGE.replace(b"<body>x</body>", b"<body>" + varied_text(size) + b"</body>")


def without_snippet(document: bytes) -> bytes:
    start = document.index(b'<script src="/__rum/')
    end = document.index(b"</script>", document.index(b"<script>", start + 1)) + len(b"</script>")
    return document[:start] + document[end:]


@pytest.mark.parametrize("splice", [True, False])
def test_a_whole_large_gzip_page_reuses_the_upstreams_blocks(rules, splice):
    page = large_page()
    upstream_body = gzip.compress(page, 6, mtime=0)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_gzip_splice=splice)
        flow = page_flow(body=upstream_body, content_encoding="gzip")
        run(rum, flow)
        body = flow.response.raw_content
        assert flow.response.headers["content-length"] == str(len(body))
        assert without_snippet(gzip.decompress(body)) == page
        action = flow.metadata["rumproxy"]["action"]
        assert action.startswith("injected (after-meta")
        assert ("gzip blocks reused from decoded byte" in action) is splice
        if splice:
            assert body[-8:] != upstream_body[-8:]  # a trailer of its own
            assert upstream_body[:-8].endswith(body[-4096:-8])  # the blocks at the end are the upstream's


@pytest.mark.parametrize("cut", [8, 2000, 30_000], ids=["in-trailer", "near-end", "mid-body"])
def test_a_whole_gzip_page_that_breaks_after_the_head_is_left_as_received(rules, caplog, cut):
    """A truncated gzip body that is here whole: the block-reusing stream finds the break only after
    the snippet went in, and the page is sent as the upstream sent it (as a page that breaks before
    it is), with one reason and no warning of a rest passed through."""
    upstream_body = gzip.compress(large_page(), 6, mtime=0)[:-cut]
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx, caplog.at_level(logging.DEBUG, logger="rumproxy"):
        tctx.configure(rum, rum_rules=str(rules), rum_stream="never")
        for _ in range(2):  # and nothing remembered of it
            flow = page_flow(body=upstream_body, content_encoding="gzip")
            before = flow.copy()
            run(rum, flow)
            assert flow.response.raw_content == upstream_body
            assert flow.response.headers == before.response.headers
            assert flow.metadata["rumproxy"]["action"].startswith("skipped: body cannot be decoded as gzip")
            assert "after the injection" not in caplog.text


def test_a_whole_large_gzip_page_sent_again_reuses_its_rewrite_and_the_upstreams_blocks(rules, monkeypatch):
    through_streams = []
    send_whole = wholebody.send_whole
    monkeypatch.setattr(wholebody, "send_whole", lambda stream, raw: through_streams.append(len(raw)) or send_whole(stream, raw))
    page = large_page()
    upstream_body = gzip.compress(page, 6, mtime=0)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="never")
        actions = []
        for body in (upstream_body, upstream_body, upstream_body + b"\r\n", upstream_body):
            flow = page_flow(body=body, content_encoding="gzip")
            run(rum, flow)
            decoder = zlib.decompressobj(31)
            document = decoder.decompress(flow.response.raw_content)
            assert decoder.eof and not decoder.unused_data
            assert without_snippet(document) == page
            assert f'"pageLoadTraceId":"{flow.metadata["rumproxy"]["trace_id"]}"'.encode() in document
            assert flow.response.headers["content-length"] == str(len(flow.response.raw_content))
            actions.append(flow.metadata["rumproxy"]["action"])
    reused = ["gzip blocks reused from decoded byte" in action for action in actions]
    remembered = ["remembered from an earlier response" in action for action in actions]
    # The third body goes on after its member: re-compressed whole, the rewrite forgotten.
    assert reused == [True, True, False, True] and remembered == [False, True, False, False]
    # The one sent again as it was goes out in one join, not through a splicing stream.
    assert through_streams == [len(upstream_body), len(upstream_body) + 2, len(upstream_body)]


def test_a_large_gzip_utf16_page_is_transcoded_by_the_whole_body_path(rules):
    page = b"\xff\xfe" + large_page().decode().encode("utf-16-le")
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow(body=gzip.compress(page, 6, mtime=0), content_encoding="gzip", content_type="text/html")
        run(rum, flow)
        document = gzip.decompress(flow.response.raw_content)
        assert '<script src="/__rum/'.encode("utf-16-le") in document
        assert flow.metadata["rumproxy"]["action"].startswith("injected (")


def test_a_whole_gzip_page_with_bytes_after_its_member_is_recompressed_whole(rules, caplog):
    """The block reuse would put the new trailer over the stray bytes; the whole-body path decodes
    the member, ignores what follows it, and sends a clean body."""
    page = large_page()
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx, caplog.at_level(logging.WARNING, logger="rumproxy"):
        tctx.configure(rum, rum_rules=str(rules))
        flow = page_flow(body=gzip.compress(page, 6, mtime=0) + b"\r\n", content_encoding="gzip")
        run(rum, flow)
        decoder = zlib.decompressobj(31)
        document = decoder.decompress(flow.response.raw_content)
        assert decoder.eof and not decoder.unused_data  # CRC-32 and length checked, nothing after
        assert without_snippet(document) == page
        action = flow.metadata["rumproxy"]["action"]
        assert action.startswith("injected (after-meta") and "reused" not in action
    assert not caplog.records


def stream_through(flow) -> bytes:
    """What the client receives of a streamed body sent in 16 KB chunks."""
    raw = flow.response.raw_content
    return streamed(flow, [raw[i : i + 16384] for i in range(0, len(raw), 16384)])


@pytest.mark.parametrize(
    "encoding, size, streamed",
    [("identity", 10_000, False), ("br", 10_000, False), ("gzip", 10_000, False), ("gzip", 200_000, False),
     ("gzip", 200_000, True), ("gzip", 200_000, "chunked")],
)
def test_a_page_sent_again_reuses_its_rewrite(rules, encoding, size, streamed):
    page = large_page(size)
    upstream_body = gzip.compress(page, 6, mtime=0) if encoding == "gzip" else encoders.encode(page, encoding)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="always" if streamed else "never")
        actions, traces = [], []
        for _ in range(3):
            flow = page_flow(body=upstream_body, content_encoding=encoding)
            if streamed == "chunked":
                del flow.response.headers["content-length"]
            run(rum, flow)
            body = stream_through(flow) if streamed else flow.response.raw_content
            document = gzip.decompress(body) if encoding == "gzip" else codecs.decode(body, encoding)
            assert without_snippet(document) == page  # gzip: its trailer checked too
            meta = flow.metadata["rumproxy"]
            assert f'"pageLoadTraceId":"{meta["trace_id"]}"'.encode() in document
            actions.append(meta["action"])
            traces.append(meta["trace_id"])
        assert len(set(traces)) == 3
        # Sized or not, streamed or whole, a body that comes again gets the remembered rewrite (a
        # stream sends it while the body arrives: test_gzipreplay).
        assert ["remembered from an earlier response" in action for action in actions] == [False, True, True]

        tctx.configure(rum, rum_memo=0)
        flow = page_flow(body=upstream_body, content_encoding=encoding)
        run(rum, flow)
        if streamed:
            stream_through(flow)
        assert "remembered" not in flow.metadata["rumproxy"]["action"]
        assert rum.memo.count == 0


def rewrite_gzip(rum: RumInject, document: bytes):
    """The flow of `document` sent gzipped through the addon, and the page its client gets (its gzip trailer checked)."""
    flow = page_flow(body=gzip.compress(document, 6, mtime=0), content_encoding="gzip")
    run(rum, flow)
    output = gzip.decompress(flow.response.raw_content)
    assert without_snippet(output) == document
    return flow, output


def test_a_changed_page_and_a_page_with_a_csp_meta_are_rewritten_anew(rules):
    page = large_page(10_000)
    with_meta = page.replace(b"<title>", b'<title></title><meta http-equiv="Content-Security-Policy" content="img-src *"><title>')
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="never")
        for document in (page, page.replace(b"</body>", b"<p>new</p></body>"), with_meta, with_meta):
            flow, _ = rewrite_gzip(rum, document)
            assert "remembered" not in flow.metadata["rumproxy"]["action"]


def test_a_negative_memo_size_is_refused(rules):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        with pytest.raises(exceptions.OptionsError, match="rum_memo"):
            tctx.configure(rum, rum_rules=str(rules), rum_memo=-1)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"rum_memo": -1}, "rum_memo: MiB, 0 or more, got -1"),
        ({"rum_scan_limit": 100}, "rum_scan_limit: at least 1024 bytes, got 100"),
        ({"rum_stream_above": "lots"}, "rum_stream_above: a size in bytes"),
        ({"rum_rules": "missing.yaml"}, "rum_rules: "),
    ],
)
def test_an_update_with_one_bad_option_changes_none_of_them(rules, bad, message):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_memo=4, rum_scan_limit=8192, rum_stream_above="1m")
        before, active = rum.settings, rum.active
        good = {"rum_memo": 8, "rum_scan_limit": 4096, "rum_stream_above": "2m", "rum_stream": "always"}
        with pytest.raises(exceptions.OptionsError, match=re.escape(message)):
            tctx.configure(rum, **{**good, **bad})
        assert rum.settings == before and rum.active.rules == active.rules
        assert rum.memo.budget == 4 << 20


def test_stream_log_lines_name_the_url_as_the_client_wrote_it(rules, caplog):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx, caplog.at_level(logging.WARNING, logger="rumproxy"):
        tctx.configure(rum, rum_rules=str(rules), rum_stream="always")
        flow = page_flow(body=b"\x1f\x8b\x08\x00 not gzip at all", content_encoding="gzip")
        run(rum, flow)
        assert stream_through(flow) == b"\x1f\x8b\x08\x00 not gzip at all"  # passed through as received
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"{flow.request.pretty_url}: decode error")


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("encoding", ["identity", "gzip", "br"])
def test_a_page_that_changes_below_its_head_is_scanned_once(rules, encoding, streamed):
    page = large_page(10_000)
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="always" if streamed else "never")
        actions = []
        for n in range(3):
            document = page.replace(b"</body>", b"<p>%d</p></body>" % n)
            flow = page_flow(body=encoders.encode(document, encoding), content_encoding=encoding)
            run(rum, flow)
            output = codecs.decode(stream_through(flow) if streamed else flow.response.raw_content, encoding)
            assert without_snippet(output) == document
            assert output.index(b'<script src="/__rum/') == document.index(b"<title>")  # after the charset meta
            actions.append(flow.metadata["rumproxy"]["action"])
        assert [memo.HEAD_REMEMBERED in action for action in actions] == [False, True, True]

        tctx.configure(rum, rum_memo=0)
        flow = page_flow(body=encoders.encode(page, encoding), content_encoding=encoding)
        run(rum, flow)
        if streamed:
            stream_through(flow)
        assert memo.HEAD_REMEMBERED not in flow.metadata["rumproxy"]["action"]


def test_a_gzip_page_that_changed_is_compressed_in_one_go_until_it_comes_again(rules):
    page = large_page(10_000)
    changed = page.replace(b"</body>", b"<p>new</p></body>")
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="never")
        kinds, actions = [], []
        for document in (page, changed, changed, changed):
            flow, output = rewrite_gzip(rum, document)
            assert output.index(b'<script src="/__rum/') == document.index(b"<title>")
            key = memo.page_key(flow.request, HeaderView(flow.response.headers), rum.settings.scan_limit)
            kinds.append(type(rum.memo.get(key)).__name__)
            actions.append("remembered from an earlier response" in flow.metadata["rumproxy"]["action"])
        # The first body as sections (it may come again); the changed one in one go; when it comes
        # again, from what was remembered of it, and as sections from then on.
        assert kinds == ["GzipRewrite", "KnownPage", "GzipRewrite", "GzipRewrite"]
        assert actions == [False, False, True, True]


def test_a_remembered_rewrite_that_fails_is_forgotten_and_the_page_rewritten_anew(rules, monkeypatch, caplog):
    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx, caplog.at_level(logging.WARNING, logger="rumproxy"):
        tctx.configure(rum, rum_rules=str(rules), rum_stream="never")
        run(rum, page_flow())
        assert rum.memo.count == 1
        monkeypatch.setattr(memo.KnownPage, "body", explode)
        flow = page_flow()
        run(rum, flow)
        assert without_snippet(flow.response.content) == PAGE
        assert "remembered" not in flow.metadata["rumproxy"]["action"]
    [line] = [r.getMessage() for r in caplog.records]
    assert "remembered rewrite not usable" in line and "boom" in line


# --- vzeroupper after the codecs (vectorstate) ---


@pytest.fixture
def clears(monkeypatch) -> list[None]:
    calls: list[None] = []
    monkeypatch.setattr(vectorstate, "clear", lambda: calls.append(None))
    return calls


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_the_response_hook_clears_after_rewriting_a_whole_body(rules, clears, encoding):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        body = PAGE if encoding == "identity" else gzip.compress(PAGE)
        flow = page_flow(body=body, content_encoding=encoding)
        run(rum, flow)
        assert flow.metadata["rumproxy"]["action"].startswith("injected (")
        assert len(clears) == 1


def test_the_response_hook_clears_when_it_fails_open(rules, clears, monkeypatch):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules))
        body = gzip.compress(PAGE)
        flow = page_flow(body=body, content_encoding="gzip")

        def broken(raw, job):
            raise RuntimeError("codec broke")

        monkeypatch.setattr("rumproxy.wholebody.rewrite", broken)
        run(rum, flow)
        assert flow.response.raw_content == body
        assert "error, left as received" in flow.comment
        assert len(clears) == 1


def test_a_streamed_gzip_page_clears_after_every_call_and_after_the_tail_it_yields(rules, clears):
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="always")
        page = PAGE.replace(b"<body>x", b"<body>" + b"<p>text</p>" * 2000)
        body = gzip.compress(page)
        flow = page_flow(body=body, content_encoding="gzip")
        run_headers(rum, flow)
        assert callable(flow.response.stream)
        chunks = [body[i : i + 4096] for i in range(0, len(body), 4096)]
        out = streamed(flow, chunks)
        decoded = gzip.decompress(out)
        assert decoded.replace(decoded[decoded.index(b"<script") : decoded.rindex(b"</script>") + 9], b"") == page
        calls = len(chunks) + 1  # and the end's call with b""
        assert len(clears) >= calls + 1  # the injecting call's generator clears once more, after the tail


JOOMLA = (
    b'<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "x.dtd">\n<html xmlns="http://www.w3.org/1999/xhtml">\n<head>\n'
    b'  <base href="https://www.example.org/" />\n  <meta http-equiv="content-type" content="text/html; charset=utf-8" />\n'
    b"  <title>Home</title>\n"
)


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("encoding, size", [("identity", 10_000), ("gzip", 10_000), ("gzip", 200_000)])
def test_the_agent_goes_before_a_base_href_when_the_content_type_names_the_charset(rules, encoding, streamed, size):
    # Else the browser would ask the <base>'s origin for /__rum/...: a reverse proxy's pages then
    # load no agent. Without a charset in the Content-Type the charset meta must not move.
    document = JOOMLA + large_page(size).split(b"<title>", 1)[1]
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="always" if streamed else "never")
        for content_type, expected in (
            ("text/html; charset=utf-8", document.index(b"\n  <base")),
            ("text/html", document.index(b"\n  <title>")),
        ):
            for _ in range(2):  # scanned, then the remembered point
                flow = page_flow(body=encoders.encode(document, encoding), content_encoding=encoding, content_type=content_type)
                run(rum, flow)
                output = codecs.decode(stream_through(flow) if streamed else flow.response.raw_content, encoding)
                assert without_snippet(output) == document
                assert output.index(b'<script src="/__rum/') == expected, flow.metadata["rumproxy"]["action"]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_charset_meta_after_a_script_stays_in_the_prescans_bytes(rules, encoding, streamed):
    # Only the meta names the charset: in front of it the snippet would push it past byte 1,024.
    head = b"<!doctype html><html><head><script>" + b"dataLayer.push({});" * 25 + b"</script><meta charset=utf-8>"
    rum = RumInject(default_rules=rules)
    with taddons.context(rum) as tctx:
        tctx.configure(rum, rum_rules=str(rules), rum_stream="always" if streamed else "never")
        for n in range(3):  # scanned, then the remembered head with another body below it
            document = head + large_page(3_000).split(b"<title>", 1)[1].replace(b"</body>", b"<p>%d</p></body>" % n)
            flow = page_flow(body=encoders.encode(document, encoding), content_encoding=encoding, content_type="text/html")
            run(rum, flow)
            output = codecs.decode(stream_through(flow) if streamed else flow.response.raw_content, encoding)
            assert without_snippet(output) == document
            assert output.index(b'<script src="/__rum/') == len(head), flow.metadata["rumproxy"]["action"]
            assert output.index(b"<meta charset=utf-8>") < 1024 - len(b"<meta charset=utf-8>")
        assert memo.HEAD_REMEMBERED in flow.metadata["rumproxy"]["action"]
