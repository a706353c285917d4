"""What the RUM addon costs on top of plain mitmdump, measured in one run (issue 5).

    scripts/bench            # all pages, encodings and configurations, 3 rounds, ~30 min
    scripts/bench --quick    # 10k and 20M, identity and gzip, pass/pass-stream/always/auto, ~4 min
    scripts/bench --pages 10k,512k,20M --configs pass,never,always --rounds 5
    scripts/bench --chunked  # the same pages without a Content-Length, as dynamic apps send them
    scripts/bench --instructions  # 10k, all encodings: instructions per request counted by callgrind, ~10 min
    scripts/bench --cache-misses  # the same, and the L1 and L2 misses of callgrind's cache simulation

nginx (from Debian) serves generated pages (10 KB, 300 KB, 2.5 MB, 20 MB; identity, gzip, br; the
br column's client is a browser, accepting gzip, deflate, br and zstd). In
every round, for every page and encoding, each configuration gets a fresh proxy and the
measurements alternate between them (A B C D A B C D …): throughput with wrk, the proxy's CPU time
per request, time to first body byte and total time of single requests, and the proxy's peak RSS.
The medians over the rounds are printed with their ratio to plain mitmdump and written to
bench-results/<timestamp>.json. Every single response is checked: the page as served, with
exactly one snippet where one belongs. With --chunked the origin sends the same bytes chunked,
without a Content-Length (what most dynamic apps and compressing middlewares send). With
--instructions the proxy runs under callgrind and the bench counts the instructions it executes
per request instead of timing it (benchlib/instructions.py): the same code gives the same count on
a noisy machine, where the small page's throughput ratios swing by more than the addon costs.
--cache-misses adds callgrind's simulation of this machine's L1 and L2 caches: the misses per
request, which a count of instructions does not weigh.

Configurations:
  pass         plain `mitmdump --mode reverse:` without the addon (the baseline)
  pass-stream  plain mitmdump with stream_large_bodies at the addon's STREAM_ABOVE
  pass-hooks   plain mitmdump with a script addon whose request, responseheaders and response
               hooks do nothing (benchlib/hooks_only.py): the floor of any such `-s` addon
  pass-hooks-stream  pass-hooks that also streams every response through a callable that
               changes nothing: the floor of an addon that streams
  naive        plain mitmdump with the naive injector issue 5 describes (benchlib/naive_splice.py):
               a traceparent upstream; the body decoded, the reference snippet put before
               </head>, encoded again by mitmproxy: the least an injecting addon does
  never        the addon, whole bodies rewritten (rum_stream=never)
  always       the addon, streaming every page (rum_stream=always)
  auto         the addon as shipped (rum_stream=auto)
  auto-nomemo  auto without remembered rewrites (rum_memo=0): what a page that changes on every
               request costs (the bench serves the same bytes every time)
  auto-br      auto that passes the browser's Accept-Encoding on (rum_prefer_gzip=false): br
               pages are decoded and compressed again, where auto asks the origin for gzip
  nginx-sub    nginx sub_filter '</head>' proxying to the same origin (the reference)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import tempfile
import time
from pathlib import Path

from benchlib import instructions, pages, report, runner, servers

from rumproxy.settings import STREAM_ABOVE
from rumproxy.rules import VENDORED_AGENT


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not servers.nginx_has_sub_filter():
        print("bench: this nginx lacks ngx_http_sub_module (sub_filter): apt-get install nginx-light", file=sys.stderr)
        return 2
    if not VENDORED_AGENT.is_file():
        print("bench: the vendored @elastic/apm-rum bundle is missing: run scripts/setup", file=sys.stderr)
        return 2
    missing = instructions.missing_tools() if args.instructions else []
    if missing:
        print(f"bench: --instructions needs {', '.join(missing)}: apt-get install valgrind", file=sys.stderr)
        return 2
    started = datetime.datetime.now()
    machine = report.machine()
    note = (f"wrk -t{args.threads} -c{args.connections}, the proxy and the nginx origin share the same "
            f"{machine['cpus']} CPUs: absolute numbers are lower than on separate machines; compare the ratios")
    print(f"bench: {report.machine_text(machine)}\nbench: {note}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="rumproxy-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers read the pages
        print("bench: generating pages", file=sys.stderr)
        served = pages.write_pages(work / "pages", args.pages)
        sizes = {p.name: {e: p.compressed_size(work / "pages", e) for e in pages.ENCODINGS} for p in served}
        if args.chunked:
            served = [dataclasses.replace(p, path=servers.CHUNKED_PREFIX + p.path) for p in served]
        origin, origin_port = servers.start_origin(work / "nginx-origin", work / "pages")
        reference = reference_port = None
        try:
            if "nginx-sub" in args.configs:
                reference, reference_port = servers.start_reference(work / "nginx-ref", origin_port,
                                                                    runner.REFERENCE_SNIPPET)
            setup = runner.Setup(args, work, servers.write_rules(work / "rules.yaml", VENDORED_AGENT), origin_port,
                                 reference, reference_port)
            samples = count_instructions(setup, served) if args.instructions else run_rounds(setup, served)
        finally:
            if reference is not None:
                reference.stop()
            origin.stop()
    table = report.summarize(samples)
    checked = report.targets(table, args.pages, args.encodings, instructions=args.instructions)
    elapsed = time.monotonic() - args.t0
    print(f"\nrumproxy bench, {started:%Y-%m-%d %H:%M}, {elapsed / 60:.0f} min: {report.machine_text(machine)}")
    origin_text = "chunked, without Content-Length" if args.chunked else "with Content-Length"
    if args.instructions:
        print(f"Origin responses {origin_text}. Each configuration's mitmdump under callgrind: 1 checked request, "
              f"{args.warmup_requests} more, then {args.batches} batches of {args.requests} requests on one keep-alive "
              f"connection, less what the process runs by the clock ({instructions.IDLE_S:g} s idle, taken off by each batch's "
              f"duration); the fewest instructions per request of the batches. Counted, not timed.")
        if args.cache_misses:
            print(f"Caches simulated by callgrind: {' '.join(args.cache_options) or 'as valgrind detects them'} (sizes, "
                  f"ways, line bytes; this machine's first CPU, its L2 as the last level); misses of the same batch.")
    else:
        print(f"Origin responses {origin_text}. {args.rounds} rounds; in each, every configuration's fresh proxy warmed up ({args.warmup:g} s of wrk) and "
              f"measured in turn: {args.samples} single requests each, then wrk in {args.slices} alternating slices of {args.duration:g} s (one run of up to "
              f"{args.max_duration:g} s where a request takes long). Medians; a ratio is the median of the ratios "
              f"measured side by side. {note}.")
    print(report.tables(table, args.pages, args.encodings, args.configs))
    print(report.targets_text(checked))
    failures = [s for s in samples if s.get("error")]
    if failures:
        print(f"\n{len(failures)} measurement(s) failed (marked !):")
        for s in failures[:20]:
            print(f"  round {s['round']} {s['page']} {s['encoding']} {s['config']}: {s['error']}")
    document = {
        "started": started.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 1),
        "machine": machine,
        "note": note,
        "settings": {
            "rounds": args.rounds, "slices": args.slices, "duration_s": args.duration,
            "max_duration_s": args.max_duration, "samples": args.samples, "warmup_s": args.warmup, "threads": args.threads,
            "connections": args.connections, "pages": args.pages, "encodings": args.encodings,
            "configs": args.configs, "stream_above": STREAM_ABOVE, "page_bytes": sizes, "chunked": args.chunked,
            "instructions": args.instructions, "requests": args.requests, "batches": args.batches,
            "cache_misses": args.cache_misses, "cache_options": args.cache_options,
            "warmup_requests": args.warmup_requests,
        },
        "configs": {name: {"addon": c.addon, "args": list(c.args), "nginx": c.nginx}
                    for name, c in runner.CONFIGS.items() if name in args.configs},
        "summary": [{"page": p, "encoding": e, "config": c, **values} for (p, e, c), values in table.items()],
        "targets": checked,
        "samples": samples,
    }
    path = report.write_json(args.out, f"{started:%Y%m%d-%H%M%S}", document)
    print(f"\nbench: JSON in {path}")
    return 1 if failures else 0


def run_rounds(setup: runner.Setup, served: list[pages.Page]) -> list[dict]:
    args = setup.args
    samples: list[dict] = []
    cells = len(served) * len(args.encodings) * args.rounds
    done = 0
    for round_no in range(1, args.rounds + 1):
        for page in served:
            for encoding in args.encodings:
                done += 1
                for sample in runner.run_cell(setup, round_no, page, encoding):
                    samples.append(sample)
                    print(f"bench: [{done}/{cells}] round {round_no} {page.name} {encoding} {sample['config']}: "
                          f"{summary(sample)}", file=sys.stderr)
    return samples


def count_instructions(setup: runner.Setup, served: list[pages.Page]) -> list[dict]:
    samples: list[dict] = []
    cells = [(page, encoding) for page in served for encoding in setup.args.encodings]
    for done, (page, encoding) in enumerate(cells, 1):
        for sample in instructions.run_cell(setup, page, encoding):
            samples.append(sample)
            print(f"bench: [{done}/{len(cells)}] {page.name} {encoding} {sample['config']}: {summary(sample)}", file=sys.stderr)
    return samples


def summary(sample: dict) -> str:
    if sample.get("error"):
        return f"FAILED: {sample['error'][:200]}"
    if "instructions_mi" in sample:
        batches = ", ".join(f"{count:.3f}" for count in sample["instructions_batches_mi"])
        misses = (f", {sample['l1_misses_k']:.1f}k L1 and {sample['ll_misses']:.0f} L2 misses"
                  if "l1_misses_k" in sample else "")
        return f"{sample['instructions_mi']:.3f} million instructions per request (batches: {batches}){misses}"
    cpu = f", {sample['cpu_ms']:.2f} ms CPU/req" if sample.get("cpu_ms") is not None else ""
    rate = f"{sample['rps']:.1f}" if sample.get("rps") is not None else "-"
    return (f"{rate} req/s ({sample['wrk_seconds']} s){cpu}, ttfb {sample['ttfb_ms']:.1f} ms, "
            f"total {sample['total_ms']:.1f} ms, peak RSS {sample['peak_rss_mib']:.0f} MiB")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a ~4 min run: pages 10k and 20M, identity and gzip, configurations pass, "
                             "pass-stream, always and auto, 1 s slices, 3 samples")
    parser.add_argument("--chunked", action="store_true",
                        help="the origin sends the pages chunked, without a Content-Length, as dynamic apps do")
    parser.add_argument("--instructions", action="store_true",
                        help="count the proxy's instructions per request under callgrind instead of timing it "
                             f"(default pages 10k, configurations {','.join(instructions.DEFAULT_CONFIGS)}; ~10 min)")
    parser.add_argument("--cache-misses", action="store_true",
                        help="--instructions with callgrind's simulation of this machine's L1 and L2 caches: "
                             "the misses per request too (slower)")
    parser.add_argument("--requests", type=int, default=50, help="--instructions: requests per batch (default 50)")
    parser.add_argument("--batches", type=int, default=2, help="--instructions: batches per configuration (default 2)")
    parser.add_argument("--warmup-requests", type=int, default=30,
                        help="--instructions: uncounted requests before the first batch (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--slices", type=int, help="alternating wrk runs per configuration and cell (default 2)")
    parser.add_argument("--duration", type=float, help="seconds of one wrk slice (default 1)")
    parser.add_argument("--max-duration", type=float,
                        help="most seconds of the one wrk run of a slow configuration (default 8, quick 4)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured wrk on a fresh mitmdump (default 1)")
    parser.add_argument("--samples", type=int, help="timed single requests per configuration and cell (default 5, quick 3)")
    parser.add_argument("--pages", help=f"comma-separated sizes (default {','.join(pages.SIZES)}; any like 512k or 1M)")
    parser.add_argument("--encodings", help=f"comma-separated, of {','.join(pages.ENCODINGS)}")
    parser.add_argument("--configs", help=f"comma-separated, of {','.join(runner.CONFIGS)} (must include pass)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--connections", type=int, default=8, help="wrk -c (default 8)")
    parser.add_argument("--wrk-timeout", type=float, default=60.0, help="wrk --timeout in seconds (default 60)")
    parser.add_argument("--out", type=Path, default=servers.REPO_ROOT / "bench-results", help="where the JSON goes")
    args = parser.parse_args(argv)
    args.t0 = time.monotonic()
    args.instructions = args.instructions or args.cache_misses
    args.cache_options = instructions.cache_options() if args.cache_misses else []
    args.slices = args.slices or 2
    args.duration = args.duration or 1.0
    args.max_duration = max(args.duration, args.max_duration or (4.0 if args.quick else 8.0))
    args.samples = args.samples or (3 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else 1.0
    names = ["10k", "20M"] if args.quick else ["10k"] if args.instructions else list(pages.SIZES)
    if args.pages:
        names = [name.strip() for name in args.pages.split(",") if name.strip()]
    try:
        args.pages = sorted(dict.fromkeys(names), key=pages.size_of)
    except ValueError as e:
        parser.error(f"--pages: {e}")
    args.encodings = _choice(parser, "encodings", args.encodings,
                             ["identity", "gzip"] if args.quick else list(pages.ENCODINGS), pages.ENCODINGS)
    args.configs = _choice(parser, "configs", args.configs,
                           ["pass", "pass-stream", "always", "auto"] if args.quick
                           else list(instructions.DEFAULT_CONFIGS) if args.instructions else list(runner.CONFIGS),
                           runner.CONFIGS)
    if report.BASELINE not in args.configs:
        parser.error(f"--configs must include the baseline {report.BASELINE!r}")
    if not (1 <= args.rounds <= 50 and 1 <= args.slices <= 50 and 1 <= args.duration <= 600
            and args.max_duration <= 600 and 0 <= args.warmup <= 60 and 1 <= args.samples <= 100 and 1 <= args.connections <= 1000
            and 1 <= args.threads <= args.connections and 1 <= args.requests <= 100000 and 1 <= args.batches <= 50
            and 0 <= args.warmup_requests <= 100000):
        parser.error("out of range: --rounds/--slices 1..50, --duration/--max-duration 1..600, --samples 1..100, "
                     "--warmup 0..60, --threads 1..connections, --connections 1..1000, --requests 1..100000, --batches 1..50")
    return args


def _choice(parser: argparse.ArgumentParser, name: str, value: str | None, default: list[str], known) -> list[str]:
    if value is None:
        return default
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in known]
    if unknown or not chosen:
        parser.error(f"--{name}: unknown {unknown}; choose from {','.join(known)}")
    order = {v: i for i, v in enumerate(known)}
    return sorted(dict.fromkeys(chosen), key=order.__getitem__)


if __name__ == "__main__":
    sys.exit(main())
