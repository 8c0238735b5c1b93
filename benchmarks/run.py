"""The benchmark entry point: ``python -m benchmarks.run [--quick] [--only ...]``.

From the repository root, with the project's virtualenv (Flask and psutil installed)::

    .venv/bin/python -m benchmarks.run --quick      # ~2 minutes: a smoke version
    .venv/bin/python -m benchmarks.run              # ~10 minutes: the numbers in docs/
    .venv/bin/python -m benchmarks.run --only soak  # ~3 minutes: 10,000 callbacks with faults
    .venv/bin/python -m benchmarks.run --only compare  # ~2 minutes: compare_takes, 20 takes
    .venv/bin/python -m benchmarks.run --only ladder   # ~2 minutes: where throughput goes

``--baseline DIR`` also benchmarks the suno_nb found in DIR (e.g. a ``git worktree`` of an
earlier commit) beside the current one, for before/after tables.  Results are printed as
Markdown tables and saved as JSON under ``benchmarks/results/``.  Not part of the pytest
suite; all traffic is on 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR, ROOT, disk_flush_ms, machine, table

PARTS = ("import", "scaling", "latency", "http", "ack", "ladder", "stall", "soak", "compare")
# soak and compare: on request
DEFAULT_PARTS = ("import", "scaling", "latency", "http", "ack", "ladder", "stall")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke version (~2 min)")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: all but soak)",
    )
    parser.add_argument("--baseline", type=Path, help="another suno_nb checkout to compare")
    parser.add_argument("--out", type=Path, help="JSON results file (default: results/...)")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if args.baseline is not None and not (args.baseline / "suno_nb").is_dir():
        parser.error(f"--baseline {args.baseline}: no suno_nb package there")

    info = machine()
    started = time.time()
    print(f"# suno_nb benchmarks{' (quick)' if args.quick else ''}\n")
    print(table(list(info), [list(info.values())]))
    try:
        load = os.getloadavg()
        print(f"\nload average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    except OSError:
        print()
    flush = disk_flush_ms(ROOT / "benchmarks")
    print(
        f"disk flush (fdatasync of a 4 KiB overwrite, the floor of one durable COMMIT):"
        f" p50 {flush['p50']:.2f} ms, p99 {flush['p99']:.2f} ms, max {flush['max']:.2f} ms\n"
    )
    results: dict[str, Any] = {
        "machine": info,
        "quick": args.quick,
        "started": started,
        "disk_flush_ms": flush,
    }

    if "import" in parts:
        from . import bench_import

        results["import"] = bench_import.run(quick=args.quick)
    if "scaling" in parts:
        from . import bench_scaling

        results["scaling"] = bench_scaling.run(quick=args.quick)
    if "latency" in parts:
        from . import bench_latency

        results["latency"] = bench_latency.run(quick=args.quick)
    if "ack" in parts:
        from . import bench_ack

        results["ack"] = bench_ack.run(quick=args.quick, baseline=args.baseline)
    if "ladder" in parts:
        from . import bench_ladder

        results["ladder"] = bench_ladder.run(quick=args.quick)
    if "http" in parts:
        from . import bench_http

        results["http"] = bench_http.run(quick=args.quick)
    if "stall" in parts:
        from . import bench_stall

        results["stall"] = bench_stall.run(quick=args.quick)
    if "soak" in parts:
        from . import bench_soak

        results["soak"] = bench_soak.run(quick=args.quick)
    if "compare" in parts:
        from . import bench_compare

        results["compare"] = bench_compare.run(quick=args.quick)

    results["elapsed_s"] = time.time() - started
    out = args.out
    if out is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"{stamp}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps(results, indent=1, default=_jsonable))
    print(f"done in {results['elapsed_s']:.0f} s; results saved to {out}")
    return 0


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
