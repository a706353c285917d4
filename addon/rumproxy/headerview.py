"""Header reads and edits on mitmproxy's raw fields, one pass each.

`Headers.get()` and `headers[name] = value` lower-case and re-encode every field on every call
(about 3 µs each, scripts/bench); instrumenting one page reads and writes some thirty headers, which
made header handling the largest part of what the addon added to a small page.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mitmproxy import http

Fields = tuple[tuple[bytes, bytes], ...]
# A header edit: the value (or values) to set, or None to remove the header.
Edit = str | Sequence[str] | None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")  # as mitmproxy's Headers decode values


class HeaderView:
    """The headers of one message as they were when the view was made. Names are lower-case bytes;
    values read as `Headers` reads them (repeated fields folded with ", " by get())."""

    __slots__ = ("_values",)

    def __init__(self, headers: http.Headers) -> None:
        values: dict[bytes, list[bytes]] = {}
        for name, value in headers.fields:
            key = name.lower()
            found = values.get(key)
            if found is None:
                values[key] = [value]
            else:
                found.append(value)
        self._values = values

    def __contains__(self, name: bytes) -> bool:
        return name in self._values

    def get(self, name: bytes, default: str | None = None) -> str | None:
        found = self._values.get(name)
        if found is None:
            return default
        if len(found) == 1:
            return _text(found[0])
        return ", ".join(map(_text, found))

    def text(self, name: bytes) -> str:
        """get() with "" for a missing header."""
        return self.get(name) or ""

    def get_all(self, name: bytes) -> list[str]:
        return [_text(value) for value in self._values.get(name, ())]


def edited(fields: Fields, edits: Mapping[bytes, Edit]) -> Fields:
    """`fields` with the edits applied (lower-case names): a header that is set takes the place of
    its first occurrence, or goes last if it was absent; other fields keep their order and case."""
    out: list[tuple[bytes, bytes]] = []
    placed: set[bytes] = set()
    for field in fields:
        key = field[0].lower()
        if key not in edits:
            out.append(field)
        elif key not in placed:
            placed.add(key)
            _append(out, field[0], edits[key])
    for key, edit in edits.items():
        # Most edits of a page's response remove headers it does not have.
        if edit is not None and key not in placed:
            _append(out, key, edit)
    return tuple(out)


def _append(out: list[tuple[bytes, bytes]], name: bytes, edit: Edit) -> None:
    if edit is None:
        return
    if isinstance(edit, str):
        out.append((name, edit.encode("utf-8", "surrogateescape")))
    else:
        out.extend((name, value.encode("utf-8", "surrogateescape")) for value in edit)
