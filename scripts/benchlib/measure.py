"""The measurements: wrk throughput, one request timed to its first body byte and to its end, and
the check that what came back is the page (passed through, or with exactly one snippet)."""

from __future__ import annotations

import dataclasses
import re
import socket
import subprocess
import time
import zlib

import brotli

NAVIGATION = {"Sec-Fetch-Dest": "document", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


class Failed(Exception):
    """A response that is not what the configuration should produce."""


# --- throughput -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    requests: int
    mbytes_per_s: float
    errors: int  # socket errors and non-2xx/3xx answers
    output: str


_SIZE_UNITS = {"B": 1 / 1024**2, "KB": 1 / 1024, "MB": 1, "GB": 1024}


def wrk(url: str, headers: dict[str, str], *, threads: int, connections: int, duration: float, timeout: float) -> WrkResult:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", f"--timeout={round(timeout)}s"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    result = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + timeout + 30, check=False)
    output = result.stdout + result.stderr
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if result.returncode != 0 or rate is None:
        raise Failed(f"wrk failed ({result.returncode}): {output.strip()[-500:]}")
    count = re.search(r"(\d+) requests in", output)
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB)", output)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        requests=int(count.group(1)) if count else 0,
        mbytes_per_s=float(transfer.group(1)) * _SIZE_UNITS[transfer.group(2)] if transfer else 0.0,
        errors=errors + (int(non2xx.group(1)) if non2xx else 0),
        output=output,
    )


# --- one timed request ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Fetch:
    ttfb_ms: float  # request sent -> first byte of the body
    headers_ms: float  # request sent -> end of the response headers
    total_ms: float  # request sent -> last byte of the body
    status: int
    headers: dict[str, str]  # lowercased names; repeated ones joined with ", "
    body: bytes  # as on the wire: chunked framing removed, content-encoding not


def fetch(port: int, path: str, headers: dict[str, str], timeout: float = 120.0) -> Fetch:
    """GET over a fresh connection (`Connection: close`), timed with perf_counter."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    received = bytearray()
    header_end = -1
    t_headers = t_body = t_end = None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        sock.sendall(request)
        while True:
            n = sock.recv_into(buffer)
            if not n:
                break
            now = time.perf_counter()
            received += view[:n]
            if header_end < 0:
                header_end = received.find(b"\r\n\r\n")
                if header_end >= 0:
                    t_headers = now
            if header_end >= 0:
                if t_body is None and len(received) > header_end + 4:
                    t_body = now
                t_end = now
    if header_end < 0 or t_headers is None:
        raise Failed(f"no complete response header from port {port}: {bytes(received[:200])!r}")
    head = bytes(received[:header_end]).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    parsed: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        parsed[key] = f"{parsed[key]}, {value.strip()}" if key in parsed else value.strip()
    body = bytes(received[header_end + 4 :])
    if "chunked" in parsed.get("transfer-encoding", ""):
        body = dechunk(body)
    elif "content-length" in parsed and int(parsed["content-length"]) != len(body):
        raise Failed(f"Content-Length {parsed['content-length']} but {len(body)} body bytes")
    t_body = t_body or t_headers
    return Fetch(
        ttfb_ms=(t_body - start) * 1000,
        headers_ms=(t_headers - start) * 1000,
        total_ms=((t_end or t_headers) - start) * 1000,
        status=status,
        headers=parsed,
        body=body,
    )


def dechunk(data: bytes) -> bytes:
    out = []
    pos = 0
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            raise Failed("chunked body cut off")
        size = int(data[pos:line_end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2


def decode(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return zlib.decompress(body, 31)
    if encoding == "br":
        return brotli.decompress(body)
    raise Failed(f"unexpected Content-Encoding {encoding!r}")


# --- is it right? ---------------------------------------------------------------


def check(response: Fetch, original: bytes, *, snippet: tuple[bytes, bytes] | None, encoding: str | None) -> None:
    """Raise Failed unless the response is `original`, with one snippet when `snippet` is given as
    (its first bytes, its last bytes), and, when `encoding` is given, in that Content-Encoding."""
    if response.status != 200:
        raise Failed(f"status {response.status}")
    got_encoding = response.headers.get("content-encoding", "identity")
    if encoding is not None and got_encoding != encoding:
        raise Failed(f"Content-Encoding {got_encoding!r}, expected {encoding!r}")
    document = decode(response.body, got_encoding)
    if snippet is None:
        if document != original:
            raise Failed(f"body differs from the page ({len(document)} vs {len(original)} bytes)")
        return
    first, last = snippet
    start = document.find(first)
    end = document.find(last, start) + len(last) if start >= 0 else -1
    if start < 0 or end < len(last):
        raise Failed("no snippet in the page")
    if document[:start] + document[end:] != original:
        raise Failed("the page differs by more than one snippet")
    if document.find(first, end) >= 0:
        raise Failed("more than one snippet")
