"""Rules files for the unit tests: the shop rule (a local agent file, agent.js, next to the rules),
then whatever rules a test adds."""

from __future__ import annotations

import textwrap
from pathlib import Path

INTAKE = "http://apm.test:8200"  # the shop rule's serverUrl
SHOP_RULE = f"""\
- name: shop
  hosts: ["shop.test"]
  agent:
    script: agent.js
    config: {{serviceName: shop, serverUrl: "{INTAKE}"}}
"""


def write_rules(directory: Path, more_rules: str = "", agent: str = "/* agent */") -> Path:
    """agent.js and rules.yaml in `directory`: the shop rule, then `more_rules` (a YAML list)."""
    (directory / "agent.js").write_text(agent)
    path = directory / "rules.yaml"
    rules = SHOP_RULE + textwrap.dedent(more_rules)
    path.write_text("version: 1\nrules:\n" + textwrap.indent(rules, "  "))
    return path
