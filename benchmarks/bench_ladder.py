"""Where the receiver's throughput goes: the same load against layers of it.

A diagnostic, not a product measurement: each rung is the headline load (16 keep-alive
senders, 30 % duplicates) against a receiver with more of suno_nb's work switched on, from
the calibration receiver (:mod:`benchmarks.minimal_receiver`: raw body stored durably, no
validation) to suno_nb itself.  Rungs between are suno_nb with a layer replaced by a stub
(monkeypatched in the rung's own fresh process, never in the package):

- ``validation only``: the receiver parses and validates, then answers 200 storing nothing;
- ``writer, no SQL``: everything up to the store's writer thread, which commits an empty
  transaction;
- ``raw insert``: the writer stores the raw delivery with one ``executemany`` instead of
  applying the callback (no task or track rows, no deduplication);
- ``suno_nb``: all of it.

Each rung runs in a fresh process (receiver on a thread, load from two more processes),
``repeats`` times interleaved; the table gives the median and the spread, and the CPU the
receiver's process used per request and in cores (all of its threads).  Run with
``python -m benchmarks.run --only ladder``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .common import ROOT, table

RUNGS = (
    "flask",
    "calibration",
    "calibration + validation",
    "validation only",
    "writer, no SQL",
    "raw insert",
    "suno_nb",
)


def _serve(rung: str, workdir: Path) -> tuple[str, Any]:
    """Start the rung's receiver in this process; its URL and a stop function."""
    if rung == "flask":
        import threading

        from . import flask_seed
        from .common import free_port, wait_for_port

        port = free_port()
        threading.Thread(target=flask_seed.serve, args=(port,), daemon=True).start()
        wait_for_port(port)
        return f"http://127.0.0.1:{port}{flask_seed.PATH}", lambda: None
    if rung.startswith("calibration"):
        from . import minimal_receiver

        if rung == "calibration + validation":
            from suno_nb.payloads import parse_callback

            class _Validating:  # minimal_receiver's json.loads becomes suno_nb's validation
                loads = staticmethod(parse_callback)

            minimal_receiver.json = _Validating  # type: ignore[assignment]
        receiver = minimal_receiver.MinimalReceiver(str(workdir / "calibration.sqlite3"))
        return receiver.start(), receiver.http.stop
    _stub(rung)
    from suno_nb.session import start_receiver, stop_receiver

    rx = start_receiver(workdir / "ladder.sqlite3", tunnel=None, poll=False)
    return rx.url, stop_receiver


def _stub(rung: str) -> None:
    """Replace one layer of suno_nb (in this process only) for a rung."""
    import suno_nb.receiver as receiver
    from suno_nb.store import callbacks
    from suno_nb.store.schema import Outcome

    def outcomes(items: list) -> list:
        return [Outcome(0, "accepted", cb.task_id, "succeeded", (), cb.stage) for _, cb in items]

    if rung == "validation only":

        async def judged_only(self: Any, delivery: Any) -> Any:
            cb = self.judge(delivery)
            return receiver.Verdict(200, None, outcomes([(delivery, cb)])[0], cb)

        receiver.DeliveryProcessor.process_async = judged_only
    elif rung == "writer, no SQL":
        callbacks.apply_callbacks = lambda conn, items: outcomes(items)
    elif rung == "raw insert":

        def raw(conn: Any, items: list) -> list:
            conn.executemany(
                "INSERT INTO deliveries (received_at, source, body, verdict)"
                " VALUES (?, 'callback', ?, 'accepted')",
                [(d.received_at, d.body) for d, _ in items],
            )
            return outcomes(items)

        callbacks.apply_callbacks = raw


def _one(rung: str, duration: float) -> dict[str, Any]:
    """Run one rung in this (fresh) process; what the senders saw."""
    import numpy as np

    from .load import run_load

    this = psutil.Process()
    start: list[float] = []

    def started() -> None:  # the measured window begins (senders connected and released)
        start[:] = [_cpu_s(this), time.perf_counter()]

    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        url, stop = _serve(rung, Path(tmp))
        try:
            res = run_load(url, senders=16, duration=duration, dup_fraction=0.3, on_start=started)
            cpu, wall = _cpu_s(this) - start[0], time.perf_counter() - start[1]
        finally:
            stop()
    lat = np.sort(res.latencies) * 1e3
    return {
        "throughput": res.throughput,
        "p99_ms": float(lat[int(len(lat) * 0.99)]) if len(lat) else float("nan"),
        "failures": sum(res.non_200.values()) + res.timeouts,
        # The receiver's process (all its threads; the load runs in other processes): CPU per
        # answered request, and how many cores it kept busy.  Near 1.0 with two threads that
        # run Python means the GIL, not the machine, sets the pace.
        "cpu_us": cpu / max(1, len(res.latencies)) * 1e6,
        "cores": cpu / wall if wall > 0 else float("nan"),
    }


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def run(*, quick: bool = False) -> dict[str, Any]:
    """All rungs, interleaved; prints the table, returns the numbers."""
    repeats, duration = (1, 2.0) if quick else (3, 3.0)
    seen: dict[str, list[dict[str, Any]]] = {rung: [] for rung in RUNGS}
    for _ in range(repeats):
        for rung in RUNGS:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_ladder", rung, str(duration)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=180,
                check=True,
            )
            seen[rung].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  .. {rung:<26} {seen[rung][-1]['throughput']:7.0f}/s", file=sys.stderr)
    flask = statistics.median(r["throughput"] for r in seen["flask"])
    rows = []
    for rung, runs in seen.items():
        tput = [r["throughput"] for r in runs]
        rows.append(
            [
                rung,
                statistics.median(tput),
                f"{min(tput):.0f}–{max(tput):.0f}",
                f"{statistics.median(tput) / flask:.2f}×",
                statistics.median(r["p99_ms"] for r in runs),
                statistics.median(r["cpu_us"] for r in runs),
                statistics.median(r["cores"] for r in runs),
                sum(r["failures"] for r in runs),
            ]
        )
    print(
        "### Where the throughput goes (16 keep-alive senders, 30 % duplicates)\n\n"
        + table(
            [
                "receiver",
                "req/s (median)",
                "range",
                "÷ Flask",
                "p99 ms",
                "CPU µs/req",
                "cores",
                "failures",
            ],
            rows,
            digits=1,
        )
    )
    print()
    return {"repeats": repeats, "duration_s": duration, "rungs": seen}


if __name__ == "__main__":
    print(json.dumps(_one(sys.argv[1], float(sys.argv[2]))))
