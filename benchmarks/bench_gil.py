"""GIL releases per callback, per thread: the lever behind the ``latency`` floor.

While a notebook cell keeps the main thread in Python, a receiver thread that lets go of the
GIL (``Py_BEGIN_ALLOW_THREADS``: an epoll wait, a socket call, a SQLite step) may wait up to
one switch interval (5 ms by default) to get it back.  This counts those releases: a perf
uprobe on the interpreter's ``PyEval_SaveThread``, recorded per thread of the receiving
process while one sender POSTs ``n`` callbacks (main thread idle, so the count is the code's,
not the scheduler's), each release attributed to the C function that made it.  suno_nb and
the seeds' Flask receiver, side by side.

Needs root and ``perf`` with uprobes; skipped with a note otherwise.  The probe is added for
the run and removed afterwards (unless it was there already).  On request only
(``--only gil``); no floor.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import ROOT, ratio, table
from .load import run_load
from .server import FLASK, SUNO, ServerProcess

FUNCTION = "PyEval_SaveThread"


def _library() -> Path:
    """The file holding the interpreter's code: libpython, or the executable itself."""
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        lib = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")
        if lib.exists():
            return lib
    return Path(sys.executable).resolve()


def _perf(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["perf", *args], capture_output=True, text=True, timeout=120, check=check
    ).stdout


def _probe(lib: Path) -> str | None:
    """The perf event of an existing uprobe on FUNCTION in ``lib``, if any."""
    for line in _perf("probe", "-l", check=False).splitlines():
        if f"on {FUNCTION}" in line and str(lib) in line:
            return line.split()[0]
    return None


def measure(kind: str, event: str, n: int, workdir: Path) -> dict[str, Any]:
    """Releases per callback, by thread and by calling C function, for one receiver."""
    data = workdir / f"perf-{kind}.data"
    with ServerProcess(kind, store_path=workdir / f"gil-{kind}.sqlite3") as sp:
        run_load(sp.url, senders=1, duration=0.5, prefix=f"gil-warm-{time.time_ns()}-")
        names = sp.threads()
        perf = subprocess.Popen(
            ["perf", "record", "-q", "-g", "-e", event, "-p", str(sp.pid), "-o", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # perf attaches to every thread
            res = run_load(
                sp.url, senders=1, duration=60, max_requests=n, prefix=f"gil-{time.time_ns()}-"
            )
            time.sleep(0.2)
        finally:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        sp.stop()
    script = _perf("script", "-i", str(data), "-F", "tid,ip,sym")
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for block in script.strip().split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if len(lines) < 2:
            continue
        tid = int(lines[0].split()[0])
        caller = lines[2].split(None, 1)[1] if len(lines) > 2 and " " in lines[2] else "?"
        thread = names.get(tid, "per-request threads" if kind == FLASK else f"thread {tid}")
        counts[(thread, caller.split(".")[0])] += 1
    callbacks = res.sent_total  # every request recorded, warm-up of the load included
    return {"callbacks": callbacks, "counts": counts, "failures": res.sent_total - res.ok}


def run(*, quick: bool = False) -> dict[str, Any]:
    """Prints the releases per callback by thread; returns them (empty when skipped)."""
    n = 200 if quick else 1000
    lib = _library()
    if shutil.which("perf") is None:
        print("### gil: skipped (no perf on PATH)\n")
        return {"skipped": "no perf"}
    event = _probe(lib)
    added = event is None
    if added:
        try:
            _perf("probe", "-q", "-x", str(lib), FUNCTION)
        except subprocess.SubprocessError as exc:
            print(f"### gil: skipped (cannot add a uprobe on {FUNCTION}: {exc})\n")
            return {"skipped": str(exc)}
        event = _probe(lib)
    assert event is not None
    workdir = Path(tempfile.mkdtemp(prefix="suno-bench-gil-", dir=ROOT / "benchmarks"))
    try:
        results = {kind: measure(kind, event, n, workdir) for kind in (SUNO, FLASK)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if added:
            _perf("probe", "-q", "-d", event, check=False)
    rows, out = [], {}
    totals = {k: sum(r["counts"].values()) / r["callbacks"] for k, r in results.items()}
    for kind, r in results.items():
        by_thread: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        for (thread, caller), c in r["counts"].items():
            by_thread[thread][caller] += c
        per = r["callbacks"]
        out[kind] = {
            "callbacks": per,
            "total": totals[kind],
            "threads": {t: {k: v / per for k, v in c.items()} for t, c in by_thread.items()},
        }
        for thread, callers in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
            top = ", ".join(f"{name} {c / per:.1f}" for name, c in callers.most_common(4))
            rows.append([kind, thread, top, sum(callers.values()) / per])
        rows.append(
            [
                kind,
                "all threads",
                f"{ratio(totals[kind], totals[FLASK]):.2f}× Flask's",
                totals[kind],
            ]
        )
    print(
        f"### gil: GIL releases per callback ({n} callbacks, 1 sender, main thread idle;"
        f" uprobe on {FUNCTION})\n\n"
        + table(
            ["receiver", "thread", "made by (per callback)", "releases per callback"],
            rows,
            digits=2,
            left_columns=3,
        )
        + "\n"
    )
    return {"callbacks": n, "results": out}
