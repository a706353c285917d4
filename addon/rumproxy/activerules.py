"""The rule set in force and what each load derives from it: the local agent files the proxy
serves, and each rule's bootstrap markup. A reload replaces all of it in one assignment, so a flow
sees one load or the other, never a mix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rumproxy import hosting, snippet
from rumproxy.planning import bootstrap_for
from rumproxy.rules import Rule, RuleSet, RulesError


@dataclass(frozen=True)
class ActiveRules:
    rules: RuleSet
    hosted: dict[str, hosting.HostedFile]  # by URL path
    script_paths: dict[Path, str]  # local agent file -> its URL path
    bootstraps: dict[int, snippet.Bootstrap]  # by id() of a rule of `rules`, which keeps them alive

    @classmethod
    def of(cls, rules: RuleSet) -> ActiveRules:
        """Read the rules' local agent files and render their bootstraps; RulesError if a file
        cannot be read."""
        files = {rule.agent.script_file for rule in rules.rules if rule.agent.script_file is not None}
        try:
            hosted = hosting.host_files(sorted(files))
        except OSError as e:
            raise RulesError(f"{rules.source}: cannot read an agent script: {e}") from None
        script_paths = {file: entry.path for file, entry in hosted.items()}
        return cls(
            rules=rules,
            hosted={entry.path: entry for entry in hosted.values()},
            script_paths=script_paths,
            bootstraps={id(rule): bootstrap_for(rule, script_paths) for rule in rules.rules},
        )

    def bootstrap(self, rule: Rule) -> snippet.Bootstrap:
        bootstrap = self.bootstraps.get(id(rule))
        if bootstrap is None or bootstrap.agent is not rule.agent:
            # The rules were reloaded while this flow was on its way: render from its own rule.
            bootstrap = bootstrap_for(rule, self.script_paths)
        return bootstrap
