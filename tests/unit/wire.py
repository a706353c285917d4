"""What mitmproxy sends of a stream callable's result, for the tests of our streams."""

from __future__ import annotations


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
