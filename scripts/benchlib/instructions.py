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

With `--cache-misses` callgrind also simulates this machine's first CPU's L1 caches and its L2 (as
callgrind's last level: the L3 is shared with every other process) and counts the misses per
request (`cache_options`). An instruction that misses the L1 waits for the L2, and code that runs
once per request (an addon's hooks, in between all of mitmproxy's work) misses far more often than
code that runs many times per request, so a count of instructions alone under-states what such
code costs by the clock.
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
_EVENTS = re.compile(rb"^events: (.+)$", re.MULTILINE)
_SUMMARY = re.compile(rb"^summary: ([\d ]+)$", re.MULTILINE)
# callgrind's events with --cache-sim=yes: misses of the instruction cache, of data reads and of data
# writes at the L1 ("1") and at the last level simulated ("L").
L1_MISSES = ("I1mr", "D1mr", "D1mw")
LL_MISSES = ("ILmr", "DLmr", "DLmw")
_SYSFS_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")


def missing_tools() -> list[str]:
    return [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]


def cache_options(caches: Path = _SYSFS_CACHES) -> list[str]:
    """valgrind's `--I1`, `--D1` and `--LL` for this machine's first CPU, its L2 as the last level. A
    cache sysfs does not describe, or whose set count is not a power of two (callgrind cannot
    simulate it), is left out: valgrind then takes its own guess from CPUID."""
    options = []
    for index in sorted(caches.glob("index*")):
        try:
            level, kind = int((index / "level").read_text()), (index / "type").read_text().strip()
            size = _size((index / "size").read_text().strip())
            ways = int((index / "ways_of_associativity").read_text())
            line = int((index / "coherency_line_size").read_text())
        except (OSError, ValueError):
            continue
        option = {(1, "Instruction"): "--I1", (1, "Data"): "--D1", (2, "Unified"): "--LL"}.get((level, kind))
        sets = size // (ways * line) if ways > 0 and line > 0 else 0
        if option is not None and sets > 0 and sets & (sets - 1) == 0 and sets * ways * line == size:
            options.append(f"{option}={size},{ways},{line}")
    return options


def _size(text: str) -> int:
    """A size as sysfs writes it: "48K", "2048K", "2M"."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1:] in units else int(text)


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
    cache = ["--cache-sim=yes", *args.cache_options] if args.cache_misses else []
    process.argv = ["env", "PYTHONHASHSEED=0", "valgrind", "--tool=callgrind", f"--callgrind-out-file={dumps}.%p", "--dump-line=no",
                    "--dump-instr=no", "--compress-pos=no", *cache, *process.argv]  # fmt: skip
    headers = {"Accept-Encoding": runner.ACCEPT_ENCODING[encoding], **measure.NAVIGATION}
    try:
        process.start(timeout=START_TIMEOUT_S)
        port = servers.mitmdump_port(process)
        target = runner.Target(config, process, port)
        runner.checked_fetch(target, page, headers, encoding)
        client = _Client(port, page.path, headers)
        client.get(args.warmup_requests)
        _callgrind_control("-z", process.pid)
        counted = []  # (event counts, seconds) of each batch
        for batch in range(1, args.batches + 1):
            started = time.monotonic()
            client.get(args.requests)
            _callgrind_control("-d", process.pid)
            counted.append((_read_summary(Path(f"{dumps}.{process.pid}.{batch}")), time.monotonic() - started))
        started = time.monotonic()
        time.sleep(IDLE_S)
        _callgrind_control("-d", process.pid)
        idle = _read_summary(Path(f"{dumps}.{process.pid}.{args.batches + 1}"))
        idle_seconds = time.monotonic() - started
        client.close()
    except (measure.Failed, servers.StartError, OSError, subprocess.SubprocessError, http.client.HTTPException) as e:
        return {**sample, "error": str(e)[:500]}
    finally:
        process.stop()
    per_request = [
        {event: (count - idle[event] / idle_seconds * seconds) / args.requests for event, count in events.items()}
        for events, seconds in counted
    ]
    fewest = min(per_request, key=lambda events: events["Ir"])
    result = {
        **sample,
        "instructions_mi": fewest["Ir"] / 1e6,
        "instructions_batches_mi": [events["Ir"] / 1e6 for events in per_request],
        "instructions_raw_batches_mi": [events["Ir"] / args.requests / 1e6 for events, _ in counted],
        "idle_instructions_per_s": idle["Ir"] / idle_seconds,
        "batch_seconds": [seconds for _, seconds in counted],
    }
    if args.cache_misses:
        # Of the batch with the fewest instructions, as the count above.
        result["l1_misses_k"] = sum(fewest[event] for event in L1_MISSES) / 1e3
        result["ll_misses"] = sum(fewest[event] for event in LL_MISSES)
        result["events_per_request"] = fewest
    return result


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


def _read_summary(path: Path, timeout: float = 60.0) -> dict[str, int]:
    """The event counts of one dump (Ir, the instructions; with --cache-sim the misses too);
    callgrind_control returns once it is asked for, not written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_bytes()
            events, found = _EVENTS.search(text), _SUMMARY.search(text)
            if events and found and b"\ntotals:" in text:
                counts = [int(count) for count in found[1].split()]
                # callgrind leaves out the zeros at the end of the line
                return {event: counts[i] if i < len(counts) else 0 for i, event in enumerate(events[1].decode().split())}
        time.sleep(0.2)
    raise measure.Failed(f"no callgrind dump at {path.name}")
