"""Helpers shared by the benchmarks: bodies, percentiles, tables, floors, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "suno_nb" / "data" / "seed_success.json"
RESULTS_DIR = ROOT / "benchmarks" / "results"


def seed_doc() -> dict[str, Any]:
    """The seeds' success callback body, decoded."""
    return json.loads(SEED.read_text(encoding="utf-8"))


class BodyMaker:
    """Seed-shaped callback bodies with distinct task and track ids, cheap to produce.

    The seed body is serialised once with placeholder ids; each body is two ``replace``
    calls, so the generator costs microseconds and does not slow the load processes.
    """

    TASK = "@@TASK@@"
    TRACK = "@@TRACK@@"

    def __init__(self, tracks: int = 1) -> None:
        doc = seed_doc()
        first = doc["data"]["data"][0]
        items = []
        for n in range(tracks):
            item = dict(first)
            item["id"] = f"{self.TRACK}-{n}"
            items.append(item)
        doc["data"]["data"] = items
        doc["data"]["task_id"] = self.TASK
        self._template = json.dumps(doc, ensure_ascii=False)

    def body(self, task_id: str) -> bytes:
        """The body for ``task_id`` (its tracks are ``<task_id>-trk-<n>``)."""
        text = self._template.replace(self.TASK, task_id).replace(self.TRACK, f"{task_id}-trk")
        return text.encode("utf-8")


def free_port() -> int:
    """An unused TCP port on 127.0.0.1 (for servers that cannot report theirs)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def pct(values: np.ndarray | Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values``, NaN when empty."""
    arr = np.asarray(values, dtype="float64")
    return float(np.percentile(arr, q)) if arr.size else float("nan")


def summarize_ms(values_s: np.ndarray | Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds of latencies given in seconds."""
    arr = np.asarray(values_s, dtype="float64") * 1e3
    if not arr.size:
        return {
            "n": 0,
            "p50": float("nan"),
            "p90": float("nan"),
            "p99": float("nan"),
            "max": float("nan"),
            "mean": float("nan"),
        }
    return {
        "n": int(arr.size),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
    }


def fmt(value: Any, digits: int = 1) -> str:
    """A table cell: floats rounded, NaN as '—'."""
    if isinstance(value, float):
        if value != value:  # NaN
            return "—"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    digits: int = 1,
    left_columns: int = 1,
) -> str:
    """A GitHub-flavoured Markdown table (it also reads well in a terminal): the first
    ``left_columns`` (labels) left-aligned, the others (numbers) right-aligned."""
    rows = [list(row) for row in rows]
    cells = [[fmt(v, digits) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    left = [i < left_columns for i in range(len(headers))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join(("-" * (w + 1) + ("-" if left[i] else ":")) for i, w in enumerate(widths))
    body = [
        "| "
        + " | ".join(
            c.ljust(w) if left[i] else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        + " |"
        for r in cells
    ]
    return "\n".join([line, sep + "|", *body])


def ratio(a: float, b: float) -> float:
    """``a / b``, NaN when ``b`` is zero or NaN."""
    if not b or b != b:
        return float("nan")
    return a / b


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": mem,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def disk_flush_ms(directory: Path, samples: int = 200) -> dict[str, float]:
    """fdatasync latency of a 4 KiB overwrite in ``directory`` (what one durable COMMIT pays).

    On this kind of VM it is not constant (we saw ~0.3 ms and ~4 ms phases), so every run
    reports it beside its numbers.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".flush-probe-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    times = []
    try:
        os.write(fd, b"\0" * 4096 * 16)
        os.fsync(fd)
        deadline = time.monotonic() + 10
        for i in range(samples):
            if time.monotonic() > deadline:
                break
            os.pwrite(fd, os.urandom(4096), (i % 16) * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return summarize_ms(times)


def floor(name: str, value: str, target: str, passed: bool) -> dict[str, Any]:
    """One floor's verdict, as every benchmark returns it (``run`` prints them together)."""
    return {"floor": name, "value": value, "target": target, "passed": bool(passed)}


def floors_table(floors: Sequence[dict[str, Any]]) -> str:
    """The floors as a Markdown table with PASS/MISS."""
    return table(
        ["floor", "target", "measured", "verdict"],
        [[f["floor"], f["target"], f["value"], "PASS" if f["passed"] else "MISS"] for f in floors],
        left_columns=4,
    )


def stored_counts(path: Path) -> dict[str, int]:
    """What a suno_nb store file holds, read with plain sqlite3 after its receiver stopped:
    tasks, tracks, callback deliveries by verdict, and tasks accepted more than once."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM tasks), (SELECT count(*) FROM tracks),"
            " (SELECT count(*) FROM deliveries WHERE source = 'callback'),"
            " (SELECT count(*) FROM deliveries WHERE verdict = 'accepted'),"
            " (SELECT count(*) FROM deliveries WHERE verdict = 'duplicate'),"
            " (SELECT count(*) FROM deliveries WHERE verdict = 'rejected'),"
            " (SELECT count(*) FROM (SELECT task_id FROM deliveries WHERE verdict = 'accepted'"
            "  GROUP BY task_id HAVING count(*) > 1))"
        ).fetchone()
    finally:
        conn.close()
    names = ("tasks", "tracks", "deliveries", "accepted", "duplicate", "rejected", "twice")
    return dict(zip(names, (int(v) for v in row), strict=True))


@contextlib.contextmanager
def unthrottled(sb: Any) -> Iterator[None]:
    """Lift the documented rate limit (20 requests per 10 s per key) for a benchmark against
    ``sb``: the sandbox was made with :data:`FAST`, and suno_nb's shared throttle for its
    key gets the same limit until the block ends.  At the documented rate a burst of
    thousands of submissions would measure the limit, not suno_nb."""
    from suno_nb import throttle
    from suno_nb.throttle import Throttle

    throttle.register(sb.url, sb.api_key, Throttle(fast_limit(), name="benchmark"))
    try:
        yield
    finally:
        throttle.register(sb.url, sb.api_key, None)


def fast_limit() -> Any:
    """1,000 requests a second, answered with the sandbox's rate-limit code beyond it."""
    from suno_nb.contract import RateLimit

    return RateLimit(1000, 1.0, code=430, source="benchmark")
