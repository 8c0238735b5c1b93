"""Scaling: ``frame()`` / ``tasks()`` time and peak memory, store size, for 1k..1M tracks.

No floor: how the DataFrame views grow with the store (linear, a few µs per track).

Each dataset is built once, directly through the store in big transactions (two tracks per
task, one accepted delivery per task holding a seed-shaped raw body, as the receiver would
have stored it).  Each measurement then runs in a FRESH process, so the peak resident
memory it reports is ``frame()``'s own: RSS before the call, and the process's high-water
mark after it (``ru_maxrss``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT, BodyMaker, table

CHUNK = 50_000  # tasks per build transaction


def build(path: Path, tracks: int) -> float:
    """Create a store at ``path`` with ``tracks`` tracks (tracks/2 tasks); return seconds."""
    sys.path.insert(0, str(ROOT))
    from suno_nb.store import Store
    from suno_nb.store.schema import clean_headers

    t0 = time.perf_counter()
    maker = BodyMaker(tracks=2)
    headers = json.dumps(
        clean_headers(
            {"Host": "127.0.0.1:8000", "Content-Type": "application/json", "User-Agent": "x"}
        )
    )
    tasks = tracks // 2
    store = Store(path)
    base = 1.7e9

    def chunk(conn: Any, lo: int, hi: int) -> None:
        conn.executemany(
            "INSERT INTO deliveries (id, received_at, source, remote_addr, via_tunnel, method,"
            " path, headers, body, status, verdict, task_id)"
            " VALUES (?, ?, 'callback', '127.0.0.1', 0, 'POST', '/callback/…', ?, ?, 200,"
            " 'accepted', ?)",
            (
                (i + 1, base + i, headers, maker.body(f"task-{i:08d}"), f"task-{i:08d}")
                for i in range(lo, hi)
            ),
        )
        conn.executemany(
            "INSERT INTO tasks (task_id, state, code, msg, callback_type, source, parent_task_id,"
            " audio_id, infill_start_s, infill_end_s, prompt, tags, title, submitted_at,"
            " first_seen_at, completed_at, updated_at)"
            " VALUES (?, 'succeeded', 200, 'All generated successfully.', 'complete',"
            " 'callback', 'parent-1', 'audio-1', 30.0, 45.5, 'a brass break', 'funk',"
            " 'Take 2', ?, ?, ?, ?)",
            ((f"task-{i:08d}", base + i - 60, base + i, base + i, base + i) for i in range(lo, hi)),
        )
        conn.executemany(
            "INSERT INTO tracks (task_id, track_id, audio_url, stream_audio_url, image_url,"
            " prompt, model_name, title, tags, create_time, duration, received_at, source,"
            " delivery_id)"
            " VALUES (?, ?, ?, ?, ?, 'A calm and relaxing piano track.', 'chirp-v3-5',"
            " 'Relaxing Piano', 'Jazz', '2025-01-01 00:00:00', 198.44, ?, 'callback', ?)",
            (
                (
                    f"task-{i // 2:08d}",
                    f"task-{i // 2:08d}-trk-{i % 2}",
                    f"https://example.cn/{i}.mp3",
                    f"https://example.cn/{i}",
                    f"https://example.cn/{i}.jpeg",
                    base + i // 2,
                    i // 2 + 1,
                )
                for i in range(2 * lo, 2 * hi)
            ),
        )

    try:
        for lo in range(0, tasks, CHUNK):
            hi = min(tasks, lo + CHUNK)
            store.write(lambda conn, lo=lo, hi=hi: chunk(conn, lo, hi))
    finally:
        store.close()
    # Fold the WAL into the main file so the size on disk is the store's.
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


_PROBE = r"""
import json, resource, sys, time, gc
sys.path.insert(0, sys.argv[1])
import psutil
from suno_nb.store import Store
from suno_nb import frame as fr
store = Store(sys.argv[2])
what = sys.argv[3]
fn = {"frame": fr.frame, "tasks": fr.tasks, "deliveries": fr.deliveries}[what]
gc.collect()
rss0 = psutil.Process().memory_info().rss
t0 = time.perf_counter()
df = fn(store)
first = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
df_bytes = int(df.memory_usage(deep=True).sum())
rows = len(df)
del df
gc.collect()
times = [first]
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter()
    fn(store)
    times.append(time.perf_counter() - t0)
store.close()
print(json.dumps({"rows": rows, "first_s": first, "best_s": min(times), "rss_before": rss0,
                  "peak_rss": peak, "df_bytes": df_bytes}))
"""


def probe(path: Path, what: str, repeats: int) -> dict[str, Any]:
    """Time ``frame.<what>(store)`` in a fresh interpreter; memory as described above."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT), str(path), what, str(repeats)],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(*, quick: bool = False, keep: Path | None = None) -> dict[str, Any]:
    """Build and measure each size; prints a table, returns the numbers."""
    sizes = (1_000, 10_000, 100_000) if quick else (1_000, 10_000, 100_000, 1_000_000)
    workdir = keep or Path(tempfile.mkdtemp(prefix="suno-bench-", dir=ROOT / "benchmarks"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for n in sizes:
            path = workdir / f"scale-{n}.sqlite3"
            built = None
            if not path.exists():
                built = build(path, n)
            size = sum(os.path.getsize(p) for p in (path, Path(f"{path}-wal")) if os.path.exists(p))
            repeats = 2 if n <= 100_000 else 1
            row: dict[str, Any] = {"tracks": n, "build_s": built, "disk_bytes": size}
            for what in ("frame", "tasks"):
                row[what] = probe(path, what, repeats)
            results.append(row)
            f, t = row["frame"], row["tasks"]
            print(
                f"  .. {n:>9,} tracks: frame {f['best_s']:.3f} s, tasks {t['best_s']:.3f} s,"
                f" {size / 1e6:.0f} MB on disk",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    rows = []
    for r in results:
        f, t = r["frame"], r["tasks"]
        rows.append(
            [
                f"{r['tracks']:,}",
                f"{r['tracks'] // 2:,}",
                f["first_s"] * 1e3,
                f["best_s"] * 1e3,
                f["best_s"] * 1e6 / r["tracks"],
                (f["peak_rss"] - f["rss_before"]) / 2**20,
                f["df_bytes"] / 2**20,
                t["best_s"] * 1e3,
                r["disk_bytes"] / 2**20,
                r["disk_bytes"] / r["tracks"],
            ]
        )
    print(
        "### scaling: frame() and tasks() on a stored dataset (fresh process per call)\n\n"
        + table(
            [
                "tracks",
                "tasks",
                "frame() first ms",
                "frame() best ms",
                "µs/track",
                "peak RSS added MB",
                "DataFrame MB",
                "tasks() best ms",
                "store on disk MB",
                "bytes/track",
            ],
            rows,
            digits=1,
        )
    )
    print()
    return {"results": results}
