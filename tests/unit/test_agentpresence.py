"""Whether a page loads the Elastic RUM agent already: exactly the signatures, nothing else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumproxy.agentpresence import AGENT_SIGNATURES, loads_agent


@pytest.mark.parametrize(
    ("document", "loads"),
    [
        (b'<script src="https://unpkg.com/@elastic/apm-rum@5.17.0/dist/bundles/elastic-apm-rum.umd.min.js"></script>', True),
        (b"<script>elasticApm.init({serviceName: 'x'})</script>", True),
        (b'import { init } from "@elastic/apm-rum"', True),
        (b"<script src=/app.js></script>", False),
        (b"", False),
    ],
)
def test_loads_agent(document: bytes, loads: bool) -> None:
    assert loads_agent(document) is loads
    assert all(isinstance(signature, bytes) for signature in AGENT_SIGNATURES)


_AGENT_PIECES = st.sampled_from([b"elastic-", b"@elastic/", b"apm-rum", b"elasticApm.init(", b"apm", b"-", b"/", b"x", b"Apm"])


@given(st.lists(_AGENT_PIECES, max_size=8).map(b"".join))
def test_loads_agent_finds_exactly_the_signatures(document: bytes) -> None:
    assert loads_agent(document) is any(signature in document for signature in AGENT_SIGNATURES)
