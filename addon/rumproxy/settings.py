"""The addon's options as the hooks read them: parsed and checked once per configure()."""

from __future__ import annotations

import dataclasses

from mitmproxy import exceptions
from mitmproxy.utils import human

STREAM_MODES = ("auto", "always", "never")
# rum_stream=auto's default: bodies up to this size are rewritten whole; larger or unsized ones
# stream. Measured with scripts/bench: up to ~300 KB whole-body rewriting has the better throughput
# and the same time to first byte; from ~512 KB streaming's first byte beats even plain mitmdump's
# (README, Performance).
STREAM_ABOVE = 384 * 1024
MEMO_MIB = 16  # remembered rewrites: some 2,000 pages of 10 KB, or 200 large gzip ones (~80 KB each)
MIN_SCAN_LIMIT = 1024


@dataclasses.dataclass(frozen=True)
class Settings:
    """The options the hooks read, as of the last configure(): a read of `ctx.options` deep-copies
    the value (some 3 µs; a page took six)."""

    scan_limit: int
    stream: str
    stream_above: int
    gzip_splice: bool
    prefer_gzip: bool
    memo_bytes: int

    @classmethod
    def from_options(cls, options) -> Settings:
        """Raises OptionsError naming the option and what it takes."""
        if options.rum_scan_limit < MIN_SCAN_LIMIT:
            raise exceptions.OptionsError(f"rum_scan_limit: at least {MIN_SCAN_LIMIT} bytes, got {options.rum_scan_limit}")
        if options.rum_memo < 0:
            raise exceptions.OptionsError(f"rum_memo: MiB, 0 or more, got {options.rum_memo}")
        return cls(
            options.rum_scan_limit,
            options.rum_stream,
            parse_stream_above(options.rum_stream_above),
            options.rum_gzip_splice,
            options.rum_prefer_gzip,
            options.rum_memo << 20,
        )

    def rewrites_whole(self, http_version: str, content_length: str | None) -> bool:
        """Whether a page that could stream is buffered and rewritten whole instead: with
        rum_stream=never, for an HTTP/1.0 client (no chunked framing to end a body whose length
        changed), and with auto for a Content-Length up to rum_stream_above."""
        if self.stream == "never" or http_version == "HTTP/1.0":
            return True
        return (
            self.stream == "auto"
            and content_length is not None
            and content_length.isdigit()
            and int(content_length) <= self.stream_above
        )


def parse_stream_above(value: str) -> int:
    """Bytes from a size as mitmproxy's stream_large_bodies takes it: 400000, 384k, 4m."""
    try:
        size = human.parse_size(value.strip().lower())
    except ValueError:
        size = None
    if size is None or size < 0:
        raise exceptions.OptionsError(
            f"rum_stream_above: a size in bytes like 384k or 4m (k, m, g: powers of 1024), got {value!r}"
        )
    return size
