"""Instructions per request under callgrind (`scripts/bench --instructions`): what the proxy executes
for one request, counted instead of timed, so the same code gives the same number on a shared,
noisy machine (plain mitmdump's CPU time per request swings by half from one second to the next on
the 2-vCPU VM of the README's runs, and throughput ratios by 0.2x from one run to the next).

Each configuration's mitmdump runs under `valgrind --tool=callgrind` (some 50 times slower), gets
one checked request and `warmup` more, then `batches` batches of `requests` requests one after the
other on one keep-alive connection; callgrind dumps its counters after each batch
(`callgrind_control -d`), and then once more after IDLE_S without requests: what runs by the clock
rather than per request is taken off (below). Counting does not depend on what else the machine
runs, so the configurations run side by side, one per CPU.

Only the proxy's own user-space instructions count. The kernel's share of a request (sockets,
epoll) is about the same for every configuration and not in the count, so an addon's share of the
count is somewhat larger than its share of the CPU time would be; instructions also weigh a cache
miss like any other. The batches of one process agree to 0.1 %.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from benchlib import measure, runner, servers
from benchlib.pages import Page

DEFAULT_CONFIGS = ("pass", "pass-hooks", "auto", "auto-nomemo")
# Polls that run by the clock (mitmproxy's check of its -s scripts, once a second; the addon's of
# its rules file) cost a few hundred thousand instructions a second whatever the load: nothing next
# to a proxy's second of requests, but under callgrind a request takes some 50 times longer, so
# they would add up to 0.2 million to each request's count. Each process's idle rate, measured
# after its batches for this long, is taken off its batches (by their duration).
IDLE_S = 5.0
START_TIMEOUT_S = 600.0  # mitmdump's start under callgrind takes 10-30 s here
_SUMMARY = re.compile(rb"^summary: (\d+)$", re.MULTILINE)


def missing_tools() -> list[str]:
    return [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]


def run_cell(setup: runner.Setup, page: Page, encoding: str) -> list[dict[str, Any]]:
    """Every configuration on one page and encoding, as many at a time as there are CPUs."""
    configs = [runner.CONFIGS[name] for name in setup.args.configs]
    if not (setup.work / "confdir").exists():
        # The first mitmdump writes its CA into the shared confdir: the others must not read it half written.
        runner.proxy(setup, runner.CONFIGS["pass"], "ca").start().stop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(lambda config: _measure(setup, config, page, encoding), configs))


def _measure(setup: runner.Setup, config: runner.Config, page: Page, encoding: str) -> dict[str, Any]:
    args = setup.args
    sample: dict[str, Any] = {"round": 1, "page": page.name, "encoding": encoding, "config": config.name}
    if config.nginx:
        return {**sample, "error": "not a mitmdump: callgrind counts Python processes here"}
    name = f"{config.name}-{page.name}-{encoding}"
    dumps = setup.work / f"callgrind-{name}"
    process = runner.proxy(setup, config, name)
    # Only totals are read: no per-line or per-instruction data, names written out once. A fixed hash
    # seed: str hashes decide dict and set layouts, which moved the count by up to 0.4 % between runs.
    process.argv = ["env", "PYTHONHASHSEED=0", "valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}.%p", "--dump-line=no",
                    "--dump-instr=no", "--compress-pos=no", *process.argv]  # fmt: skip
    headers = {"Accept-Encoding": runner.ACCEPT_ENCODING[encoding], **measure.NAVIGATION}
    try:
        process.start(timeout=START_TIMEOUT_S)
        port = servers.mitmdump_port(process)
        target = runner.Target(config, process, port)
        runner.checked_fetch(target, page, headers, encoding)
        client = _Client(port, page.path, headers)
        client.get(args.warmup_requests)
        _callgrind_control("-z", process.pid)
        counted = []  # (instructions, seconds) of each batch
        for batch in range(1, args.batches + 1):
            started = time.monotonic()
            client.get(args.requests)
            _callgrind_control("-d", process.pid)
            counted.append((_read_summary(Path(f"{dumps}.{process.pid}.{batch}")), time.monotonic() - started))
        started = time.monotonic()
        time.sleep(IDLE_S)
        _callgrind_control("-d", process.pid)
        idle_per_s = _read_summary(Path(f"{dumps}.{process.pid}.{args.batches + 1}")) / (time.monotonic() - started)
        client.close()
    except (measure.Failed, servers.StartError, OSError, subprocess.SubprocessError, http.client.HTTPException) as e:
        return {**sample, "error": str(e)[:500]}
    finally:
        process.stop()
    per_request = [(count - idle_per_s * seconds) / args.requests for count, seconds in counted]
    return {
        **sample,
        "instructions_mi": min(per_request) / 1e6,
        "instructions_batches_mi": [count / 1e6 for count in per_request],
        "instructions_raw_batches_mi": [count / args.requests / 1e6 for count, _ in counted],
        "idle_instructions_per_s": idle_per_s,
        "batch_seconds": [seconds for _, seconds in counted],
    }


class _Client:
    """Sequential GETs on one keep-alive connection: the proxy's per-request work, not connection setup."""

    def __init__(self, port: int, path: str, headers: dict[str, str]) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.path = path
        self.headers = headers

    def get(self, count: int) -> None:
        for _ in range(count):
            self.connection.request("GET", self.path, headers=self.headers)
            response = self.connection.getresponse()
            body = response.read()
            if response.status != 200 or not body:
                raise measure.Failed(f"status {response.status}, {len(body)} body bytes")

    def close(self) -> None:
        self.connection.close()


def _callgrind_control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True, timeout=300)


def _read_summary(path: Path, timeout: float = 60.0) -> int:
    """The instruction count of one dump; callgrind_control returns once it is asked for, not written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_bytes()
            found = _SUMMARY.search(text)
            if found and b"\ntotals:" in text:
                return int(found[1])
        time.sleep(0.2)
    raise measure.Failed(f"no callgrind dump at {path.name}")
