from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.harness import Mitmdump, Upstream
from rumproxy.rules import VENDORED_AGENT


def write_rules(path: Path, *, service_name: str = "shop-frontend", extra_rule: str = "", server_url: str = "http://127.0.0.1:8200") -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            defaults:
              agent:
                script: {VENDORED_AGENT}
                config:
                  serverUrl: {server_url}
            rules:
              - name: shop
                hosts: ["127.0.0.1"]
                paths:
                  exclude: ["/api/*"]
                agent:
                  config:
                    serviceName: {service_name}
            """
        )
        + textwrap.indent(textwrap.dedent(extra_rule), "  ")
    )
    return path


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with Upstream() as app:
        yield app


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory) -> Path:
    return write_rules(tmp_path_factory.mktemp("rules") / "rules.yaml")


@pytest.fixture(scope="module", params=["never", "always"], ids=["buffered", "streaming"])
def proxy(request, upstream: Upstream, rules_file: Path) -> Iterator[Mitmdump]:
    """The addon in reverse mode, rewriting whole bodies or streaming them."""
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules_file, args=["--set", f"rum_stream={request.param}"]) as mitmdump:
        mitmdump.stream_mode = request.param  # type: ignore[attr-defined]
        yield mitmdump


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()
