"""The receiving process: a receiver on a background thread, the main thread idle or busy.

This stands in for a Jupyter kernel.  :class:`ServerProcess` starts a fresh process
(``multiprocessing`` spawn) that runs either suno_nb's receiver (``start_receiver(store,
tunnel=None, poll=False)`` on a store file on disk: WAL, ``synchronous=FULL``) or the seeds'
Flask receiver (``app.run(..., threaded=True)`` on a daemon thread), then keeps its main
thread either idle (blocked on an event) or busy in a pure-Python loop, like a notebook cell
computing.  The interpreter's switch interval is never changed; the child reports the one in
force.  :meth:`ServerProcess.mark` samples the busy loop's progress and the process's CPU
time, so a benchmark can also say how much the receiver slowed the "notebook" down.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

MAX_LIFE_S = 900.0  # a server process never outlives this, whatever happens to the parent
SUNO, FLASK = "suno_nb", "flask"


@dataclass
class ServerInfo:
    """What the child reports once it is listening."""

    kind: str
    url: str
    pid: int
    switch_interval: float


def busy_work(rounds: int = 2000) -> int:
    """About a tenth of a millisecond of pure-Python arithmetic (holds the GIL)."""
    x = 0
    for i in range(rounds):
        x += i * i % 7
    return x


def _child(
    kind: str, store_path: str | None, busy: bool, suno_root: str | None, conn: Connection
) -> None:
    """Entry point of the receiving process (see the module docstring)."""
    if suno_root is not None:  # benchmark another checkout of suno_nb (a baseline)
        sys.path.insert(0, suno_root)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Flask's start-up banner goes to stdout; keep the tables clean
    rx: Any = None
    if kind == SUNO:
        from suno_nb.session import start_receiver

        assert store_path is not None
        # The floors measure receiving (the seed's Flask app downloads nothing): archiving
        # each take's audio on arrival (on by default) would fetch the seed's unreachable
        # URLs here, one failed download and one more COMMIT per callback.  The variable
        # (not ``archive=False``) also holds for a baseline checkout that predates it.
        os.environ["SUNO_NB_ARCHIVE"] = "0"
        rx = start_receiver(store_path, tunnel=None, poll=False)
        url = rx.url
    elif kind == FLASK:
        from . import flask_seed
        from .common import free_port, wait_for_port

        port = free_port()
        threading.Thread(
            target=flask_seed.serve, args=(port,), name="flask-seed", daemon=True
        ).start()
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}{flask_seed.PATH}"
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
            elif cmd == "connections":  # what the server holds open right now
                conn.send(rx.server.connections if rx is not None else None)
            elif cmd == "threads":  # native thread id -> name (for per-thread counters)
                conn.send({t.native_id: t.name for t in threading.enumerate()})
            elif cmd == "stop":
                stop.set()
                return

    conn.send(ServerInfo(kind, url, os.getpid(), sys.getswitchinterval()))
    listener = threading.Thread(target=listen, name="bench-listener", daemon=True)
    listener.start()
    deadline = time.monotonic() + MAX_LIFE_S
    if busy:
        while not stop.is_set() and time.monotonic() < deadline:
            busy_work()
            iterations[0] += 1
    else:
        stop.wait(MAX_LIFE_S)
    report: dict[str, Any] = {"marks": marks, "switch_interval": sys.getswitchinterval()}
    if rx is not None:
        rx.flush(10.0)
        from suno_nb.session import stop_receiver

        stop_receiver()  # the store is closed: the parent reads the file
    conn.send(report)
    conn.close()


class ServerProcess:
    """A receiving process; use as a context manager.

    ``kind`` is ``"suno_nb"`` or ``"flask"``; ``busy`` keeps the main thread in a CPU loop;
    ``suno_root`` imports suno_nb from another checkout (a baseline).
    """

    def __init__(
        self,
        kind: str,
        *,
        store_path: str | Path | None = None,
        busy: bool = False,
        suno_root: str | Path | None = None,
    ) -> None:
        self.kind = kind
        self.busy = busy
        self._args = (
            kind,
            str(store_path) if store_path is not None else None,
            busy,
            str(suno_root) if suno_root is not None else None,
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

    @property
    def pid(self) -> int:
        assert self.info is not None
        return self.info.pid

    def mark(self) -> None:
        """Sample the busy loop's progress and the CPU time now (see :meth:`busy_rate`)."""
        assert self._conn is not None
        self._conn.send("mark")
        if self._conn.poll(30):
            self._conn.recv()

    def connections(self) -> int | None:
        """The connections suno_nb's server holds open (None for Flask)."""
        assert self._conn is not None
        self._conn.send("connections")
        return self._conn.recv() if self._conn.poll(30) else None

    def threads(self) -> dict[int, str]:
        """The receiving process's Python threads: native id -> name."""
        assert self._conn is not None
        self._conn.send("threads")
        return self._conn.recv() if self._conn.poll(30) else {}

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
        """Stop the process; return its final report (marks, switch interval)."""
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
        proc.join(timeout=15)
        if proc.is_alive():
            proc.terminate()  # only the process this object started
            proc.join(timeout=5)
        self._proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()
