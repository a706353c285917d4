"""activerules: one load of the rules, with the agent files it serves and its rendered bootstraps."""

from pathlib import Path

import pytest

from rumproxy.activerules import ActiveRules
from rumproxy.hosting import PREFIX
from rumproxy.rules import RulesError, load_rules
from tests.unit import rulesfiles

BLOG_RULE = """\
    - name: blog
      hosts: ["blog.test"]
      agent:
        config: {serviceName: blog, serverUrl: "http://apm.test:8200"}
"""


def write_rules(directory: Path, agent: str = "/* agent */") -> Path:
    return rulesfiles.write_rules(directory, BLOG_RULE, agent)


def test_a_local_agent_file_is_served_under_the_path_its_bootstrap_loads(tmp_path):
    active = ActiveRules.of(load_rules(write_rules(tmp_path)))
    shop, blog = active.rules.rules
    assert shop.agent.script_file == tmp_path / "agent.js"
    # blog's agent is the vendored bundle, a local file too
    assert set(active.script_paths) == {shop.agent.script_file, blog.agent.script_file}
    for rule in (shop, blog):
        path = active.script_paths[rule.agent.script_file]
        assert path.startswith(PREFIX) and active.hosted[path].path == path
        assert active.bootstrap(rule) is active.bootstraps[id(rule)]
        assert active.bootstrap(rule).script_src == path
    assert active.hosted[active.script_paths[shop.agent.script_file]].content == b"/* agent */"


def test_a_rule_of_an_earlier_load_gets_a_bootstrap_of_its_own(tmp_path):
    first = ActiveRules.of(load_rules(write_rules(tmp_path)))
    second = ActiveRules.of(load_rules(write_rules(tmp_path, agent="/* agent, version 2 */")))
    old_shop = first.rules.rules[0]
    bootstrap = second.bootstrap(old_shop)
    assert bootstrap.agent is old_shop.agent
    assert bootstrap is not second.bootstraps[id(second.rules.rules[0])]


def test_an_unreadable_agent_file_is_a_rules_error_naming_the_file(tmp_path):
    rules = load_rules(write_rules(tmp_path))
    (tmp_path / "agent.js").unlink()
    with pytest.raises(RulesError, match=r"rules\.yaml: cannot read an agent script: .*agent\.js"):
        ActiveRules.of(rules)
