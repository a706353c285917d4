"""The syntax of a custom agent template (`agent.kind: custom`): its {{placeholders}}, and whether
it is well-formed XML, which a rule that instruments XHTML pages needs. Checked when the rules
load; snippet.render_template fills it in for each page."""

from __future__ import annotations

import re
from xml.parsers import expat

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
PLACEHOLDERS = frozenset({"trace_id", "span_id", "traceparent", "sampled", "nonce", "nonce_attr", "script_url", "config_json"})


def placeholder_problem(template: str) -> str | None:
    """The first placeholder that names none of PLACEHOLDERS, with its line in the template, or None."""
    for match in PLACEHOLDER.finditer(template):
        if match.group(1) not in PLACEHOLDERS:
            line = template.count("\n", 0, match.start()) + 1
            return (
                f"unknown placeholder {match.group(0)}, line {line} of the template; "
                f"known: {', '.join(sorted(PLACEHOLDERS))}"
            )
    return None


# What the placeholders of a custom template stand for when it is checked: values like a page's
# (each escaped as the page gets it, so none adds markup of its own).
_SAMPLE_VALUES = {
    "trace_id": "0af7651916cd43dd8448eb211c80319c",
    "span_id": "b7ad6b7169203331",
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "sampled": "true",
    "nonce": "bm9uY2U=",
    "nonce_attr": ' nonce="bm9uY2U="',
    "script_url": "/__rum/agent.js",
    "config_json": '{"serviceName":"shop"}',
}


def xml_problem(template: str) -> str | None:
    """Why the template, filled in, is not well-formed XML inside an XHTML page's head, or None."""
    parser = expat.ParserCreate()
    try:
        parser.Parse("<head>" + PLACEHOLDER.sub(lambda m: _SAMPLE_VALUES[m.group(1)], template) + "</head>", True)
    except expat.ExpatError as e:
        # The values add no lines: the template's line numbers hold, its columns do not.
        lines = template.splitlines() or [""]
        line = lines[min(e.lineno, len(lines)) - 1].strip()
        return f"{expat.errors.messages[e.code]}, line {e.lineno} of the template: {line[:80]!r}"
    return None
