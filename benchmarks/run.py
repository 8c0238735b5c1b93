"""The benchmark entry point: ``python -m benchmarks.run [--quick] [--only ...]``.

From the repository root, with the project's virtualenv (Flask and psutil installed)::

    .venv/bin/python -m benchmarks.run --quick            # ~3 minutes: every default part
    .venv/bin/python -m benchmarks.run                    # ~10 minutes: the numbers in docs/
    .venv/bin/python -m benchmarks.run --only ack,latency # a subset
    .venv/bin/python -m benchmarks.run --only gil         # GIL releases per callback (perf)

Default parts: lines, import, ack, latency, stall, http, scaling, compare, batch, soak; ``gil``
(needs root and perf) runs only when named.  ``--baseline DIR`` also runs ``ack`` against
the suno_nb found in DIR (e.g. a ``git worktree`` of an earlier commit), for a before/after
column.  Every part prints its tables (ratios against Flask where there is a comparison); the
run ends with the floors, PASS or MISS, and saves everything as JSON under
``benchmarks/results/`` (ignored by git).
Not part of the pytest suite; all traffic is on 127.0.0.1; every loop is bounded.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from .common import RESULTS_DIR, ROOT, disk_flush_ms, floors_table, machine, table

PARTS = {  # part -> module
    "lines": "lines",
    "import": "bench_import",
    "ack": "bench_ack",
    "latency": "bench_latency",
    "stall": "bench_stall",
    "http": "bench_http",
    "scaling": "bench_scaling",
    "soak": "bench_soak",
    "compare": "bench_compare",
    "batch": "bench_batch",
    "gil": "bench_gil",
}
DEFAULT_PARTS = (
    "lines",
    "import",
    "ack",
    "latency",
    "stall",
    "http",
    "scaling",
    "compare",
    "batch",
    "soak",
)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short version (~3 min)")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_PARTS),
        help=f"comma-separated subset of {','.join(PARTS)} (default: {','.join(DEFAULT_PARTS)})",
    )
    parser.add_argument("--baseline", type=Path, help="another suno_nb checkout, for ack")
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
    command = " ".join(["python -m benchmarks.run", *argv])
    print(f"# suno_nb benchmarks{' (quick)' if args.quick else ''}\n")
    print(f"`{command}`, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    print(table(list(info), [list(info.values())], left_columns=len(info)))
    print(f"\nload average at start: {_load()}")
    flush = disk_flush_ms(ROOT / "benchmarks")
    print(
        f"disk flush (fdatasync of a 4 KiB overwrite, the floor of one durable COMMIT):"
        f" p50 {flush['p50']:.2f} ms, p99 {flush['p99']:.2f} ms, max {flush['max']:.2f} ms\n"
    )
    results: dict[str, Any] = {
        "command": command,
        "machine": info,
        "quick": args.quick,
        "started": started,
        "disk_flush_ms": flush,
        "load": {"start": _load()},
    }
    floors: list[dict[str, Any]] = []
    for part in PARTS:  # in this order, whatever the order given
        if part not in parts:
            continue
        module = importlib.import_module(f".{PARTS[part]}", __package__)
        t0 = time.time()
        kwargs: dict[str, Any] = {"quick": args.quick}
        if part == "ack":
            kwargs["baseline"] = args.baseline
        out = module.run(**kwargs)
        if out.get("floors"):
            print(floors_table(out["floors"]) + "\n")
        load = _load()
        print(f"({part}: {time.time() - t0:.0f} s; load average after it: {load})\n")
        out["load_after"] = load
        results[part] = out
        floors += out.get("floors", [])

    results["floors"] = floors
    results["elapsed_s"] = time.time() - started
    if floors:
        print("## Floors\n\n" + floors_table(floors) + "\n")
    out_path = args.out
    if out_path is None:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out_path = RESULTS_DIR / f"{stamp}{'-quick' if args.quick else ''}.json"
    out_path.write_text(json.dumps(results, indent=1, default=_jsonable))
    missed = sum(not f["passed"] for f in floors)
    print(
        f"done in {results['elapsed_s']:.0f} s; load average at the end: {_load()};"
        f" {len(floors) - missed} floor(s) PASS, {missed} MISS; results saved to {out_path}"
    )
    return 0


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


if __name__ == "__main__":
    sys.exit(main())
