import gzip
import io
import json
import subprocess
import sys
import time
import zlib

import pytest
import requests

from rumproxy.intake import IntakeServer, render_trace_tree
from rumproxy.intake_tree import TracePrinter

TRACE = "0af7651916cd43dd8448eb211c80319c"
PAGE_LOAD = "a1b2c3d4e5f60718"
DOC_SPAN = "b7ad6b7169203331"
BACKEND_TX = "1122334455667788"
ORIGIN = "http://shop.test:8000"


def ndjson(*lines):
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


# What @elastic/apm-rum 5.17 sends with apiVersion 3 (see compress.js): short keys, spans under "y",
# "pid" only for spans whose parent is not the transaction.
RUM_V3 = ndjson(
    {"m": {"se": {"n": "shop-frontend", "ve": "1.0", "a": {"n": "rum-js", "ve": "5.17.5"},
                  "la": {"n": "javascript"}, "en": "dev"}, "l": {"team": "web"}}},
    # The agent writes errors before transactions.
    {"e": {"id": "e0e0e0e0e0e0e0e0", "cl": "app.js", "tid": TRACE, "pid": PAGE_LOAD,
           "xid": PAGE_LOAD, "ex": {"mg": "boom", "t": "TypeError", "st": []},
           "x": {"t": "page-load", "sm": True}}},
    {"x": {"id": PAGE_LOAD, "tid": TRACE, "n": "/", "t": "page-load", "d": 512.4,
           "c": {"p": {"url": "http://shop.test:8000/", "rf": ""}},
           "k": {"nt": {"fs": 0}, "a": {"fb": 40}},
           "me": [{"y": {"t": "app"}, "sa": {"ysc": {"v": 1}, "yss": {"v": 12}}}],
           "y": [
               {"id": DOC_SPAN, "n": "Requesting and receiving the document",
                "t": "hard-navigation", "su": "browser-timing", "s": 2, "d": 40},
               {"id": "c0c0c0c0c0c0c0c0", "n": "GET /api/items", "t": "external", "su": "http",
                "ac": "http", "s": 300, "d": 20.5, "pid": DOC_SPAN, "o": "success",
                "c": {"h": {"url": "http://shop.test:8000/api/items", "mt": "GET", "sc": 200}}},
           ],
           "yc": {"sd": 2}, "sm": True, "sr": 1, "o": "success"}},
)

BACKEND_V2 = ndjson(
    {"metadata": {"service": {"name": "shop-backend", "agent": {"name": "python", "version": "6"}}}},
    {"transaction": {"id": BACKEND_TX, "trace_id": TRACE, "parent_id": DOC_SPAN, "name": "GET /",
                     "type": "request", "duration": 35.2, "timestamp": 1700000000000000}},
    {"span": {"id": "5555555555555555", "transaction_id": BACKEND_TX, "parent_id": BACKEND_TX,
              "trace_id": TRACE, "name": "SELECT items", "type": "db", "subtype": "sqlite",
              "timestamp": 1700000000001000, "duration": 3.0}},
    {"metricset": {"samples": {"system.cpu.total.norm.pct": {"value": 0.1}}, "timestamp": 1}},
)


@pytest.fixture
def intake():
    server = IntakeServer().start()
    try:
        yield server
    finally:
        server.stop()


def by_kind(events, kind):
    return [e for e in events if e["kind"] == kind]


def test_backend_v2_plain(intake):
    response = requests.post(f"{intake.url}/intake/v2/events", data=BACKEND_V2,
                             headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 202 and response.content == b""
    events = intake.events()
    assert [e["kind"] for e in events] == ["transaction", "span", "metricset"]
    assert {e["endpoint"] for e in events} == {"backend"}
    assert {e["service"] for e in events} == {"shop-backend"}
    tx = events[0]
    assert tx["trace_id"] == TRACE
    assert tx["event"]["parent_id"] == DOC_SPAN and tx["event"]["name"] == "GET /"
    assert isinstance(tx["received"], float)
    assert events[2]["trace_id"] is None


def test_rum_v3_gzip_is_normalized_to_v2(intake):
    response = requests.post(
        f"{intake.url}/intake/v3/rum/events", data=gzip.compress(RUM_V3),
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip", "Origin": ORIGIN},
    )
    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Vary"] == "Origin"
    events = intake.events()
    assert [e["kind"] for e in events] == ["error", "transaction", "span", "span", "metricset"]
    assert {(e["endpoint"], e["service"]) for e in events} == {("rum", "shop-frontend")}
    tx = by_kind(events, "transaction")[0]["event"]
    assert tx["id"] == PAGE_LOAD and tx["trace_id"] == TRACE and "parent_id" not in tx
    assert (tx["name"], tx["type"], tx["duration"]) == ("/", "page-load", 512.4)
    assert tx["sampled"] is True and tx["context"]["page"]["url"] == "http://shop.test:8000/"
    doc, api = (e["event"] for e in by_kind(events, "span"))
    assert doc == {
        "id": DOC_SPAN, "transaction_id": PAGE_LOAD, "parent_id": PAGE_LOAD, "trace_id": TRACE,
        "name": "Requesting and receiving the document", "type": "hard-navigation",
        "subtype": "browser-timing", "start": 2, "duration": 40,
    }
    assert api["parent_id"] == DOC_SPAN and api["context"]["http"]["status_code"] == 200
    error = by_kind(events, "error")[0]["event"]
    assert error["exception"]["message"] == "boom" and error["transaction_id"] == PAGE_LOAD
    assert error["trace_id"] == TRACE and error["parent_id"] == PAGE_LOAD
    metricset = by_kind(events, "metricset")[0]["event"]
    assert metricset["span"] == {"type": "app"}
    assert metricset["samples"]["span.self_time.sum.us"] == {"value": 12}


@pytest.mark.parametrize(
    "encode, header",
    [
        (zlib.compress, "deflate"),
        (lambda body: zlib.compress(body)[2:-4], "deflate"),  # raw deflate, no zlib wrapper
        (gzip.compress, None),  # header lost: sniffed by the magic bytes
        (lambda body: body, None),
    ],
)
def test_rum_v2_encodings(intake, encode, header):
    body = ndjson({"metadata": {"service": {"name": "spa"}}},
                  {"transaction": {"id": PAGE_LOAD, "trace_id": TRACE, "name": "/", "type": "page-load"}},
                  {"span": {"id": DOC_SPAN, "transaction_id": PAGE_LOAD, "parent_id": PAGE_LOAD,
                            "trace_id": TRACE, "name": "doc", "type": "hard-navigation"}})
    headers = {"Content-Encoding": header} if header else {}
    response = requests.post(f"{intake.url}/intake/v2/rum/events", data=encode(body), headers=headers)
    assert response.status_code == 202
    assert [(e["kind"], e["endpoint"], e["service"]) for e in intake.events()] == [
        ("transaction", "rum", "spa"), ("span", "rum", "spa")]


def test_cors_preflight(intake):
    response = requests.options(
        f"{intake.url}/intake/v3/rum/events",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,content-encoding"},
    )
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type, Content-Encoding, Accept"
    assert response.headers["Access-Control-Max-Age"] == "3600"
    assert response.headers["Vary"] == "Origin"


def test_info_config_events_and_reset(intake):
    info = requests.get(f"{intake.url}/").json()
    assert info["version"] == "8.15.0" and info["publish_ready"] is True
    assert {"build_date", "build_sha"} <= info.keys()
    assert requests.get(f"{intake.url}/config/v1/agents?service.name=x").json() == {}
    assert requests.get(f"{intake.url}/config/v1/rum/agents?service.name=x").json() == {}
    requests.post(f"{intake.url}/intake/v2/events", data=BACKEND_V2)
    listed = requests.get(f"{intake.url}/__intake/events").json()
    assert listed == intake.events() and len(listed) == 3
    assert requests.post(f"{intake.url}/__intake/reset").status_code == 200
    assert intake.events() == []
    requests.post(f"{intake.url}/intake/v2/events", data=BACKEND_V2)
    assert requests.delete(f"{intake.url}/__intake/events").status_code == 200
    assert requests.get(f"{intake.url}/__intake/events").json() == []
    requests.post(f"{intake.url}/intake/v2/events", data=BACKEND_V2)
    intake.reset()
    assert intake.events() == []


def test_bad_requests(intake):
    url = f"{intake.url}/intake/v2/events"
    assert requests.post(f"{intake.url}/nope", data=b"").status_code == 404
    assert requests.get(f"{intake.url}/nope").status_code == 404
    assert requests.post(url, data=b"\x1f\x8bnot gzip").status_code == 400
    assert requests.post(url, data=b"x", headers={"Content-Encoding": "br"}).status_code == 400
    no_metadata = ndjson({"transaction": {"id": "1", "trace_id": TRACE}})
    assert requests.post(url, data=no_metadata).status_code == 400
    partly = BACKEND_V2 + b"{not json\n" + ndjson({"bogus": {}})
    response = requests.post(url, data=partly)
    assert response.status_code == 400 and response.json()["accepted"] == 3
    assert len(response.json()["errors"]) == 2
    assert len(intake.events()) == 3


def test_wait_for(intake):
    assert intake.wait_for(lambda events: True, timeout=0.1) == []
    with pytest.raises(TimeoutError, match="0 events"):
        intake.wait_for(lambda events: events, timeout=0.2)
    requests.post(f"{intake.url}/intake/v2/events", data=BACKEND_V2)
    events = intake.wait_for(lambda events: by_kind(events, "span"), timeout=2)
    assert len(events) == 3


def test_jsonl(tmp_path):
    path = tmp_path / "events.jsonl"
    with IntakeServer(jsonl=path) as server:
        requests.post(f"{server.url}/intake/v2/events", data=BACKEND_V2)
        requests.post(f"{server.url}/intake/v3/rum/events", data=RUM_V3)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 8
    assert lines[0]["kind"] == "transaction" and lines[0]["event"]["id"] == BACKEND_TX
    assert {"kind", "event", "service", "endpoint", "trace_id", "received"} <= lines[-1].keys()


def _records(*bodies):
    server = IntakeServer().start()
    try:
        for path, body in bodies:
            requests.post(server.url + path, data=body)
        return server.events()
    finally:
        server.stop()


def test_render_trace_tree_links_backend_under_document_span():
    orphan = ndjson({"metadata": {"service": {"name": "worker"}}},
                    {"transaction": {"id": "9999999999999999", "trace_id": TRACE,
                                     "parent_id": "ffffffffffffffff", "name": "job", "type": "task",
                                     "duration": 3.25}})
    other_trace = ndjson({"metadata": {"service": {"name": "x"}}},
                         {"transaction": {"id": "1", "trace_id": "1" * 32, "name": "other", "type": "t"}})
    events = _records(("/intake/v2/events", BACKEND_V2), ("/intake/v3/rum/events", RUM_V3),
                      ("/intake/v2/events", orphan), ("/intake/v2/events", other_trace))
    tree = render_trace_tree(events, TRACE)
    assert tree == (
        f"trace {TRACE}\n"
        '  transaction "/" (page-load) 512 ms  [rum: shop-frontend]\n'
        '    span "Requesting and receiving the document" (hard-navigation.browser-timing) 40 ms'
        f" id={DOC_SPAN}\n"
        '      transaction "GET /" (request) 35 ms  [backend: shop-backend]'
        f"  \u2190 parent {DOC_SPAN}\n"
        '        span "SELECT items" (db.sqlite) 3.0 ms id=5555555555555555\n'
        '      span "GET /api/items" (external.http) 20 ms id=c0c0c0c0c0c0c0c0\n'
        '    error "boom" (TypeError)  [rum: shop-frontend]\n'
        '  transaction "job" (task) 3.2 ms  [backend: worker]  (parent ffffffffffffffff not seen)\n'
    )
    assert "other" not in tree
    assert render_trace_tree(events, TRACE, updated=True).startswith(f"trace {TRACE} (updated)\n")
    assert render_trace_tree([], TRACE) == f"trace {TRACE}\n"


def test_render_trace_tree_survives_parent_cycles():
    def span(span_id, parent_id):
        return {"kind": "span", "trace_id": TRACE, "service": "s", "endpoint": "backend",
                "event": {"id": span_id, "parent_id": parent_id, "name": span_id, "type": "t"}}

    tree = render_trace_tree([span("a", "b"), span("b", "a"), span("c", "c")], TRACE)
    assert tree.count("span ") == 3


def test_printer_prints_quiet_traces_and_updates():
    out = io.StringIO()
    printer = TracePrinter(out, quiet_seconds=0.1)
    printer.start()
    try:
        events = _records(("/intake/v2/events", BACKEND_V2))
        printer.add(events)
        deadline = time.monotonic() + 3
        while "GET /" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert out.getvalue().startswith(f"trace {TRACE}\n")
        printer.add(_records(("/intake/v3/rum/events", RUM_V3)))
    finally:
        printer.stop()
    second = out.getvalue().split("\n\n")[1]
    assert second.startswith(f"trace {TRACE} (updated)\n") and "page-load" in second


def test_command_line(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rumproxy.intake", "--port", "0", "--jsonl", str(tmp_path / "e.jsonl")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stderr.readline()
        assert line.startswith("intake: listening at http://127.0.0.1:")
        url = line.split(" at ")[1].strip()
        assert requests.get(url + "/", timeout=5).json()["version"] == "8.15.0"
        assert requests.post(url + "/intake/v2/events", data=BACKEND_V2, timeout=5).status_code == 202
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    # Stopping prints the trace that had not been quiet long enough yet.
    assert f"trace {TRACE}" in out and '"GET /"' in out
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 3


def test_real_python_agent_reports_to_the_intake(intake):
    elasticapm = pytest.importorskip("elasticapm")
    from elasticapm.utils.disttracing import TraceParent

    client = elasticapm.Client(
        service_name="shop-backend",
        server_url=intake.url,
        central_config=False,
        cloud_provider="none",
        metrics_interval="0ms",
        api_request_time="50ms",
        capture_headers=False,
        instrument=False,
        log_level="warning",
    )
    try:
        parent = TraceParent.from_string(f"00-{TRACE}-{DOC_SPAN}-01", "es=s:1.0")
        client.begin_transaction("request", trace_parent=parent)
        client.end_transaction("GET /", "HTTP 2xx")
    finally:
        client.close()
    events = intake.wait_for(lambda events: by_kind(events, "transaction"), timeout=10)
    tx = by_kind(events, "transaction")[0]
    assert (tx["endpoint"], tx["service"], tx["trace_id"]) == ("backend", "shop-backend", TRACE)
    assert tx["event"]["parent_id"] == DOC_SPAN and tx["event"]["name"] == "GET /"
