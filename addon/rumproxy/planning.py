"""What goes into one instrumented response, decided from its request, its rule and its headers: the
snippet's markup, the page's Content-Security-Policy adjusted to let the snippet run (the header's
policies, and an edit for a <meta> policy in the page), and the header fields that fit the
instrumented page. No flow state and no body here: the addon's hooks call these."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

from mitmproxy import http
from mitmproxy.net.http import url

from rumproxy import csp, decision, snippet, tracing
from rumproxy.charset import detect_charset, read_as_xml
from rumproxy.headerview import Edit, Fields, HeaderView
from rumproxy.rewrite import PolicyBlocked, PolicyEdit
from rumproxy.rules import Rule
from rumproxy.snippet import PageTrace

NO_POLICY = csp.CspAdjustment(policies=(), nonce=None, changed=False)
# Validators and ranges of the upstream's body, which no longer describe the instrumented one.
BODY_BOUND_EDITS: dict[bytes, Edit] = dict.fromkeys(
    (b"accept-ranges", b"content-md5", b"digest", b"repr-digest", b"content-digest")
)
MARKER_EDIT: dict[bytes, Edit] = {decision.MARKER_HEADER_KEY: "rumproxy"}


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class Plan(NamedTuple):
    """What goes into one response: the markup, and the page's policy adjusted to allow it."""

    markup: str
    csp: csp.CspAdjustment
    edit_policy: PolicyEdit | None  # for a <meta> policy in the page
    markup_fixed: int = 0  # characters at the markup's start that every page of the rule has (snippet.fixed_length)


def make_plan(
    request: http.Request, rule: Rule, trace: PageTrace | None, headers: HeaderView, bootstrap: snippet.Bootstrap
) -> Plan | None:
    """The markup and the adjusted CSP for this response; None if its CSP blocks the snippet
    and the rule forbids changing it."""
    policy = header_policy(request, rule, trace, headers, bootstrap) if b"content-security-policy" in headers else NO_POLICY
    if policy is None:
        return None
    # As the rewriters decide how to scan the page: the markup and the reading must agree.
    xml = rule.xhtml and read_as_xml(headers.get(b"content-type"))
    markup, fixed = bootstrap.rendered(trace, policy.nonce, xml=xml)
    return Plan(markup, policy, meta_policy_edit(request, rule), fixed)


def header_policy(
    request: http.Request, rule: Rule, trace: PageTrace | None, headers: HeaderView, bootstrap: snippet.Bootstrap
) -> csp.CspAdjustment | None:
    """The response's Content-Security-Policy headers widened just enough for the snippet; None
    if that takes a change and the rule forbids it."""
    policies = headers.get_all(b"content-security-policy")
    if not policies:
        return NO_POLICY
    agent = rule.agent
    script_src = bootstrap.script_src or ""
    origin = page_origin(request)
    if script_src.startswith("//"):
        script_url = f"{request.scheme}:{script_src}"
    elif script_src.startswith("/"):
        script_url = origin + script_src
    else:
        script_url = script_src
    adjustment = csp.adjust_policies(
        policies,
        page_origin=origin,
        script_url=script_url,
        inline_script=bootstrap.init_script(trace),
        connect_url=agent.config.get("serverUrl") if agent.kind == "elastic" else None,
        new_nonce=csp.make_nonce(),
    )
    if adjustment.changed and not rule.csp_adjust:
        return None
    return adjustment


def meta_policy_edit(request: http.Request, rule: Rule) -> PolicyEdit | None:
    """How to widen a <meta> policy in the page for the agent's beacons (the rewriters find it)."""
    agent = rule.agent
    server_url = agent.config.get("serverUrl") if agent.kind == "elastic" else None
    if not isinstance(server_url, str):
        return None

    def edit(policy: str) -> str:
        widened = csp.allow_connect(policy, page_origin=page_origin(request), connect_url=server_url)
        if widened != policy and not rule.csp_adjust:
            raise PolicyBlocked("a <meta> Content-Security-Policy would block the agent's beacons and csp.adjust is false")
        return widened

    return edit


def instrumented_fields(
    headers: HeaderView,
    rule: Rule,
    trace: PageTrace | None,
    tracestate: str | None,
    policy: csp.CspAdjustment,
    framing: dict[bytes, Edit],
) -> Fields:
    """The fields of the response's headers (those `headers` was made of) as they fit the
    instrumented page: built aside, so a failure half-way leaves the response's own headers as received."""
    edits: dict[bytes, Edit] = {**BODY_BOUND_EDITS, **MARKER_EDIT, **framing}
    etag = headers.get(b"etag")
    if etag and not etag.startswith("W/"):
        # The body differs from the one the strong validator names.
        edits[b"etag"] = "W/" + etag
    if policy.changed:
        edits[b"content-security-policy"] = list(policy.policies)
    if trace is not None:
        edits.update(tracing.expose(headers, trace, rule.trace, tracestate))
    return headers.edited(edits)


def bootstrap_for(rule: Rule, script_paths: dict[Path, str]) -> snippet.Bootstrap:
    """The rule's bootstrap; a local agent file loads from the URL path the proxy serves it under."""
    script_src = rule.agent.script_url
    if rule.agent.script_file is not None:
        script_src = script_paths.get(rule.agent.script_file)
    return snippet.Bootstrap(rule.agent, script_src=script_src, api_origins=rule.trace.api_origins)


def streamable(plan: Plan, headers: HeaderView) -> bool:
    """Whether a stream can inject this page: it writes ASCII markup into ASCII-compatible pages.
    UTF-16 and friends are transcoded by the whole-body path."""
    return plan.markup.isascii() and _ascii_compatible_type(headers.get(b"content-type"))


@functools.lru_cache(maxsize=256)
def _ascii_compatible_type(content_type: str | None) -> bool:
    # A site sends a few Content-Type values; parsing the charset out of one costs some 5 µs.
    return detect_charset(content_type, b"").ascii_compatible


def site(request: http.Request, headers: HeaderView | None = None) -> tuple[str, int]:
    """The site's host and port as the request goes upstream (Host / :authority), as rules match it."""
    if headers is None:
        authority = request.host_header
    elif request.is_http2 or request.is_http3:
        authority = request.authority or headers.get(b"host")
    else:
        authority = headers.get(b"host")
    if authority:
        try:
            host, port = _parse_authority(authority)
        except ValueError:
            host, port = request.host, request.port
        if port is None:
            port = 443 if request.scheme == "https" else 80
        return host, port
    return request.host, request.port


@functools.lru_cache(maxsize=256)
def _parse_authority(authority: str) -> tuple[str, int | None]:
    # A proxy sees the same few Host values over and over; parsing one costs more than the rule lookup.
    return url.parse_authority(authority, check=False)


def page_origin(request: http.Request) -> str:
    host, port = site(request)
    default = 443 if request.scheme == "https" else 80
    host = f"[{host}]" if ":" in host else host
    return f"{request.scheme}://{host}" + ("" if port == default else f":{port}")
