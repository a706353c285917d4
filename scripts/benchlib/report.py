"""Medians over the rounds, ratios to the passthrough baseline, the tables, the targets of issue 5,
and the machine the numbers come from.

A ratio is the median of the ratios measured side by side (a configuration against the baseline
in the same round, and for wrk in the same alternating slice), which cancels the drifts of a shared
machine better than the ratio of two medians.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BASELINE = "pass"
STREAM_BASELINE = "pass-stream"
METRICS = {
    # key: (title, number format)
    "rps": ("Throughput: wrk requests/s (ratio to pass)", "{:.1f}"),
    "cpu_ms": ("Proxy CPU time per request under wrk: ms (ratio to pass)", "{:.2f}"),
    "ttfb_ms": ("Time to first body byte, single request: ms (ratio to pass)", "{:.1f}"),
    "total_ms": ("Total time, single request: ms (ratio to pass)", "{:.1f}"),
    "peak_rss_mib": ("Proxy peak RSS (VmHWM) over the cell: MiB (difference to pass-stream)", "{:.0f}"),
    "wire_bytes": ("Body bytes to the client, as sent (ratio to pass)", "{:.0f}"),
    "instructions_mi": ("Proxy instructions per request under callgrind: millions (ratio to pass)", "{:.3f}"),
    "l1_misses_k": ("Proxy L1 misses per request (code and data), callgrind's cache simulation: thousands (ratio to pass)", "{:.1f}"),
    "ll_misses": ("Proxy L2 misses per request, callgrind's cache simulation (ratio to pass)", "{:.0f}"),
}
RATIO_METRICS = ("rps", "cpu_ms", "ttfb_ms", "total_ms", "wire_bytes", "instructions_mi", "l1_misses_k", "ll_misses")
# Throughput at 0.95x of plain mitmdump's, where the proxy's CPU is what limits it.
SMALL_PAGE_INSTRUCTIONS = 1 / 0.95

Key = tuple[str, str, str]  # page, encoding, config


def summarize(samples: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    """(page, encoding, config) -> median of each metric, median per-round ratio to the baseline,
    and for RSS the median difference to pass-stream."""
    by_round: dict[tuple[int, str, str, str], dict[str, Any]] = {}
    grouped: dict[Key, list[dict[str, Any]]] = {}
    for sample in samples:
        key = (sample["page"], sample["encoding"], sample["config"])
        grouped.setdefault(key, []).append(sample)
        by_round[(sample["round"], *key)] = sample
    result = {}
    for key, group in grouped.items():
        values: dict[str, Any] = {"failed": sum(1 for s in group if s.get("error")), "rounds": len(group)}
        for metric in METRICS:
            values[metric] = _median(s.get(metric) for s in group)
        for metric in RATIO_METRICS:
            ratios: list[float | None] = []
            for s in group:
                base = by_round.get((s["round"], key[0], key[1], BASELINE), {})
                slices, base_slices = s.get(f"{metric}_slices") or [], base.get(f"{metric}_slices") or []
                if len(slices) > 1 and len(slices) == len(base_slices):
                    # wrk slices alternated with the baseline's: compare each with its neighbour
                    ratios += [ratio(a, b) for a, b in zip(slices, base_slices)]
                else:
                    ratios.append(ratio(s.get(metric), base.get(metric)))
            values[f"{metric}_ratio"] = _median(ratios)
        values["peak_rss_vs_stream_mib"] = _median(
            _difference(s.get("peak_rss_mib"), by_round.get((s["round"], key[0], key[1], STREAM_BASELINE), {}).get("peak_rss_mib"))
            for s in group
        )
        result[key] = values
    return result


def _median(values: Iterable[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return statistics.median(numbers) if numbers else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return value / base


def tables(table: dict[Key, dict[str, Any]], pages: Sequence[str], encodings: Sequence[str], configs: Sequence[str]) -> str:
    out = []
    width = max(17, *(len(c) + 2 for c in configs))
    for metric, (title, fmt) in METRICS.items():
        if all(values.get(metric) is None for values in table.values()):
            continue  # not measured in this run (--instructions measures nothing else)
        out.append(f"\n{title}")
        header = f"{'page':<5} {'enc':<8}" + "".join(f"{c:>{width}}" for c in configs)
        out.append(header)
        out.append("-" * len(header))
        for page in pages:
            for encoding in encodings:
                row = f"{page:<5} {encoding:<8}"
                for config in configs:
                    row += f"{_cell(metric, fmt, table.get((page, encoding, config)), config):>{width}}"
                out.append(row)
    return "\n".join(out)


def _cell(metric: str, fmt: str, values: dict[str, Any] | None, config: str) -> str:
    if values is None:
        return ""
    flag = "!" if values["failed"] else ""
    value = values.get(metric)
    if value is None:
        return "-" + flag
    text = fmt.format(value)
    if metric == "peak_rss_mib":
        diff = values.get("peak_rss_vs_stream_mib")
        if diff is not None and config != STREAM_BASELINE:
            text += f" ({diff:+.0f})"
    elif config != BASELINE and values.get(f"{metric}_ratio") is not None:
        digits = 3 if metric == "instructions_mi" else 2  # counts: a point of a percent is a real difference
        text += f" ({values[f'{metric}_ratio']:.{digits}f}x)"
    return text + flag


def targets(
    table: dict[Key, dict[str, Any]], pages: Sequence[str], encodings: Sequence[str], *, instructions: bool = False
) -> list[dict[str, Any]]:
    """Issue 5's targets, checked on the medians; a row per page/encoding the run measured. An
    --instructions run checks the small-page target on counted instructions instead of throughput."""
    rows: list[dict[str, Any]] = []

    def get(page: str, encoding: str, config: str, metric: str) -> float | None:
        return (table.get((page, encoding, config)) or {}).get(metric)

    def add(target: str, page: str, encoding: str, value: float | None, met) -> None:
        if page not in pages:
            return
        rows.append({"target": target, "page": page, "encoding": encoding, "value": value,
                     "met": None if value is None else met(value)})

    if instructions:
        for encoding in encodings:
            add(f"instructions auto/pass <= {SMALL_PAGE_INSTRUCTIONS:.3f}", "10k", encoding,
                get("10k", encoding, "auto", "instructions_mi_ratio"), lambda v: v <= SMALL_PAGE_INSTRUCTIONS)
        return rows
    for encoding in encodings:
        add("throughput auto/pass >= 0.95", "10k", encoding, get("10k", encoding, "auto", "rps_ratio"), lambda v: v >= 0.95)
    large = [e for e in encodings if e in ("identity", "gzip")]
    for page in ("2.5M", "20M"):
        for encoding in large:
            add("throughput auto/pass >= 0.9", page, encoding, get(page, encoding, "auto", "rps_ratio"), lambda v: v >= 0.9)
            add("TTFB always/pass < 1", page, encoding, get(page, encoding, "always", "ttfb_ms_ratio"), lambda v: v < 1)
    for encoding in encodings:
        for config in ("always", "auto"):
            add(f"peak RSS {config} - pass-stream <= 10 MiB", "20M", encoding,
                get("20M", encoding, config, "peak_rss_vs_stream_mib"), lambda v: v <= 10)
    return rows


def targets_text(rows: list[dict[str, Any]]) -> str:
    out = ["\nTargets (issue 5), on the medians:"]
    for row in rows:
        digits = 2 if row["target"].startswith("peak RSS") else 3  # a ratio just under its line reads as one on it at 2
        value = "-" if row["value"] is None else f"{row['value']:.{digits}f}"
        verdict = {True: "met", False: "MISSED", None: "not measured"}[row["met"]]
        out.append(f"  {row['target']:<38} {row['page']:<5} {row['encoding']:<9} {value:>7}  {verdict}")
    return "\n".join(out)


def machine() -> dict[str, Any]:
    from mitmproxy.version import VERSION

    info = _proc("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.MULTILINE)
    memory = re.search(r"MemTotal:\s+(\d+)", _proc("/proc/meminfo"))
    wrk = _version(["wrk", "-v"])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "cpu_mhz": float(mhz.group(1)) if mhz else None,
        "memory_gib": round(int(memory.group(1)) / 1024**2, 1) if memory else None,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mitmproxy": VERSION,
        "nginx": _version(["nginx", "-v"]).removeprefix("nginx version: "),
        "wrk": wrk.splitlines()[0] if wrk else "",
    }


def machine_text(m: dict[str, Any]) -> str:
    mhz = f" @ {m['cpu_mhz']:.0f} MHz" if m.get("cpu_mhz") else ""
    return (f"{m['cpus']} CPUs ({m['cpu_model']}{mhz}), {m['memory_gib']} GiB RAM, Linux {m['kernel']}, "
            f"Python {m['python']}, mitmproxy {m['mitmproxy']}, {m['nginx']}, {m['wrk'].split(' [')[0]}")


def _proc(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return ""
    return (result.stdout + result.stderr).strip()


def write_json(directory: Path, stamp: str, document: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stamp}.json"
    path.write_text(json.dumps(document, indent=1, default=str) + "\n")
    return path
