"""Fewer, larger writes to the client while the upstream sends faster than the proxy reads.

Streaming, mitmproxy reads a connection 65,535 bytes at a time and sends each piece on at once: a
socket write, an HTTP/1.1 chunk and a wake-up of the client per 64 KB, where buffering writes the
body in one go (what makes plain mitmdump's streaming slower than its buffering on fast pages,
scripts/bench). A read that fills all 65,535 bytes says the upstream had more waiting, so its
output is held, up to HOLD_LIMIT, and goes out with the next read that comes up short (the
upstream's bytes at hand are all read), the body's end, or the limit. The first bytes are never
held: they carry the snippet and are the page's first byte.

Worst case: an upstream that pauses right after a flush that happens to end a full read has up to
HOLD_LIMIT of it wait for its next bytes; buffering, the other way mitmproxy can send a body,
holds all of it to the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

# mitmproxy's reads of a connection (proxy/server.py, 11.0 and 12.x); an HTTP/1.1 body's chunk is
# one such read, less the framing.
READ_SIZE = 65535
HOLD_LIMIT = 256 * 1024

Output = bytes | bytearray | Iterable[bytes]


class CoalescingStream:
    """Wraps a `flow.response.stream` callable; sends the same bytes in fewer pieces."""

    def __init__(self, inner: Callable[[bytes], Output], limit: int = HOLD_LIMIT) -> None:
        self.inner = inner
        self._limit = limit
        self._held: list[bytes] = []
        self._held_size = 0
        self._sent = False

    def __call__(self, chunk: bytes) -> list[bytes] | Iterator[bytes]:
        out = self.inner(chunk)
        if not isinstance(out, (bytes, bytearray)):
            # A call that yields its pieces one by one (the injecting one: the head goes out before
            # the rest is re-encoded) keeps that order and pace.
            return self._after_held(out)
        if out:
            self._held.append(bytes(out))
            self._held_size += len(out)
        if self._sent and len(chunk) >= READ_SIZE and self._held_size < self._limit:
            return []
        return self._flush()

    def _flush(self) -> list[bytes]:
        held = self._held
        if not held:
            return []
        self._held, self._held_size, self._sent = [], 0, True
        return [held[0] if len(held) == 1 else b"".join(held)]

    def _after_held(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        yield from self._flush()
        for piece in pieces:
            if piece:
                self._sent = True
                yield piece
