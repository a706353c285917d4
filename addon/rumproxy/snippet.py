"""The bootstrap HTML inserted into a page: pure functions from a rule and a page's ids to markup.

Everything that reaches the page from configuration or from a request is escaped for the
context it lands in, so no value can end the script element or open a comment.
"""

from __future__ import annotations

import html
import itertools
import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from rumproxy.customtemplate import PLACEHOLDER
from rumproxy.rules import AgentSpec

# "</script" ends the element and "<!--" changes how it ends; U+2028/2029 broke pre-ES2019 parsers.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


# A NamedTuple, made for every page: a frozen dataclass sets each field through object.__setattr__.
class PageTrace(NamedTuple):
    """The ids one page load shares with its document request (None: no trace linking)."""

    trace_id: str
    span_id: str  # id of the document request span: the backend's parent
    sampled: bool
    traceparent: str
    continued: bool = False  # the request came with its own traceparent: link as a child of it


def fixed_length(markup: str, trace: PageTrace | None, nonce: str | None) -> int:
    """How many characters at the start of a page's markup come before any of the page's own values
    (its ids and nonce), and so are the same on every page of its rule: a remembered gzip page
    compresses that part once (gzipmemo). Where it ends only decides what is compressed once."""
    own = (trace.trace_id, trace.span_id, nonce) if trace is not None else (nonce,)
    return min((at for at in map(markup.find, filter(None, own)) if at >= 0), default=len(markup))


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: ASCII only, no markup characters."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=False).translate(_SCRIPT_ESCAPES)


def page_options(trace: PageTrace | None) -> dict[str, Any]:
    """The init options of one page load's trace: its ids and its sampling decision."""
    if trace is None:
        return {}
    options: dict[str, Any] = {"pageLoadTraceId": trace.trace_id}
    if trace.continued:
        # The backend answers under the incoming parent: the page load becomes its sibling.
        options["pageLoadParentId"] = trace.span_id
    else:
        options["pageLoadSpanId"] = trace.span_id
    if trace.sampled:
        options["pageLoadSampled"] = True
    else:
        # The agent ignores pageLoadSampled: false and would sample by transactionSampleRate,
        # so an unsampled backend would leave an orphaned page load: sample nothing on this page.
        options["transactionSampleRate"] = 0
    return options


def rule_options(agent: AgentSpec, api_origins: tuple[str, ...]) -> dict[str, Any]:
    """The init options every page of the rule gets: its config, and api_origins as
    distributedTracingOrigins where the config names none."""
    config: dict[str, Any] = dict(agent.config)
    if api_origins and "distributedTracingOrigins" not in config:
        config["distributedTracingOrigins"] = list(api_origins)
    return config


def agent_config(agent: AgentSpec, trace: PageTrace | None, api_origins: tuple[str, ...]) -> dict[str, Any]:
    """The options elasticApm.init() gets on a page the browser fetched through the proxy: the
    rule's and the page's trace ids (a custom template's config_json)."""
    return {**rule_options(agent, api_origins), **page_options(trace)}


def render(
    agent: AgentSpec,
    *,
    script_src: str | None,
    trace: PageTrace | None,
    api_origins: tuple[str, ...] = (),
    nonce: str | None = None,
    xml: bool = False,
) -> str:
    """The markup to insert. `script_src` is the URL the page loads the agent from; `xml`: the page
    is XHTML, parsed as XML (a custom template is checked to be well-formed when its rule is loaded)."""
    if agent.kind == "custom":
        config = agent_config(agent, trace, api_origins)
        return render_template(agent.template or "", script_src=script_src, trace=trace, nonce=nonce, config=config)
    init = init_script(rule_options(agent, api_origins), page_options(trace))
    return _elastic_markup(html.escape(script_src or "", quote=True), nonce, init, xml=xml)


def _elastic_markup(escaped_src: str, nonce: str | None, init: str, *, xml: bool = False) -> str:
    nonce_attr = f' nonce="{html.escape(nonce, quote=True)}"' if nonce else ""
    if xml:
        # An XML parser stops the page at an attribute without a value or a bare "&" (the init's
        # "&&"): the page would show an error instead of itself. The script's text is the CDATA's,
        # the same as in HTML, so a policy's hash of it holds; it cannot contain "]]>" (script_json
        # escapes ">").
        return (
            f'<script src="{escaped_src}" crossorigin="anonymous"{nonce_attr}></script>'
            f"<script{nonce_attr}><![CDATA[{init}]]></script>"
        )
    return f'<script src="{escaped_src}" crossorigin{nonce_attr}></script><script{nonce_attr}>{init}</script>'


# The guard keeps a page that already started the agent from being initialised twice, and a
# blocked or failed agent download from throwing in the page.
_INIT_HEAD = "(function(){var a=window.elasticApm;if(a&&typeof a.init==='function'&&!(a.isActive&&a.isActive())){"
_INIT_TAIL = "}})();"
# A page's trace ids belong to the one response that carried them. A browser that shows the page
# from a cache (a fresh copy, one its server confirmed with 304, a service worker's stored copy)
# runs them again for another page load, whose request, if it reached the backend at all, carried
# other ids: that page load gets no ids (its own trace, as without the proxy). Navigation Timing
# tells a page from a cache while it is still arriving: deliveryType "cache" (Chromium; a 304
# too), or nothing transferred for a body (every browser with Navigation Timing 2). The page's own
# options come last, as an argument: what follows them is short, so what differs from page to page
# ends soon after the ids (a remembered gzip page compresses the part before them once).
_WITH_PAGE_OPTIONS = (
    ",e=window.performance&&performance.getEntriesByType&&performance.getEntriesByType('navigation')[0],"
    "l=!(e&&(e.deliveryType==='cache'||e.transferSize===0&&e.decodedBodySize>0));"
    "(function(p){if(l)Object.keys(p).forEach(function(k){c[k]=p[k]});a.init(c)})("
)


def init_script(config: Mapping[str, Any], page: Mapping[str, Any] | None = None) -> str:
    """The inline script: elasticApm.init() with `config`, and with the `page` options
    (page_options) unless the browser took the page from a cache."""
    return _init_script(script_json(dict(config)), script_json(dict(page)) if page else None)


def _init_script(config_json: str, page_json: str | None) -> str:
    if page_json is None:
        return f"{_INIT_HEAD}a.init({config_json}){_INIT_TAIL}"
    return f"{_INIT_HEAD}var c={config_json}{_WITH_PAGE_OPTIONS}{page_json}){_INIT_TAIL}"


def render_template(
    template: str,
    *,
    script_src: str | None,
    trace: PageTrace | None,
    nonce: str | None,
    config: Mapping[str, Any],
) -> str:
    """Fill a custom template. Values are hex ids, a nonce, an URL and JSON: each escaped so it is
    safe both in an attribute and in a script."""
    values = {
        "trace_id": trace.trace_id if trace else "",
        "span_id": trace.span_id if trace else "",
        "traceparent": trace.traceparent if trace else "",
        "sampled": ("true" if trace.sampled else "false") if trace else "false",
        "nonce": html.escape(nonce or "", quote=True),
        "nonce_attr": f' nonce="{html.escape(nonce, quote=True)}"' if nonce else "",
        "script_url": html.escape(script_src or "", quote=True),
        "config_json": script_json(dict(config)),
    }
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# Stand-ins for the ids while the parts around them are made.
_TRACE_MARK = "\x00trace\x00"
_SPAN_MARK = "\x00span\x00"


class Bootstrap:
    """One rule's markup, with everything but the page's ids and nonce rendered once per rules load.

    Same output as render(): JSON encoding with the escapes above cost more than anything else the
    addon does for a small page, and only the ids change from one page to the next."""

    def __init__(self, agent: AgentSpec, *, script_src: str | None, api_origins: tuple[str, ...]) -> None:
        self.agent = agent
        self.script_src = script_src
        self.api_origins = api_origins
        self._src = html.escape(script_src or "", quote=True)
        self._config_json = script_json(rule_options(agent, api_origins))
        # A traced page's markup without a nonce, around its ids, by (sampled, continued, xml): made
        # with one format, and what comes before the trace id is its fixed part (fixed_length()).
        self._around_ids: dict[tuple[bool, bool, bool], tuple[str, ...]] = {}
        if agent.kind != "elastic":
            return
        for sampled, continued, xml in itertools.product((True, False), repeat=3):
            trace = PageTrace(_TRACE_MARK, _SPAN_MARK, sampled, "", continued)
            before, *rest = _elastic_markup(self._src, None, self.init_script(trace), xml=xml).split(_TRACE_MARK)
            parts = (before, *rest[0].split(_SPAN_MARK)) if len(rest) == 1 else ()
            if len(parts) != 3:
                self._around_ids.clear()  # a mark in the rule's own text: the general path
                return
            self._around_ids[sampled, continued, xml] = parts

    def page_json(self, trace: PageTrace) -> str:
        """script_json(page_options(trace)), written directly: ids are hex, from our generator or
        from a traceparent that matched the W3C grammar."""
        span_key = "pageLoadParentId" if trace.continued else "pageLoadSpanId"
        sampling = '"pageLoadSampled":true' if trace.sampled else '"transactionSampleRate":0'
        return f'{{"pageLoadTraceId":"{trace.trace_id}","{span_key}":"{trace.span_id}",{sampling}}}'

    def init_script(self, trace: PageTrace | None) -> str:
        return _init_script(self._config_json, None if trace is None else self.page_json(trace))

    def render(self, trace: PageTrace | None, nonce: str | None = None, *, xml: bool = False) -> str:
        return self.rendered(trace, nonce, xml=xml)[0]

    def rendered(self, trace: PageTrace | None, nonce: str | None = None, *, xml: bool = False) -> tuple[str, int]:
        """The markup (for an XHTML page: `xml`), and its fixed_length()."""
        if self._around_ids and trace is not None and nonce is None:
            # Most pages: the ids between parts made once.
            before, between, after = self._around_ids[trace.sampled, trace.continued, xml]
            return f"{before}{trace.trace_id}{between}{trace.span_id}{after}", len(before)
        if self.agent.kind == "custom":
            markup = render(self.agent, script_src=self.script_src, trace=trace, api_origins=self.api_origins, nonce=nonce)
        else:
            markup = _elastic_markup(self._src, nonce, self.init_script(trace), xml=xml)
        return markup, fixed_length(markup, trace, nonce)
