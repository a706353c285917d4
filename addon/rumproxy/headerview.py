"""Header reads and edits on mitmproxy's raw fields, one pass each.

`Headers.get()` and `headers[name] = value` lower-case and re-encode every field on every call
(about 3 µs each, scripts/bench); instrumenting one page reads and writes some thirty headers, which
made header handling the largest part of what the addon added to a small page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from mitmproxy import http

Fields = tuple[tuple[bytes, bytes], ...]
# A header edit: the value (or values) to set, or None to remove the header.
Edit = str | Sequence[str] | None


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")  # as mitmproxy's Headers decode values


class HeaderView(dict[bytes, str]):
    """The headers of one message as they were when the view was made: lower-case names to values as
    `Headers.get()` reads them (a repeated field's values folded with ", "). A dict, so that reads
    (`in`, `get`) run in C: a page reads some thirty headers, and a method call per read cost more
    than the reads themselves."""

    __slots__ = ("fields", "_repeated")

    def __init__(self, headers: http.Headers) -> None:
        fields = self.fields = headers.fields
        for name, value in fields:
            self[name.lower()] = value.decode("utf-8", "surrogateescape")  # as mitmproxy's Headers decode values
        self._repeated: dict[bytes, list[str]] | None = None  # names that occur more than once (Set-Cookie, say)
        if len(self) != len(fields):
            repeated: dict[bytes, list[str]] = {}
            for name, value in fields:
                repeated.setdefault(name.lower(), []).append(_text(value))
            self._repeated = {name: values for name, values in repeated.items() if len(values) > 1}
            self.update((name, ", ".join(values)) for name, values in self._repeated.items())

    def text(self, name: bytes) -> str:
        """get() with "" for a missing header."""
        return self.get(name) or ""

    def get_all(self, name: bytes) -> list[str]:
        if self._repeated is not None and name in self._repeated:
            return list(self._repeated[name])
        value = self.get(name)
        return [] if value is None else [value]

    def edited(self, edits: Mapping[bytes, Edit]) -> Fields:
        """The fields this view was made of, with the edits applied (see `edited`)."""
        # Without repeated names, the view's names are the fields' lower-case names in order.
        return edited(self.fields, edits, self if self._repeated is None else None)


def edited(fields: Fields, edits: Mapping[bytes, Edit], names: Iterable[bytes] | None = None) -> Fields:
    """`fields` with the edits applied (lower-case names): a header that is set takes the place of
    its first occurrence, or goes last if it was absent; other fields keep their order and case.
    `names`: the fields' lower-case names in order, when the caller has them."""
    if names is None:
        names = [name.lower() for name, _ in fields]
    out: list[tuple[bytes, bytes]] = []
    placed: set[bytes] = set()
    for field, name in zip(fields, names):
        if name not in edits:
            out.append(field)
        elif name not in placed:
            placed.add(name)
            edit = edits[name]
            if isinstance(edit, str):  # most edits are one value
                out.append((field[0], edit.encode("utf-8", "surrogateescape")))
            elif edit is not None:
                _append_all(out, field[0], edit)
    for name, edit in edits.items():
        # Most edits of a page's response remove headers it does not have.
        if edit is None or name in placed:
            continue
        if isinstance(edit, str):
            out.append((name, edit.encode("utf-8", "surrogateescape")))
        else:
            _append_all(out, name, edit)
    return tuple(out)


def _append_all(out: list[tuple[bytes, bytes]], name: bytes, values: Sequence[str]) -> None:
    out.extend((name, value.encode("utf-8", "surrogateescape")) for value in values)
