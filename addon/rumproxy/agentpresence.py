"""Whether a page loads the Elastic RUM agent already (its own copy, or an instrumented page that
came back through the proxy): such a page gets no second agent."""

from __future__ import annotations

__all__ = ["AGENT_SIGNATURES", "loads_agent"]

AGENT_SIGNATURES: tuple[bytes, ...] = (
    b"elastic-apm-rum",  # the bundle's file name, on CDNs and self-hosted copies
    b"@elastic/apm-rum",  # npm imports and unpkg/jsdelivr paths
    b"elasticApm.init(",  # the inline init call, ours included
)


def loads_agent(document: bytes) -> bool:
    """True if the page already seems to load the Elastic RUM agent (one of AGENT_SIGNATURES)."""
    # Two scans instead of three: both bundle signatures end in "apm-rum", rare in other pages.
    if b"elasticApm.init(" in document:
        return True
    found = document.find(b"apm-rum")
    while found >= 0:
        if document[max(found - 8, 0) : found] == b"elastic-" or document[max(found - 9, 0) : found] == b"@elastic/":
            return True
        found = document.find(b"apm-rum", found + 1)
    return False
