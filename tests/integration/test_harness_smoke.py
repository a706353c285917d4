"""The harness itself, with real processes: the upstream's knobs, a plain mitmdump in
reverse and regular mode, and the diagnostics a failing start gives."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator

import pytest
import requests

from tests.harness import DemoApp, Intake, Mitmdump, ProcessError, PythonApp, Upstream

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # a proxy from the environment would bypass the one under test
        yield session


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture(scope="module")
def reverse_proxy(upstream: Upstream) -> Iterator[Mitmdump]:
    # Plain mitmdump: these tests are about the harness, and must pass whatever the addon does.
    with Mitmdump(mode=f"reverse:{upstream.url}", script=None) as proxy:
        yield proxy


def raw_get(http: requests.Session, url: str, **kwargs: object) -> tuple[requests.Response, bytes]:
    response = http.get(url, stream=True, timeout=10, **kwargs)  # type: ignore[arg-type]
    return response, response.raw.read(decode_content=False)


@pytest.mark.parametrize(
    "query",
    [
        "body=basic&encoding=gzip",
        "body=basic&encoding=br",
        "body=latin1&encoding=gzip,%20br",
        "body=big&encoding=zstd&chunked=1&chunksize=65536",
        "body=utf16&chunked=1&chunksize=7",
    ],
)
def test_reverse_proxy_passes_the_upstream_bytes(
    http: requests.Session, upstream: Upstream, reverse_proxy: Mitmdump, query: str
) -> None:
    direct, direct_body = raw_get(http, f"{upstream.url}/page?{query}")
    proxied, proxied_body = raw_get(http, f"{reverse_proxy.url}/page?{query}")
    assert direct.status_code == proxied.status_code == 200
    assert proxied_body == direct_body
    assert proxied.headers.get("content-encoding") == direct.headers.get("content-encoding")
    assert ("content-length" in direct.headers) == ("chunked=1" not in query)


def test_upstream_gzip_is_real_gzip(http: requests.Session, upstream: Upstream) -> None:
    from tests.apps.upstream import BODIES

    _, body = raw_get(http, f"{upstream.url}/page?body=basic&encoding=gzip")
    assert gzip.decompress(body) == BODIES["basic"]


def test_echo_headers_through_the_proxy(http: requests.Session, upstream: Upstream, reverse_proxy: Mitmdump) -> None:
    response = http.get(f"{reverse_proxy.url}/echo-headers", headers={"X-Probe": "one"}, timeout=10)
    echoed = response.json()
    assert echoed["x-probe"] == ["one"]
    assert echoed["host"] == [upstream.url.removeprefix("http://")]  # reverse mode rewrites Host

    http.get(f"{reverse_proxy.url}/page?body=basic", headers={"X-Probe": "two"}, timeout=10)
    assert ("X-Probe", "two") in upstream.last_request_headers()


def test_upstream_keeps_repeated_headers(upstream: Upstream) -> None:
    # requests cannot send a header twice; a raw socket can, and the proxy's tests rely on seeing both.
    with socket.create_connection((upstream.host, upstream.port), timeout=5) as sock:
        sock.sendall(b"GET /echo-headers HTTP/1.1\r\nHost: x\r\ntraceparent: a\r\ntraceparent: b\r\n"
                     b"Connection: close\r\n\r\n")
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    assert b'"traceparent":["a","b"]' in reply.replace(b" ", b"").replace(b"\n", b"")


def test_regular_mode(http: requests.Session, upstream: Upstream) -> None:
    with Mitmdump(mode="regular", script=None) as proxy:
        response = http.get(f"{upstream.url}/api/items", proxies=proxy.proxies, timeout=10)
        assert response.status_code == 200
        assert response.json()[0]["name"]
        assert proxy.ca_cert.exists()
        assert "GET" in proxy.wait_for_log(r"GET http://127\.0\.0\.1:\d+/api/items", 5).group(0)
    assert not proxy.running


def test_start_failure_reports_the_log() -> None:
    with pytest.raises(ProcessError, match="No module named"):
        PythonApp("tests.apps.no_such_module").start()


def test_demo_backend_reports_to_the_intake(http: requests.Session) -> None:
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with Intake() as intake, DemoApp(apm_server_url=intake.url) as demo:
        response = http.get(f"{demo.url}/api/items", timeout=10,
                            headers={"traceparent": f"00-{trace_id}-{parent_id}-01"})
        assert response.json()["items"]

        def backend_trace(events: list[dict]) -> dict | None:
            kinds = {e["kind"]: e["event"] for e in events if e["trace_id"] == trace_id}
            return kinds if {"transaction", "span"} <= kinds.keys() else None

        found = intake.wait_for(backend_trace, timeout=15)
        assert found["transaction"]["parent_id"] == parent_id
        assert found["span"]["name"] == "load-inventory"
        intake.reset()
        assert intake.events() == []
