"""Reading the rules YAML into values that remember their line, and checking keys and types.

Every error names the file, the line and the key, and says what is allowed, because the rules
file is the product's user interface.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError


class RulesError(ValueError):
    """A rules file that cannot be used; the message is meant for the user as it stands."""


@dataclasses.dataclass(frozen=True)
class Located:
    """A YAML value with where it was written; maps hold Located values, lists too."""

    value: Any
    line: int
    file: str

    def error(self, key: str, message: str) -> RulesError:
        return RulesError(f"{self.file}:{self.line}: {key}: {message}")

    def get(self, key: str) -> Located | None:
        return self.value.get(key) if isinstance(self.value, dict) else None

    def get_value(self, key: str, default: Any) -> Any:
        item = self.get(key)
        return default if item is None else item.value

    def get_path_value(self, path: tuple[str, ...], default: Any) -> Any:
        item: Located | None = self
        for key in path:
            item = item.get(key) if item is not None else None
        return default if item is None else item.value


# A schema is a type name, a dict of key -> schema (a map with known keys), or a one-item list (a list of that).
_BOOL, _STR, _NUMBER, _ANY_MAP = "a boolean (true/false)", "a string", "a number", "a mapping"
AGENT_KINDS = ("elastic", "custom")
RULE_SCHEMA: dict[str, Any] = {
    "name": _STR,
    "hosts": [_STR],
    "paths": {"include": [_STR], "exclude": [_STR]},
    "inject": _BOOL,
    "xhtml": _BOOL,
    "csp": {"adjust": _BOOL},
    "agent": {"kind": _STR, "script": _STR, "config": _ANY_MAP, "template": _STR, "template_file": _STR},
    "trace": {
        "propagate": _BOOL,
        "sample_rate": _NUMBER,
        "server_timing": _BOOL,
        "response_headers": _BOOL,
        "timing_allow_origin": _STR,
        "api_origins": [_STR],
    },
}
DOCUMENT_SCHEMA: dict[str, Any] = {"version": _NUMBER, "defaults": RULE_SCHEMA, "rules": [RULE_SCHEMA]}


def load_document(text: str, path: Path | None) -> dict[str, Located]:
    file = str(path) if path else "<rules>"
    try:
        raw = YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        problem = " ".join(str(part) for part in (e.context, e.problem) if part)
        raise RulesError(f"{file}:{line}: invalid YAML: {problem}") from None
    except YAMLError as e:
        raise RulesError(f"{file}: invalid YAML: {e}") from None
    if raw is None:
        raise RulesError(f"{file}:1: the file is empty; it needs 'version: 1' and a 'rules:' list")
    document = _locate(raw, 1, file)
    _check(document, DOCUMENT_SCHEMA, "")
    values = document.value
    if "version" not in values:
        raise document.error("version", "missing; write 'version: 1' at the top")
    if values["version"].value != 1:
        raise values["version"].error("version", f"only version 1 is known, got {values['version'].value!r}")
    if "rules" not in values:
        raise document.error("rules", "missing; add a 'rules:' list (see the README's rule-set reference)")
    for index, rule in enumerate(values["rules"].value):
        if "hosts" not in rule.value:
            raise rule.error(f"rules[{index}].hosts", "required: a list of host globs such as ['shop.example.com', '*.example.com']")
        if not rule.value["hosts"].value:
            raise rule.value["hosts"].error(f"rules[{index}].hosts", "must name at least one host glob")
    for where, section in [("defaults", values.get("defaults"))] + [
        (f"rules[{i}]", rule) for i, rule in enumerate(values["rules"].value)
    ]:
        agent = section.get("agent") if section else None
        kind = agent.get("kind") if agent else None
        if kind is not None and kind.value not in AGENT_KINDS:
            reason = (
                "'otel' is reserved for the OpenTelemetry web agent, which is not supported yet"
                if kind.value == "otel"
                else f"unknown agent kind {kind.value!r}"
            )
            raise kind.error(f"{where}.agent.kind", f"{reason}; allowed: {', '.join(AGENT_KINDS)}")
    return values


def merge(defaults: Located | None, rule: Located) -> Located:
    """`defaults` deep-merged under `rule`: the rule's own keys win, lists are replaced whole."""
    if defaults is None:
        return rule
    if not (isinstance(defaults.value, dict) and isinstance(rule.value, dict)):
        return rule
    merged = dict(defaults.value)
    for key, item in rule.value.items():
        merged[key] = merge(merged.get(key), item) if key in merged else item
    return Located(merged, rule.line, rule.file)


def plain(item: Located) -> Any:
    """Back to plain JSON-able Python values (for agent config handed to the page)."""
    if isinstance(item.value, dict):
        return {key: plain(value) for key, value in item.value.items()}
    if isinstance(item.value, list):
        return [plain(value) for value in item.value]
    return item.value


def _locate(node: Any, line: int, file: str) -> Located:
    if isinstance(node, CommentedMap):
        items = {}
        for key, value in node.items():
            key_line = node.lc.key(key)[0] + 1 if node.lc.data and key in node.lc.data else line
            items[str(key)] = _locate(value, key_line, file)
        return Located(items, node.lc.line + 1 if node.lc.line is not None else line, file)
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            item_line = node.lc.item(index)[0] + 1 if node.lc.data and index in node.lc.data else line
            items.append(_locate(value, item_line, file))
        return Located(items, line, file)
    return Located(_scalar(node), line, file)


def _scalar(node: Any) -> Any:
    # ruamel hands back subclasses (ScalarFloat, ScalarBoolean, …) that json and dataclasses should not see
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return bool(node) if type(node).__name__ == "ScalarBoolean" else int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _check(item: Located, schema: Any, key: str) -> None:
    value = item.value
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise item.error(key or "(top level)", f"must be a mapping with keys {', '.join(schema)}")
        for name, child in value.items():
            child_key = f"{key}.{name}" if key else name
            if name not in schema:
                raise child.error(child_key, f"unknown key; allowed here: {', '.join(schema)}")
            _check(child, schema[name], child_key)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise item.error(key, "must be a list")
        for index, child in enumerate(value):
            _check(child, schema[0], f"{key}[{index}]")
    elif schema == _ANY_MAP:
        if not isinstance(value, dict):
            raise item.error(key, "must be a mapping")
    elif schema == _BOOL:
        if not isinstance(value, bool):
            raise item.error(key, f"must be {_BOOL}, got {value!r}")
    elif schema == _NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise item.error(key, f"must be {_NUMBER}, got {value!r}")
    elif schema == _STR:
        if not isinstance(value, str):
            raise item.error(key, f"must be {_STR}, got {value!r}")

