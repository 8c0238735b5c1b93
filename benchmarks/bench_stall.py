"""1,000 stalled connections: what they cost the receiving process, and valid callbacks meanwhile.

For suno_nb and the seeds' Flask receiver (each in a fresh :class:`ServerProcess`, main thread
idle): after a few valid callbacks (so every thread the receiver starts on first use is
running), open 1,000 connections that send half a request line and then nothing, then
measure the receiving process's threads and RSS (psutil) against before, and the latency of
valid callbacks sent during the stall, both on one keep-alive connection (:func:`run_load`)
and on a fresh connection per callback.  suno_nb caps open connections (256 by default) and
sheds stalled ones first, so it also says how many it still holds.  Loopback only; bounded
in count and time.

Floor: suno_nb adds no thread, and every valid callback during the stall is answered 200.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from .common import ROOT, BodyMaker, floor, ratio, summarize_ms, table
from .load import run_load
from .server import FLASK, SUNO, ServerProcess

STALLED = 1000


def _fresh_connection_latencies(url: str, n: int) -> tuple[np.ndarray, int]:
    """``n`` callbacks, each on a new connection; seconds until the whole answer."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    maker = BodyMaker()
    lat, failed = [], 0
    for i in range(n):
        body = maker.body(f"stall-fresh-{time.time_ns()}-{i}")
        data = (
            f"POST {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        t0 = time.perf_counter()
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=10) as c:
                c.sendall(data)
                answer = b""
                while chunk := c.recv(65536):
                    answer += chunk
            if not answer.startswith(b"HTTP/1.1 200") and not answer.startswith(b"HTTP/1.0 200"):
                failed += 1
                continue
        except OSError:
            failed += 1
            continue
        lat.append(time.perf_counter() - t0)
    return np.array(lat), failed


def measure(kind: str, workdir: Path, *, duration: float, fresh: int) -> dict[str, Any]:
    with ServerProcess(kind, store_path=workdir / f"stall-{kind}.sqlite3") as sp:
        proc = psutil.Process(sp.pid)
        base = run_load(sp.url, senders=1, duration=duration / 2, prefix="stall-base-")
        time.sleep(0.3)  # after the keep-alive sender left: what the receiver keeps running
        threads0, rss0 = proc.num_threads(), proc.memory_info().rss
        port = int(sp.url.split(":")[2].split("/")[0])
        conns = []
        try:
            for _ in range(STALLED):
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                c.sendall(b"POST /callback/x HTTP/1.1\r\n")
                conns.append(c)
            time.sleep(1.0)
            threads1, rss1 = proc.num_threads(), proc.memory_info().rss
            during = run_load(sp.url, senders=1, duration=duration, prefix="stall-during-")
            fresh_lat, fresh_failed = _fresh_connection_latencies(sp.url, fresh)
            held = sum(1 for c in conns if _still_open(c))
            server_open = sp.connections()
        finally:
            for c in conns:
                with contextlib.suppress(OSError):
                    c.close()
        sp.stop()
    return {
        "receiver": kind,
        "threads_before": threads0,
        "threads_added": threads1 - threads0,
        "rss_added_mb": (rss1 - rss0) / 2**20,
        "stalled_still_open": held,
        "server_connections": server_open,
        "during_keepalive_answered": int(during.latencies.size),
        "before": summarize_ms(base.latencies),
        "during_keepalive": summarize_ms(during.latencies),
        "during_keepalive_failures": sum(during.non_200.values()) + during.timeouts,
        "during_fresh": summarize_ms(fresh_lat),
        "during_fresh_failures": fresh_failed,
    }


def _still_open(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        conn.recv(1, socket.MSG_PEEK)  # an answer (503 when shed) or EOF: not held any more
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def run(*, quick: bool = False) -> dict[str, Any]:
    duration = 1.5 if quick else 4.0
    fresh = 50 if quick else 200
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-stall-", dir=ROOT / "benchmarks"))
    out: dict[str, Any] = {"stalled": STALLED, "runs": []}
    try:
        for kind in (SUNO, FLASK):
            out["runs"].append(measure(kind, workdir, duration=duration, fresh=fresh))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    suno, flask = out["runs"]
    rows = [
        [
            r["receiver"],
            r["threads_added"],
            r["rss_added_mb"],
            r["stalled_still_open"],
            "—" if r["server_connections"] is None else r["server_connections"],
            r["before"]["p99"],
            r["during_keepalive"]["p50"],
            r["during_keepalive"]["p99"],
            f"{ratio(r['during_keepalive']['p99'], flask['during_keepalive']['p99']):.2f}×",
            r["during_fresh"]["p50"],
            r["during_fresh"]["p99"],
            r["during_fresh"]["max"],
            r["during_keepalive_failures"] + r["during_fresh_failures"],
        ]
        for r in out["runs"]
    ]
    print(
        f"### stall: {STALLED} stalled connections (half a request line each, then nothing)"
        " (÷ Flask, same run)\n\n"
        + table(
            [
                "receiver",
                "threads added",
                "RSS added MB",
                "stalled still open",
                "server holds",
                "p99 before ms",
                "keep-alive p50 ms",
                "keep-alive p99 ms",
                "p99 ÷ Flask",
                "new-conn p50 ms",
                "new-conn p99 ms",
                "new-conn max ms",
                "failed",
            ],
            rows,
            digits=1,
        )
    )
    print()
    failed = suno["during_keepalive_failures"] + suno["during_fresh_failures"]
    answered = suno["during_keepalive_answered"] + suno["during_fresh"]["n"]
    out["floors"] = [
        floor(
            "stall: threads added by 1,000 stalled connections",
            f"+{suno['threads_added']} (Flask +{flask['threads_added']});"
            f" RSS +{suno['rss_added_mb']:.1f} MB (Flask +{flask['rss_added_mb']:.1f})",
            "0",
            suno["threads_added"] <= 0,
        ),
        floor(
            "stall: valid callbacks answered during the stall",
            f"{answered:,} answered, {failed} failed; p99 keep-alive"
            f" {suno['during_keepalive']['p99']:.1f} ms, new connection"
            f" {suno['during_fresh']['p99']:.1f} ms",
            "all",
            failed == 0 and answered > 0,
        ),
    ]
    return out
