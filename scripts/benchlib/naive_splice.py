"""A mitmproxy script addon that instruments pages the naive way issue 5 describes: `scripts/bench`'s
`naive` configuration, the least an injecting addon does. A navigation gets a fresh `traceparent`
upstream; an HTML response is buffered, decoded (mitmproxy's `content`), searched for `</head>`,
given the bench's reference snippet there and encoded again (mitmproxy's `content` setter, which
also sets Content-Length). No tokenizer, no trace ids in the page, no CSP, no streaming: a floor to
measure against, not a way to instrument anything."""

import os

from mitmproxy import ctx

HEAD_END = b"</head>"


class NaiveSplice:
    def load(self, loader) -> None:
        loader.add_option("naive_snippet", str, "", "The markup to put before </head>.")

    def request(self, flow) -> None:
        if flow.request.headers.get("sec-fetch-dest") == "document":
            ids = os.urandom(24).hex()
            flow.request.headers["traceparent"] = f"00-{ids[:32]}-{ids[32:]}-01"

    def response(self, flow) -> None:
        response = flow.response
        if "text/html" not in response.headers.get("content-type", ""):
            return
        content = response.content
        at = content.find(HEAD_END) if content else -1
        if at >= 0:
            response.content = content[:at] + ctx.options.naive_snippet.encode() + content[at:]


addons = [NaiveSplice()]
