"""The addon's options: declared for mitmproxy with their help (`declare_options`, from load()),
parsed and checked once per configure() into what the hooks read (`Settings`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

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


def declare_options(loader, default_rules: Path) -> None:
    """The rum_* options, for the addon's load()."""
    loader.add_option(
        "rum_rules",
        str,
        str(default_rules),
        "The rule set (YAML, see the README): which hosts and paths get which RUM agent. "
        "Edits are applied while the proxy runs; an invalid edit keeps the last good rules.",
    )
    loader.add_option(
        "rum_scan_limit",
        int,
        64 * 1024,
        f"How many bytes of decoded HTML to scan for the insertion point before giving up on a page "
        f"(at least {MIN_SCAN_LIMIT}).",
    )
    loader.add_option(
        "rum_stream",
        str,
        "auto",
        "Inject while streaming the body: auto (large or unsized bodies), always, never (buffer whole bodies).",
        choices=STREAM_MODES,
    )
    loader.add_option(
        "rum_stream_above",
        str,
        f"{STREAM_ABOVE // 1024}k",
        "With rum_stream=auto: a page whose Content-Length is at most this size is rewritten whole "
        "(buffered, then sent with its new Content-Length); a larger one, or one without a "
        "Content-Length, streams. Higher: less proxy CPU per page of a few MB (mitmproxy's buffered "
        "path is cheaper than its streaming), a later first byte, and the whole body in memory per "
        "response in flight. Sizes as for stream_large_bodies: 400000, 384k, 4m.",
    )
    loader.add_option(
        "rum_gzip_splice",
        bool,
        True,
        "For a gzip page (streamed, or whole and larger than the scan window), re-compress it only up to "
        "32 KiB past the snippet and send the upstream's own deflate blocks after that. Turn off for "
        "upstreams that send more than one gzip member per body (a streamed page logs a warning).",
    )
    loader.add_option(
        "rum_memo",
        int,
        MEMO_MIB,
        "MiB of memory for remembering how pages were rewritten: a page whose upstream body is byte for "
        "byte that of a remembered one (a gzip page that rum_gzip_splice streams: up to its reuse point) "
        "is not scanned, decoded or (gzip) compressed again; only its snippet is new. A streamed gzip "
        "page gets the remembered rewrite while its bytes arrive, no later than without it. 0 turns it off.",
    )
    loader.add_option(
        "rum_prefer_gzip",
        bool,
        True,
        "Ask the upstream for a page without br or zstd when the client accepts gzip (page navigations and "
        "prefetches that a rule instruments). br and zstd pages are decoded and compressed again for every "
        "response, at 5 to 13 times the CPU of a gzip page (scripts/bench, 2.5 and 20 MB), and come out "
        "larger than the upstream's gzip at the fastest levels the proxy must use. Off: the upstream gets "
        "the client's Accept-Encoding.",
    )


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
