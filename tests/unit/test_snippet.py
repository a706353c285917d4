"""The bootstrap markup: escaping for the script context, trace ids in the init, custom templates."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumproxy.rules import AgentSpec
from rumproxy.snippet import Bootstrap, PageTrace, agent_config, fixed_length, init_script, page_options, render, rule_options, script_json
from tests.bootstrap import init_options

TRACE = PageTrace(
    trace_id="0af7651916cd43dd8448eb211c80319c",
    span_id="b7ad6b7169203331",
    sampled=True,
    traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)


def elastic(config=None, script_url="https://cdn.test/rum.js") -> AgentSpec:
    return AgentSpec(kind="elastic", script_url=script_url, script_file=None, config=config or {"serviceName": "shop"}, template=None)


def init_config(markup: str) -> dict:
    assert markup.endswith("}})();</script>"), markup
    return init_options(markup)


def test_elastic_bootstrap_shape():
    markup = render(elastic(), script_src="https://cdn.test/rum.js", trace=TRACE)
    assert markup.startswith('<script src="https://cdn.test/rum.js" crossorigin></script><script>')
    config = init_config(markup)
    assert config == {
        "serviceName": "shop",
        "pageLoadTraceId": TRACE.trace_id,
        "pageLoadSpanId": TRACE.span_id,
        "pageLoadSampled": True,
    }


def test_unsampled_page_load_samples_nothing():
    unsampled = PageTrace(TRACE.trace_id, TRACE.span_id, False, TRACE.traceparent[:-2] + "00")
    config = agent_config(elastic({"serviceName": "s", "transactionSampleRate": 0.8}), unsampled, ())
    assert "pageLoadSampled" not in config
    assert config["transactionSampleRate"] == 0


def test_continued_trace_makes_page_load_a_child_of_the_incoming_parent():
    continued = PageTrace(TRACE.trace_id, TRACE.span_id, True, TRACE.traceparent, continued=True)
    config = agent_config(elastic(), continued, ())
    assert config["pageLoadParentId"] == TRACE.span_id
    assert "pageLoadSpanId" not in config


def test_api_origins_default_distributed_tracing_origins_only_when_unset():
    assert agent_config(elastic(), None, ("https://api.test",))["distributedTracingOrigins"] == ["https://api.test"]
    own = elastic({"serviceName": "s", "distributedTracingOrigins": ["https://x.test"]})
    assert agent_config(own, None, ("https://api.test",))["distributedTracingOrigins"] == ["https://x.test"]


def test_nonce_on_both_tags():
    markup = render(elastic(), script_src="/__rum/x/rum.js", trace=None, nonce="abc+/=")
    assert markup.count(' nonce="abc+/="') == 2


def test_script_src_is_attribute_escaped():
    markup = render(elastic(), script_src='https://cdn.test/a.js?x="><script>', trace=None)
    assert '"><script>' not in markup.split("</script>")[0]


@given(st.recursive(st.text() | st.integers() | st.booleans() | st.none(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_any_config_value_stays_inside_the_script(value):
    markup = render(elastic({"serviceName": "s", "labels": value}), script_src="/a.js", trace=TRACE)
    inline = markup.split("<script>", 1)[1]
    body = inline[: -len("</script>")]
    assert markup.isascii()
    lowered = body.lower()
    assert "</script" not in lowered and "<!--" not in lowered and "<script" not in lowered
    assert init_config(markup)["labels"] == value


def test_script_json_escapes_line_separators_and_markup():
    assert script_json("\u2028\u2029</script><!--&") == '"\\u2028\\u2029\\u003c/script\\u003e\\u003c!--\\u0026"'


def test_custom_template_placeholders():
    agent = AgentSpec(
        kind="custom",
        script_url=None,
        script_file=None,
        config={"serviceName": "s"},
        template='<script src="{{script_url}}"{{nonce_attr}}></script><script{{ nonce_attr }}>go("{{trace_id}}","{{span_id}}","{{traceparent}}",{{sampled}},"{{nonce}}",{{config_json}})</script>',
    )
    markup = render(agent, script_src="/__rum/h/a.js", trace=TRACE, nonce="n1")
    assert markup == (
        '<script src="/__rum/h/a.js" nonce="n1"></script><script nonce="n1">'
        f'go("{TRACE.trace_id}","{TRACE.span_id}","{TRACE.traceparent}",true,"n1",'
        + json.dumps(agent_config(agent, TRACE, ()), separators=(",", ":"))
        + ")</script>"
    )


def test_custom_template_without_trace_renders_empty_ids():
    agent = AgentSpec(kind="custom", script_url=None, script_file=None, config={}, template="[{{trace_id}}|{{sampled}}|{{nonce_attr}}]")
    assert render(agent, script_src=None, trace=None) == "[|false|]"


_CONFIG_KEYS = st.sampled_from(
    ["serviceName", "serverUrl", "transactionSampleRate", "distributedTracingOrigins", "pageLoadSampled", "labels", "x</script>"]
)
_CONFIG_VALUES = st.one_of(st.integers(), st.floats(allow_nan=False), st.text(max_size=8), st.lists(st.text(max_size=4), max_size=2))
_TRACES = st.one_of(
    st.none(),
    st.builds(
        PageTrace,
        trace_id=st.just(TRACE.trace_id),
        span_id=st.just(TRACE.span_id),
        sampled=st.booleans(),
        traceparent=st.just(TRACE.traceparent),
        continued=st.booleans(),
    ),
)


@given(
    config=st.dictionaries(_CONFIG_KEYS, _CONFIG_VALUES, max_size=5),
    trace=_TRACES,
    api_origins=st.lists(st.sampled_from(["https://api.test", "http://x.test:8080"]), max_size=2, unique=True).map(tuple),
    nonce=st.one_of(st.none(), st.sampled_from(["n1", 'a"b'])),
)
def test_bootstrap_renders_exactly_what_render_does(config, trace, api_origins, nonce):
    agent = AgentSpec(kind="elastic", script_url="https://cdn.test/rum.js?a=1&b=2", script_file=None, config=config, template=None)
    bootstrap = Bootstrap(agent, script_src=agent.script_url, api_origins=api_origins)
    for as_xml in (False, True):
        markup = render(agent, script_src=agent.script_url, trace=trace, api_origins=api_origins, nonce=nonce, xml=as_xml)
        assert bootstrap.render(trace, nonce, xml=as_xml) == markup
        assert bootstrap.rendered(trace, nonce, xml=as_xml) == (markup, fixed_length(markup, trace, nonce))
    assert bootstrap.init_script(trace) == init_script(rule_options(agent, api_origins), page_options(trace))


def xml_scripts(markup: str) -> list[xml.etree.ElementTree.Element]:
    """The markup's elements as an XML parser reads them inside an XHTML page (raises if it is not
    well-formed)."""
    root = xml.etree.ElementTree.fromstring(f'<head xmlns="http://www.w3.org/1999/xhtml">{markup}</head>')
    return list(root)


@given(
    config=st.dictionaries(_CONFIG_KEYS, _CONFIG_VALUES, max_size=5),
    trace=st.one_of(st.none(), _TRACES),
    nonce=st.one_of(st.none(), st.sampled_from(["n1", 'a"b<&>'])),
)
def test_the_markup_for_an_xhtml_page_is_well_formed_xml_with_the_same_script(config, trace, nonce):
    """An XHTML page is parsed as XML: an attribute without a value (crossorigin) or a bare "&" (the
    init's "&&") would stop the page. The script's text, CDATA there, is the HTML markup's, so a CSP
    hash of it holds for both."""
    agent = AgentSpec(kind="elastic", script_url="https://cdn.test/rum.js?a=1&b=2", script_file=None, config=config, template=None)
    bootstrap = Bootstrap(agent, script_src=agent.script_url, api_origins=())
    loader, init = xml_scripts(bootstrap.render(trace, nonce, xml=True))
    assert loader.get("src") == "https://cdn.test/rum.js?a=1&b=2"
    assert loader.get("crossorigin") == "anonymous"  # what a bare crossorigin means in HTML
    assert loader.get("nonce") == init.get("nonce") == nonce
    assert init.text == bootstrap.init_script(trace)
    html_markup = bootstrap.render(trace, nonce)
    assert f">{init.text}</script>" in html_markup
    assert init_options(html_markup) == init_options(init.text + "</script>")


def test_the_fixed_part_ends_before_the_first_value_of_the_page_itself():
    agent = AgentSpec(kind="elastic", script_url="https://cdn.test/rum.js", script_file=None, config={"serviceName": "s"}, template=None)
    bootstrap = Bootstrap(agent, script_src=agent.script_url, api_origins=())
    markup, fixed = bootstrap.rendered(TRACE)
    assert markup[fixed:].startswith(TRACE.trace_id) and TRACE.span_id not in markup[:fixed]
    other = PageTrace("1" * 32, "2" * 16, TRACE.sampled, "", TRACE.continued)
    assert bootstrap.rendered(other)[0][:fixed] == markup[:fixed]
    nonced, fixed = bootstrap.rendered(TRACE, "n0nce")
    assert nonced[fixed:].startswith("n0nce")
    untraced, fixed = bootstrap.rendered(None)
    assert fixed == len(untraced)  # nothing of its own: all of it is the same on every page


def test_a_page_from_the_cache_gets_the_rules_options_without_the_trace():
    agent = elastic({"serviceName": "s", "transactionSampleRate": 0.5})
    unsampled = PageTrace(TRACE.trace_id, TRACE.span_id, False, TRACE.traceparent[:-2] + "00")
    for trace in (TRACE, unsampled):
        markup = Bootstrap(agent, script_src="/a.js", api_origins=("https://api.test",)).render(trace)
        assert init_options(markup) == agent_config(agent, trace, ("https://api.test",))
        assert init_options(markup, from_cache=True) == {
            "serviceName": "s",
            "transactionSampleRate": 0.5,
            "distributedTracingOrigins": ["https://api.test"],
        }
    untraced = Bootstrap(agent, script_src="/a.js", api_origins=()).render(None)
    assert "getEntriesByType" not in untraced  # nothing to leave out


# What Navigation Timing says while the page's head runs (Chromium, measured; Firefox and Safari
# have no deliveryType, and fill the sizes of a network load when it ends).
NAVIGATIONS = {
    "network, arriving": ({"type": "navigate", "transferSize": 300, "encodedBodySize": 0, "decodedBodySize": 0, "deliveryType": ""}, True),
    "network, arrived (no deliveryType)": ({"type": "navigate", "transferSize": 1300, "encodedBodySize": 1000, "decodedBodySize": 1000}, True),
    "network, sizes not yet known": ({"type": "navigate", "transferSize": 0, "encodedBodySize": 0, "decodedBodySize": 0}, True),
    "prefetched": ({"type": "navigate", "transferSize": 300, "encodedBodySize": 0, "decodedBodySize": 0, "deliveryType": "navigational-prefetch"}, True),
    "fresh in the cache": ({"type": "navigate", "transferSize": 0, "encodedBodySize": 1000, "decodedBodySize": 1000, "deliveryType": "cache"}, False),
    "fresh in the cache (no deliveryType)": ({"type": "navigate", "transferSize": 0, "encodedBodySize": 1000, "decodedBodySize": 1000}, False),
    "back, from the cache": ({"type": "back_forward", "transferSize": 0, "encodedBodySize": 1000, "decodedBodySize": 1000, "deliveryType": "cache"}, False),
    "revalidated (304)": ({"type": "navigate", "transferSize": 300, "encodedBodySize": 1000, "decodedBodySize": 1000, "deliveryType": "cache"}, False),
    "a service worker fetched it": ({"type": "navigate", "transferSize": 300, "encodedBodySize": 0, "decodedBodySize": 0, "deliveryType": "", "workerStart": 2}, True),
    "a service worker's Cache Storage": ({"type": "navigate", "transferSize": 0, "encodedBodySize": 1000, "decodedBodySize": 1000, "deliveryType": "cache-storage", "workerStart": 2}, False),
    "no navigation entry": (None, True),
    "no performance API": ("none", True),
}


def run_bootstrap_in_node(markup: str, navigation: dict | str | None) -> dict:
    """What the inline script passes to elasticApm.init() under a stub of the browser's APIs."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no `node` on PATH (scripts/setup installs npm, which brings it)")
    inline = markup.split("<script>", 1)[1].removesuffix("</script>")
    if navigation == "none":
        performance = "undefined"
    else:
        entries = [] if navigation is None else [navigation]
        performance = "{getEntriesByType: function (t) { return t === 'navigation' ? %s : []; }}" % json.dumps(entries)
    program = (
        "var seen = null;"
        "(function (window, performance) {" + inline + "})"
        "({elasticApm: {init: function (c) { seen = c; }}, performance: %s}, %s);"
        "process.stdout.write(JSON.stringify(seen));"
    ) % (performance, performance)
    result = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(result.stdout)


@pytest.mark.parametrize("case", list(NAVIGATIONS))
def test_the_bootstrap_leaves_the_trace_out_only_for_a_page_from_the_cache(case):
    navigation, linked = NAVIGATIONS[case]
    agent = elastic({"serviceName": "s"})
    markup = Bootstrap(agent, script_src="/a.js", api_origins=()).render(TRACE)
    expected = init_options(markup) if linked else init_options(markup, from_cache=True)
    assert run_bootstrap_in_node(markup, navigation) == expected
    assert ("pageLoadTraceId" in expected) is linked
