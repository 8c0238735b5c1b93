"""Callback -> row latency: from the POST leaving the sender until the row is visible.

The receiving process runs suno_nb's receiver with a handler registered via
``rx.on_callback`` and a watcher thread that waits on ``store.wait_for_change`` and calls
``rx.frame()`` (see :func:`benchmarks.server._install_probe`).  The sender, in this
process, POSTs callbacks one at a time over a keep-alive connection, a few milliseconds
apart, and notes when each left.  Both clocks are CLOCK_MONOTONIC, so the differences are
true end-to-end latencies: until the 200, until the handler ran (and could read the row),
and until the row appeared in ``frame()``.
"""

from __future__ import annotations

import http.client
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from .common import ROOT, BodyMaker, summarize_ms, table
from .server import SUNO, ServerProcess


def _send_all(url: str, count: int, gap_s: float, prefix: str) -> dict[str, tuple[float, float]]:
    """POST ``count`` callbacks sequentially; ``{task: (sent_at, acked_at)}``."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    maker = BodyMaker()
    sent: dict[str, tuple[float, float]] = {}
    deadline = time.monotonic() + 120
    try:
        for i in range(count):
            if time.monotonic() > deadline:
                break
            task = f"{prefix}{i:06d}"
            body = maker.body(task)
            t0 = time.perf_counter()
            conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            t1 = time.perf_counter()
            if resp.status == 200:
                sent[task] = (t0, t1)
            time.sleep(gap_s)
    finally:
        conn.close()
    return sent


def measure(*, busy: bool, count: int, gap_s: float, workdir: Path) -> dict[str, Any]:
    """Idle or busy main thread: one pass timing a handler, one timing ``frame()``."""
    out: dict[str, Any] = {"busy": busy}
    ack: list[float] = []
    for what in ("handler", "frame"):
        store = workdir / f"latency-{what}-{'busy' if busy else 'idle'}.sqlite3"
        with ServerProcess(SUNO, store_path=store, busy=busy, probe=what) as sp:
            time.sleep(0.3)
            sent = _send_all(sp.url, count, gap_s, f"lat-{what}-{int(time.time())}-")
            report = sp.stop()
        seen: dict[str, float] = report.get(f"{what}_seen", {})
        ack += [t1 - t0 for t0, t1 in sent.values()]
        delays = [seen[t] - t0 for t, (t0, _t1) in sent.items() if t in seen]
        out[what] = summarize_ms(delays)
        out[f"{what}_missing"] = len(sent) - len(delays)
        if what == "frame":
            out["frame_call"] = summarize_ms(np.asarray(report.get("frame_calls", [])))
    out["ack"] = summarize_ms(ack)
    return out


def run(*, quick: bool = False) -> dict[str, Any]:
    """Idle and busy main thread; prints a table, returns the numbers."""
    count = 60 if quick else 300
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-", dir=ROOT / "benchmarks"))
    try:
        results = [measure(busy=b, count=count, gap_s=0.01, workdir=workdir) for b in (False, True)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for r in results:
        main = "busy" if r["busy"] else "idle"
        steps = (("200 received", "ack"), ("handler ran", "handler"), ("row in frame()", "frame"))
        for what, key in steps:
            s = r[key]
            missing = r.get(f"{key}_missing", 0)
            rows.append([main, what, s["n"], s["p50"], s["p90"], s["p99"], s["max"], missing])
    print(
        f"### Callback → row latency ({count} sequential callbacks, 10 ms apart)\n\n"
        + table(
            ["main thread", "until", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "missing"],
            rows,
            digits=2,
        )
    )
    for r in results:
        fc = r["frame_call"]
        main = "busy" if r["busy"] else "idle"
        print(
            f"\n(one frame() call on this small store, main thread {main}:"
            f" p50 {fc['p50']:.1f} ms, max {fc['max']:.1f} ms)"
        )
    print()
    return {"count": count, "results": results}
