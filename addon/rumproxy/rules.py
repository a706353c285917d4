"""The rule set: `config/rules.yaml` parsed into immutable values, and matching a request to a rule.

Parsing validates everything a user can get wrong and raises `RulesError` with the file, line
and key, so code past this point never re-checks the configuration.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rumproxy import customtemplate, hostpatterns, ruleschema
from rumproxy.hostpatterns import HostPattern
from rumproxy.ruleschema import Located, RulesError

__all__ = ["AgentSpec", "TraceSpec", "Rule", "RuleSet", "RulesError", "load_rules", "parse_rules"]

REPO_ROOT = Path(__file__).resolve().parents[2]
VENDORED_AGENT = (
    REPO_ROOT / "vendor/agent/node_modules/@elastic/apm-rum/dist/bundles/elastic-apm-rum.umd.min.js"
)
SERVICE_NAME = re.compile(r"^[a-zA-Z0-9 _-]+$")


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    kind: str  # "elastic" | "custom"
    script_url: str | None  # an absolute or protocol-relative URL of the agent bundle
    script_file: Path | None  # a local bundle the proxy serves itself under /__rum/
    config: Mapping[str, Any]  # handed verbatim to elasticApm.init(...)
    template: str | None  # kind "custom": HTML with {{placeholders}}
    template_file: Path | None = None  # where the template was read from (agent.template_file)


@dataclasses.dataclass(frozen=True)
class TraceSpec:
    propagate: bool = True
    sample_rate: float = 1.0
    server_timing: bool = True  # Server-Timing: traceparent;desc="…" on the HTML response
    response_headers: bool = True  # traceparent/tracestate on the HTML response, for debugging
    timing_allow_origin: str | None = None  # lets other origins read Server-Timing
    api_origins: tuple[str, ...] = ()  # default distributedTracingOrigins besides the page's own


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    line: int
    hosts: tuple[HostPattern, ...]
    include: re.Pattern[str]
    exclude: re.Pattern[str] | None
    inject: bool
    xhtml: bool  # also instrument application/xhtml+xml
    csp_adjust: bool  # adjust a Content-Security-Policy that would block the snippet
    agent: AgentSpec
    trace: TraceSpec


SITES_REMEMBERED = 1024  # hosts come from clients in a regular proxy: the memory stays bounded


@dataclasses.dataclass(frozen=True)
class RuleSet:
    source: Path | None
    rules: tuple[Rule, ...]
    # The rules whose hosts match, by (host, port) as requests write them: a proxy sees the same
    # few sites over and over, and only the paths differ.
    _by_site: dict[tuple[str, int | None], tuple[Rule, ...]] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def match(self, host: str, port: int | None, path: str) -> Rule | None:
        """The first rule whose hosts and paths match; `host` without port, lowercase or not; `path`
        as the request writes it. Browsers percent-encode what is not ASCII in a path (/b%C3%BCcher),
        where a rule names it as people write it (/bücher): a path matches a glob either way."""
        rules = self._by_site.get((host, port))
        if rules is None:
            rules = self._for_site(host, port)
        decoded = urllib.parse.unquote(path) if "%" in path else None
        for rule in rules:
            if _path_matches(rule, path, decoded):
                return rule
        return None

    def _for_site(self, host: str, port: int | None) -> tuple[Rule, ...]:
        name = host.lower().rstrip(".")
        rules = tuple(rule for rule in self.rules if any(pattern.matches(name, port) for pattern in rule.hosts))
        if len(self._by_site) >= SITES_REMEMBERED:
            self._by_site.clear()
        self._by_site[host, port] = rules
        return rules

    def names_host(self, host: str, port: int | None) -> bool:
        return bool(self._for_site(host, port))

    def read_files(self) -> frozenset[Path]:
        """The files besides the rules file that loading them read: local agent scripts and
        templates. An edit of one is an edit of the rules."""
        agents = [rule.agent for rule in self.rules]
        return frozenset(file for agent in agents for file in (agent.script_file, agent.template_file) if file is not None)


def _path_matches(rule: Rule, path: str, decoded: str | None) -> bool:
    """`rule`'s paths include `path` (or its percent-decoded form) and exclude neither."""
    if rule.include.fullmatch(path) is None and (decoded is None or rule.include.fullmatch(decoded) is None):
        return False
    exclude = rule.exclude
    return exclude is None or (exclude.fullmatch(path) is None and (decoded is None or exclude.fullmatch(decoded) is None))


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RulesError(f"{path}: cannot read the rules file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise RulesError(f"{path}: the rules file is not UTF-8: {e}") from None
    return parse_rules(text, path)


def parse_rules(text: str, path: Path | None = None) -> RuleSet:
    document = ruleschema.load_document(text, path)
    base = path.parent if path else Path.cwd()
    defaults = document.get("defaults")
    rules = tuple(
        _build_rule(index, raw, defaults, base) for index, raw in enumerate(document["rules"].value)
    )
    return RuleSet(source=path, rules=rules)


def _build_rule(index: int, raw: Located, defaults: Located | None, base: Path) -> Rule:
    rule = ruleschema.merge(defaults, raw)
    name = rule.get_value("name", f"rule {index + 1}")
    where = f"rules[{index}]" + (f" ({name})" if "name" in raw.value else "")
    hosts = tuple(_host_pattern(item, where) for item in rule.value["hosts"].value)
    paths = rule.get("paths")
    include = [item.value for item in paths.value["include"].value] if paths and "include" in paths.value else ["/*"]
    exclude = [item.value for item in paths.value["exclude"].value] if paths and "exclude" in paths.value else []
    if paths:
        for key in ("include", "exclude"):
            for item in paths.value[key].value if key in paths.value else ():
                if not (item.value.startswith("/") or item.value.startswith("*")):
                    raise item.error(f"{where}.paths.{key}", f"a path glob starts with '/' or '*', got {item.value!r}")
    return Rule(
        name=name,
        line=raw.line,
        hosts=hosts,
        include=_globs(include, ignore_case=False),
        exclude=_globs(exclude, ignore_case=False) if exclude else None,
        inject=rule.get_value("inject", True),
        xhtml=rule.get_value("xhtml", False),
        csp_adjust=rule.get_path_value(("csp", "adjust"), True),
        agent=_agent(rule, where, base, injects=rule.get_value("inject", True), xhtml=rule.get_value("xhtml", False)),
        trace=_trace(rule, where),
    )


def _host_pattern(item: Located, where: str) -> HostPattern:
    try:
        return hostpatterns.parse(item.value)
    except ValueError as e:
        raise item.error(f"{where}.hosts", str(e)) from None


def _globs(patterns: list[str], *, ignore_case: bool) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE if ignore_case else 0)


def _agent(rule: Located, where: str, base: Path, *, injects: bool, xhtml: bool) -> AgentSpec:
    agent = rule.get("agent")
    values = agent.value if agent else {}
    kind = values["kind"].value if "kind" in values else "elastic"
    config = ruleschema.plain(values["config"]) if "config" in values else {}
    script_url, script_file = None, None
    if "script" in values:
        script_url, script_file = _script(values["script"], where, base)
    elif kind == "elastic" and injects:
        script_file = VENDORED_AGENT
        if not script_file.is_file():
            raise (agent or rule).error(
                f"{where}.agent.script",
                "not set, and the bundled @elastic/apm-rum is not installed: run scripts/setup or set agent.script to an URL or file",
            )
    template = template_file = None
    if kind == "elastic":
        if "template" in values or "template_file" in values:
            key = "template" if "template" in values else "template_file"
            raise values[key].error(f"{where}.agent.{key}", "only for agent.kind: custom")
        service_name = config.get("serviceName")
        if injects and (not isinstance(service_name, str) or not SERVICE_NAME.fullmatch(service_name)):
            target = values["config"] if "config" in values else (agent or rule)
            if "config" in values and "serviceName" in values["config"].value:
                target = values["config"].value["serviceName"]
            raise target.error(
                f"{where}.agent.config.serviceName",
                "required: letters, digits, spaces, '_' and '-' only (set it in the rule or in defaults.agent.config)"
                + (f", got {service_name!r}" if service_name is not None else ""),
            )
        server_url = config.get("serverUrl")
        if server_url is not None and not (isinstance(server_url, str) and re.match(r"^https?://[^/\s]+", server_url)):
            raise values["config"].value["serverUrl"].error(f"{where}.agent.config.serverUrl", f"an http(s) URL, got {server_url!r}")
    else:
        template_key = "template" if "template" in values else "template_file"
        if template_key == "template":
            template = values["template"].value
            template_item = values["template"]
        elif "template_file" in values:
            template_item = values["template_file"]
            template_file = (base / template_item.value).resolve()
            try:
                template = template_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise template_item.error(f"{where}.agent.template_file", f"cannot read {template_file}: {e}") from None
        else:
            raise (agent or rule).error(f"{where}.agent", "kind: custom needs agent.template (HTML) or agent.template_file")
        problem = customtemplate.placeholder_problem(template)
        if problem is not None:
            raise template_item.error(f"{where}.agent.{template_key}", problem)
        problem = customtemplate.xml_problem(template) if xhtml and injects else None
        if problem is not None:
            raise template_item.error(
                f"{where}.agent.{template_key}",
                f"not well-formed XML, which xhtml: true needs (an XHTML page is parsed as XML, and the "
                f"browser shows an error instead of it): {problem}; write attributes with values and "
                "script text inside <![CDATA[ ]]>",
            )
    return AgentSpec(
        kind=kind, script_url=script_url, script_file=script_file, config=config, template=template, template_file=template_file
    )


def _script(item: Located, where: str, base: Path) -> tuple[str | None, Path | None]:
    value = item.value.strip()
    if re.match(r"^(https?:)?//[^/\s]+", value):
        return value, None
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value) and not re.match(r"^[a-zA-Z]:[\\/]", value):
        raise item.error(f"{where}.agent.script", f"an http(s) URL or a local file path, got {value!r}")
    file = (base / value).resolve()
    if not file.is_file():
        raise item.error(f"{where}.agent.script", f"no such file: {file} (run scripts/setup to fetch the bundled agent)")
    return None, file


def _trace(rule: Located, where: str) -> TraceSpec:
    trace = rule.get("trace")
    if trace is None:
        return TraceSpec()
    values = trace.value
    sample_rate = float(values["sample_rate"].value) if "sample_rate" in values else 1.0
    if not 0.0 <= sample_rate <= 1.0:
        raise values["sample_rate"].error(f"{where}.trace.sample_rate", f"a number from 0.0 to 1.0, got {sample_rate}")
    origins = []
    for item in values["api_origins"].value if "api_origins" in values else ():
        try:
            origins.extend(hostpatterns.origin_spellings(item.value))
        except ValueError:
            raise item.error(f"{where}.trace.api_origins", f"an origin like 'https://api.example.com' (no path), got {item.value!r}") from None
    return TraceSpec(
        propagate=values["propagate"].value if "propagate" in values else True,
        sample_rate=sample_rate,
        server_timing=values["server_timing"].value if "server_timing" in values else True,
        response_headers=values["response_headers"].value if "response_headers" in values else True,
        timing_allow_origin=values["timing_allow_origin"].value if "timing_allow_origin" in values else None,
        api_origins=tuple(origins),
    )
