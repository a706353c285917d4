"""A 20 MB page through the real mitmdump with the addon as shipped (rum_stream=auto): it is
streamed, not buffered, and arrives whole with exactly one snippet, for identity and gzip bodies,
with and without Content-Length. No timing here: scripts/bench measures speed."""

from __future__ import annotations

import gzip
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.harness import Mitmdump
from tests.insertion import split_insertion

pytestmark = pytest.mark.integration

NAVIGATION = {"Sec-Fetch-Dest": "document", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
PAGE_SIZE = 20 * 1024 * 1024
MEDIUM_SIZE = 300 * 1000  # buffered under rum_stream=auto: its gzip is ~45 KB
PIECE = 64 * 1024  # what the upstream writes at a time
# Buffering a 20 MB page costs mitmdump several copies of it; streaming it, a few chunks. The bound
# is generous against allocator noise and still far below one buffered copy plus its decoded twin.
STREAMING_MEMORY_BOUND = 32 * 1024 * 1024
HEAD = b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>large</title>\n'


def large_page(size: int = PAGE_SIZE) -> bytes:
    """A realistic page of exactly `size` bytes: a head with a charset and a stylesheet, then
    paragraphs of varied words (so gzip works as on real text)."""
    rng = random.Random(20)
    words = "the page order cart price review stream header content server browser network trace".split()
    head = HEAD + b"<style>body{font:16px/1.5 sans-serif}p{margin:0 0 1em}</style>\n</head>\n<body>\n"
    tail = b"</body>\n</html>\n"
    paragraphs = []
    filled = len(head) + len(tail)
    n = 0
    while filled < size - 200:
        paragraph = f'<p id="p{n}">{" ".join(rng.choices(words, k=12))}</p>\n'.encode()
        paragraphs.append(paragraph)
        filled += len(paragraph)
        n += 1
    paragraphs.append(b"<!--" + b"x" * (size - filled - 8) + b"-->\n")
    page = head + b"".join(paragraphs) + tail
    assert len(page) == size
    return page


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        query = parse_qs(urlsplit(self.path).query)
        encoding = query.get("encoding", ["identity"])[0]
        sized = query.get("length", ["yes"])[0] == "yes"
        path = urlsplit(self.path).path
        body = self.bodies.get((path, encoding), HEAD + b"</head><body>small</body>")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        if encoding != "identity" and path != "/small":
            self.send_header("Content-Encoding", encoding)
        if sized:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), PIECE):
            piece = body[start : start + PIECE]
            self.wfile.write(piece if sized else b"%x\r\n%s\r\n" % (len(piece), piece))
        if not sized:
            self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page() -> bytes:
    return large_page()


@pytest.fixture(scope="module")
def large_upstream(page: bytes) -> Iterator[str]:
    """A threaded upstream in this process: GET /large|/medium?encoding=identity|gzip&length=yes|no."""
    medium = large_page(MEDIUM_SIZE)
    bodies = {
        ("/large", "identity"): page,
        ("/large", "gzip"): gzip.compress(page, 6, mtime=0),
        ("/medium", "gzip"): gzip.compress(medium, 6, mtime=0),
    }
    handler = type("Handler", (_Handler,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture(scope="module")
def auto_proxy(large_upstream: str, rules_file: Path) -> Iterator[tuple[Mitmdump, int]]:
    """mitmdump with the addon's default rum_stream=auto, and its peak RSS once warmed up."""
    with Mitmdump(mode=f"reverse:{large_upstream}", rules=rules_file, args=["--set", "rum_stream=auto"]) as proxy:
        session = requests.Session()
        session.trust_env = False
        warm = session.get(f"{proxy.url}/small", headers=NAVIGATION, timeout=30)
        assert warm.status_code == 200 and b"/__rum/" in warm.content
        yield proxy, peak_rss(proxy.pid)


def peak_rss(pid: int) -> int:
    """VmHWM of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("length", ["yes", "no"], ids=["content-length", "chunked-upstream"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_20mb_page_streams_with_one_snippet(auto_proxy, page, encoding, length):
    proxy, baseline = auto_proxy
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"{proxy.url}/large?encoding={encoding}&length={length}",
                           headers={**NAVIGATION, "Accept-Encoding": encoding}, stream=True, timeout=120)
    raw = response.raw.read(decode_content=False)
    assert response.status_code == 200
    # Streamed: the headers went out before the body's length was known.
    assert "content-length" not in response.headers
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-rum-injected"]
    assert response.headers.get("content-encoding", "identity") == encoding
    output = gzip.decompress(raw) if encoding == "gzip" else raw
    offset, inserted = split_insertion(page, output, starts_with=b"<script")
    assert offset < 64 * 1024, "the snippet went past the head"
    assert inserted.startswith(b'<script src="/__rum/') and inserted.endswith(b"</script>")
    assert inserted.count(b"elasticApm") >= 1 and output.count(b'<script src="/__rum/') == 1
    assert page[:offset].endswith(b'<meta charset="utf-8">')  # right after the charset declaration
    growth = peak_rss(proxy.pid) - baseline
    assert growth < STREAMING_MEMORY_BOUND, f"mitmdump's peak RSS grew by {growth / 2**20:.0f} MiB: was the page buffered?"
    if encoding == "gzip":
        # After 32 KiB past the snippet the upstream's own deflate blocks went on (gzipsplice): the
        # body is the upstream's size, not that of a level-1 re-compression of 20 MB.
        upstream_size = len(gzip.compress(page, 6, mtime=0))
        assert abs(len(raw) - upstream_size) < 64 * 1024, (len(raw), upstream_size)


def test_whole_gzip_page_reuses_the_upstreams_blocks(auto_proxy):
    """A 300 KB page whose gzip (~45 KB) is below the streaming threshold is rewritten whole, and
    from the first deflate block boundary 32 KiB past the snippet on, the upstream's blocks go on
    as they are: the body ends in the upstream's bytes, with a trailer of its own."""
    proxy, _ = auto_proxy
    page = large_page(MEDIUM_SIZE)
    upstream_body = gzip.compress(page, 6, mtime=0)
    session = requests.Session()
    session.trust_env = False
    response = session.get(f"{proxy.url}/medium?encoding=gzip&length=yes",
                           headers={**NAVIGATION, "Accept-Encoding": "gzip"}, stream=True, timeout=60)
    raw = response.raw.read(decode_content=False)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["content-length"] == str(len(raw))  # buffered: sized, not chunked
    assert "transfer-encoding" not in response.headers
    output = gzip.decompress(raw)  # checks the CRC-32 and length in the new trailer too
    offset, inserted = split_insertion(page, output, starts_with=b"<script")
    assert page[:offset].endswith(b'<meta charset="utf-8">')
    assert inserted.startswith(b'<script src="/__rum/') and output.count(b'<script src="/__rum/') == 1
    assert upstream_body[:-8].endswith(raw[-4096:-8])
    assert raw[-8:] != upstream_body[-8:]


@pytest.mark.parametrize("path, length", [("/medium", "yes"), ("/large", "no")], ids=["whole", "streamed"])
def test_the_same_gzip_page_again_gets_its_own_trace(auto_proxy, page, path, length):
    """Requested again, a gzip page is sent from the remembered rewrite (rum_memo): each
    response still decodes to exactly the page, with its own trace ids in the snippet."""
    proxy, _ = auto_proxy
    expected_page = page if path == "/large" else large_page(MEDIUM_SIZE)
    session = requests.Session()
    session.trust_env = False
    traces = set()
    for _ in range(3):
        response = session.get(f"{proxy.url}{path}?encoding=gzip&length={length}",
                               headers={**NAVIGATION, "Accept-Encoding": "gzip"}, stream=True, timeout=120)
        raw = response.raw.read(decode_content=False)
        assert response.status_code == 200 and response.headers["content-encoding"] == "gzip"
        output = gzip.decompress(raw)  # the CRC-32 and length of this response's page
        offset, inserted = split_insertion(expected_page, output, starts_with=b"<script")
        trace_id = response.headers["traceparent"].split("-")[1]
        assert f'"pageLoadTraceId":"{trace_id}"'.encode() in inserted
        traces.add(trace_id)
        if length == "yes":  # rewritten whole, every time around the upstream's own blocks
            assert response.headers["content-length"] == str(len(raw))
            assert gzip.compress(expected_page, 6, mtime=0)[:-8].endswith(raw[-4096:-8])
    assert len(traces) == 3


def test_rum_stream_above_buffers_a_sized_page_up_to_its_size(large_upstream, page, rules_file):
    """Raised above 20 MB, rum_stream_above has auto rewrite the sized 20 MB page whole: it arrives
    with its new Content-Length instead of chunked; a page without a Content-Length still streams."""
    with Mitmdump(mode=f"reverse:{large_upstream}", rules=rules_file, args=["--set", "rum_stream_above=32m"]) as proxy:
        session = requests.Session()
        session.trust_env = False
        for length in ("yes", "no"):
            response = session.get(f"{proxy.url}/large?encoding=identity&length={length}",
                                   headers={**NAVIGATION, "Accept-Encoding": "identity"}, stream=True, timeout=120)
            raw = response.raw.read(decode_content=False)
            assert response.status_code == 200 and response.headers["x-rum-injected"]
            if length == "yes":
                assert response.headers["content-length"] == str(len(raw))
                assert "transfer-encoding" not in response.headers
            else:
                assert "content-length" not in response.headers
                assert response.headers["transfer-encoding"] == "chunked"
            offset, inserted = split_insertion(page, raw, starts_with=b"<script")
            assert page[:offset].endswith(b'<meta charset="utf-8">')
            assert inserted.startswith(b'<script src="/__rum/') and raw.count(b'<script src="/__rum/') == 1

