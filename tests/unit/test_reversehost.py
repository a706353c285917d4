"""The warning for reverse mode's Host: which upstreams no rule names."""

from __future__ import annotations

from rumproxy.reversehost import unnamed_upstreams, warning
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
