"""The warnings for reverse mode's Host: which upstreams no rule names, and with keep_host_header,
which hosts of page requests."""

from __future__ import annotations

from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

from rumproxy.headerview import HeaderView
from rumproxy.reversehost import UnnamedHostNotices, unnamed_upstreams, warning
from rumproxy.rules import parse_rules

RULES = parse_rules(
    """\
version: 1
rules:
  - hosts: ["shop.example.com", "127.0.0.1:5000", "[::1]"]
    agent: {script: "https://cdn.test/rum.js", config: {serviceName: shop}}
"""
)


def test_an_upstream_no_rule_names_is_reported() -> None:
    modes = [
        "reverse:http://10.0.0.7:8080",  # named by no rule
        "reverse:http://127.0.0.1:5000@8081",  # named with its port
        "reverse:https://127.0.0.1:5001",  # the port differs
        "reverse:http://[::1]:8000",
        "reverse:http3://10.0.0.8",
        "reverse:dns://1.1.1.1",  # no HTTP: no Host
        "reverse:tcp://10.0.0.9:22",
        "regular",
        "socks5",
    ]
    assert unnamed_upstreams(modes, False, RULES) == ["10.0.0.7:8080", "127.0.0.1:5001", "10.0.0.8:443"]


def test_with_keep_host_header_the_browsers_host_reaches_the_rules() -> None:
    assert unnamed_upstreams(["reverse:http://10.0.0.7:8080"], True, RULES) == []


def test_the_warning_says_what_to_do() -> None:
    text = warning(["10.0.0.7:8080"], "rules.yaml")
    assert "10.0.0.7:8080" in text and "rules.yaml" in text and "keep_host_header=true" in text


NAVIGATION = {"accept": "text/html,application/xhtml+xml", "sec-fetch-dest": "document", "sec-fetch-mode": "navigate"}


def page_request(host: str, mode: str = "reverse:http://10.0.0.7:8080", **headers: str):
    flow = tflow.tflow()
    flow.client_conn.proxy_mode = ProxyMode.parse(mode)
    flow.request.headers.clear()
    flow.request.headers.update({"host": host, **NAVIGATION, **headers})
    return flow, HeaderView(flow.request.headers)


def notices(modes=("reverse:http://10.0.0.7:8080",), keep_host_header=True) -> UnnamedHostNotices:
    unnamed = UnnamedHostNotices()
    unnamed.configure(list(modes), keep_host_header)
    return unnamed


def said(caplog) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if "reverse mode keeps the Host" in r.getMessage()]
    caplog.clear()
    return lines


def test_the_first_page_request_for_a_host_no_rule_names_is_said_once(caplog) -> None:
    unnamed = notices()
    assert unnamed.enabled
    flow, headers = page_request("www.shop.example.com")
    unnamed.unmatched(flow, "www.shop.example.com", 443, headers, RULES)
    (line,) = said(caplog)
    assert "no rule in" in line and "names www.shop.example.com:443: its pages are not instrumented" in line and "said once per host" in line
    unnamed.unmatched(flow, "www.shop.example.com", 443, headers, RULES)
    assert said(caplog) == []
    flow, headers = page_request("[::2]")
    unnamed.unmatched(flow, "::2", 8000, headers, RULES)
    assert "names [::2]:8000" in said(caplog)[0]


def test_a_host_a_rule_names_is_not_said_though_its_path_is_left_out(caplog) -> None:
    unnamed = notices()
    flow, headers = page_request("shop.example.com")
    unnamed.unmatched(flow, "shop.example.com", 443, headers, RULES)
    assert said(caplog) == []


def test_only_page_requests_in_reverse_mode_count(caplog) -> None:
    unnamed = notices(modes=("reverse:http://10.0.0.7:8080", "regular"))
    flow, headers = page_request("cdn.example.com", **{"sec-fetch-dest": "image", "accept": "image/*"})
    unnamed.unmatched(flow, "cdn.example.com", 443, headers, RULES)
    flow, headers = page_request("other.example.com", mode="regular")  # a browser's own proxy: many sites
    unnamed.unmatched(flow, "other.example.com", 443, headers, RULES)
    assert said(caplog) == []
    flow, headers = page_request("cdn.example.com")  # its first page request is still said
    unnamed.unmatched(flow, "cdn.example.com", 443, headers, RULES)
    assert len(said(caplog)) == 1


def test_without_keep_host_header_the_rules_load_said_it_already() -> None:
    assert not notices(keep_host_header=False).enabled
    assert not notices(modes=("regular", "reverse:dns://1.1.1.1")).enabled


def test_made_up_hosts_get_a_bounded_number_of_lines_and_new_rules_a_fresh_start(caplog) -> None:
    unnamed = notices()
    for n in range(UnnamedHostNotices.LIMIT + 10):
        flow, headers = page_request(f"h{n}.example")
        unnamed.unmatched(flow, f"h{n}.example", 443, headers, RULES)
    assert len(said(caplog)) == UnnamedHostNotices.LIMIT
    unnamed.configure(["reverse:http://10.0.0.7:8080"], True)  # the rules or the options changed
    flow, headers = page_request("h0.example")
    unnamed.unmatched(flow, "h0.example", 443, headers, RULES)
    assert len(said(caplog)) == 1
