"""Receiver throughput and acknowledgement latency: suno_nb (durable) vs the seeds' Flask app.

For each number of concurrent keep-alive senders N and each state of the receiving
process's main thread (idle, or busy in a pure-Python loop like a notebook cell), both
receivers are measured in the same run, one after the other, each in a fresh process (and
suno_nb on a fresh store file on disk, ``synchronous=FULL``).  The load comes from separate
processes (:mod:`benchmarks.load`).  The headline (issue 11): 16 keep-alive senders with
30 % of the sends repeats of earlier callbacks, every distinct callback stored exactly once,
and one sender while the main thread is busy (the interpreter's switch interval untouched).
Also: a run where every task is sent 1–3 times, and a burst of simultaneous new connections
(listen backlog).
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
from .server import FLASK, MINIMAL, SUNO, ServerProcess

_run_ids = itertools.count()


@dataclass
class Measure:
    """One receiver under one load, merged over repeats."""

    receiver: str
    senders: int
    busy: bool
    dup_max: int = 1
    dup_fraction: float = 0.0
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
    switch_interval: float | None = None  # sys.getswitchinterval() in the receiving process

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
            "switch_interval": self.switch_interval,
        }


def measure_once(
    m: Measure,
    *,
    kind: str,
    workdir: Path,
    duration: float,
    suno_root: Path | None = None,
) -> None:
    """Start a fresh receiving process, load it, add what was seen to ``m``."""
    run = next(_run_ids)
    store = workdir / f"ack-{run}.sqlite3"
    with ServerProcess(
        kind,
        store_path=store,
        busy=m.busy,
        suno_root=suno_root,
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
            dup_fraction=m.dup_fraction,
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
    m.switch_interval = report.get("switch_interval_running")
    counts = report.get("counts")
    if counts is not None:
        for k, v in counts.items():
            m.stored[k] = m.stored.get(k, 0) + v
        # Every acknowledged delivery is stored (tasks: one row each, by the primary key),
        # and nothing more than was sent.  A request that timed out, or whose connection the
        # server closed under overload before answering, may be stored without its 200
        # being seen: that is not a loss (the sender retries), so only the bounds count.
        ok = res.acked_total <= counts["deliveries"] <= res.sent_total
        tasks = counts.get("tasks", res.acked_tasks)  # the calibration receiver keeps none
        m.stored_ok = (m.stored_ok is not False) and ok and tasks >= res.acked_tasks
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
    senders: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """The whole acknowledgement benchmark; prints tables, returns the numbers."""
    duration = 1.5 if quick else 5.0
    repeats = 1 if quick else 2
    senders = senders or ((16,) if quick else (1, 16, 64))
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-", dir=ROOT / "benchmarks"))
    out: dict[str, Any] = {"duration_s": duration, "repeats": repeats, "matrix": [], "extra": {}}
    try:
        receivers = _receivers(baseline)

        # The headline: 16 keep-alive senders, 30 % duplicates, idle main thread; and one
        # sender with the main thread busy.  Repeats alternate the order of the receivers.
        # The calibration receiver (benchmarks/minimal_receiver.py) says what the machine
        # allows a durable receiver on this HTTP server at all.
        headline = [*receivers, (MINIMAL, MINIMAL, None)]
        head: dict[tuple[str, str], Measure] = {}
        for rep in range(repeats):
            order = headline if rep % 2 == 0 else headline[::-1]
            for label, kind, root in order:
                for case, m_new in (
                    ("dup30", lambda lb: Measure(lb, 16, False, dup_fraction=0.3)),
                    ("busy1", lambda lb: Measure(lb, 1, True)),
                ):
                    m = head.setdefault((case, label), m_new(label))
                    measure_once(m, kind=kind, workdir=workdir, duration=duration, suno_root=root)
                    _progress(m)
        out["extra"]["headline"] = {f"{c}/{lb}": m.summary() for (c, lb), m in head.items()}
        print(_headline_table(head, [r[0] for r in headline]))
        print()

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


def _headline_table(head: dict[tuple[str, str], Measure], labels: list[str]) -> str:
    flask = FLASK if FLASK in labels else labels[1]
    rows = []
    for case, title in (
        ("dup30", "16 keep-alive senders, 30 % duplicates, main thread idle"),
        ("busy1", "1 sender, main thread busy in a Python loop"),
    ):
        f = head[(case, flask)]
        for label in labels:
            m = head[(case, label)]
            s = m.stats()
            stored = m.stored
            rows.append(
                [
                    title,
                    label,
                    m.throughput,
                    f"{ratio(m.throughput, f.throughput):.2f}×",
                    s["p50"],
                    s["p99"],
                    f"{ratio(s['p99'], f.stats()['p99']):.2f}",
                    s["max"],
                    f"{stored.get('tasks', '—')} / {m.acked_tasks}",
                    "—" if m.stored_ok is None else ("yes" if m.stored_ok else "NO"),
                    "—" if m.switch_interval is None else f"{m.switch_interval * 1000:g} ms",
                ]
            )
    return "### Headline (issue 11): ratios against Flask in the same run\n\n" + table(
        [
            "load",
            "receiver",
            "req/s",
            "tput ÷ Flask",
            "p50 ms",
            "p99 ms",
            "p99 ÷ Flask",
            "max ms",
            "tasks stored / distinct acked",
            "acked⇒stored, once",
            "switch interval",
        ],
        rows,
        digits=2,
    )
