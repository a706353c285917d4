"""A first-run pitfall, said when the rules load: in reverse mode mitmproxy writes the upstream's
host into the Host header before any addon sees the request (unless keep_host_header is set), so
rules that name only the public host match nothing, and nothing says why."""

from __future__ import annotations

from collections.abc import Iterable

from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from rumproxy.rules import RuleSet

_HTTP_SCHEMES = frozenset({"http", "https", "http3"})


def unnamed_upstreams(modes: Iterable[str], keep_host_header: bool, rules: RuleSet) -> list[str]:
    """The upstreams of the HTTP reverse modes in `modes` whose host, which their requests carry
    upstream, no rule names."""
    if keep_host_header:
        return []
    unnamed = []
    for spec in modes:
        try:
            mode = ProxyMode.parse(spec)
        except ValueError:
            continue  # mitmproxy says what is wrong with it
        if isinstance(mode, ReverseMode) and mode.scheme in _HTTP_SCHEMES:
            host, port = mode.address
            if not rules.names_host(host, port):
                unnamed.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return unnamed


def warning(upstreams: list[str], rules_file: object) -> str:
    return (
        f"reverse mode sends the Host of {', '.join(upstreams)} upstream and no rule in {rules_file} names it: "
        "no page will be instrumented. Name that host in a rule's hosts, or set keep_host_header=true "
        "to match the Host browsers send"
    )
