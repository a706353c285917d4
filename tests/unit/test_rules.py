"""The rule-set contract (../shared/CONFIG.md): parsing, validation messages, matching."""

from __future__ import annotations

import json

import textwrap
from pathlib import Path

import pytest

from rumproxy import rules as rules_module
from rumproxy.rules import REPO_ROOT, RulesError, load_rules, parse_rules

AGENT_FILE = "agent.js"


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / AGENT_FILE).write_text("window.elasticApm = {init: function () {}};\n")
    return tmp_path


def parse(text: str, directory: Path):
    path = directory / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return load_rules(path)


def error_of(text: str, directory: Path) -> str:
    with pytest.raises(RulesError) as info:
        parse(text, directory)
    return str(info.value)


MINIMAL = """\
version: 1
rules:
  - name: shop
    hosts: [shop.example.com]
    agent:
      script: agent.js
      config:
        serviceName: shop-frontend
"""


def test_embedded_default_rules_load():
    rules = load_rules(REPO_ROOT / "config" / "rules.yaml")
    assert rules.match("127.0.0.1", 5000, "/") is not None
    assert rules.match("localhost", 8080, "/shop/") is not None
    assert rules.match("127.0.0.1", 5000, "/api/items") is None
    assert rules.match("example.com", 80, "/") is None


def test_minimal_rule_defaults(rules_dir):
    rule = parse(MINIMAL, rules_dir).rules[0]
    assert rule.name == "shop"
    assert rule.inject is True
    assert rule.trace.propagate is True and rule.trace.sample_rate == 1.0
    assert rule.agent.kind == "elastic"
    assert rule.agent.script_file == (rules_dir / AGENT_FILE).resolve()
    assert rule.agent.script_url is None
    assert dict(rule.agent.config) == {"serviceName": "shop-frontend"}


def test_the_config_md_example_parses(rules_dir):
    rules = parse(
        """\
        version: 1
        defaults:
          agent:
            config:
              serverUrl: http://localhost:8200
        rules:
          - name: shop
            hosts:
              - shop.example.com
              - "*.example.com"
              - "127.0.0.1:8000"
            paths:
              include: ["/*"]
              exclude: ["/admin/*", "/api/*"]
            inject: true
            agent:
              kind: elastic
              script: https://unpkg.com/@elastic/apm-rum@5.17.5/dist/bundles/elastic-apm-rum.umd.min.js
              config:
                serviceName: shop-frontend
                serverUrl: http://localhost:8200
                environment: dev
            trace:
              propagate: true
              sample_rate: 1.0
        """,
        rules_dir,
    )
    rule = rules.rules[0]
    assert rule.agent.script_url.startswith("https://")
    assert rules.match("SHOP.example.com", 443, "/cart") is rule
    assert rules.match("eu.example.com", 80, "/") is rule
    assert rules.match("127.0.0.1", 8000, "/") is rule
    assert rules.match("127.0.0.1", 8001, "/") is None
    assert rules.match("shop.example.com", 443, "/admin/users") is None
    assert rules.match("shop.example.com", 443, "/api/items") is None
    assert rules.match("example.org", 443, "/") is None


def test_an_internationalized_host_matches_as_browsers_write_it(rules_dir):
    """Browsers send an IDN host in its ASCII form (Host, :authority, CONNECT): a rule may name it
    either way, and a label with ß or ς matches both the IDNA 2008 and the IDNA 2003 form."""
    rules = parse(
        """\
        version: 1
        rules:
          - name: books
            hosts: ["bücher.example", "*.пример.рф:8443"]
            agent: {script: agent.js, config: {serviceName: books}}
          - name: street
            hosts: ["straße.example"]
            agent: {script: agent.js, config: {serviceName: street}}
          - name: ascii
            hosts: ["xn--caf-dma.example"]
            agent: {script: agent.js, config: {serviceName: cafe}}
        """,
        rules_dir,
    )
    books, street, ascii_named = rules.rules
    assert rules.match("xn--bcher-kva.example", 443, "/") is books
    assert rules.match("XN--BCHER-KVA.example", 443, "/") is books
    assert rules.match("bücher.example", 443, "/") is books  # a client that sends it as UTF-8
    assert rules.match("shop.xn--e1afmkfd.xn--p1ai", 8443, "/") is books
    assert rules.match("shop.xn--e1afmkfd.xn--p1ai", 443, "/") is None
    assert rules.match("xn--strae-oqa.example", 80, "/") is street  # IDNA 2008, as browsers write it
    assert rules.match("strasse.example", 80, "/") is street  # IDNA 2003
    assert rules.match("xn--caf-dma.example", 80, "/") is ascii_named
    assert rules.match("xn--bcher-kva.example.org", 443, "/") is None


def test_api_origins_are_written_as_the_agent_compares_them(rules_dir):
    """The agent compares them as strings with the origin of a request's URL as the page's code
    wrote it, lower-cased and without a default port: an internationalized host may be written
    either way there."""
    rules = parse(
        """\
        version: 1
        rules:
          - hosts: [a.test]
            agent: {script: agent.js, config: {serviceName: a}}
            trace:
              api_origins: ["HTTPS://API.Example.com:443", "https://api.bücher.example", "http://[::1]:8080", "http://a.test:80"]
        """,
        rules_dir,
    )
    assert rules.rules[0].trace.api_origins == (
        "https://api.example.com", "https://api.bücher.example", "https://api.xn--bcher-kva.example", "http://[::1]:8080",
        "http://a.test",
    )  # fmt: skip


def test_a_path_matches_as_people_write_it_and_as_browsers_send_it(rules_dir):
    """Browsers percent-encode a path's non-ASCII characters (UTF-8): a glob may name them either
    way, and an exclusion holds either way."""
    rules = parse(
        """\
        version: 1
        rules:
          - hosts: [shop.test]
            paths:
              include: ["/bücher/*", "/b%C3%BCcher-raw/*", "/my page"]
              exclude: ["/bücher/intern/*"]
            agent: {script: agent.js, config: {serviceName: shop}}
        """,
        rules_dir,
    )
    [rule] = rules.rules
    assert rules.match("shop.test", 80, "/b%C3%BCcher/roman") is rule
    assert rules.match("shop.test", 80, "/b%c3%bccher/roman") is rule  # lower-case hex
    assert rules.match("shop.test", 80, "/bücher/roman") is rule  # a client that sends it as UTF-8
    assert rules.match("shop.test", 80, "/b%C3%BCcher-raw/roman") is rule
    assert rules.match("shop.test", 80, "/my%20page") is rule
    assert rules.match("shop.test", 80, "/b%C3%BCcher/intern/plan") is None
    assert rules.match("shop.test", 80, "/bucher/roman") is None


def test_defaults_deep_merge_rule_wins(rules_dir):
    rules = parse(
        """\
        version: 1
        defaults:
          agent:
            script: agent.js
            config: {serverUrl: "http://apm:8200", environment: prod}
          trace: {sample_rate: 0.5}
        rules:
          - hosts: [a.test]
            agent:
              config: {serviceName: a, environment: staging}
          - hosts: [b.test]
            agent:
              config: {serviceName: b}
            trace: {sample_rate: 0.25}
        """,
        rules_dir,
    )
    a, b = rules.rules
    assert dict(a.agent.config) == {"serverUrl": "http://apm:8200", "environment": "staging", "serviceName": "a"}
    assert a.trace.sample_rate == 0.5
    assert b.trace.sample_rate == 0.25
    assert a.name == "rule 1"


def test_first_match_wins_and_star_matches_all(rules_dir):
    rules = parse(
        """\
        version: 1
        defaults: {agent: {script: agent.js, config: {serviceName: x}}}
        rules:
          - name: first
            hosts: ["*"]
            paths: {include: ["/first/*"]}
          - name: second
            hosts: ["*"]
        """,
        rules_dir,
    )
    assert rules.match("anything.test", 1, "/first/page").name == "first"
    assert rules.match("anything.test", 1, "/other").name == "second"


def test_matching_remembers_sites_but_not_without_bound(rules_dir, monkeypatch):
    """The rules of a site are looked up once per (host, port) as requests write it; a proxy that
    sees ever new hosts keeps at most SITES_REMEMBERED of them."""
    rules = parse(
        """\
        version: 1
        defaults: {agent: {script: agent.js, config: {serviceName: x}}}
        rules:
          - name: shop
            hosts: ["shop.test", "*.shop.test:8443"]
            paths: {exclude: ["/api/*"]}
        """,
        rules_dir,
    )
    for _ in range(2):  # the second time from what the first remembered
        assert rules.match("Shop.Test.", 80, "/").name == "shop"
        assert rules.match("a.shop.test", 8443, "/cart").name == "shop"
        assert rules.match("a.shop.test", 443, "/cart") is None
        assert rules.match("shop.test", 80, "/api/items") is None
        assert rules.match("other.test", 80, "/") is None
    monkeypatch.setattr(rules_module, "SITES_REMEMBERED", 3)
    for index in range(10):
        assert rules.match(f"h{index}.test", 80, "/") is None
        assert len(rules._by_site) <= 3
    assert rules.match("shop.test", 80, "/").name == "shop"


def test_custom_kind_template(rules_dir):
    rules = parse(
        """\
        version: 1
        rules:
          - hosts: [a.test]
            agent:
              kind: custom
              template: '<script{{nonce_attr}}>window.t="{{ traceparent }}"</script>'
        """,
        rules_dir,
    )
    assert rules.rules[0].agent.template.startswith("<script")


def test_the_rules_know_the_files_they_read(rules_dir):
    (rules_dir / "agent.js").write_text("/* agent */")
    (rules_dir / "template.html").write_text("<script>start({{config_json}})</script>")
    rules = parse(
        """\
        version: 1
        rules:
          - hosts: [a.test]
            agent: {script: agent.js, config: {serviceName: a}}
          - hosts: [b.test]
            agent: {kind: custom, template_file: template.html}
          - hosts: [c.test]
            agent: {script: "https://cdn.test/rum.js", config: {serviceName: c}}
        """,
        rules_dir,
    )
    assert rules.read_files() == {(rules_dir / "agent.js").resolve(), (rules_dir / "template.html").resolve()}
    assert rules.rules[1].agent.template == "<script>start({{config_json}})</script>"


def test_an_unknown_placeholder_in_a_template_file_names_that_key_and_the_line(rules_dir):
    (rules_dir / "template.html").write_text("<script>\n  start({{config_json}}, {{ spanid }})\n</script>\n")
    message = error_of(
        "version: 1\nrules:\n  - hosts: [a.test]\n    agent:\n      kind: custom\n      template_file: template.html\n",
        rules_dir,
    )
    assert ":6: rules[0].agent.template_file: unknown placeholder {{ spanid }}, line 2 of the template; known: " in message


def test_an_unknown_placeholder_in_a_template_names_its_line(rules_dir):
    message = error_of(
        "version: 1\nrules:\n  - hosts: [a.test]\n    agent:\n      kind: custom\n      template: |\n"
        "        <script src=\"{{script_url}}\"></script>\n        <script>go({{trace}})</script>\n",
        rules_dir,
    )
    assert ":6: rules[0].agent.template: unknown placeholder {{trace}}, line 2 of the template; known: config_json, " in message


@pytest.mark.parametrize(
    "template",
    [
        '<script src="{{script_url}}" crossorigin="anonymous"{{nonce_attr}}></script>',
        "<script{{nonce_attr}}><![CDATA[if (window.a && a.start) a.start({{config_json}})]]></script>",
        '<meta name="traceparent" content="{{traceparent}}" />',
    ],
)
def test_a_custom_template_for_xhtml_pages_is_checked_to_be_well_formed_xml(rules_dir, template):
    """xhtml: true puts the template into pages parsed as XML: one that is well-formed loads, and
    the same template with a bare "&" or an attribute without a value does not (a rule without
    xhtml keeps HTML's freedom)."""
    def rules_text(xhtml: str, text: str) -> str:
        return f"version: 1\nrules:\n  - hosts: [a.test]\n    xhtml: {xhtml}\n    agent: {{kind: custom, template: {json.dumps(text)}}}\n"

    assert parse(rules_text("true", template), rules_dir).rules[0].agent.template == template
    broken = template.replace('="anonymous"', "").replace("<![CDATA[", "").replace("]]>", "").replace(" />", ">")
    assert "rules[0].agent.template: not well-formed XML" in error_of(rules_text("true", broken), rules_dir)
    assert parse(rules_text("false", broken), rules_dir).rules[0].agent.template == broken


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nrules:\n  - hosts: [a.test]\n    agnet: {}\n", ":4: rules[0].agnet: unknown key; allowed here: name, hosts"),
        ("version: 1\nrules:\n  - hosts: a.test\n", ":3: rules[0].hosts: must be a list"),
        ("version: 1\nrules:\n  - hosts: [a.test]\n    inject: yes\n", ":4: rules[0].inject: must be a boolean"),
        ("version: 1\nrules:\n  - paths: {}\n", ":3: rules[0].hosts: required"),
        ("version: 2\nrules: []\n", ":1: version: only version 1"),
        ("rules: []\n", "version: missing"),
        ("version: 1\n", "rules: missing"),
        ("", "the file is empty"),
        ("version: 1\nrules:\n  - hosts: [a.test\n", "invalid YAML"),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {script: agent.js}\n",
            "rules[0].agent.config.serviceName: required",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent:\n      script: agent.js\n      config:\n        serviceName: 'bad/name'\n",
            ":7: rules[0].agent.config.serviceName: required: letters, digits",
        ),
        ("version: 1\nrules:\n  - hosts: ['http://a.test/']\n", ":3: rules[0].hosts: a host glob"),
        ("version: 1\nrules:\n  - hosts: ['a.test:99999']\n", "port out of range"),
        ("version: 1\nrules:\n  - hosts: ['bü*.example']\n", ":3: rules[0].hosts: a glob inside a non-ASCII label"),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    paths:\n      include: ['admin/*']\n",
            ":5: rules[0].paths.include: a path glob starts with '/'",
        ),
        ("version: 1\nrules:\n  - hosts: [a.test]\n    agent: {kind: otel}\n", "'otel' is reserved for the OpenTelemetry web agent"),
        ("version: 1\nrules:\n  - hosts: [a.test]\n    agent: {kind: nope}\n", "unknown agent kind 'nope'; allowed: elastic, custom"),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {script: missing.js, config: {serviceName: x}}\n",
            "rules[0].agent.script: no such file",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {script: 'ftp://x/a.js', config: {serviceName: x}}\n",
            "an http(s) URL or a local file path",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {script: agent.js, config: {serviceName: x}}\n    trace: {sample_rate: 2}\n",
            ":5: rules[0].trace.sample_rate: a number from 0.0 to 1.0",
        ),
        ("version: 1\nrules:\n  - hosts: [a.test]\n    agent: {kind: custom}\n", "kind: custom needs agent.template"),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {kind: custom, template: '{{bogus}}'}\n",
            "unknown placeholder {{bogus}}",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    xhtml: true\n    agent:\n      kind: custom\n"
            "      template: |\n        <script src=\"{{script_url}}\" async></script>\n",
            ":7: rules[0].agent.template: not well-formed XML, which xhtml: true needs",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    xhtml: true\n    agent:\n      kind: custom\n"
            "      template: |\n        <script>\n          if (window.a && a.start) a.start()\n        </script>\n",
            "line 2 of the template: 'if (window.a && a.start) a.start()'",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {script: agent.js, config: {serviceName: x}}\n    trace: {api_origins: ['https://api.test/v1']}\n",
            "rules[0].trace.api_origins: an origin",
        ),
        (
            "version: 1\nrules:\n  - hosts: [a.test]\n    agent: {script: agent.js, config: {serviceName: x}}\n    trace: {api_origins: ['https://user@api.test']}\n",
            ":5: rules[0].trace.api_origins: an origin",
        ),
        ("version: 1\nrules:\n  - hosts: [a.test]\n    hosts: [b.test]\n", "invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(rules_dir, text, expected):
    message = error_of(text, rules_dir)
    assert message.startswith(str(rules_dir / "rules.yaml"))
    assert expected in message


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(RulesError, match="cannot read the rules file"):
        load_rules(tmp_path / "nope.yaml")


def test_parse_without_file_uses_placeholder_name():
    with pytest.raises(RulesError, match=r"^<rules>:1: version"):
        parse_rules("version: 3\nrules: []\n")


@pytest.mark.parametrize("example", sorted((REPO_ROOT / "config" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_loads(example):
    assert load_rules(example).rules
