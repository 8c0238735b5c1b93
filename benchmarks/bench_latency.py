"""Callback round trip while the notebook computes: the main thread busy, one sender.

The receiving process (:class:`benchmarks.server.ServerProcess`) keeps its main thread in a
pure-Python loop, like a cell crunching numbers, while one keep-alive sender in another
process POSTs callbacks back to back (closed loop) and times each from just before ``send``
to the last byte of the 200.  The interpreter's switch interval is never changed (the child
reports it: 5 ms by default), so every time a receiver thread lets go of the GIL it may wait
up to one interval to get it back from the busy loop.  The same with the main thread idle,
and the seeds' Flask receiver under both, are printed beside it for comparison.

Floor: p99 ≤ 150 ms with the main thread busy, the switch interval untouched.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import ROOT, floor, ratio, summarize_ms, table
from .load import run_load
from .server import FLASK, SUNO, ServerProcess

MAX_P99_MS = 150.0
DEFAULT_SWITCH_INTERVAL = 0.005


def measure(kind: str, *, busy: bool, duration: float, workdir: Path) -> dict[str, Any]:
    """One fresh receiving process, one sender for ``duration`` seconds."""
    store = workdir / f"latency-{kind}-{'busy' if busy else 'idle'}-{time.time_ns()}.sqlite3"
    with ServerProcess(kind, store_path=store, busy=busy) as sp:
        switch_at_start = sp.info.switch_interval if sp.info else float("nan")
        sp.mark()
        time.sleep(0.5)  # the busy loop's speed alone
        sp.mark()
        res = run_load(sp.url, senders=1, duration=duration, prefix=f"lat-{time.time_ns()}-")
        sp.mark()
        report = sp.stop()
    return {
        "latencies": res.latencies,
        "throughput": res.throughput,
        "failures": sum(res.non_200.values()) + res.timeouts,
        "main_speed": ratio(sp.busy_rate(1, 2), sp.busy_rate(0, 1)) if busy else None,
        "switch_interval": (switch_at_start, report.get("switch_interval", float("nan"))),
    }


def run(*, quick: bool = False) -> dict[str, Any]:
    """Busy (the floor) and idle, suno_nb and Flask; prints a table, returns the numbers."""
    busy_s, idle_s = (4.0, 1.5) if quick else (15.0, 3.0)
    repeats = 1 if quick else 2
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-", dir=ROOT / "benchmarks"))
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    try:
        plan = [(k, True, busy_s) for _ in range(repeats) for k in (SUNO, FLASK)]
        plan += [(k, False, idle_s) for k in (SUNO, FLASK)]
        for i, (kind, busy, duration) in enumerate(plan):
            if busy and i % 4 >= 2:  # alternate which receiver goes first
                kind = FLASK if kind == SUNO else SUNO
            r = measure(kind, busy=busy, duration=duration, workdir=workdir)
            runs.setdefault((kind, busy), []).append(r)
            s = summarize_ms(r["latencies"])
            print(
                f"  .. {kind:<8} {'busy' if busy else 'idle'}: {r['throughput']:6.0f} req/s"
                f" p50 {s['p50']:6.2f} p99 {s['p99']:7.2f} max {s['max']:7.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    merged: dict[tuple[str, bool], dict[str, Any]] = {}
    for key, rs in runs.items():
        lat = np.concatenate([r["latencies"] for r in rs])
        speeds = [r["main_speed"] for r in rs if r["main_speed"] is not None]
        merged[key] = {
            **summarize_ms(lat),
            "throughput": float(np.mean([r["throughput"] for r in rs])),
            "failures": sum(r["failures"] for r in rs),
            "main_speed": float(np.mean(speeds)) if speeds else None,
            "switch_interval": sorted({v for r in rs for v in r["switch_interval"]}),
            "p99_per_run": [summarize_ms(r["latencies"])["p99"] for r in rs],
        }
    rows = []
    for busy in (True, False):
        fl = merged[(FLASK, busy)]
        for kind in (SUNO, FLASK):
            m = merged[(kind, busy)]
            rows.append(
                [
                    "busy" if busy else "idle",
                    kind,
                    m["n"],
                    m["throughput"],
                    m["p50"],
                    m["p99"],
                    f"{ratio(m['p99'], fl['p99']):.2f}×",
                    m["max"],
                    " / ".join(f"{v:.1f}" for v in m["p99_per_run"]),
                    "—" if m["main_speed"] is None else f"{m['main_speed']:.2f}",
                    ", ".join(f"{v * 1e3:g} ms" for v in m["switch_interval"]),
                    m["failures"],
                ]
            )
    print(
        "### latency: one sender, the receiving process's main thread busy in a Python loop"
        " (idle below for reference; ÷ Flask in the same state)\n\n"
        + table(
            [
                "main thread",
                "receiver",
                "n",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99 ÷ Flask",
                "max ms",
                "p99 per run",
                "main-thread speed kept",
                "switch interval",
                "failed",
            ],
            rows,
            digits=2,
        )
        + "\n"
    )
    busy = merged[(SUNO, True)]
    untouched = busy["switch_interval"] == [DEFAULT_SWITCH_INTERVAL]
    floors = [
        floor(
            "latency: p99, main thread busy, 1 sender",
            f"{busy['p99']:.1f} ms (p50 {busy['p50']:.1f}, max {busy['max']:.1f};"
            f" Flask p99 {merged[(FLASK, True)]['p99']:.1f})"
            + ("" if untouched else f"; switch interval {busy['switch_interval']}!"),
            f"≤ {MAX_P99_MS:g} ms, switch interval untouched",
            busy["p99"] <= MAX_P99_MS and untouched and busy["failures"] == 0,
        )
    ]
    results = {f"{k}/{'busy' if b else 'idle'}": v for (k, b), v in merged.items()}
    return {"busy_s": busy_s, "repeats": repeats, "results": results, "floors": floors}
