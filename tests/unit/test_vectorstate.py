"""vectorstate: vzeroupper after ISA-L where the machine allows it, nothing where it does not (the
addon's calls of it: test_addon)."""

from __future__ import annotations

import ctypes
import mmap
import platform
import sys
import types
import zlib
from pathlib import Path

import pytest

from rumproxy import codecs, vectorstate

ON_AVX_LINUX = sys.platform == "linux" and platform.machine() == "x86_64" and vectorstate._cpu_has_avx()


@pytest.mark.skipif(not ON_AVX_LINUX or codecs.deflate_lib is zlib, reason="x86-64 Linux with AVX and ISA-L only")
def test_on_x86_64_linux_with_avx_clear_issues_vzeroupper():
    assert vectorstate.available()
    for _ in range(3):
        codecs.deflate_lib.crc32(b"x" * 300)
        vectorstate.clear()
    assert vectorstate._build() is not vectorstate._noop


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path):
    with_avx = tmp_path / "with"
    with_avx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2\n")
    avx512_only_named = tmp_path / "without"
    avx512_only_named.write_text("processor\t: 0\nflags\t\t: fpu sse2 sse4_2 avx512_fake\n")
    assert vectorstate._cpu_has_avx(with_avx)
    assert not vectorstate._cpu_has_avx(avx512_only_named)
    assert not vectorstate._cpu_has_avx(tmp_path / "missing")


@pytest.mark.parametrize(
    "case",
    ["zlib in use", "another CPU architecture", "another system", "no AVX", "no executable page", "libc calls failing"],
)
def test_where_vzeroupper_cannot_be_issued_clear_does_nothing(monkeypatch, case):
    if case == "zlib in use":
        monkeypatch.setattr(codecs, "deflate_lib", zlib)
    elif case == "another CPU architecture":
        monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    elif case == "another system":
        monkeypatch.setattr(sys, "platform", "darwin")
    elif case == "no AVX":
        monkeypatch.setattr(vectorstate, "_cpu_has_avx", lambda: False)
    elif case == "no executable page":
        monkeypatch.setattr(vectorstate, "_executable", lambda code: None)
    else:
        def missing(code):
            raise TypeError("a libc without the mmap signature it was given")

        monkeypatch.setattr(vectorstate, "_executable", missing)
    built = vectorstate._build()
    assert built is vectorstate._noop
    built()


class _Function:
    """A libc function of a fake libc: records its calls, returns what it is told."""

    def __init__(self, result):
        self.result = result
        self.calls: list[tuple] = []

    def __call__(self, *args):
        self.calls.append(args)
        return self.result


@pytest.mark.parametrize("refused", ["mmap", "mprotect"])
def test_a_page_the_system_will_not_map_or_make_executable_is_given_back(refused):
    page = ctypes.create_string_buffer(mmap.PAGESIZE)
    libc = types.SimpleNamespace(
        mmap=_Function(ctypes.c_void_p(-1).value if refused == "mmap" else ctypes.addressof(page)),
        mprotect=_Function(-1),
        munmap=_Function(0),
    )
    assert vectorstate._executable(b"\xc3", libc) is None
    if refused == "mmap":
        assert not libc.mprotect.calls and not libc.munmap.calls
    else:
        assert page.raw[:1] == b"\xc3"  # written before it was to be made executable
        assert libc.mprotect.calls == [(ctypes.addressof(page), mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC)]
        assert libc.munmap.calls == [(ctypes.addressof(page), mmap.PAGESIZE)]
