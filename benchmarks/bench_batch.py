"""``run_batch`` end to end: 500 rows against the sandbox — wall time, peak RSS, store size.

One process: a Sandbox (delay 0.5 s, callbacks on), a receiver on a fresh store file, one
client.  Timed: ``run_batch`` (check every row, store its key, submit) and ``Batch.wait``
(every result stored), then ``results()`` (the join).  The documented rate (20 requests per
10 s per key) alone makes 500 submits take >= 250 s, which measures the service's limit, not
suno_nb: here the throttle and the sandbox both get a limit of 1000 per second, and the
table also states what the documented rate would add.  A second ``run_batch`` of the same
rows (the resume path: nothing to send) is timed too.  No floor was set by the issue.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import fast_limit, table, unthrottled

ROWS = 500


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run(quick: bool = False) -> dict[str, Any]:
    import suno_nb as snb
    from suno_nb.contract import get_provider
    from suno_nb.session import stop_receiver

    n = 100 if quick else ROWS
    documented = get_provider().rate_limit
    out: dict[str, Any] = {"rows": n}
    with tempfile.TemporaryDirectory(prefix="suno_nb_bench_batch_") as tmp_name:
        store = Path(tmp_name) / "batch.sqlite3"
        sb = snb.Sandbox(
            delay=0.5, retry_backoff=0.2, credits=10 * n, rate_limit=fast_limit()
        ).start()
        try:
            with unthrottled(sb):
                # archive=False: the batch measures submitting and receiving, not downloading audio
                rx = snb.start_receiver(store, tunnel=None, poll_interval=5.0, archive=False)
                client = snb.SunoClient(sb.api_key, base_url=sb.url)
                try:
                    song = sb.create_song(duration=120)
                    jobs = [
                        {
                            "task_id": song.task_id,
                            "audio_id": song.tracks[0].id,
                            "prompt": f"variation {i}",
                            "tags": ("pop", "rock", "jazz", "folk")[i % 4],
                            "title": f"take {i}",
                            "infill_start_s": 10.0 + (i % 5) * 10,
                            "infill_end_s": 22.0 + (i % 5) * 10,
                            "full_lyrics": "[Verse] new words\n[Chorus] again",
                            "original_duration": 120.0,
                        }
                        for i in range(n)
                    ]
                    rss0 = _rss_mb()
                    t0 = time.perf_counter()
                    b = snb.run_batch(client, jobs, receiver=rx, name="bench", progress=False)
                    t_submit = time.perf_counter() - t0
                    b.wait(timeout=600, progress=False)
                    t_all = time.perf_counter() - t0
                    t1 = time.perf_counter()
                    res = b.results()
                    t_results = time.perf_counter() - t1
                    t2 = time.perf_counter()
                    again = snb.run_batch(client, jobs, receiver=rx, name="bench", progress=False)
                    t_again = time.perf_counter() - t2
                    summary = again.summary()
                    assert summary["succeeded"] == n and len(res) == 2 * n, summary
                    rx.flush()
                    size = sum(
                        p.stat().st_size
                        for p in store.parent.iterdir()
                        if p.name.startswith(store.name)
                    )
                finally:
                    client.close()
                    stop_receiver()
        finally:
            sb.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    floor_s = 0.0
    if documented is not None:
        floor_s = (n // documented.requests) * documented.per_s
    out |= {
        "submit_s": t_submit,
        "end_to_end_s": t_all,
        "results_join_s": t_results,
        "rerun_s": t_again,
        "rss_before_mb": rss0,
        "peak_rss_mb": peak,
        "store_mb": size / 2**20,
        "documented_rate_floor_s": floor_s,
    }
    print(f"### batch: run_batch of {n} rows against the sandbox (delay 0.5 s)\n")
    print(
        table(
            ["measure", "value"],
            [
                ["run_batch: check + key + submit (s)", t_submit],
                ["... + wait for every result (s)", t_all],
                ["per row, end to end (ms)", 1000 * t_all / n],
                ["results() join (s)", t_results],
                ["run again: nothing to send (s)", t_again],
                ["RSS before the batch (MB)", rss0],
                ["peak RSS of the process (MB)", peak],
                ["store file + WAL (MB)", size / 2**20],
                ["the documented 20 req / 10 s alone (s)", floor_s],
            ],
            digits=2,
        )
    )
    print()
    return out
