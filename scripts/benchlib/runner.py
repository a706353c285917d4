"""One cell of the bench: a page in one encoding through every configuration, in one round.

Every configuration gets a fresh proxy for the cell (they start side by side, then idle while
another one is measured), so peak RSS belongs to this page and encoding alone. The measurements
alternate between the configurations at the finest grain that still measures something: single
requests one configuration after the other, then wrk in slices (A B C D A B C D …), so that the
drifts of a shared machine hit every configuration alike. A configuration too slow for short
slices (a 20 MB page re-encoded: seconds per request under load) gets one long wrk run instead.
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any

from benchlib import measure, servers
from benchlib.pages import Page

from rumproxy.settings import STREAM_ABOVE

# wrk counts finished requests only: a run must span several request latencies under load.
LATENCIES_PER_RUN = 5
ADDON_SNIPPET = (b'<script src="/__rum/', b"}})();</script>")
REFERENCE_SNIPPET = (
    '<script src="/__rum/elastic-apm-rum.umd.min.js" crossorigin></script><script>(function(){var a=window.elasticApm;'
    'if(a&&typeof a.init=="function"&&!(a.isActive&&a.isActive())){a.init({"serviceName":"bench",'
    '"serverUrl":"http://127.0.0.1:8200"})}})();</script>'
)


# What the client sends for each column. The br column is a browser (Chromium's header): the origin
# answers it with br, which plain mitmdump passes on; the addon asks the origin for gzip instead
# (rum_prefer_gzip) unless told not to (auto-br); nginx-sub asks for identity and gzips.
ACCEPT_ENCODING = {"identity": "identity", "gzip": "gzip", "br": "gzip, deflate, br, zstd"}


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    addon: bool
    args: tuple[str, ...] = ()
    nginx: bool = False
    naive: bool = False  # puts the reference snippet in, as nginx-sub does

    def served_encoding(self, encoding: str) -> str:
        """The Content-Encoding the client gets in the column of the origin's `encoding`."""
        if self.nginx:
            # nginx-light has no brotli: it asks the origin for identity and gzips for gzip clients.
            return "gzip" if "gzip" in ACCEPT_ENCODING[encoding] else "identity"
        if encoding == "br" and self.addon and "rum_prefer_gzip=false" not in self.args:
            return "gzip"
        return encoding


HOOKS_ONLY = Path(__file__).with_name("hooks_only.py")
NAIVE_SPLICE = Path(__file__).with_name("naive_splice.py")

CONFIGS = {
    c.name: c
    for c in (
        Config("pass", addon=False),
        Config("pass-stream", addon=False, args=("--set", f"stream_large_bodies={STREAM_ABOVE // 1024}k")),
        Config("pass-hooks", addon=False, args=("-s", str(HOOKS_ONLY))),
        Config("pass-hooks-stream", addon=False, args=("-s", str(HOOKS_ONLY), "--set", "hooks_stream=true")),
        Config("naive", addon=False, naive=True,
               args=("-s", str(NAIVE_SPLICE), "--set", f"naive_snippet={REFERENCE_SNIPPET}")),
        Config("never", addon=True, args=("--set", "rum_stream=never")),
        Config("always", addon=True, args=("--set", "rum_stream=always")),
        Config("auto", addon=True),
        Config("auto-nomemo", addon=True, args=("--set", "rum_memo=0")),
        Config("auto-br", addon=True, args=("--set", "rum_prefer_gzip=false")),
        Config("nginx-sub", addon=False, nginx=True),
    )
}


@dataclasses.dataclass
class Setup:
    """What every cell shares: the options, the origin, the reference proxy, the addon's rules."""

    args: Any
    work: Path
    rules: Path
    origin_port: int
    reference: servers.Process | None
    reference_port: int | None


@dataclasses.dataclass
class Target:
    """One configuration's proxy within a cell, and what was measured on it."""

    config: Config
    process: servers.Process | None = None  # None: the long-running nginx reference
    port: int = 0
    pids: list[int] = dataclasses.field(default_factory=list)  # whose CPU time and RSS count
    idle_rss_kib: int | None = None
    fetches: list[measure.Fetch] = dataclasses.field(default_factory=list)
    runs: list[tuple[float, measure.WrkResult]] = dataclasses.field(default_factory=list)  # (seconds, result)
    cpu_seconds: float = 0.0
    slices: int = 0
    run_seconds: float = 0.0
    peak_rss_kib: int | None = None
    error: str | None = None


def run_cell(setup: Setup, round_no: int, page: Page, encoding: str) -> list[dict[str, Any]]:
    args = setup.args
    targets = [Target(CONFIGS[name]) for name in args.configs]
    try:
        _start(setup, targets)
        headers = {"Accept-Encoding": ACCEPT_ENCODING[encoding], **measure.NAVIGATION}
        for target in _live(targets):
            _guard(target, lambda t=target: _plan_wrk(args, t, checked_fetch(t, page, headers, encoding)))
        # A fresh Python process runs slower for its first seconds: warm up where wrk slices are short.
        for target in _live(targets):
            if target.slices > 1 and args.warmup and not target.config.nginx:
                _guard(target, lambda t=target: measure.wrk(
                    f"http://127.0.0.1:{t.port}{page.path}", headers, threads=args.threads,
                    connections=args.connections, duration=args.warmup, timeout=args.wrk_timeout))
        for _ in range(args.samples):
            for target in _live(targets):
                _guard(target, lambda t=target: t.fetches.append(checked_fetch(t, page, headers, encoding)))
        for index in range(max((t.slices for t in targets), default=0)):
            for target in _live(targets):
                if index < target.slices:
                    _guard(target, lambda t=target: _wrk(args, t, page, headers))
        for target in _live(targets):
            _guard(target, lambda t=target: _read_peak(t))
    finally:
        for target in targets:
            if target.process is not None:
                target.process.terminate()
        for target in targets:
            if target.process is not None:
                target.process.stop()
    return [_sample(round_no, page, encoding, target) for target in targets]


def _start(setup: Setup, targets: list[Target]) -> None:
    for target in targets:
        if target.config.nginx:
            assert setup.reference is not None and setup.reference_port is not None
            target.port = setup.reference_port
            target.pids = servers.children(setup.reference.pid) or [setup.reference.pid]
            for pid in target.pids:
                servers.reset_peak(pid)  # the workers outlive the cell: their peak starts now
            continue
        target.process = proxy(setup, target.config, target.config.name).launch()
        if not (setup.work / "confdir").exists():
            # The first mitmdump writes its CA into the shared confdir: the others must not read it half written.
            _guard(target, lambda t=target: _ready(t))
    for target in targets:
        if target.process is not None and not target.pids and target.error is None:
            _guard(target, lambda t=target: _ready(t))


def proxy(setup: Setup, config: Config, name: str) -> servers.Process:
    """The mitmdump of a configuration (not started), with the addon and the bench's rules if it has it."""
    argv = list(config.args)
    if config.addon:
        argv = ["-s", str(servers.ADDON_SCRIPT), "--set", f"rum_rules={setup.rules}", *argv]
    return servers.mitmdump(setup.work, name, setup.origin_port, argv, confdir=setup.work / "confdir")


def _ready(target: Target) -> None:
    assert target.process is not None
    target.process.wait_ready()
    target.port = servers.mitmdump_port(target.process)
    target.pids = [target.process.pid]
    target.idle_rss_kib = servers.memory(target.process.pid)["VmRSS"]


def _live(targets: list[Target]) -> list[Target]:
    return [t for t in targets if t.error is None]


def _guard(target: Target, action) -> None:
    try:
        action()
    except (measure.Failed, servers.StartError, OSError) as e:
        target.error = str(e)[:500]


def checked_fetch(target: Target, page: Page, headers: dict[str, str], encoding: str) -> measure.Fetch:
    if target.config.nginx or target.config.naive:
        snippet = (REFERENCE_SNIPPET[:20].encode(), REFERENCE_SNIPPET[-15:].encode())
    else:
        snippet = ADDON_SNIPPET if target.config.addon else None
    response = measure.fetch(target.port, page.path, headers)
    measure.check(response, page.body, snippet=snippet, encoding=target.config.served_encoding(encoding))
    return response


def _plan_wrk(args: Any, target: Target, first: measure.Fetch) -> None:
    """Short slices where a request is quick, one long run where it is not (judged by the first,
    cold request: an overestimate errs on the long side)."""
    total_s = first.total_ms / 1000
    needed = LATENCIES_PER_RUN * total_s * args.connections  # under load the connections share the proxy
    if needed <= args.duration:
        target.slices, target.run_seconds = args.slices, args.duration
    else:
        target.slices, target.run_seconds = 1, min(max(needed, args.duration * args.slices), args.max_duration)


def _wrk(args: Any, target: Target, page: Page, headers: dict[str, str]) -> None:
    before = servers.cpu_seconds(target.pids)
    result = measure.wrk(f"http://127.0.0.1:{target.port}{page.path}", headers, threads=args.threads,
                         connections=args.connections, duration=target.run_seconds, timeout=args.wrk_timeout)
    target.cpu_seconds += servers.cpu_seconds(target.pids) - before
    if result.errors:
        raise measure.Failed(f"wrk saw {result.errors} errors: {result.output.strip()[-300:]}")
    target.runs.append((max(1, round(target.run_seconds)), result))


def _read_peak(target: Target) -> None:
    target.peak_rss_kib = max(servers.memory(pid)["VmHWM"] for pid in target.pids)
    if target.process is not None and target.process.popen.poll() is not None:
        raise measure.Failed(f"mitmdump exited: {target.process.log.read_text('utf-8', 'replace')[-500:]}")


def _sample(round_no: int, page: Page, encoding: str, target: Target) -> dict[str, Any]:
    sample: dict[str, Any] = {"round": round_no, "page": page.name, "encoding": encoding, "config": target.config.name}
    if target.error is not None:
        return {**sample, "error": target.error}
    requests = sum(result.requests for _, result in target.runs)
    seconds = sum(duration for duration, _ in target.runs)
    last = target.fetches[-1]
    return {
        **sample,
        "rps": requests / seconds if seconds else None,
        "rps_slices": [result.requests_per_s for _, result in target.runs],
        "wrk_requests": requests,
        "wrk_seconds": seconds,
        "cpu_ms": target.cpu_seconds * 1000 / requests if requests else None,
        "ttfb_ms": statistics.median(f.ttfb_ms for f in target.fetches),
        "headers_ms": statistics.median(f.headers_ms for f in target.fetches),
        "total_ms": statistics.median(f.total_ms for f in target.fetches),
        "peak_rss_mib": target.peak_rss_kib / 1024 if target.peak_rss_kib is not None else None,
        "idle_rss_mib": target.idle_rss_kib / 1024 if target.idle_rss_kib is not None else None,
        "chunked": "chunked" in last.headers.get("transfer-encoding", ""),
        "content_length": "content-length" in last.headers,
        "wire_bytes": len(last.body),
    }
