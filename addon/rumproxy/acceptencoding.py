"""Which compressions a page request asks the upstream for.

A br or zstd page is decoded and compressed again at the fastest level whenever the proxy inserts
into it (neither format has blocks that could be reused as they are), which costs about ten times
the CPU of a gzip page of the same size, keeps the upstream's window (4 MiB for br) per stream, and
at those levels gives more bytes than the upstream's own gzip of the same page (README,
Performance). A gzip page is re-compressed only around the snippet and its remembered rewrite is
reused. So when the client accepts gzip, the upstream is asked for a page without br or zstd.
"""

from __future__ import annotations

RECOMPRESSED = ("br", "zstd")
_GZIP_NAMES = ("gzip", "x-gzip")
_REFUSED = ", ".join(f"{coding};q=0" for coding in RECOMPRESSED)


def preferring_gzip(accept_encoding: str) -> str | None:
    """The Accept-Encoding to send upstream instead of the client's `accept_encoding`: the same
    codings without br and zstd, when the client accepts gzip. None when nothing would change, the
    client does not accept gzip, or the header does not parse (it then goes upstream as it is)."""
    kept: list[str] = []
    gzip_weight: float | None = None
    star_weight: float | None = None
    dropped = False
    for item in accept_encoding.split(","):
        item = item.strip()
        if not item:
            continue
        coding, _, parameters = item.partition(";")
        name = coding.strip().lower()
        weight = _weight(parameters)
        if weight is None:
            return None
        if name in RECOMPRESSED:
            dropped = dropped or weight > 0
            continue
        if name in _GZIP_NAMES:
            gzip_weight = max(weight, gzip_weight or 0.0)
        elif name == "*":
            star_weight = weight
        kept.append(item)
    accepts_gzip = gzip_weight > 0 if gzip_weight is not None else bool(star_weight)
    if not accepts_gzip:
        return None
    if star_weight:
        # "*" would let the upstream choose br or zstd all the same.
        kept.append(_REFUSED)
    elif not dropped:
        return None
    return ", ".join(kept)


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
