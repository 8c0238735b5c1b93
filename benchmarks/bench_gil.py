"""GIL releases per callback, per thread: the lever behind the ``latency`` floor.

While a notebook cell keeps the main thread in Python, a receiver thread that lets go of the
GIL (``Py_BEGIN_ALLOW_THREADS``: an epoll wait, a socket call, a SQLite step) may wait up to
one switch interval (5 ms by default) to get it back.  This counts those releases: a perf
uprobe on the interpreter's ``PyEval_SaveThread``, recorded per thread of the receiving
process while one sender POSTs ``n`` callbacks (main thread idle, so the count is the code's,
not the scheduler's), each release attributed to the C function that made it.  suno_nb and
the seeds' Flask receiver, side by side; and suno_nb again under the ``ack`` load (16
senders, 30 % duplicates), where its one writer commits queued callbacks together: the
``fsync``/``fdatasync`` calls counted on the same run say how many share a COMMIT.

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
SYNCS = ("syscalls:sys_enter_fsync", "syscalls:sys_enter_fdatasync")


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


def measure(kind: str, event: str, n: int, workdir: Path, *, senders: int = 1) -> dict[str, Any]:
    """Releases per callback, by thread and calling C function, and durable syncs, for one
    receiver under ``senders`` keep-alive senders (30 % duplicates when more than one)."""
    data = workdir / f"perf-{kind}-{senders}.data"
    with ServerProcess(kind, store_path=workdir / f"gil-{kind}-{senders}.sqlite3") as sp:
        run_load(sp.url, senders=1, duration=0.5, prefix=f"gil-warm-{time.time_ns()}-")
        names = sp.threads()
        events = [arg for e in (event, *SYNCS) for arg in ("-e", e)]
        perf = subprocess.Popen(
            ["perf", "record", "-q", "-g", *events, "-p", str(sp.pid), "-o", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1.0)  # perf attaches to every thread
            res = run_load(
                sp.url,
                senders=senders,
                duration=60,
                max_requests=n,
                dup_fraction=0.3 if senders > 1 else 0.0,
                prefix=f"gil-{time.time_ns()}-",
            )
            time.sleep(0.2)
        finally:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        sp.stop()
    script = _perf("script", "-i", str(data), "-F", "tid,event,ip,sym")
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    syncs = 0
    for block in script.strip().split("\n\n"):
        lines = [line.strip() for line in block.strip().splitlines()]
        if len(lines) < 2:
            continue
        tid, name = lines[0].split()[:2]
        if any(name.startswith(e) for e in SYNCS):
            syncs += 1
            continue
        caller = lines[2].split(None, 1)[1] if len(lines) > 2 and " " in lines[2] else "?"
        thread = names.get(int(tid), "per-request threads" if kind == FLASK else f"thread {tid}")
        counts[(thread, caller.split(".")[0])] += 1
    callbacks = res.sent_total  # every request recorded, warm-up of the load included
    return {
        "callbacks": callbacks,
        "counts": counts,
        "syncs": syncs,
        "failures": res.sent_total - res.ok,
    }


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
    cases = {  # label -> (receiver, senders, callbacks)
        f"{SUNO}, 1 sender": (SUNO, 1, n),
        f"{FLASK}, 1 sender": (FLASK, 1, n),
        f"{SUNO}, 16 senders": (SUNO, 16, 4 * n),
    }
    try:
        results = {
            label: measure(kind, event, count, workdir, senders=senders)
            for label, (kind, senders, count) in cases.items()
        }
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if added:
            _perf("probe", "-q", "-d", event, check=False)
    rows, out = [], {}
    totals = {k: sum(r["counts"].values()) / r["callbacks"] for k, r in results.items()}
    flask = totals[f"{FLASK}, 1 sender"]
    for label, r in results.items():
        by_thread: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        for (thread, caller), c in r["counts"].items():
            by_thread[thread][caller] += c
        per = r["callbacks"]
        commits = r["syncs"] / per
        out[label] = {
            "callbacks": per,
            "total": totals[label],
            "syncs_per_callback": commits,
            "threads": {t: {k: v / per for k, v in c.items()} for t, c in by_thread.items()},
        }
        for thread, callers in sorted(by_thread.items(), key=lambda kv: -sum(kv[1].values())):
            top = ", ".join(f"{name} {c / per:.1f}" for name, c in callers.most_common(4))
            rows.append([label, thread, top, sum(callers.values()) / per])
        note = f"{ratio(totals[label], flask):.2f}× Flask's"
        if r["syncs"]:
            note += f"; {commits:.2f} fsync per callback ({1 / commits:.1f} callbacks per sync)"
        rows.append([label, "all threads", note, totals[label]])
    print(
        f"### gil: GIL releases per callback (main thread idle; uprobe on {FUNCTION})\n\n"
        + table(
            ["receiver, load", "thread", "made by (per callback)", "releases per callback"],
            rows,
            digits=2,
            left_columns=3,
        )
        + "\n"
    )
    return {"callbacks": n, "results": out}
