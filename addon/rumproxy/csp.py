"""Adjust a page's Content-Security-Policy so the injected RUM agent may load, run and report.

Pure text in, text out, per CSP Level 3 (https://www.w3.org/TR/CSP3/). Every enforced policy must
allow our two ``<script>`` tags and the agent's beacons on its own, so each is patched separately,
but with one shared nonce: a tag has one nonce attribute. Edits are minimal -- one source appended
to the governing directive, or a new directive rather than a wider ``default-src`` -- so the
policy keeps its meaning for everything else, and stays byte-identical if it already lets us in.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from rumproxy.cspsource import Url, parse_url, url_allowed

_WHITESPACE = "\t\n\f\r "
_TOKEN = re.compile(r"[^\t\n\f\r ]+")
_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/_-]+={0,2})'", re.IGNORECASE)
_HASH = re.compile(r"'(sha256|sha384|sha512)-([A-Za-z0-9+/_-]+={0,2})'", re.IGNORECASE)
_SCRIPT_FALLBACK = ("script-src-elem", "script-src", "default-src")


@dataclass(frozen=True)
class CspAdjustment:
    policies: tuple[str, ...]
    """The new header values: same count and order as given, untouched ones byte-identical."""
    nonce: str | None
    """The nonce to put on both injected tags; None when no policy needs one."""
    changed: bool


@dataclass(frozen=True)
class _Directive:
    name: str
    tokens: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # of the tokens within the policy text
    end: int  # just past the directive's last non-whitespace character


def make_nonce() -> str:
    """18 random bytes, base64url without padding (valid in both the attribute and the policy)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(18)).decode("ascii")


def parse_policy(policy: str) -> list[tuple[str, list[str]]]:
    """Directives in order, names lowercased, first occurrence winning (CSP3 §2.2.1)."""
    return [(d.name, list(d.tokens)) for d in _parse(policy).values()]


def policy_nonces(policy: str) -> list[str]:
    """The distinct nonce values of the directive that governs ``<script>`` elements."""
    script = _effective(_parse(policy), _SCRIPT_FALLBACK)
    return _nonces(script.tokens) if script else []


def adjust_policies(
    policies: Sequence[str], *, page_origin: str, script_url: str, inline_script: str,
    connect_url: str | None, new_nonce: str, tag_nonce: str | None = None,
) -> CspAdjustment:
    """Patch every enforced ``Content-Security-Policy`` header value (never Report-Only ones).

    A header value may hold several comma-separated policies; each is handled on its own and
    the commas are kept. ``tag_nonce`` forces the nonce choice, for when the tags already
    carry one picked for other policies of the same page (headers first, then ``<meta>``).
    """
    pieces = [value.split(",") for value in policies]
    flat, nonce = _adjust(
        [piece for value in pieces for piece in value],
        page_origin, script_url, inline_script, connect_url, new_nonce, tag_nonce,
    )
    rest = iter(flat)
    out = tuple(",".join(next(rest) for _ in value) for value in pieces)
    return CspAdjustment(out, nonce, out != tuple(policies))


def adjust_meta_policy(
    content: str, *, page_origin: str, script_url: str, inline_script: str,
    connect_url: str | None, new_nonce: str, tag_nonce: str | None = None,
) -> CspAdjustment:
    """Patch a ``<meta http-equiv=Content-Security-Policy>`` content: one policy, no comma split.

    The result holds single quotes; the caller re-escapes it for its attribute quoting.
    """
    (new,), nonce = _adjust([content], page_origin, script_url, inline_script, connect_url, new_nonce, tag_nonce)
    return CspAdjustment((new,), nonce, new != content)


def allow_connect(policy: str, *, page_origin: str, connect_url: str) -> str:
    """`policy` with the intake's origin added to its connect directive if it does not allow
    `connect_url` yet. For a ``<meta>`` policy the snippet precedes: only the beacons, sent
    later, are subject to it."""
    directives = _parse(policy)
    beacons = _effective(directives, ("connect-src", "default-src"))
    origin = parse_url(page_origin, page_origin)
    connect = parse_url(connect_url, page_origin)
    if beacons is None or url_allowed(beacons.tokens, connect, origin):
        return policy
    edits: list[tuple[int, int, str]] = []
    added: list[str] = []
    _extend(beacons, connect.source, "connect-src", edits, added)
    return _apply(policy, edits + _new_directives(policy, added))


def _adjust(
    policies: list[str], page_origin: str, script_url: str, inline_script: str,
    connect_url: str | None, new_nonce: str, tag_nonce: str | None,
) -> tuple[list[str], str | None]:
    origin = parse_url(page_origin, page_origin)
    script = parse_url(script_url, page_origin)
    connect = None if connect_url is None else parse_url(connect_url, page_origin)
    hashes = _inline_hashes(inline_script)
    parsed = [_parse(policy) for policy in policies]
    scripts = [_effective(directives, _SCRIPT_FALLBACK) for directives in parsed]
    needing = [d is not None and _needs_nonce(d.tokens, hashes, script, origin) for d in scripts]
    chosen = tag_nonce or _choose_nonce([d for d, need in zip(scripts, needing) if need], new_nonce)
    nonce = chosen if any(needing) else None
    carried = tag_nonce or nonce

    out = []
    for text, directives, d, need in zip(policies, parsed, scripts, needing):
        edits: list[tuple[int, int, str]] = []
        added: list[str] = []
        if d is not None and need and chosen not in _nonces(d.tokens):
            _extend(d, f"'nonce-{chosen}'", "script-src", edits, added)
        elif d is not None and not need and carried not in _nonces(d.tokens):
            # A nonce would switch off a bare 'unsafe-inline' and with it the page's own
            # inline scripts, so such a list gets the agent's origin instead.
            if not url_allowed(d.tokens, script, origin):
                _extend(d, script.source, "script-src", edits, added)
        beacons = _effective(directives, ("connect-src", "default-src"))
        if connect and beacons and not url_allowed(beacons.tokens, connect, origin):
            _extend(beacons, connect.source, "connect-src", edits, added)
        out.append(_apply(text, edits + _new_directives(text, added)))
    return out, nonce


def _needs_nonce(tokens: Sequence[str], hashes: set[tuple[str, str]], script: Url, origin: Url) -> bool:
    # A nonce on a parser-inserted tag is the only way past 'strict-dynamic' and past a list
    # that does not allow inline script by itself; and where the page has a nonce anyway,
    # carrying it beats adding the agent's origin.
    if _has(tokens, "'strict-dynamic'") or not _allows_inline(tokens, hashes):
        return True
    return bool(_nonces(tokens)) and not url_allowed(tokens, script, origin)


def _choose_nonce(directives: list[_Directive], new_nonce: str) -> str:
    """The page's nonce shared by the most policies (so the fewest need it added), else ours."""
    counts: dict[str, int] = {}
    for d in directives:
        for value in _nonces(d.tokens):
            counts[value] = counts.get(value, 0) + 1
    # max() keeps the first of equal counts, so the choice is stable on a second pass.
    return max(counts, key=counts.__getitem__) if counts else new_nonce


def _extend(d: _Directive, source: str, own_name: str, edits: list[tuple[int, int, str]], added: list[str]) -> None:
    only_none = len(d.tokens) == 1 and d.tokens[0].lower() == "'none'"
    if d.name == "default-src":
        # A copy keeps every other resource type on the page's default-src as it was.
        kept = [] if only_none else list(d.tokens)
        added.append(" ".join([own_name, *kept, source]))
    elif only_none:
        edits.append((*d.spans[0], source))
    else:
        edits.append((d.end, d.end, f" {source}"))


def _new_directives(text: str, added: list[str]) -> list[tuple[int, int, str]]:
    """The edit that appends whole new directives at the end of a policy, keeping its last ';'."""
    if not added:
        return []
    end = len(text.rstrip(_WHITESPACE))
    joined = "; ".join(added)
    return [(end, end, f" {joined};" if text[:end].endswith(";") else f"; {joined}")]


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    out, pos = [], 0
    # Stable sort: at one position, the directive's own append precedes new directives.
    for start, end, replacement in sorted(edits, key=lambda e: e[0]):
        out += [text[pos:start], replacement]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _parse(policy: str) -> dict[str, _Directive]:
    """CSP3 §2.2.1, keeping where each token sits so that an edit can leave the rest untouched."""
    directives: dict[str, _Directive] = {}
    start = 0
    for segment in policy.split(";"):
        begin, stop = start, start + len(segment)
        start = stop + 1
        tokens = list(_TOKEN.finditer(policy, begin, stop))
        if not tokens or not segment.isascii():
            continue
        name = tokens[0].group().lower()
        if name not in directives:
            values = tokens[1:]
            spans = tuple(m.span() for m in values)
            directives[name] = _Directive(name, tuple(m.group() for m in values), spans, tokens[-1].end())
    return directives


def _effective(directives: dict[str, _Directive], fallback: Sequence[str]) -> _Directive | None:
    return next((directives[name] for name in fallback if name in directives), None)


def _has(tokens: Sequence[str], keyword: str) -> bool:
    return any(t.lower() == keyword for t in tokens)


def _nonces(tokens: Sequence[str]) -> list[str]:
    found = (_NONCE.fullmatch(t) for t in tokens)
    return list(dict.fromkeys(m.group(1) for m in found if m))


def _b64(value: str) -> str:
    # Hash sources may be written in base64 or base64url, padded or not (CSP3 §2.3.1).
    return value.replace("-", "+").replace("_", "/").rstrip("=")


def _inline_hashes(script: str) -> set[tuple[str, str]]:
    data = script.encode("utf-8")
    digests = {alg: hashlib.new(alg, data).digest() for alg in ("sha256", "sha384", "sha512")}
    return {(alg, _b64(base64.b64encode(digest).decode("ascii"))) for alg, digest in digests.items()}


def _allows_inline(tokens: Sequence[str], hashes: set[tuple[str, str]]) -> bool:
    """Whether the inline init script runs without a nonce: bare 'unsafe-inline' or its hash."""
    matches = [_HASH.fullmatch(t) for t in tokens]
    if any((m.group(1).lower(), _b64(m.group(2))) in hashes for m in matches if m):
        return True
    if any(matches) or _nonces(tokens) or _has(tokens, "'strict-dynamic'"):
        return False
    return _has(tokens, "'unsafe-inline'")
