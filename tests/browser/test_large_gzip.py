"""A long gzip page in a real Chromium behind the reverse proxy: the body whose first deflate blocks
the proxy re-compressed and whose later ones are the upstream's (gzipsplice), with a trailer of the
proxy's making, decodes in the browser to the page as served, and the injected agent reports its
page load. Whole (Content-Length, rewritten in the response hook) and chunked (streamed). The
browser's load is the second request for the page, so it gets the rewrite the proxy remembered
from the first (rum_memo; streamed: sent while the body arrives, gzipreplay) around its own snippet."""

from __future__ import annotations

import pytest
import requests

from tests.apps.browserapp import large_page
from tests.browser.support import BrowserPage, app_behind_proxy, browser_suite, wait_for_page_load
from tests.harness import Intake, Mitmdump

pytestmark = browser_suite

PARAGRAPHS = 4000  # ~330 KB of HTML, ~150 KB of gzip: whole below the streaming threshold, and
# long enough that the upstream's blocks are reused from ~100 KB on


app, proxy = app_behind_proxy("large")


@pytest.mark.parametrize("length", ["yes", "no"], ids=["whole", "streamed"])
def test_a_spliced_gzip_page_renders_whole_in_chromium(browser_page: BrowserPage, proxy: Mitmdump, intake: Intake,
                                                        length: str) -> None:
    url = f"{proxy.url}/large?paragraphs={PARAGRAPHS}&length={length}"
    upstream_gzip = large_page(PARAGRAPHS)[1]
    # What the browser will get, as bytes on the wire: the upstream's own deflate data at the end.
    session = requests.Session()
    session.trust_env = False
    raw = session.get(url, headers={"Sec-Fetch-Dest": "document", "Accept-Encoding": "gzip"}, stream=True, timeout=30)
    wire = raw.raw.read(decode_content=False)
    assert raw.headers["content-encoding"] == "gzip" and raw.headers["x-rum-injected"]
    assert ("content-length" in raw.headers) is (length == "yes")
    assert upstream_gzip[:-8].endswith(wire[-4096:-8]) and wire[-8:] != upstream_gzip[-8:]

    response = browser_page.goto(url)  # the same upstream bytes again: the remembered rewrite
    assert response.headers.get("content-encoding") == "gzip"
    assert browser_page.injected()
    browser_page.assert_large_page_whole(PARAGRAPHS)
    wait_for_page_load(intake, browser_page, url)
    browser_page.assert_clean()
