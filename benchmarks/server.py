"""The receiving process: a receiver on a background thread, the main thread idle or busy.

This stands in for a Jupyter kernel.  :class:`ServerProcess` starts a fresh process
(``multiprocessing`` spawn) that runs either suno_nb's receiver (``start_receiver(store,
tunnel=None, poll=False)`` on a durable store file, ``synchronous=FULL``) or the seeds' Flask
receiver (``app.run(..., threaded=True)`` on a daemon thread), then keeps its main thread
either idle (blocked on an event) or busy in a CPU-bound pure-Python loop, like a notebook
cell doing work.  The busy loop's progress is sampled with :meth:`ServerProcess.mark`, so a
benchmark can also say how much the receiver slowed the "notebook" down.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MAX_LIFE_S = 900.0  # a server process never outlives this, whatever happens to the parent
SUNO, FLASK = "suno_nb", "flask"
MINIMAL = "minimal (calibration)"  # benchmarks/minimal_receiver.py: what the machine allows


@dataclass
class ServerInfo:
    """What the child reports once it is listening."""

    kind: str
    url: str
    pid: int
    switch_interval: float
    extra: dict[str, Any] = field(default_factory=dict)


def _busy_work(rounds: int = 2000) -> int:
    """About a tenth of a millisecond of pure-Python arithmetic (holds the GIL)."""
    x = 0
    for i in range(rounds):
        x += i * i % 7
    return x


def _install_probe(rx: Any, extra: dict[str, Any], what: str) -> None:
    """Record when each task becomes visible to a handler and in ``frame()``.

    ``what="handler"``: a handler registered with ``rx.on_callback`` notes the time it runs
    (after checking the row is readable); ``what="frame"``: a watcher thread, like a live
    widget, waits on
    ``store.wait_for_change`` and calls ``rx.frame()`` after every change, noting when each
    task id first appears.  Times are ``time.perf_counter()`` (CLOCK_MONOTONIC: comparable
    with the sender's clock in another process).
    """
    handler_seen: dict[str, float] = {}
    frame_seen: dict[str, float] = {}
    frame_calls: list[float] = []
    done = threading.Event()

    def handler(event: Any) -> None:
        if rx.store.tracks_of(event.task_id):  # the row is there for the handler to read
            handler_seen.setdefault(event.task_id, time.perf_counter())

    def watch() -> None:
        seen = rx.store.version
        deadline = time.monotonic() + MAX_LIFE_S
        while not done.is_set() and time.monotonic() < deadline:
            seen = rx.store.wait_for_change(seen, 0.2)
            if done.is_set():
                return
            t0 = time.perf_counter()
            df = rx.frame()
            now = time.perf_counter()
            frame_calls.append(now - t0)
            for task in df["task_id"].unique():
                if task not in frame_seen:
                    frame_seen[task] = now

    watcher = threading.Thread(target=watch, name="bench-frame-watcher", daemon=True)
    if what == "handler":
        rx.on_callback(handler)
    else:
        watcher.start()

    def stop() -> None:
        rx.flush(5.0)
        time.sleep(0.3)  # let the watcher see the last change
        done.set()
        if watcher.is_alive():
            watcher.join(timeout=10)

    extra.update(
        handler_seen=handler_seen, frame_seen=frame_seen, frame_calls=frame_calls, stop_probe=stop
    )


def _child(
    kind: str,
    store_path: str | None,
    busy: bool,
    store_sync: str,
    suno_root: str | None,
    probe: str | None,
    conn: Connection,
) -> None:
    """Entry point of the receiving process (see the module docstring)."""
    if suno_root is not None:  # benchmark another checkout of suno_nb (a baseline)
        sys.path.insert(0, suno_root)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Flask's start-up banner goes to stdout; keep the tables clean
    rx: Any = None
    minimal: Any = None
    extra: dict[str, Any] = {}
    if kind == SUNO:
        if store_sync != "FULL":  # an experiment only: what the fsync costs
            import suno_nb.store as store_mod

            store_mod.Store.__init__.__kwdefaults__["synchronous"] = store_sync
        from suno_nb.session import start_receiver

        assert store_path is not None
        rx = start_receiver(store_path, tunnel=None, poll=False)
        url = rx.url
        if probe:
            _install_probe(rx, extra, probe)
        if os.environ.get("SUNO_BENCH_GROUPS") and hasattr(rx.store, "_commit_group"):
            # diagnostics (the group-commit store before issue 11): time every commit group
            groups: list[tuple[float, int]] = []
            extra["groups"] = groups
            inner = rx.store._commit_group

            def timed(conn: Any, group: list) -> None:
                t = time.perf_counter()
                try:
                    inner(conn, group)
                finally:
                    groups.append((time.perf_counter() - t, len(group)))

            rx.store._commit_group = timed
    elif kind == FLASK:
        from . import flask_seed
        from .common import free_port, wait_for_port

        port = free_port()
        threading.Thread(
            target=flask_seed.serve, args=(port,), name="flask-seed", daemon=True
        ).start()
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}{flask_seed.PATH}"
    elif kind == MINIMAL:
        from .minimal_receiver import MinimalReceiver

        assert store_path is not None
        minimal = MinimalReceiver(store_path)
        url = minimal.start()
    else:  # pragma: no cover - programming error
        raise ValueError(kind)

    stop = threading.Event()
    iterations = [0]
    marks: list[tuple[float, int, float]] = []

    def listen() -> None:
        while True:
            try:
                cmd = conn.recv()
            except EOFError:
                stop.set()
                return
            if cmd == "mark":
                marks.append((time.perf_counter(), iterations[0], time.process_time()))
                conn.send("ok")
            elif cmd == "counts":
                conn.send(rx.store.counts() if rx is not None else {})  # (minimal: none)
            elif cmd == "stop":
                stop.set()
                return

    conn.send(ServerInfo(kind, url, os.getpid(), sys.getswitchinterval(), {}))
    listener = threading.Thread(target=listen, name="bench-listener", daemon=True)
    listener.start()
    deadline = time.monotonic() + MAX_LIFE_S
    if busy:
        while not stop.is_set() and time.monotonic() < deadline:
            _busy_work()
            iterations[0] += 1
    else:
        stop.wait(MAX_LIFE_S)
    report: dict[str, Any] = {"marks": marks, "iterations": iterations[0]}
    if probe and rx is not None:
        extra["stop_probe"]()
        report["handler_seen"] = extra["handler_seen"]
        report["frame_seen"] = extra["frame_seen"]
        report["frame_calls"] = extra["frame_calls"]
    if "groups" in extra:
        report["groups"] = extra["groups"]
    if minimal is not None:
        minimal.http.stop()
        report["counts"] = {"deliveries": minimal.count()}  # raw rows only: no tasks
    if rx is not None:
        report["counts"] = rx.store.counts()
        report["switch_interval_running"] = sys.getswitchinterval()
        from suno_nb.session import stop_receiver

        stop_receiver()
        report["switch_interval_after_stop"] = sys.getswitchinterval()
    conn.send(report)
    conn.close()


class ServerProcess:
    """A receiving process; use as a context manager.

    ``kind`` is ``"suno_nb"`` or ``"flask"``; ``busy`` keeps the main thread in a CPU loop
    (the interpreter's switch interval is never changed: the report says what it was);
    ``store_sync`` other than ``"FULL"`` is an experiment (what the fsync costs), never a
    headline number; ``suno_root`` imports suno_nb from another checkout (a baseline);
    ``probe`` (``"handler"`` or ``"frame"``) records when each task reaches a handler or
    ``frame()`` (see
    :func:`_install_probe`).
    """

    def __init__(
        self,
        kind: str,
        *,
        store_path: str | Path | None = None,
        busy: bool = False,
        store_sync: str = "FULL",
        suno_root: str | Path | None = None,
        probe: str | None = None,
    ) -> None:
        self.kind = kind
        self.busy = busy
        self._args = (
            kind,
            str(store_path) if store_path is not None else None,
            busy,
            store_sync,
            str(suno_root) if suno_root is not None else None,
            probe,
        )
        self._proc: mp.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.info: ServerInfo | None = None
        self.report: dict[str, Any] = {}

    def __enter__(self) -> ServerProcess:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(*self._args, child), name=f"bench-{self.kind}", daemon=True
        )
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(60):
            self._kill()
            raise TimeoutError(f"{self.kind} receiver did not start within 60 s")
        self.info = parent.recv()
        return self

    @property
    def url(self) -> str:
        assert self.info is not None
        return self.info.url

    def mark(self) -> None:
        """Sample the busy loop's progress now (see :meth:`busy_rate`)."""
        assert self._conn is not None
        self._conn.send("mark")
        if self._conn.poll(30):
            self._conn.recv()

    def counts(self) -> dict[str, int]:
        """The suno_nb store's counts (empty for Flask)."""
        assert self._conn is not None
        self._conn.send("counts")
        return self._conn.recv() if self._conn.poll(60) else {}

    def busy_rate(self, i: int = 0, j: int = 1) -> float:
        """Busy-loop iterations per second between marks ``i`` and ``j``."""
        marks = self.report.get("marks", [])
        if len(marks) <= max(i, j):
            return float("nan")
        (t0, n0, _c0), (t1, n1, _c1) = marks[i], marks[j]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")

    def cpu_seconds(self, i: int = 0, j: int = 1) -> float:
        """CPU time (all threads) the receiving process used between marks ``i`` and ``j``."""
        marks = self.report.get("marks", [])
        if len(marks) <= max(i, j):
            return float("nan")
        return marks[j][2] - marks[i][2]

    def stop(self) -> dict[str, Any]:
        """Stop the process; return its final report (marks, counts)."""
        if self._conn is None:
            return self.report
        try:
            self._conn.send("stop")
            if self._conn.poll(60):
                self.report = self._conn.recv()
        except (OSError, EOFError):
            pass
        finally:
            self._conn.close()
            self._conn = None
            self._kill()
        return self.report

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()  # only the process this object started
            proc.join(timeout=5)
        self._proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
