"""Reading the injected bootstrap in tests: the options elasticApm.init() gets."""

from __future__ import annotations

import json
import re

_UNTRACED = re.compile(r"a\.init\((\{.*?\})\)\}\}\)\(\);</script>")
_TRACED = "{var c="


def init_options(markup: str, *, from_cache: bool = False) -> dict:
    """The options of the (first) bootstrap in `markup`: a page without trace ids calls init with
    one object; a traced page has the rule's options (c) and its page load's (p), which apply
    unless the browser took the page from its cache."""
    decoder = json.JSONDecoder()
    start = markup.find(_TRACED)
    untraced = _UNTRACED.search(markup)
    if untraced is not None and (start < 0 or untraced.start() < start):
        return json.loads(untraced.group(1))
    assert start >= 0, f"no bootstrap in {markup[:300]!r}"
    rule, end = decoder.raw_decode(markup, start + len(_TRACED))
    assert markup.startswith(",p=", end), markup[end : end + 40]
    page, _ = decoder.raw_decode(markup, end + len(",p="))
    return rule if from_cache else {**rule, **page}
