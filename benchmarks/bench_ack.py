"""Receiver throughput and acknowledgement latency: suno_nb (durable) vs the seeds' Flask app.

For each number of concurrent keep-alive senders N and each state of the receiving
process's main thread (idle, or busy in a pure-Python loop like a notebook cell), both
receivers are measured in the same run, one after the other, each in a fresh process (and
suno_nb on a fresh store file on disk, ``synchronous=FULL``).  The load comes from separate
processes (:mod:`benchmarks.load`).  Also: a run where every task is sent 1–3 times (the
store must hold each task once and every delivery), a burst of simultaneous new connections
(listen backlog), and a sweep of the GIL switch interval with the main thread busy.
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

from .common import ROOT, fmt, ratio, summarize_ms, table
from .load import SLOW_S, run_load, storm
from .server import FLASK, SUNO, ServerProcess

_run_ids = itertools.count()


@dataclass
class Measure:
    """One receiver under one load, merged over repeats."""

    receiver: str
    senders: int
    busy: bool
    dup_max: int = 1
    latencies: list[np.ndarray] = field(default_factory=list)
    ok: int = 0
    wall_s: float = 0.0
    failures: int = 0  # non-200 answers and timeouts
    reconnects: int = 0
    acked_total: int = 0
    acked_tasks: int = 0
    stored: dict[str, int] = field(default_factory=dict)
    stored_ok: bool | None = None
    main_speed: list[float] = field(default_factory=list)  # busy loop: under load / alone
    cpu_us: list[float] = field(default_factory=list)  # receiving process CPU per request

    @property
    def lat(self) -> np.ndarray:
        return np.concatenate(self.latencies) if self.latencies else np.zeros(0)

    @property
    def throughput(self) -> float:
        return self.ok / self.wall_s if self.wall_s else float("nan")

    def stats(self) -> dict[str, float]:
        return summarize_ms(self.lat)

    def summary(self) -> dict[str, Any]:
        s = self.stats()
        return {
            "receiver": self.receiver,
            "senders": self.senders,
            "busy": self.busy,
            "dup_max": self.dup_max,
            "throughput": self.throughput,
            **{f"{k}_ms": v for k, v in s.items() if k != "n"},
            "requests": s["n"],
            "stalls": int((self.lat > SLOW_S).sum()),
            "failures": self.failures,
            "reconnects": self.reconnects,
            "acked_total": self.acked_total,
            "acked_tasks": self.acked_tasks,
            "stored": self.stored,
            "stored_ok": self.stored_ok,
            "main_speed": float(np.mean(self.main_speed)) if self.main_speed else None,
            "cpu_us_per_request": float(np.mean(self.cpu_us)) if self.cpu_us else None,
        }


def measure_once(
    m: Measure,
    *,
    kind: str,
    workdir: Path,
    duration: float,
    suno_root: Path | None = None,
    switch_interval: float | None = None,
    receiver_switch: bool = True,
) -> None:
    """Start a fresh receiving process, load it, add what was seen to ``m``."""
    run = next(_run_ids)
    store = workdir / f"ack-{run}.sqlite3"
    with ServerProcess(
        kind,
        store_path=store,
        busy=m.busy,
        suno_root=suno_root,
        switch_interval=switch_interval,
        receiver_switch=receiver_switch,
    ) as sp:
        if m.busy:  # the busy loop's speed with nothing else going on
            sp.mark()
            time.sleep(0.5)
            sp.mark()
        res = run_load(
            sp.url,
            senders=m.senders,
            duration=duration,
            dup_max=m.dup_max,
            prefix=f"r{run}-{int(time.time())}-",
            on_start=sp.mark,
        )
        sp.mark()
        report = sp.stop()
    marks = len(report.get("marks", []))
    if m.busy and marks >= 4:
        alone = sp.busy_rate(0, 1)
        m.main_speed.append(ratio(sp.busy_rate(marks - 2, marks - 1), alone))
    elif marks >= 2:
        m.cpu_us.append(sp.cpu_seconds(marks - 2, marks - 1) / max(res.ok, 1) * 1e6)
    m.latencies.append(res.latencies)
    m.ok += res.ok
    m.wall_s += res.wall_s
    m.failures += sum(res.non_200.values()) + res.timeouts
    m.reconnects += res.reconnects
    m.acked_total += res.acked_total
    m.acked_tasks += res.acked_tasks
    counts = report.get("counts")
    if counts is not None:
        for k, v in counts.items():
            m.stored[k] = m.stored.get(k, 0) + v
        # Every acknowledged delivery is stored, each acknowledged task once (a delivery
        # that timed out client-side may be stored without its ack being seen: >=).
        ok = counts["deliveries"] >= res.acked_total and counts["tasks"] >= res.acked_tasks
        exact = counts["deliveries"] == res.sent_total and counts["tasks"] == res.acked_tasks
        m.stored_ok = (m.stored_ok is not False) and ok and (exact or res.timeouts > 0)
    with_wal = [store, store.with_name(store.name + "-wal"), store.with_name(store.name + "-shm")]
    for f in with_wal:
        f.unlink(missing_ok=True)


def _receivers(baseline: Path | None) -> list[tuple[str, str, Path | None]]:
    rx = [(SUNO, SUNO, None), (FLASK, FLASK, None)]
    if baseline is not None:
        rx.append((f"{SUNO} (before)", SUNO, baseline))
    return rx


def run(
    *,
    quick: bool = False,
    baseline: Path | None = None,
    senders: tuple[int, ...] = (1, 4, 16, 64),
) -> dict[str, Any]:
    """The whole acknowledgement benchmark; prints tables, returns the numbers."""
    duration = 1.5 if quick else 5.0
    repeats = 1 if quick else 2
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-", dir=ROOT / "benchmarks"))
    out: dict[str, Any] = {"duration_s": duration, "repeats": repeats, "matrix": [], "extra": {}}
    try:
        receivers = _receivers(baseline)
        results: dict[tuple[str, int, bool], Measure] = {}
        for busy in (False, True):
            for n in senders:
                for rep in range(repeats):
                    order = receivers if (rep + n) % 2 == 0 else receivers[::-1]
                    for label, kind, root in order:
                        m = results.setdefault((label, n, busy), Measure(label, n, busy))
                        measure_once(
                            m, kind=kind, workdir=workdir, duration=duration, suno_root=root
                        )
                        _progress(m)
        out["matrix"] = [m.summary() for m in results.values()]
        for busy in (False, True):
            print(_ack_table(results, senders, busy, [r[0] for r in receivers]))
            print()

        # Duplicates: every task sent 1-3 times (interleaved), 16 senders, idle main thread.
        dups = {}
        for label, kind, root in receivers[:2]:
            m = Measure(label, 16, False, dup_max=3)
            measure_once(m, kind=kind, workdir=workdir, duration=duration, suno_root=root)
            dups[label] = m
            _progress(m)
        out["extra"]["duplicates"] = {k: m.summary() for k, m in dups.items()}
        print(_dup_table(dups))
        print()

        # Connection burst: new connections all at once (listen backlog check).
        bursts = {}
        for label, kind, root in receivers[:2]:
            with ServerProcess(
                kind, store_path=workdir / f"storm-{label}.sqlite3", suno_root=root
            ) as sp:
                lat, failed = storm(sp.url, conns=128 if quick else 512)
            bursts[label] = {
                **summarize_ms(lat),
                "failed": failed,
                "near_1s": int((lat > 0.9).sum()),
            }
        out["extra"]["burst"] = bursts
        print(_burst_table(bursts, 128 if quick else 512))
        print()

        # The GIL switch interval, main thread busy: receiver_switch=False, the interval set
        # by the harness before the receiver starts.
        sweep = []
        intervals = (0.005, 0.001) if quick else (0.005, 0.002, 0.001, 0.0005, 0.0002)
        for n in (1, 16) if not quick else (16,):
            for si in intervals:
                m = Measure(f"switch {si * 1000:g} ms", n, True)
                measure_once(
                    m,
                    kind=SUNO,
                    workdir=workdir,
                    duration=duration,
                    switch_interval=si,
                    receiver_switch=False,
                )
                _progress(m)
                sweep.append({"switch_interval": si, **m.summary()})
        out["extra"]["switch_sweep"] = sweep
        print(_sweep_table(sweep))
        print()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def _progress(m: Measure) -> None:
    s = m.stats()
    print(
        f"  .. {m.receiver:<20} N={m.senders:<3} {'busy' if m.busy else 'idle'}"
        f"{' dup' if m.dup_max > 1 else ''}: {m.throughput:7.0f}/s p50 {s['p50']:6.2f} ms"
        f" p99 {s['p99']:7.2f} ms max {s['max']:7.1f} ms",
        file=sys.stderr,
        flush=True,
    )


def _ack_table(
    results: dict[tuple[str, int, bool], Measure],
    senders: tuple[int, ...],
    busy: bool,
    labels: list[str],
) -> str:
    rows = []
    for n in senders:
        s, f = results[(labels[0], n, busy)], results[(labels[1], n, busy)]
        ss, fs = s.stats(), f.stats()
        row: list[Any] = [
            n,
            s.throughput,
            f.throughput,
            f"{ratio(s.throughput, f.throughput):.2f}×",
            ss["p50"],
            ss["p99"],
            ss["max"],
            fs["p50"],
            fs["p99"],
            fs["max"],
            f"{ratio(ss['p99'], fs['p99']):.2f}",
            f"{int((s.lat > SLOW_S).sum())}/{int((f.lat > SLOW_S).sum())}",
            "yes" if s.stored_ok else "NO",
        ]
        if busy:
            row.append(f"{fmt(_mean(s.main_speed), 2)} / {fmt(_mean(f.main_speed), 2)}")
        else:
            row.append(f"{fmt(_mean(s.cpu_us), 0)} / {fmt(_mean(f.cpu_us), 0)}")
        for label in labels[2:]:
            b = results[(label, n, busy)]
            bs = b.stats()
            row += [b.throughput, bs["p99"]]
        rows.append(row)
    headers = [
        "N",
        "suno_nb req/s",
        "Flask req/s",
        "tput ratio",
        "suno p50 ms",
        "suno p99 ms",
        "suno max ms",
        "Flask p50 ms",
        "Flask p99 ms",
        "Flask max ms",
        "p99 ratio",
        "stalls >0.5 s",
        "acked⇒stored",
        "main-thread speed kept" if busy else "CPU µs/req",
    ]
    for label in labels[2:]:
        headers += [f"{label} req/s", f"{label} p99 ms"]
    title = "### Main thread BUSY (pure-Python loop)" if busy else "### Main thread idle"
    note = "(ratio columns: suno_nb ÷ Flask; p99 ratio < 0.25 is the target)"
    return f"{title} {note}\n\n" + table(headers, rows, digits=2)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _dup_table(dups: dict[str, Measure]) -> str:
    rows = []
    for label, m in dups.items():
        s = m.stats()
        st = m.stored
        rows.append(
            [
                label,
                m.throughput,
                s["p50"],
                s["p99"],
                m.acked_total,
                m.acked_tasks,
                st.get("deliveries", "—"),
                st.get("tasks", "—"),
                st.get("tracks", "—"),
                "—" if m.stored_ok is None else ("yes" if m.stored_ok else "NO"),
            ]
        )
    return "### Duplicates: each task sent 1–3 times, 16 senders, idle\n\n" + table(
        [
            "receiver",
            "req/s",
            "p50 ms",
            "p99 ms",
            "acked sends",
            "distinct tasks acked",
            "deliveries stored",
            "tasks stored",
            "tracks stored",
            "one row per task",
        ],
        rows,
        digits=2,
    )


def _burst_table(bursts: dict[str, dict[str, Any]], conns: int) -> str:
    rows = [
        [label, b["n"], b["failed"], b["p50"], b["p99"], b["max"], b["near_1s"]]
        for label, b in bursts.items()
    ]
    return f"### Burst: {conns} new connections at once (one request each)\n\n" + table(
        ["receiver", "answered", "failed", "p50 ms", "p99 ms", "max ms", "answers > 0.9 s"],
        rows,
        digits=1,
    )


def _sweep_table(sweep: list[dict[str, Any]]) -> str:
    rows = [
        [
            f"{s['switch_interval'] * 1000:g}",
            s["senders"],
            s["throughput"],
            s["p50_ms"],
            s["p99_ms"],
            s["max_ms"],
            fmt(s["main_speed"], 2) if s["main_speed"] is not None else "—",
        ]
        for s in sweep
    ]
    return "### GIL switch interval, main thread busy (suno_nb)\n\n" + table(
        ["interval ms", "N", "req/s", "p50 ms", "p99 ms", "max ms", "main-thread speed kept"],
        rows,
        digits=2,
    )
