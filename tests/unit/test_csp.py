"""CSP adjustment: real-world policies, and generated ones checked by an independent evaluator."""

import base64
import hashlib
import re
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rumproxy.csp import adjust_meta_policy, adjust_policies, make_nonce, parse_policy, policy_nonces

PAGE = "https://shop.example.com"
CDN = "https://cdn.example.net/agent/rum.js"
SAME = "https://shop.example.com/__rum/elastic-apm-rum.umd.min.js"
INTAKE = "https://apm.example.net:8200/intake/v2/rum/events"
INLINE = 'elasticApm.init({"serviceName":"shop","serverUrl":"https://apm.example.net:8200"})'
OURS = base64.b64encode(hashlib.sha256(INLINE.encode()).digest()).decode()
OTHER_HASH = base64.b64encode(hashlib.sha256(b"alert(1)").digest()).decode()
NEW = "N3w-n0nce_AAAAAAAAAAAAAA"
APM = "https://apm.example.net:8200"


def adjust(policies, *, script=CDN, connect=INTAKE, page=PAGE, new_nonce=NEW, **kwargs):
    return adjust_policies(
        policies, page_origin=page, script_url=script, inline_script=INLINE, connect_url=connect,
        new_nonce=new_nonce, **kwargs,
    )


GITHUB = (
    "default-src 'none'; base-uri 'self'; connect-src 'self' uploads.github.com api.github.com; "
    "img-src 'self' data: github.githubassets.com; script-src 'nonce-R4nd0m+/=' 'strict-dynamic' "
    "github.githubassets.com; style-src 'unsafe-inline' github.githubassets.com; upgrade-insecure-requests; "
    "report-uri https://api.github.com/_private/browser/errors"
)
GOOGLE = "script-src 'nonce-x' 'strict-dynamic' https: 'unsafe-inline'; object-src 'none'; base-uri 'self'"

CASES = [
    pytest.param(
        [GITHUB], {},
        [GITHUB.replace("api.github.com;", f"api.github.com {APM};")], "R4nd0m+/=", id="github-nonce-strict-dynamic",
    ),
    pytest.param([GOOGLE], {}, [GOOGLE], "x", id="google-strict"),
    pytest.param(
        [f"script-src 'sha256-{OTHER_HASH}' 'self'; object-src 'none'"], {"script": SAME},
        [f"script-src 'sha256-{OTHER_HASH}' 'self' 'nonce-{NEW}'; object-src 'none'"], NEW, id="hash-only",
    ),
    pytest.param(
        ["default-src 'self'"], {},
        [f"default-src 'self'; script-src 'self' 'nonce-{NEW}'; connect-src 'self' {APM}"], NEW, id="default-self",
    ),
    pytest.param(
        ["default-src 'none'"], {},
        [f"default-src 'none'; script-src 'nonce-{NEW}'; connect-src {APM}"], NEW, id="default-none",
    ),
    pytest.param(
        ["script-src 'self' 'unsafe-inline'"], {},
        ["script-src 'self' 'unsafe-inline' https://cdn.example.net"], None, id="unsafe-inline-cross-origin",
    ),
    pytest.param(
        ["script-src 'self' 'unsafe-inline'"], {"script": SAME},
        ["script-src 'self' 'unsafe-inline'"], None, id="unsafe-inline-same-origin",
    ),
    pytest.param(["script-src *"], {}, [f"script-src * 'nonce-{NEW}'"], NEW, id="script-star"),
    pytest.param(["img-src 'self'; frame-ancestors 'none'"], {}, ["img-src 'self'; frame-ancestors 'none'"], None,
                 id="no-script-directive"),
    pytest.param(
        ["script-src 'nonce-aaa' 'strict-dynamic'", "default-src 'self' 'nonce-bbb'; connect-src *"], {},
        ["script-src 'nonce-aaa' 'strict-dynamic'",
         "default-src 'self' 'nonce-bbb'; connect-src *; script-src 'self' 'nonce-bbb' 'nonce-aaa'"],
        "aaa", id="two-headers-one-nonce",
    ),
    pytest.param(
        ["script-src 'self' 'unsafe-inline', connect-src 'self'"], {"script": SAME},
        [f"script-src 'self' 'unsafe-inline', connect-src 'self' {APM}"], None, id="two-policies-one-header",
    ),
    pytest.param(
        ["SCRIPT-SRC 'SELF' 'NONCE-Abc123'; Connect-Src 'Self'"], {"script": SAME},
        [f"SCRIPT-SRC 'SELF' 'NONCE-Abc123'; Connect-Src 'Self' {APM}"], "Abc123", id="uppercase",
    ),
    pytest.param(
        ["script-src 'self'; report-uri /csp-report"], {},
        [f"script-src 'self' 'nonce-{NEW}'; report-uri /csp-report"], NEW, id="report-uri",
    ),
    pytest.param(
        ["script-src 'unsafe-inline' https://*.example.net:443; connect-src https://*.example.net:8200"], {},
        ["script-src 'unsafe-inline' https://*.example.net:443; connect-src https://*.example.net:8200"], None,
        id="wildcard-host-and-port",
    ),
    pytest.param(
        ["script-src 'unsafe-inline' *.example.net; connect-src *.example.net"], {},
        [f"script-src 'unsafe-inline' *.example.net; connect-src *.example.net {APM}"], None, id="port-must-match",
    ),
    pytest.param(
        ["script-src 'unsafe-inline' https://cdn.example.net/agent/; connect-src https://apm.example.net:*/intake"],
        {},
        ["script-src 'unsafe-inline' https://cdn.example.net/agent/; "
         f"connect-src https://apm.example.net:*/intake {APM}"],
        None, id="path-prefix-and-exact-path",
    ),
    pytest.param(
        ["script-src 'unsafe-inline' https://*.example.net; connect-src *.example.com"],
        {"script": "https://example.net/rum.js"},
        [f"script-src 'unsafe-inline' https://*.example.net https://example.net; connect-src *.example.com {APM}"],
        None, id="wildcard-needs-a-subdomain",
    ),
    pytest.param(
        ["default-src 'self' ;\tconnect-src 'none' ;  "], {},
        [f"default-src 'self' ;\tconnect-src {APM} ; script-src 'self' 'nonce-{NEW}';  "], NEW,
        id="spacing-trailing-semicolon-none",
    ),
    pytest.param(
        ["script-src 'none'; script-src-elem 'self' 'unsafe-inline'"], {"script": SAME},
        ["script-src 'none'; script-src-elem 'self' 'unsafe-inline'"], None, id="script-src-elem-wins",
    ),
    pytest.param(
        ["script-src 'self' 'unsafe-inline'; script-src 'none'"], {"script": SAME},
        ["script-src 'self' 'unsafe-inline'; script-src 'none'"], None, id="first-duplicate-wins",
    ),
    pytest.param(
        [f"script-src 'self' 'SHA256-{OURS}'"], {"script": SAME},
        [f"script-src 'self' 'SHA256-{OURS}'"], None, id="inline-hash-already-listed",
    ),
    pytest.param(
        [f"script-src 'sha256-{OURS}' 'nonce-pg'"], {},
        [f"script-src 'sha256-{OURS}' 'nonce-pg'"], "pg", id="page-nonce-beats-adding-origin",
    ),
    pytest.param(
        ["script-src 'self' 'unsafe-inline'"], {"page": "http://shop.example.com", "script": SAME},
        ["script-src 'self' 'unsafe-inline'"], None, id="self-secure-upgrade",
    ),
    pytest.param(
        ["connect-src 'self'"], {"connect": "http://10.0.0.5:8200/intake/v2/rum/events"},
        ["connect-src 'self' http://10.0.0.5:8200"], None, id="ipv4-intake",
    ),
    pytest.param(
        ["connect-src http://*:8200"], {"connect": "http://10.0.0.5:8200/intake/v2/rum/events"},
        ["connect-src http://*:8200 http://10.0.0.5:8200"], None, id="wildcard-never-matches-an-address",
    ),
    pytest.param(
        ["connect-src 'self'"], {"connect": "http://shop.example.com/intake"},
        ["connect-src 'self' http://shop.example.com"], None, id="self-never-downgrades",
    ),
    pytest.param(
        ["default-src 'self'"], {"connect": None, "script": SAME},
        [f"default-src 'self'; script-src 'self' 'nonce-{NEW}'"], NEW, id="no-intake",
    ),
]


@pytest.mark.parametrize("policies, kwargs, expected, nonce", CASES)
def test_real_world_policies(policies, kwargs, expected, nonce):
    result = adjust(policies, **kwargs)
    assert result.policies == tuple(expected)
    assert result.nonce == nonce
    assert result.changed == (tuple(expected) != tuple(policies))
    again = adjust(list(result.policies), new_nonce="second", **kwargs)
    assert (again.policies, again.nonce, again.changed) == (result.policies, result.nonce, False)


def test_meta_policy_keeps_commas_and_shares_the_header_nonce():
    kwargs = dict(page_origin=PAGE, script_url=SAME, inline_script=INLINE, connect_url=None, new_nonce=NEW)
    # A <meta> holds one policy, so "'nonce-m'," is a malformed source, not a nonce.
    meta = adjust_meta_policy("script-src 'nonce-m', 'self'", **kwargs)
    assert meta.policies == (f"script-src 'nonce-m', 'self' 'nonce-{NEW}'",) and meta.nonce == NEW
    forced = adjust_meta_policy("script-src 'nonce-m'", tag_nonce="hdr", **kwargs)
    assert forced.policies == ("script-src 'nonce-m' 'nonce-hdr'",) and forced.nonce == "hdr"
    assert adjust_meta_policy("img-src *", tag_nonce="hdr", **kwargs).nonce is None


def test_parse_policy_follows_csp3():
    assert parse_policy(" Script-SRC 'self'  https://a.example ;; img-src; script-src 'none'; café x") == [
        ("script-src", ["'self'", "https://a.example"]),
        ("img-src", []),
    ]


def test_policy_nonces_reads_the_effective_script_directive():
    assert policy_nonces("default-src 'nonce-d'; script-src 'NONCE-s' 'nonce-s' 'nonce-' 'nonce-t'") == ["s", "t"]
    assert policy_nonces("default-src 'nonce-d'") == ["d"]
    assert policy_nonces("script-src-elem 'self'; script-src 'nonce-s'") == []


def test_make_nonce_is_fresh_base64():
    values = {make_nonce() for _ in range(50)}
    assert len(values) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", v) for v in values)


# --- an independent evaluator: does a policy let our tags and beacons through? ------------

DEFAULT_PORT = {"http": 80, "https": 443, "ws": 80, "wss": 443}
UPGRADE = {"http": {"https"}, "ws": {"wss", "http", "https"}, "wss": {"https"}}


def scheme_ok(expression, scheme):
    return expression == scheme or scheme in UPGRADE.get(expression, ())


def url_ok(sources, url, page):
    if not sources or [s.lower() for s in sources] == ["'none'"]:
        return False
    u, o = urlsplit(url), urlsplit(page)
    u_port, o_port = u.port or DEFAULT_PORT[u.scheme], o.port or DEFAULT_PORT[o.scheme]
    for source in (s.lower() for s in sources):
        if source == "*":
            if u.scheme in ("http", "https") or u.scheme == o.scheme:
                return True
        elif source == "'self'":
            if u.hostname == o.hostname and (
                (u.scheme, u_port) == (o.scheme, o_port)
                or (u_port == o_port or (u_port == DEFAULT_PORT[u.scheme] and o_port == DEFAULT_PORT[o.scheme]))
                and (u.scheme in ("https", "wss") or (o.scheme == "http" and u.scheme in ("http", "ws")))
            ):
                return True
        elif re.fullmatch(r"[a-z][a-z0-9+.-]*:", source):
            if scheme_ok(source[:-1], u.scheme):
                return True
        elif not source.startswith("'"):
            scheme, sep, rest = source.partition("://")
            if not sep:
                scheme, rest = o.scheme, source
            hostport, slash, path = rest.partition("/")
            host, _, port = hostport.partition(":")
            host_ok = host == u.hostname or (host.startswith("*") and u.hostname.endswith(host[1:]))
            port_ok = port == "*" or (int(port) if port else DEFAULT_PORT[u.scheme]) == u_port
            path = slash + path
            path_ok = not path or (u.path.startswith(path) if path.endswith("/") else u.path == path)
            if scheme_ok(scheme, u.scheme) and host_ok and port_ok and path_ok:
                return True
    return False


def directives_of(policy):
    directives = {}
    for part in policy.split(";"):
        words = part.split()
        if words and words[0].lower() not in directives:
            directives[words[0].lower()] = words[1:]
    return directives


def any_inline_ok(sources):
    """Whether every inline script runs: the page's own ones must keep running if they did."""
    lowered = [s.lower() for s in sources]
    overridden = "'strict-dynamic'" in lowered or any(
        re.fullmatch(r"'(nonce|sha256|sha384|sha512)-[A-Za-z0-9+/_-]+=*'", s) for s in lowered
    )
    return "'unsafe-inline'" in lowered and not overridden


def allows(policy, *, nonce, page, script, connect):
    directives = directives_of(policy)
    fallback = directives.get("script-src", directives.get("default-src"))
    sources = directives.get("script-src-elem", fallback)
    if sources is not None:
        lowered = [s.lower() for s in sources]
        carried = nonce is not None and any(s.lower().startswith("'nonce-") and s[7:-1] == nonce for s in sources)
        hashed = any(s.lower().startswith("'sha256-") and s[8:-1] == OURS for s in sources)
        inline = carried or hashed or any_inline_ok(sources)
        external = carried or ("'strict-dynamic'" not in lowered and url_ok(sources, script, page))
        if not (inline and external):
            return False
    beacons = directives.get("connect-src", directives.get("default-src"))
    return connect is None or beacons is None or url_ok(beacons, connect, page)


# --- generated policies -------------------------------------------------------------------

host_source = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(["", "https://", "http://", "HTTPS://", "wss://"]),
        st.sampled_from(["shop.example.com", "cdn.example.net", "apm.example.net", "*.example.net", "example.net", "*"]),
        st.sampled_from(["", ":443", ":8200", ":*", ":80"]),
        st.sampled_from(["", "/", "/agent/", "/agent/rum.js", "/intake/", "/x"]),
    ),
)
keyword = st.sampled_from([
    "'self'", "'SELF'", "'unsafe-inline'", "'strict-dynamic'", "'none'", "'unsafe-eval'", "*", "https:", "http:",
    "data:", "'nonce-pageNonce1'", "'NONCE-pageNonce2'", f"'sha256-{OURS}'", f"'sha256-{OTHER_HASH}'",
])
name = st.sampled_from([
    "default-src", "script-src", "script-src-elem", "connect-src", "img-src", "object-src", "report-uri",
    "upgrade-insecure-requests", "DEFAULT-SRC", "Script-Src", "CONNECT-SRC",
])
space = st.sampled_from([" ", "  ", "\t"])
source_list = st.lists(st.one_of(keyword, host_source), max_size=4)
directive = st.builds(lambda n, values, gap: gap.join([n, *values]), name, source_list, space)
policy = st.builds(
    lambda ds, sep, tail: sep.join(ds) + tail,
    st.lists(directive, min_size=1, max_size=5),
    st.sampled_from([";", "; ", " ; ", ";\n"]),
    st.sampled_from(["", ";", "; ", " "]),
)
header = st.lists(policy, min_size=1, max_size=2).map(",".join)
context = st.fixed_dictionaries({
    "page": st.sampled_from([PAGE, "http://shop.example.com", "https://shop.example.com:8443"]),
    "script": st.sampled_from([CDN, SAME, "https://cdn.example.net:8443/agent/rum.js"]),
    "connect": st.sampled_from([
        None, INTAKE, "https://shop.example.com/intake/v2/rum/events", "https://apm.example.net/x",
        "http://shop.example.com/intake", "wss://apm.example.net/x",
    ]),
})


@settings(max_examples=200, deadline=None)
@given(headers=st.lists(header, min_size=1, max_size=3), ctx=context)
def test_adjusted_policies_allow_everything_and_are_stable(headers, ctx):
    result = adjust(headers, **ctx)
    for value in result.policies:
        for one in value.split(","):
            assert allows(one, nonce=result.nonce, **ctx), one
    again = adjust(list(result.policies), new_nonce="second", **ctx)
    assert (again.policies, again.nonce, again.changed) == (result.policies, result.nonce, False)


@settings(max_examples=200, deadline=None)
@given(sources=source_list, ctx=context)
def test_url_matching_agrees_with_the_evaluator(sources, ctx):
    """Lists that allow inline script by themselves change exactly when the URL is not allowed."""
    sources = [s for s in sources if not re.match(r"'(nonce|sha256|strict-dynamic)", s, re.IGNORECASE)]
    connect = ctx["connect"] or INTAKE
    as_connect = adjust([" ".join(["connect-src", *sources])], **{**ctx, "connect": connect})
    assert as_connect.changed != url_ok(sources, connect, ctx["page"])
    as_script = adjust([" ".join(["script-src", "'unsafe-inline'", *sources])], **{**ctx, "connect": None})
    assert as_script.changed != url_ok(sources, ctx["script"], ctx["page"])
    assert as_script.nonce is None


@settings(max_examples=200, deadline=None)
@given(original=policy, ctx=context)
def test_single_policy_edits_are_minimal_and_local(original, ctx):
    result = adjust([original], **ctx)
    (text,) = result.policies
    already = [None, *policy_nonces(original)]
    if any(allows(original, nonce=n, **ctx) for n in already):
        assert not result.changed and text == original
    names = {name for name, _ in parse_policy(original)}
    script = next((n for n in ("script-src-elem", "script-src", "default-src") if n in names), None)
    touched = {script, next((n for n in ("connect-src", "default-src") if n in names), None)}
    seen = set()
    old_parts, new_parts = original.split(";"), text.split(";")
    assert len(new_parts) >= len(old_parts)
    for i, (old, new) in enumerate(zip(old_parts, new_parts)):
        if i == len(old_parts) - 1:
            # New directives go before the trailing whitespace, which the last one then loses.
            old, new = old.rstrip(), new.rstrip()
        words = old.split()
        if not words:
            continue
        first = words[0].lower() not in seen
        seen.add(words[0].lower())
        if first and words[0].lower() in touched and old != new:
            assert new.startswith(old.rstrip()) or [w.lower() for w in words[1:]] == ["'none'"], (old, new)
            assert new.split()[0] == words[0]
        else:
            assert old == new
    added = [name for name, _ in parse_policy(text) if name not in names]
    assert set(added) <= {"script-src", "connect-src"}


@settings(max_examples=200, deadline=None)
@given(original=policy, ctx=context)
def test_the_pages_own_inline_scripts_keep_their_fate(original, ctx):
    before, after = directives_of(original), directives_of(adjust([original], **ctx).policies[0])
    for kind in ("script-src-elem", "script-src", "script-src-attr"):
        fallback = ("script-src", "default-src") if kind != "script-src" else ("default-src",)
        old, new = (next((d[n] for n in (kind, *fallback) if n in d), None) for d in (before, after))
        assert (old is None or any_inline_ok(old)) == (new is None or any_inline_ok(new))
