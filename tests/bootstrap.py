"""Reading the injected bootstrap in tests: the options elasticApm.init() gets."""

from __future__ import annotations

import json
import re

_UNTRACED = re.compile(r"a\.init\((\{.*?\})\)\}\}\)\(\);</script>")
_TRACED = "{var c="
_PAGE = "a.init(c)})("


def init_options(markup: str, *, from_cache: bool = False) -> dict:
    """The options of the (first) bootstrap in `markup`: a page without trace ids calls init with
    one object; a traced page has the rule's options (c), then its page load's (p), which apply
    unless the browser took the page from its cache."""
    decoder = json.JSONDecoder()
    start = markup.find(_TRACED)
    untraced = _UNTRACED.search(markup)
    if untraced is not None and (start < 0 or untraced.start() < start):
        return json.loads(untraced.group(1))
    assert start >= 0, f"no bootstrap in {markup[:300]!r}"
    rule, end = decoder.raw_decode(markup, start + len(_TRACED))
    page_at = markup.find(_PAGE, end)
    assert page_at >= 0, markup[end : end + 300]
    page, _ = decoder.raw_decode(markup, page_at + len(_PAGE))
    return rule if from_cache else {**rule, **page}
