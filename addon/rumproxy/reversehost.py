"""A first-run pitfall of reverse mode, and its mirror image. Without keep_host_header mitmproxy
writes the upstream's host into the Host header before any addon sees the request, so rules that
name only the public host match nothing: said when the rules load. With keep_host_header the Host
is the one browsers send, known only when they come: the first page request for a host no rule
names is said once. Either way nothing else would say why no page is instrumented (a request no
rule matches is not logged: it is the fast path)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode, ReverseMode

from rumproxy import decision
from rumproxy.headerview import HeaderView
from rumproxy.rules import RuleSet

logger = logging.getLogger(__name__)

_HTTP_SCHEMES = frozenset({"http", "https", "http3"})


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _http_reverse_modes(modes: Iterable[str]) -> list[ReverseMode]:
    parsed = []
    for spec in modes:
        try:
            mode = ProxyMode.parse(spec)
        except ValueError:
            continue  # mitmproxy says what is wrong with it
        if isinstance(mode, ReverseMode) and mode.scheme in _HTTP_SCHEMES:
            parsed.append(mode)
    return parsed


def unnamed_upstreams(modes: Iterable[str], keep_host_header: bool, rules: RuleSet) -> list[str]:
    """The upstreams of the HTTP reverse modes in `modes` whose host, which their requests carry
    upstream, no rule names."""
    if keep_host_header:
        return []
    unnamed = []
    for mode in _http_reverse_modes(modes):
        host, port = mode.address
        if not rules.names_host(host, port):
            unnamed.append(_host_port(host, port))
    return unnamed


def warning(upstreams: list[str], rules_file: object) -> str:
    return (
        f"reverse mode sends the Host of {', '.join(upstreams)} upstream and no rule in {rules_file} names it: "
        "no page will be instrumented. Name that host in a rule's hosts, or set keep_host_header=true "
        "to match the Host browsers send"
    )


class UnnamedHostNotices:
    """With keep_host_header, the first page request in reverse mode for each host that no rule
    names gets one warning."""

    # Hosts come from clients: a scanner sending made-up Hosts gets this many lines, then none.
    LIMIT = 64

    def __init__(self) -> None:
        self.enabled = False
        self._decided: set[tuple[str, int]] = set()

    def configure(self, modes: Iterable[str], keep_host_header: bool) -> None:
        """Called whenever the rules or the options change: each host is decided anew."""
        self.enabled = keep_host_header and bool(_http_reverse_modes(modes))
        self._decided.clear()

    def unmatched(self, flow: http.HTTPFlow, host: str, port: int, headers: HeaderView, rules: RuleSet) -> None:
        """A request of `flow` no rule matched: warn if it is the first page request for its host
        in reverse mode and no rule names the host (a rule that names it may leave the path out)."""
        key = (host, port)
        if key in self._decided or len(self._decided) >= self.LIMIT:
            return
        if not isinstance(flow.client_conn.proxy_mode, ReverseMode) or decision.is_never_a_page(headers):
            return
        self._decided.add(key)
        if not rules.names_host(host, port):
            logger.warning(
                f"reverse mode keeps the Host browsers send, and no rule in {rules.source} names "
                f"{_host_port(host, port)}: its pages are not instrumented. Name that host in a rule's "
                "hosts (said once per host)"
            )
