"""The rules file as a user lives with it: a bad file at start-up, edits while the proxy runs."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.harness import ADDON_SCRIPT, Mitmdump, venv_bin, wait_until
from tests.integration.conftest import write_rules

pytestmark = pytest.mark.integration

NAVIGATION = {"Sec-Fetch-Dest": "document"}


def service_name(http, proxy) -> str | None:
    body = http.get(f"{proxy.url}/page?body=basic", headers=NAVIGATION, timeout=10).text
    match = re.search(r'"serviceName":"([^"]*)"', body)
    return match.group(1) if match else None


def test_a_bad_rules_file_stops_mitmdump_with_file_line_and_key(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - hosts: [a.test]\n    agnet: {}\n")
    run = subprocess.run(
        [venv_bin("mitmdump"), "-s", str(ADDON_SCRIPT), "--listen-host", "127.0.0.1", "--listen-port", "0",
         "--set", f"confdir={tmp_path}", "--set", f"rum_rules={rules}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert f"{rules}:4: rules[0].agnet: unknown key" in output


def test_a_bad_option_value_stops_mitmdump_naming_the_option(tmp_path):
    run = subprocess.run(
        [venv_bin("mitmdump"), "-s", str(ADDON_SCRIPT), "--listen-host", "127.0.0.1", "--listen-port", "0",
         "--set", f"confdir={tmp_path}", "--set", "rum_stream_above=2.5m"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert "rum_stream_above: a size in bytes like 384k or 4m (k, m, g: powers of 1024), got '2.5m'" in output


def test_the_embedded_default_is_used_without_the_option(http, upstream, tmp_path):
    with Mitmdump(mode=f"reverse:{upstream.url}") as proxy:
        assert service_name(http, proxy) == "demo-frontend"


def test_edits_apply_while_running_and_a_bad_edit_keeps_the_last_good_rules(http, upstream, tmp_path):
    rules = write_rules(tmp_path / "rules.yaml", service_name="before")
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules) as proxy:
        assert service_name(http, proxy) == "before"

        write_rules(rules, service_name="after")
        started = time.monotonic()
        wait_until(lambda: service_name(http, proxy) == "after", timeout=5, what="the edited rules")
        assert time.monotonic() - started < 5

        mark = proxy.mark()
        rules.write_text(rules.read_text().replace("serviceName: after", "serviceName: after\n      bogus: 1"))
        proxy.wait_for_log(r"rules not reloaded, the last good rules stay active: .*rules\.yaml:\d+: rules\[0\]\.agent\.bogus", since=mark, timeout=5)
        assert service_name(http, proxy) == "after"
        assert proxy.running

        write_rules(rules, service_name="fixed")
        wait_until(lambda: service_name(http, proxy) == "fixed", timeout=5, what="the fixed rules")


def test_edits_of_the_files_the_rules_name_apply_while_running(http, upstream, tmp_path):
    """A custom template file and a local agent script are part of the rules: editing either applies
    like an edit of the rules file, and a bad template keeps the last good rules."""
    agent, template = tmp_path / "agent.js", tmp_path / "template.html"
    agent.write_text("window.agentVersion = 1;\n")
    template.write_text('<script src="{{script_url}}"></script><script>start("one", "{{trace_id}}")</script>\n')
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        'version: 1\nrules:\n  - hosts: ["127.0.0.1"]\n'
        "    agent: {kind: custom, script: agent.js, template_file: template.html}\n"
    )

    def page() -> str:
        return http.get(f"{proxy.url}/page?body=basic", headers=NAVIGATION, timeout=10).text

    def agent_url() -> str:
        return re.search(r'<script src="(/__rum/[^"]+)"', page()).group(1)

    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules) as proxy:
        assert 'start("one", "' in page()
        first_url = agent_url()
        assert http.get(proxy.url + first_url, timeout=10).text == "window.agentVersion = 1;\n"

        template.write_text('<script src="{{script_url}}"></script><script>start("two", "{{trace_id}}")</script>\n')
        wait_until(lambda: 'start("two", "' in page(), timeout=5, what="the edited template")

        mark = proxy.mark()
        template.write_text("<script>start({{bogus}})</script>\n")
        proxy.wait_for_log(r"rules not reloaded, the last good rules stay active: .*unknown placeholder \{\{bogus\}\}", since=mark, timeout=5)
        assert 'start("two", "' in page()

        agent.write_text("window.agentVersion = 2;\n")
        template.write_text('<script src="{{script_url}}"></script><script>start("three", "{{trace_id}}")</script>\n')
        wait_until(lambda: 'start("three", "' in page(), timeout=5, what="the fixed template")
        second_url = agent_url()
        assert second_url != first_url  # the URL names the file's digest: caches see the change
        assert http.get(proxy.url + second_url, timeout=10).text == "window.agentVersion = 2;\n"


def test_a_rule_may_name_an_internationalized_host_as_people_write_it(http, upstream, tmp_path):
    """Browsers send `bücher.example` as `xn--bcher-kva.example`: a rule that names the host in
    Unicode instruments its pages, and nothing else (the reverse proxy keeps the client's Host)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(write_rules(tmp_path / "base.yaml").read_text().replace('hosts: ["127.0.0.1"]', 'hosts: ["bücher.example"]'))
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules, args=["--set", "keep_host_header=true"]) as proxy:
        page = http.get(f"{proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "xn--bcher-kva.example"}, timeout=10)
        assert page.headers.get("x-rum-injected") == "rumproxy" and '"serviceName":"shop-frontend"' in page.text
        other = http.get(f"{proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "xn--bcher-kva.example.org"}, timeout=10)
        assert "x-rum-injected" not in other.headers and "elasticApm" not in other.text


def test_a_rule_may_name_a_path_as_people_write_it(http, upstream, tmp_path):
    """Browsers send /bücher/ as /b%C3%BCcher/: a rule's path glob in Unicode matches it (the app's
    404 page is HTML, which is instrumented like any page)."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(write_rules(tmp_path / "base.yaml").read_text().replace('exclude: ["/api/*"]', 'include: ["/bücher/*"]'))
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules) as proxy:
        page = http.get(f"{proxy.url}/b%C3%BCcher/roman", headers=NAVIGATION, timeout=10)
        assert page.status_code == 404 and page.headers.get("x-rum-injected") == "rumproxy"
        other = http.get(f"{proxy.url}/page?body=basic", headers=NAVIGATION, timeout=10)
        assert "x-rum-injected" not in other.headers and "elasticApm" not in other.text


def test_rules_that_do_not_name_the_host_reverse_mode_sends_are_warned_about(http, upstream, tmp_path):
    """In reverse mode mitmproxy writes the upstream's host into the Host header: rules that name
    only the public host match nothing. That is said when the rules load, and after a reload. With
    keep_host_header the other way round: a page request for a host no rule names is said."""
    upstream_host = f"127.0.0.1:{upstream.port}"
    public = tmp_path / "public.yaml"
    public.write_text(write_rules(tmp_path / "base.yaml").read_text().replace('hosts: ["127.0.0.1"]', 'hosts: ["shop.example.com"]'))
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=public) as proxy:
        proxy.wait_for_log(re.escape(f"reverse mode sends the Host of {upstream_host} upstream and no rule in {public} names it"), timeout=10)
        assert "x-rum-injected" not in http.get(f"{proxy.url}/page?body=basic", headers=NAVIGATION, timeout=10).headers

        mark = proxy.mark()
        write_rules(public)  # names 127.0.0.1: no warning after this reload
        wait_until(lambda: "rules reloaded" in proxy.log_text(since=mark), timeout=5, what="the reload")
        assert "reverse mode sends the Host" not in proxy.log_text(since=mark)

    with Mitmdump(mode=f"reverse:{upstream.url}", rules=public, args=["--set", "keep_host_header=true"]) as proxy:
        public.write_text(public.read_text().replace('hosts: ["127.0.0.1"]', 'hosts: ["shop.example.com"]'))
        proxy.wait_for_log("rules reloaded", timeout=5)
        assert "reverse mode sends the Host" not in proxy.log_text()

        # With keep_host_header the Host is the browser's: a page request for one no rule names is
        # said, once per host; the public host the rules name is instrumented.
        for _ in range(2):
            other = http.get(f"{proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "www.example.com"}, timeout=10)
            assert "x-rum-injected" not in other.headers
        page = http.get(f"{proxy.url}/page?body=basic", headers={**NAVIGATION, "Host": "shop.example.com"}, timeout=10)
        assert page.headers.get("x-rum-injected") == "rumproxy"
        unnamed = f"reverse mode keeps the Host browsers send, and no rule in {public} names www.example.com:80"
        proxy.wait_for_log(re.escape(unnamed), timeout=5)
        assert proxy.log_text().count("reverse mode keeps the Host browsers send") == 1
