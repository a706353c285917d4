"""mitmproxy's "Streaming response from <host>." line, left out for the responses the addon streams.

mitmproxy logs that line at info level for every response whose body it streams. The addon
streams every instrumented page without a Content-Length (most pages of dynamic apps) and the
large ones, so mitmdump printed it for most page views; and under mitmproxy every log record is
formatted for the terminal, wakes the event loop and goes to every addon as an `add_log` event.
What the addon did with a page is on the flow already (its comment and metadata). The line stays
for responses that others stream (`stream_large_bodies` on a page no rule instruments).
"""

from __future__ import annotations

import logging

PREFIX = "Streaming response from "
# Where mitmproxy's proxy server logs its protocol layers' Log commands (mitmproxy 11 and 12).
MITMPROXY_LOGGER = "mitmproxy.proxy.server"


class OwnStreamNotices(logging.Filter):
    """Drops one notice per `expect(host)`: the addon has set a stream on a response from `host`,
    and mitmproxy logs the notice as the stream starts."""

    def __init__(self, limit: int = 1024) -> None:
        super().__init__()
        self._expected: dict[str, int] = {}
        # A stream whose notice never comes (a flow killed before its body, a body that ended
        # with its headers) must not hide a later one of the same host forever, nor grow the dict.
        self._limit = limit

    def expect(self, host: str) -> None:
        expected = self._expected
        count = expected.get(host, 0)
        if not count and len(expected) >= self._limit:
            expected.clear()
        expected[host] = count + 1

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if type(message) is not str or not message.startswith(PREFIX):
            return True
        host = message[len(PREFIX) :].removesuffix(".")
        count = self._expected.get(host)
        if not count:
            return True
        if count == 1:
            del self._expected[host]
        else:
            self._expected[host] = count - 1
        return False

    def install(self) -> None:
        logging.getLogger(MITMPROXY_LOGGER).addFilter(self)

    def uninstall(self) -> None:
        logging.getLogger(MITMPROXY_LOGGER).removeFilter(self)
        self._expected.clear()
