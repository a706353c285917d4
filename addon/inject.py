"""Entry point for `mitmdump -s addon/inject.py`: the logic lives in the installed `rumproxy` package.

Without `--set rum_rules=PATH` the rule set is config/rules.yaml of this repository, found from
this file's location rather than the working directory.
"""

from pathlib import Path

from rumproxy.addon import RumInject

addons = [RumInject(default_rules=Path(__file__).resolve().parent.parent / "config" / "rules.yaml")]
