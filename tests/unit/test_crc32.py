"""crc32: zlib's crc32_combine, with ISA-L's and without."""

import zlib

from hypothesis import given
from hypothesis import strategies as st

from rumproxy import crc32


@given(st.binary(max_size=300), st.binary(max_size=3000))
def test_crc_shift_is_zlibs_crc32_combine(a, b):
    assert crc32.shift(zlib.crc32(a), len(b)) ^ zlib.crc32(b) == zlib.crc32(a + b)
    assert crc32._python_shift_crc(zlib.crc32(a), len(b)) ^ zlib.crc32(b) == zlib.crc32(a + b)


@given(st.binary(max_size=300), st.binary(max_size=3000), st.booleans())
def test_crc32_combine_with_and_without_isal(a, b, without_isal):
    native = crc32._CRC32_COMBINE
    crc32._CRC32_COMBINE = None if without_isal else native
    try:
        assert crc32.combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)
    finally:
        crc32._CRC32_COMBINE = native
