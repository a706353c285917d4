"""Accept-Encoding: whether a client takes gzip, and which compressions a page request asks the
upstream for.

A br or zstd page is decoded and compressed again at the fastest level whenever the proxy inserts
into it (neither format has blocks that could be reused as they are), which costs 5 to 13 times
the CPU of a gzip page of 2.5 to 20 MB, keeps the upstream's window (4 MiB for br) per stream, and at
those levels gives more bytes than the upstream's own gzip of the same page (README, Performance).
A gzip page is re-compressed only around the snippet and its remembered rewrite is reused. So when
the client accepts gzip, the upstream is asked for a page without br or zstd.
"""

from __future__ import annotations

import dataclasses
import functools

RECOMPRESSED = ("br", "zstd")
_GZIP_NAMES = ("gzip", "x-gzip")
_REFUSED = ", ".join(f"{coding};q=0" for coding in RECOMPRESSED)


@dataclasses.dataclass(frozen=True)
class Coding:
    item: str  # as the client wrote it, parameters included
    name: str  # lower-case
    weight: float


def parse(accept_encoding: str) -> list[Coding] | None:
    """The codings of an Accept-Encoding value; None when a weight is not a qvalue."""
    codings = []
    for item in accept_encoding.split(","):
        item = item.strip()
        if not item:
            continue
        coding, _, parameters = item.partition(";")
        weight = _weight(parameters)
        if weight is None:
            return None
        codings.append(Coding(item, coding.strip().lower(), weight))
    return codings


def accepts_gzip(accept_encoding: str) -> bool:
    codings = parse(accept_encoding)
    return codings is not None and _accepts_gzip(codings)


# Cached: browsers send a handful of values, and parsing one costs some 10 µs.
@functools.lru_cache(maxsize=256)
def preferring_gzip(accept_encoding: str) -> str | None:
    """The Accept-Encoding to send upstream instead of the client's `accept_encoding`: the same
    codings without br and zstd, when the client accepts gzip. None when nothing would change, the
    client does not accept gzip, or the header does not parse (it then goes upstream as it is)."""
    codings = parse(accept_encoding)
    if codings is None or not _accepts_gzip(codings):
        return None
    kept = [coding.item for coding in codings if coding.name not in RECOMPRESSED]
    if any(coding.name == "*" and coding.weight > 0 for coding in codings):
        kept.append(_REFUSED)  # "*" would let the upstream choose br or zstd all the same
    elif not any(coding.name in RECOMPRESSED and coding.weight > 0 for coding in codings):
        return None
    return ", ".join(kept)


def _accepts_gzip(codings: list[Coding]) -> bool:
    """gzip named with a weight above 0, or not named and "*" accepted (RFC 9110, 12.5.3)."""
    named = [coding.weight for coding in codings if coding.name in _GZIP_NAMES]
    if named:
        return max(named) > 0
    return any(coding.name == "*" and coding.weight > 0 for coding in codings)


def _weight(parameters: str) -> float | None:
    """The q of ";q=0.5" (1 without one); None when it is not a qvalue (RFC 9110, 12.4.2)."""
    weight = 1.0
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "q":
            continue
        try:
            weight = float(value.strip())
        except ValueError:
            return None
        if not 0.0 <= weight <= 1.0:
            return None
    return weight
