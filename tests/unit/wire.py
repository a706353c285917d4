"""What mitmproxy sends of a stream callable's result, and a body cut into chunks for it, for the
tests of our streams."""

from __future__ import annotations

from collections.abc import Callable, Iterable


def on_the_wire(result: object, end: bool) -> list[bytes]:
    """The pieces mitmproxy sends for one call's `result` (proxy/layers/http/__init__.py,
    state_stream_response_body): bytes go as one piece, anything else is iterated; only the call at
    the body's end (`end`, the call with b"") may return b"" for nothing. Fails on what would break
    the response: an empty piece goes out as HTTP/1.1's last chunk and ends the body early (and the
    real end then writes a second one into the connection), a non-empty bytearray is iterated as
    ints, and anything but bytes is not what mitmproxy's HTTP/2 and HTTP/3 layers expect."""
    if end and result == b"":
        return []
    pieces = [result] if isinstance(result, bytes) else list(result)  # type: ignore[call-overload]
    for piece in pieces:
        assert isinstance(piece, bytes), f"a stream sent {type(piece).__name__}, not bytes"
        assert piece, "a stream sent an empty piece: a zero-length HTTP/1.1 chunk ends the body there"
    return pieces


def chunks_of(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """Non-empty chunks of `data`, cut at the given positions (modulo its length + 1)."""
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def sent_through(stream: Callable[[bytes], object], chunks: Iterable[bytes]) -> bytes:
    """What the client gets of a body fed to a `flow.response.stream` callable in `chunks`, then its
    end (b"")."""
    return b"".join(piece for chunk in [*chunks, b""] for piece in on_the_wire(stream(chunk), end=not chunk))
