"""``import suno_nb`` time: fresh interpreters, best and median of several, and the offenders.

Each sample is a new ``python -c`` process timing ``import suno_nb`` with
``time.perf_counter`` (the interpreter's own start-up is not counted); ``-X importtime``
then names the slowest imports under it (cumulative milliseconds).

Floor: median ≤ 0.3 s (``import suno_nb`` is lazy: the client, the receiver, the sandbox
and the widgets load on first use).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from typing import Any

from .common import ROOT, floor, table

MAX_S = 0.3

_TIMED = "import time; t = time.perf_counter(); import suno_nb; print(time.perf_counter() - t)"


def samples(n: int) -> list[float]:
    """``n`` fresh-process import times in seconds."""
    out = []
    for _ in range(n):
        res = subprocess.run(
            [sys.executable, "-c", _TIMED],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            check=True,
        )
        out.append(float(res.stdout.strip().splitlines()[-1]))
    return out


def offenders(limit: int = 12) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the slowest imports under ``import suno_nb``."""
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import suno_nb"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    rows = []
    for line in res.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us, cum_us = int(parts[0].split(":")[1]), int(parts[1])
        except ValueError:
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append((name.strip(), self_us / 1e3, cum_us / 1e3, depth))
    # Only what ``import suno_nb`` brought in (the interpreter's start-up imports come
    # before it): the rows since the previous top-level import, down to grandchildren.
    end = max(i for i, r in enumerate(rows) if r[0] == "suno_nb" and r[3] == 0)
    start = max((i + 1 for i, r in enumerate(rows[:end]) if r[3] == 0), default=0)
    top = [r for r in rows[start : end + 1] if r[3] <= 2]
    top.sort(key=lambda r: r[2], reverse=True)
    return [(n, s, c) for n, s, c, _d in top[:limit]]


def run(*, quick: bool = False) -> dict[str, Any]:
    """Prints the import time and its biggest contributors; returns the numbers."""
    n = 5 if quick else 9
    times = samples(n)
    worst = offenders()
    best, median = min(times), statistics.median(times)
    print(
        f"### import: import suno_nb ({n} fresh processes)\n\n"
        + table(["best s", "median s", "worst s"], [[best, median, max(times)]], digits=3)
        + "\n\n"
        + table(["module (-X importtime)", "self ms", "cumulative ms"], worst, digits=1)
    )
    print()
    floors = [
        floor(
            "import: import suno_nb, fresh process",
            f"median {median:.3f} s, best {best:.3f} s",
            f"≤ {MAX_S:g} s",
            median <= MAX_S,
        )
    ]
    return {
        "samples_s": times,
        "best_s": best,
        "median_s": median,
        "offenders": worst,
        "floors": floors,
    }
