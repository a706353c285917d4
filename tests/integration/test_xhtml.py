"""XHTML through the real mitmdump (a rule with xhtml: true): a page served as
application/xhtml+xml is parsed as XML by the browser, so what goes into it must be well-formed XML;
the same bytes served as text/html get the HTML markup."""

from __future__ import annotations

import gzip
import textwrap
import xml.etree.ElementTree
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from rumproxy.rules import VENDORED_AGENT
from tests.apps.upstream import BODIES
from tests.harness import Mitmdump, Upstream
from tests.insertion import split_insertion

pytestmark = pytest.mark.integration

XHTML = "http://www.w3.org/1999/xhtml"
NAVIGATION = {"Sec-Fetch-Dest": "document", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
DECODERS = {"identity": lambda data: data, "gzip": gzip.decompress}


@pytest.fixture(scope="module", params=["never", "always"], ids=["buffered", "streaming"])
def proxy(request, upstream: Upstream, tmp_path_factory) -> Iterator[Mitmdump]:
    rules = tmp_path_factory.mktemp("xhtml") / "rules.yaml"
    rules.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            rules:
              - name: xhtml
                hosts: ["127.0.0.1"]
                xhtml: true
                agent:
                  script: {VENDORED_AGENT}
                  config: {{serviceName: xhtml-site, serverUrl: "http://127.0.0.1:8200"}}
            """
        )
    )
    with Mitmdump(mode=f"reverse:{upstream.url}", rules=Path(rules), args=["--set", f"rum_stream={request.param}"]) as mitmdump:
        yield mitmdump


def fetch(proxy: Mitmdump, query: str, encoding: str) -> tuple[requests.Response, bytes]:
    with requests.Session() as session:
        session.trust_env = False
        response = session.get(f"{proxy.url}/page?{query}", headers={**NAVIGATION, "Accept-Encoding": encoding}, stream=True, timeout=30)
        raw = response.raw.read(decode_content=False)
    return response, DECODERS[encoding](raw)


@pytest.mark.parametrize("framing", ["", "&chunked=1&chunksize=100"], ids=["sized", "chunked"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_an_xhtml_page_gets_well_formed_xml(proxy, encoding, framing):
    page = BODIES["xhtml"]
    for _ in range(2):  # scanned, then remembered
        response, document = fetch(proxy, f"body=xhtml&encoding={encoding}{framing}", encoding)
        assert response.headers["content-type"] == "application/xhtml+xml; charset=utf-8"
        assert response.headers["x-rum-injected"] == "rumproxy"
        offset, inserted = split_insertion(page, document, starts_with=b"<script")
        assert page[:offset].endswith(b'charset=utf-8" />')
        root = xml.etree.ElementTree.fromstring(document)  # raises where a browser would show an error
        loader, init, *_ = root.find(f"{{{XHTML}}}head").iter(f"{{{XHTML}}}script")
        assert loader.get("src").startswith("/__rum/") and loader.get("crossorigin") == "anonymous"
        assert init.text.startswith("(function(){var a=window.elasticApm;if(a&&") and "pageLoadTraceId" in init.text
        assert inserted.endswith(b"<![CDATA[" + init.text.encode() + b"]]></script>")


@pytest.mark.parametrize("framing", ["", "&chunked=1&chunksize=1000"], ids=["sized", "chunked"])
@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_what_only_xml_reads_so_is_read_so(proxy, encoding, framing):
    # Read as HTML, `<title/>` would run to the end of the page (no injection, past the scan limit)
    # and the doctype would end at the first ">" of its internal subset.
    page = BODIES["xhtml-xml"]
    assert len(page) > 64 * 1024
    for _ in range(2):  # scanned, then remembered
        response, document = fetch(proxy, f"body=xhtml-xml&encoding={encoding}{framing}", encoding)
        assert response.headers["x-rum-injected"] == "rumproxy"
        offset, inserted = split_insertion(page, document, starts_with=b"<script")
        assert page[:offset].endswith(b'content="IE=edge" />') and page[offset:].startswith(b'\n<script src="/static/app.js"/>')
        root = xml.etree.ElementTree.fromstring(document)
        assert root.find(f"{{{XHTML}}}body/{{{XHTML}}}h1/{{{XHTML}}}b").text == "brûlée"
        loader, init, own = root.find(f"{{{XHTML}}}head").iter(f"{{{XHTML}}}script")
        assert loader.get("src").startswith("/__rum/") and "pageLoadTraceId" in init.text and own.get("src") == "/static/app.js"


def test_the_same_bytes_as_text_html_get_the_html_markup(proxy):
    response, document = fetch(proxy, "body=xhtml&ctype=text/html; charset=utf-8", "identity")
    _, inserted = split_insertion(BODIES["xhtml"], document, starts_with=b"<script")
    assert inserted.startswith(b'<script src="/__rum/') and b" crossorigin></script><script>(function()" in inserted
