"""The proxy modes users run besides reverse, at the HTTP level (the browser suite covers regular
and transparent mode in Chromium): only hosts the rules name are touched."""

from __future__ import annotations

import pytest

from tests.harness import Mitmdump

pytestmark = pytest.mark.integration

NAVIGATION = {"Sec-Fetch-Dest": "document"}


def rules_naming(path, port: int):
    text = path.read_text().replace('["127.0.0.1"]', f'["127.0.0.1:{port}"]')
    named = path.with_name("named-rules.yaml")
    named.write_text(text)
    return named


def test_regular_mode_touches_only_the_named_site(http, upstream, rules_file, tmp_path):
    rules = rules_naming(rules_file, upstream.port)
    with Mitmdump(mode="regular", rules=rules) as proxy:
        named = http.get(f"{upstream.url}/page?body=basic", headers=NAVIGATION, proxies=proxy.proxies, timeout=10)
        assert b"/__rum/" in named.content
        assert any(name.lower() == "traceparent" for name, _ in upstream.last_request_headers())
        other = http.get(f"http://localhost:{upstream.port}/page?body=basic", headers=NAVIGATION, proxies=proxy.proxies, timeout=10)
        assert other.content == http.get(f"{upstream.url}/page?body=basic", timeout=10).content
        assert not any(name.lower() == "traceparent" for name, _ in upstream.last_request_headers())


def test_upstream_mode_through_a_second_proxy(http, upstream, rules_file):
    rules = rules_naming(rules_file, upstream.port)
    with Mitmdump(mode="regular", script=None) as next_hop, Mitmdump(mode=f"upstream:{next_hop.url}", rules=rules) as proxy:
        page = http.get(f"{upstream.url}/page?body=basic", headers=NAVIGATION, proxies=proxy.proxies, timeout=10)
        assert b"/__rum/" in page.content
        src = page.text.split('<script src="', 1)[1].split('"', 1)[0]
        bundle = http.get(f"{upstream.url}{src}", proxies=proxy.proxies, timeout=10)
        assert bundle.status_code == 200 and bundle.headers["content-type"].startswith("text/javascript")
        next_hop.wait_for_log(r"GET http://127\.0\.0\.1:\d+/page\?body=basic")
