"""Leaving the CPU's vector registers clean after ISA-L: the x86 instruction `vzeroupper`.

ISA-L's AVX2 and AVX-512 code (the deflate, inflate and CRC-32 behind codecs.deflate_lib) returns
without `vzeroupper`, which leaves it to the caller (intel/isa-l#24). Until something issues it, the
upper halves of the vector registers stay dirty and every SSE instruction after them runs slower:
CPython's own code (frame set-up, small copies) and with it all of mitmproxy, for the rest of the
process, since nothing in it issues the instruction. Measured on the bench machine (a Xeon with
AVX-512): Python code 18-24 % slower after one ISA-L call; scripts/bench's 10 KB gzip page 0.81x of
plain mitmdump's throughput with ISA-L, 0.89x with zlib instead, and as fast as with zlib once
cleared (ISA-L stays for its speed on pages that are decoded and compressed).

Python cannot issue the instruction, so `clear()` calls a function of two instructions (vzeroupper;
ret) built in a page of its own, which is made executable only after it is written (never writable
and executable at once). Where that cannot be done (not x86-64 Linux, a CPU without AVX, zlib in use,
a system that forbids executable memory) `clear()` does nothing. The addon calls it where its code
hands control back to mitmproxy after a body's bytes went through the codecs: the end of the
response hook and of each call of a streaming callable.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import platform
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

from rumproxy import codecs

logger = logging.getLogger(__name__)

_VZEROUPPER_RET = b"\xc5\xf8\x77\xc3"


def _noop() -> None:
    pass


def _cpu_has_avx(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        with cpuinfo.open() as lines:
            for line in lines:
                if line.startswith("flags"):
                    return "avx" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def _executable(code: bytes, libc: ctypes.CDLL | None = None) -> Callable[[], None] | None:
    """`code` as a function without arguments, in a page that is readable and executable only."""
    if libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    size = mmap.PAGESIZE
    address = libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if address is None or address == ctypes.c_void_p(-1).value:
        return None
    ctypes.memmove(address, code, len(code))
    if libc.mprotect(address, size, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        libc.munmap(address, size)
        return None
    return ctypes.CFUNCTYPE(None)(address)  # the page is never unmapped: the function lives as long as the process


def _build() -> Callable[[], None]:
    if codecs.deflate_lib is zlib:
        return _noop  # zlib's code keeps to SSE
    if sys.platform != "linux" or platform.machine() != "x86_64" or not _cpu_has_avx():
        return _noop
    try:
        function = _executable(_VZEROUPPER_RET)
    except Exception as e:  # noqa: BLE001 - a speed-up only: never a reason for the addon not to load
        logger.debug("vzeroupper not available: %r", e)
        return _noop
    if function is None:
        logger.debug("vzeroupper not available: no executable page (this system may forbid them)")
        return _noop
    return function


clear: Callable[[], None] = _build()


def available() -> bool:
    """Whether clear() issues vzeroupper here; False: it does nothing on this system."""
    return clear is not _noop
