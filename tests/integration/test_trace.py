"""One trace from the proxy to the backend: the real mitmdump, a real Flask app with the real
elastic-apm agent, and the local intake recording what the agent reports."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bootstrap import init_options
from tests.harness import Intake, Mitmdump, Upstream
from tests.integration.conftest import write_rules

pytestmark = pytest.mark.integration

NAVIGATION = {"Sec-Fetch-Dest": "document", "Accept": "text/html"}
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$")


@pytest.fixture(scope="module")
def intake() -> Iterator[Intake]:
    with Intake() as server:
        yield server


@pytest.fixture(scope="module")
def backend(intake: Intake) -> Iterator[Upstream]:
    with Upstream(apm_server_url=intake.url, service_name="shop-backend") as app:
        yield app


@pytest.fixture(scope="module")
def traced_proxy(backend: Upstream, intake: Intake, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = write_rules(
        tmp_path_factory.mktemp("trace") / "rules.yaml",
        server_url=intake.url,
        extra_rule="""\
        - name: unsampled
          hosts: ["localhost"]
          agent:
            config: {serviceName: unsampled-frontend}
          trace:
            sample_rate: 0.0
            response_headers: false
            timing_allow_origin: "*"
        - name: trace-only
          hosts: ["trace-only.test"]
          inject: false
        """,
    )
    with Mitmdump(mode=f"reverse:{backend.url}", rules=rules, args=["--set", "keep_host_header=true"]) as proxy:
        yield proxy


def upstream_header(backend: Upstream, name: str) -> list[str]:
    return [value for key, value in backend.last_request_headers() if key.lower() == name]


def test_page_load_document_request_and_backend_are_one_trace(http, backend, intake, traced_proxy):
    response = http.get(f"{traced_proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "127.0.0.1"}, timeout=10)
    assert response.status_code == 200

    [sent] = upstream_header(backend, "traceparent")
    trace_id, span_id, flags = TRACEPARENT.fullmatch(sent).groups()
    assert flags == "01"
    assert upstream_header(backend, "tracestate") == ["es=s:1.0"]

    options = init_options(response.text)
    assert options["pageLoadTraceId"] == trace_id
    assert options["pageLoadSpanId"] == span_id
    assert options["pageLoadSampled"] is True

    assert f'traceparent;desc="{sent}"' in response.headers["server-timing"]
    assert response.headers["traceparent"] == sent
    assert response.headers["tracestate"] == "es=s:1.0"

    def backend_transaction(events):
        return next(
            (e["event"] for e in events if e["kind"] == "transaction" and e["event"].get("trace_id") == trace_id),
            None,
        )

    transaction = intake.wait_for(backend_transaction, timeout=20)
    assert transaction["parent_id"] == span_id
    assert transaction["name"].startswith("GET")


def test_a_revalidated_page_comes_whole_with_the_ids_of_its_own_load(http, backend, traced_proxy):
    """A 304 would have the browser run its cached copy, with the ids of the load that fetched it,
    while the backend's transaction for this request hangs under ids no page load reports."""
    url = f"{traced_proxy.url}/page?body=basic&etag=v1"
    first = http.get(url, headers={**NAVIGATION, "Host": "127.0.0.1"}, timeout=10)
    assert first.status_code == 200 and first.headers["etag"] == 'W/"v1"'
    again = http.get(url, headers={**NAVIGATION, "Host": "127.0.0.1", "If-None-Match": first.headers["etag"]}, timeout=10)
    assert again.status_code == 200
    assert upstream_header(backend, "if-none-match") == []
    [sent] = upstream_header(backend, "traceparent")
    trace_id, span_id, _ = TRACEPARENT.fullmatch(sent).groups()
    options = init_options(again.text)
    assert (options["pageLoadTraceId"], options["pageLoadSpanId"]) == (trace_id, span_id)
    assert trace_id != init_options(first.text)["pageLoadTraceId"]
    # Where the page gets no ids (a trace-only rule), the upstream still answers 304.
    unchanged = http.get(url, headers={**NAVIGATION, "Host": "trace-only.test", "If-None-Match": 'W/"v1"'}, timeout=10)
    assert unchanged.status_code == 304
    assert upstream_header(backend, "if-none-match") == ['W/"v1"']


REDIRECT_TO = "/page?body=basic%26r=followed"  # %26: an & inside the Location knob


def test_the_page_a_redirect_leads_to_continues_its_trace(http, backend, intake, traced_proxy):
    """POST → 303 → GET, followed at once (a browser's login form; this upstream closes each
    connection, so the GET comes on a new one): one trace, the redirect's backend transaction and
    the page's both under the page load's document span."""
    backend.forget_requests()
    url = f"{traced_proxy.url}/page?body=basic&status=303&h=Location: {REDIRECT_TO}"
    response = http.post(url, headers={**NAVIGATION, "Host": "127.0.0.1"}, timeout=10)
    assert response.status_code == 200 and [r.status_code for r in response.history] == [303]
    requests_made = backend.requests()
    assert [(r["method"], r["query"]) for r in requests_made] == [
        ("POST", "body=basic&status=303&h=Location:%20/page?body=basic%26r=followed"),
        ("GET", "body=basic&r=followed"),
    ]
    sent = [[value for name, value in r["headers"] if name.lower() == "traceparent"] for r in requests_made]
    assert sent[0] == sent[1] and len(sent[0]) == 1
    trace_id, span_id, _ = TRACEPARENT.fullmatch(sent[0][0]).groups()
    options = init_options(response.text)
    assert (options["pageLoadTraceId"], options["pageLoadSpanId"]) == (trace_id, span_id)

    def both(events):
        found = [e["event"] for e in events if e["kind"] == "transaction" and e["event"].get("trace_id") == trace_id]
        return found if len(found) == 2 else None

    transactions = intake.wait_for(both, timeout=20)
    assert sorted(t["name"].split()[0] for t in transactions) == ["GET", "POST"]
    assert {t["parent_id"] for t in transactions} == {span_id}


def test_a_redirect_leaves_another_clients_page_its_own_trace(http, backend, traced_proxy):
    """Only the navigation of the client the redirect answered (address, User-Agent, Referer)
    continues its trace, and only once."""
    url = f"{traced_proxy.url}/page?body=basic&status=302&h=Location: {REDIRECT_TO}"
    browser = {**NAVIGATION, "Host": "127.0.0.1", "User-Agent": "browser-a"}
    redirect = http.get(url, headers=browser, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    [redirected] = upstream_header(backend, "traceparent")
    target = f"{traced_proxy.url}{redirect.headers['location']}"
    other = http.get(target, headers={**browser, "User-Agent": "browser-b"}, timeout=10)
    [sent] = upstream_header(backend, "traceparent")
    assert sent.split("-")[1] != redirected.split("-")[1]
    assert init_options(other.text)["pageLoadTraceId"] == sent.split("-")[1]
    followed = http.get(target, headers=browser, timeout=10)
    assert init_options(followed.text)["pageLoadTraceId"] == redirected.split("-")[1]
    again = http.get(target, headers=browser, timeout=10)
    assert init_options(again.text)["pageLoadTraceId"] != redirected.split("-")[1]


def test_an_existing_server_timing_is_kept(http, traced_proxy):
    response = http.get(
        f"{traced_proxy.url}/page?body=basic&h=Server-Timing: db;dur=53", headers={**NAVIGATION, "Host": "127.0.0.1"}, timeout=10
    )
    assert re.fullmatch(r'db;dur=53, traceparent;desc="00-[0-9a-f]{32}-[0-9a-f]{16}-01"', response.headers["server-timing"])


def test_unsampled_decision_is_shared_with_the_page(http, backend, traced_proxy):
    response = http.get(f"{traced_proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "localhost"}, timeout=10)
    [sent] = upstream_header(backend, "traceparent")
    assert sent.endswith("-00")
    assert upstream_header(backend, "tracestate") == ["es=s:0"]
    options = init_options(response.text)
    assert "pageLoadSampled" not in options and options["transactionSampleRate"] == 0
    assert "traceparent" not in response.headers  # response_headers: false
    assert response.headers["timing-allow-origin"] == "*"


def test_a_valid_incoming_trace_arrives_unchanged(http, backend, traced_proxy):
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    response = http.get(
        f"{traced_proxy.url}/page?body=basic",
        headers={**NAVIGATION, "Host": "127.0.0.1", "traceparent": incoming, "tracestate": state},
        timeout=10,
    )
    assert upstream_header(backend, "traceparent") == [incoming]
    assert upstream_header(backend, "tracestate") == [state]
    options = init_options(response.text)
    assert options["pageLoadTraceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert options["pageLoadParentId"] == "00f067aa0ba902b7"


INVALID = [
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # uppercase
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # short parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  # 00 with trailing data
    "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # future version, too short
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",  # bad flags
    "garbage",
]


@pytest.mark.parametrize("value", INVALID)
def test_every_invalid_traceparent_is_restarted_and_its_tracestate_dropped(http, backend, traced_proxy, value):
    http.get(
        f"{traced_proxy.url}/page?body=basic",
        headers={**NAVIGATION, "Host": "127.0.0.1", "traceparent": value, "tracestate": "congo=t61rcWkgMzE"},
        timeout=10,
    )
    [sent] = upstream_header(backend, "traceparent")
    assert TRACEPARENT.fullmatch(sent) and sent != value
    assert upstream_header(backend, "tracestate") == ["es=s:1.0"]


def test_a_future_version_is_continued_as_version_00(http, backend, traced_proxy):
    value = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like"
    response = http.get(f"{traced_proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "127.0.0.1", "traceparent": value}, timeout=10)
    assert upstream_header(backend, "traceparent") == [value]  # never rewritten on the way up
    assert init_options(response.text)["pageLoadTraceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_duplicate_traceparent_headers_are_invalid(backend, traced_proxy):
    valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    connection = http.client.HTTPConnection("127.0.0.1", traced_proxy.port, timeout=10)
    connection.putrequest("GET", "/page?body=basic", skip_host=True)
    connection.putheader("Host", "127.0.0.1")
    connection.putheader("Sec-Fetch-Dest", "document")
    connection.putheader("traceparent", valid)
    connection.putheader("traceparent", valid.replace("4bf9", "5bf9"))
    connection.endheaders()
    connection.getresponse().read()
    connection.close()
    [sent] = upstream_header(backend, "traceparent")
    assert TRACEPARENT.fullmatch(sent) and "2f3577b34da6a3ce929d0e0e4736" not in sent


def test_sub_resources_and_unmatched_paths_get_no_trace(http, backend, traced_proxy):
    http.get(f"{traced_proxy.url}/page?body=basic", headers={"Sec-Fetch-Dest": "script", "Host": "127.0.0.1"}, timeout=10)
    assert upstream_header(backend, "traceparent") == []
    http.get(f"{traced_proxy.url}/api/items", headers={**NAVIGATION, "Host": "127.0.0.1"}, timeout=10)
    assert upstream_header(backend, "traceparent") == []


def test_flows_are_annotated_for_mitmweb(tmp_path: Path, http, backend, intake):
    """The flow comment and metadata survive into a saved flow file, as mitmweb shows them."""
    from mitmproxy import io

    rules = write_rules(tmp_path / "rules.yaml", server_url=intake.url)
    saved = tmp_path / "flows.mitm"
    with Mitmdump(mode=f"reverse:{backend.url}", rules=rules, args=["-w", str(saved)]) as proxy:
        http.get(f"{proxy.url}/page?body=basic", headers=NAVIGATION, timeout=10)
        http.get(f"{proxy.url}/page?body=basic&ctype=application/json", headers=NAVIGATION, timeout=10)
    with saved.open("rb") as file:
        flows = list(io.FlowReader(file).stream())
    injected, skipped = flows
    meta = injected.metadata["rumproxy"]
    assert meta["rule"] == "shop" and re.fullmatch(r"[0-9a-f]{32}", meta["trace_id"])
    assert f"trace {meta['trace_id']}" in injected.comment and "injected" in injected.comment
    assert "skipped: not HTML" in skipped.comment


def test_a_trace_only_rule_propagates_without_injecting(http, backend, traced_proxy):
    direct = http.get(f"{backend.url}/page?body=basic", timeout=10)
    response = http.get(f"{traced_proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "trace-only.test"}, timeout=10)
    [sent] = upstream_header(backend, "traceparent")
    assert TRACEPARENT.fullmatch(sent)
    assert response.content == direct.content
    assert response.headers["server-timing"] == f'traceparent;desc="{sent}"'
    assert "x-rum-injected" not in response.headers
