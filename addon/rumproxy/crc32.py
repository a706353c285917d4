"""CRC-32 of joined byte strings from the CRC-32 of each, as zlib's crc32_combine() computes it
(multiplication modulo the reflected polynomial): a spliced gzip body's trailer is made from the
upstream's without reading the bytes it covers. ISA-L's zlib module has crc32_combine; Python's
has not, hence the fallback in Python."""

from __future__ import annotations

from rumproxy import codecs

_POLY = 0xEDB88320


def _multmodp(a: int, b: int) -> int:
    m = 1 << 31
    p = 0
    while True:
        if a & m:
            p ^= b
            if not a & (m - 1):
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return p


def _x2n_table() -> list[int]:
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return table


_X2N = _x2n_table()
_CRC32_COMBINE = getattr(codecs.deflate_lib, "crc32_combine", None)


def combine(first: int, second: int, second_length: int) -> int:
    """The CRC-32 of two byte strings one after the other, from the CRC-32 of each."""
    if not second_length:
        return first
    if _CRC32_COMBINE is not None:
        return _CRC32_COMBINE(first, second, second_length)
    return _python_shift_crc(first, second_length) ^ second


def shift(crc: int, length: int) -> int:
    """`crc` advanced over `length` zero bytes in the sense of crc32_combine: crc(A+B) equals
    shift(crc(A), len(B)) ^ crc(B)."""
    if _CRC32_COMBINE is not None:
        return _CRC32_COMBINE(crc, 0, length)
    return _python_shift_crc(crc, length)


def _python_shift_crc(crc: int, length: int) -> int:
    # Python's zlib module has no crc32_combine; ISA-L's has.
    op = 1 << 31  # x^0
    n, k = length, 3  # x^(8 * length)
    while n:
        if n & 1:
            op = _multmodp(_X2N[k & 31], op)
        n >>= 1
        k += 1
    return _multmodp(op, crc)
