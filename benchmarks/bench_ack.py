"""The headline: how fast the receiver acknowledges callbacks, against the seeds' Flask app.

16 keep-alive senders (:mod:`benchmarks.load`, from two other processes), 30 % of the sends
repeats of recently sent callbacks (the service's retries), the receiving process's main
thread idle.  suno_nb (``start_receiver`` on a store file on disk, ``synchronous=FULL``: a
200 only after the COMMIT) and the seeds' Flask receiver (``benchmarks/flask_seed.py``)
are measured in the same run, each in a fresh process, alternating, ``repeats`` times.

After each suno_nb run the store file is read (plain sqlite3, receiver stopped): every
distinct callback acknowledged must be stored exactly once (one task row, one accepted
delivery, its track), the repeats as ``duplicate`` deliveries.

Floors: throughput ≥ 2× Flask's, p99 below Flask's, every distinct callback stored once.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .common import ROOT, floor, ratio, stored_counts, summarize_ms, table
from .load import run_load
from .server import FLASK, SUNO, ServerProcess

SENDERS = 16
DUPLICATES = 0.3
MIN_RATIO = 2.0
_run_ids = itertools.count()


@dataclass
class Measure:
    """One receiver under the headline load, merged over repeats."""

    receiver: str
    latencies: list[np.ndarray] = field(default_factory=list)
    ok: int = 0
    wall_s: float = 0.0
    failures: int = 0  # non-200 answers and timeouts
    reconnects: int = 0
    acked_tasks: int = 0
    stored_tasks: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    exactly_once: bool | None = None  # None: not a suno_nb store
    cpu_us: list[float] = field(default_factory=list)  # receiving process, per request
    runs: list[float] = field(default_factory=list)  # req/s of each repeat

    @property
    def lat(self) -> np.ndarray:
        return np.concatenate(self.latencies) if self.latencies else np.zeros(0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "throughput": self.throughput,
            "runs": self.runs,
            **{f"{k}_ms": v for k, v in summarize_ms(self.lat).items() if k != "n"},
            "requests": int(self.lat.size),
            "failures": self.failures,
            "reconnects": self.reconnects,
            "acked_tasks": self.acked_tasks,
            "stored": self.stored,
            "exactly_once": self.exactly_once,
            "cpu_us_per_request": float(np.mean(self.cpu_us)) if self.cpu_us else None,
        }


def measure_once(
    m: Measure, *, kind: str, workdir: Path, duration: float, suno_root: Path | None = None
) -> None:
    """A fresh receiving process under the headline load; add what was seen to ``m``."""
    run = next(_run_ids)
    store = workdir / f"ack-{run}.sqlite3"
    with ServerProcess(kind, store_path=store, suno_root=suno_root) as sp:
        res = run_load(
            sp.url,
            senders=SENDERS,
            duration=duration,
            dup_fraction=DUPLICATES,
            prefix=f"r{run}-{int(time.time())}-",
            on_start=sp.mark,
        )
        sp.mark()
        sp.stop()
    m.cpu_us.append(sp.cpu_seconds(0, 1) / max(res.ok, 1) * 1e6)
    m.latencies.append(res.latencies)
    m.ok += res.ok
    m.wall_s += res.wall_s
    m.runs.append(res.throughput)
    m.failures += sum(res.non_200.values()) + res.timeouts
    m.reconnects += res.reconnects
    m.acked_tasks += res.acked_tasks
    if kind == SUNO:
        counts = stored_counts(store)
        for k, v in counts.items():
            m.stored[k] = m.stored.get(k, 0) + v
        # Each distinct callback once: a task row, one accepted delivery and its one track
        # for every task acknowledged (a task sent but never answered may be stored too, so
        # the bound above is what was sent); every acknowledged send kept as a delivery.
        once = (
            res.acked_tasks <= counts["tasks"] <= res.sent_tasks
            and counts["accepted"] == counts["tasks"] == counts["tracks"]
            and counts["twice"] == 0
            and res.acked_total <= counts["deliveries"] <= res.sent_total
        )
        m.exactly_once = (m.exactly_once is not False) and once
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)


def run(*, quick: bool = False, baseline: Path | None = None) -> dict[str, Any]:
    """The headline benchmark; prints its table and floors, returns the numbers."""
    duration = 2.0 if quick else 8.0
    repeats = 1 if quick else 3
    receivers: list[tuple[str, str, Path | None]] = [(SUNO, SUNO, None), (FLASK, FLASK, None)]
    if baseline is not None:
        receivers.append((f"{SUNO} (baseline)", SUNO, baseline))
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-", dir=ROOT / "benchmarks"))
    results = {label: Measure(label) for label, _, _ in receivers}
    try:
        for rep in range(repeats):  # alternate the order: both see the same machine
            for label, kind, root in receivers if rep % 2 == 0 else receivers[::-1]:
                m = results[label]
                measure_once(m, kind=kind, workdir=workdir, duration=duration, suno_root=root)
                print(
                    f"  .. {label:<20} run {rep + 1}: {m.runs[-1]:7.0f} req/s"
                    f" (p99 so far {summarize_ms(m.lat)['p99']:.1f} ms)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    suno, flask = results[SUNO], results[FLASK]
    s, f = summarize_ms(suno.lat), summarize_ms(flask.lat)
    tput = ratio(suno.throughput, flask.throughput)
    p99 = ratio(s["p99"], f["p99"])
    floors = [
        floor(
            "ack: throughput, 16 senders, 30 % duplicates",
            f"{tput:.2f}× Flask ({suno.throughput:,.0f} vs {flask.throughput:,.0f} req/s)",
            f"≥ {MIN_RATIO:g}× Flask",
            tput >= MIN_RATIO,
        ),
        floor(
            "ack: p99, same load",
            f"{s['p99']:.1f} vs {f['p99']:.1f} ms ({p99:.2f}×)",
            "< Flask's",
            p99 < 1.0,
        ),
        floor(
            "ack: every distinct callback stored exactly once",
            f"{suno.stored.get('tasks', 0):,} tasks stored / {suno.acked_tasks:,} acked"
            f" ({suno.stored.get('duplicate', 0):,} repeats kept as duplicates)",
            "all, once",
            bool(suno.exactly_once) and suno.failures == 0,
        ),
    ]
    print(_table(results, flask) + "\n")
    return {
        "duration_s": duration,
        "repeats": repeats,
        "senders": SENDERS,
        "duplicates": DUPLICATES,
        "results": {k: m.summary() for k, m in results.items()},
        "throughput_ratio": tput,
        "p99_ratio": p99,
        "floors": floors,
    }


def _table(results: dict[str, Measure], flask: Measure) -> str:
    fs = summarize_ms(flask.lat)
    rows = []
    for label, m in results.items():
        s = summarize_ms(m.lat)
        rows.append(
            [
                label,
                m.throughput,
                f"{ratio(m.throughput, flask.throughput):.2f}×",
                " / ".join(f"{r:,.0f}" for r in m.runs),
                s["p50"],
                s["p99"],
                f"{ratio(s['p99'], fs['p99']):.2f}×",
                s["max"],
                float(np.mean(m.cpu_us)) if m.cpu_us else float("nan"),
                m.failures,
                f"{m.stored['tasks']:,} / {m.acked_tasks:,}" if m.stored else "—",
                "—" if m.exactly_once is None else ("yes" if m.exactly_once else "NO"),
            ]
        )
    return (
        f"### ack: {SENDERS} keep-alive senders, {DUPLICATES:.0%} duplicates, main thread idle"
        " (ratios: ÷ Flask, same run)\n\n"
        + table(
            [
                "receiver",
                "req/s",
                "÷ Flask",
                "req/s per run",
                "p50 ms",
                "p99 ms",
                "p99 ÷ Flask",
                "max ms",
                "CPU µs/req",
                "failed",
                "tasks stored / acked",
                "stored once",
            ],
            rows,
            digits=2,
        )
    )
