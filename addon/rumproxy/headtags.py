"""What the tags of a page's head mean for where the snippet goes (htmlscan's placement rules):
which may stand in a head, which hold inert content, which metas declare a charset or a policy,
which `<html>` attributes mark an AMP page. Attributes are parsed only where they can matter: a
head's tags are read on every page."""

from __future__ import annotations

from . import _htmltokens as tok

HEAD_CONTENT = frozenset(
    {b"meta", b"title", b"link", b"style", b"base", b"script", b"noscript", b"template", b"bgsound", b"basefont"}
)
# Before a head, html and head start tags do not end the implicit head either.
BEFORE_HEAD_NEUTRAL = (HEAD_CONTENT - {b"script"}) | {b"html", b"head"}
# A template's content is parsed as markup but never runs (noscript's is raw text: _htmltokens).
INERT = frozenset({b"template"})
BOLT = "⚡".encode()
AMP_NAMES = frozenset({b"amp", b"amp4email", b"amp4ads", BOLT, BOLT + b"4email", BOLT + b"4ads"})
PRAGMAS = frozenset({b"content-type", b"x-ua-compatible"})
CSP_PRAGMA = b"content-security-policy"


def may_be_amp(rest: bytes) -> bool:
    """Cheap pre-check: every name in AMP_NAMES contains "amp" or the bolt."""
    return b"amp" in rest.lower() or BOLT in rest


def meta_attributes(rest: bytes) -> tok.AttributeItems | None:
    """A meta's attributes; None, without parsing them, for one with neither attribute that matters."""
    lowered = rest.lower()
    if b"charset" not in lowered and b"http-equiv" not in lowered:
        return None
    return tok.attribute_items(rest)


def _http_equiv(attrs: tok.AttributeItems) -> bytes:
    """The first http-equiv, normalized."""
    for name, value in attrs:
        if name == b"http-equiv":
            return value.strip().lower()
    return b""


def is_policy(attrs: tok.AttributeItems) -> bool:
    return _http_equiv(attrs) == CSP_PRAGMA


def moves_point(attrs: tok.AttributeItems) -> bool:
    for name, _ in attrs:
        if name == b"charset":
            return True
    return _http_equiv(attrs) in PRAGMAS


def has_href(rest: bytes) -> bool:
    return b"href" in rest.lower() and b"href" in tok.attributes(rest)
