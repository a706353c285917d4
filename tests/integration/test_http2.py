"""HTTP/2 to the client (TLS in reverse mode): whole-body and streamed injection, with the framing
HTTP/2 wants (no Transfer-Encoding; Content-Length only when it is right)."""

from __future__ import annotations

import gzip
import shutil

import pytest

from tests.apps.upstream import BODIES
from tests.harness import Mitmdump, curl_http2

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl with HTTP/2 (Debian's curl)"),
]


@pytest.fixture(scope="module")
def tls_proxy(upstream, rules_file):
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=rules_file) as proxy:
        yield proxy


@pytest.mark.parametrize("query", ["body=basic", "body=basic&encoding=gzip", "body=big", "body=big&encoding=gzip&chunked=1"])
def test_http2_client_gets_one_insertion(tls_proxy, query):
    lines, raw = curl_http2(f"https://127.0.0.1:{tls_proxy.port}/page?{query}",
                            {"Sec-Fetch-Dest": "document", "Accept-Encoding": "gzip"})
    assert lines[0].startswith("http/2 200")
    assert not any(line.startswith("transfer-encoding") for line in lines)
    lengths = [line.split(":", 1)[1].strip() for line in lines if line.startswith("content-length")]
    assert lengths in ([], [str(len(raw))])
    decoded = gzip.decompress(raw) if "gzip" in query else raw
    original = BODIES[query.split("&")[0].split("=")[1]]
    start = decoded.index(b'<script src="/__rum/')
    end = decoded.index(b"</script>", decoded.index(b"</script>", start) + 1) + len(b"</script>")
    assert decoded[:start] + decoded[end:] == original
