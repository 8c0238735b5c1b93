"""Copying the write-ahead log back into the database file, off the writer's path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold (1,000 WAL
pages): that one commit copies every page back and syncs the database file, which took
3–40 ms here, and up to half a second while the notebook's main thread was busy.  Every
acknowledgement waiting on that commit waited as long (the p99 of the receiver).  So the
writer's connection checkpoints only as a backstop (:data:`BACKSTOP_PAGES`), and a
:class:`Checkpointer` thread with its own connection runs ``PRAGMA wal_checkpoint(PASSIVE)``
at most every :data:`INTERVAL_S` while commits come in.  A passive checkpoint never blocks
the writer nor a reader; SQLite starts the log over once it has been copied back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("suno_nb.store")

INTERVAL_S = 0.5  # at most one checkpoint this often, and only after commits
BACKSTOP_PAGES = 20_000  # the writer checkpoints itself only past this (80 MB of log)
IDLE_EXIT_S = 30.0  # the thread ends after this long without commits (a poke restarts it)


class Checkpointer:
    """One daemon thread, started by the first :meth:`poke` after a commit.

    ``problem()`` is the store's file check: once the file is gone or replaced, nothing is
    checkpointed (and the connection is opened read-write only, never creating a file).
    """

    def __init__(
        self, path: str, problem: Callable[[], str | None], *, name: str = "suno_nb-checkpoint"
    ) -> None:
        self._uri = Path(path).absolute().as_uri() + "?mode=rw"
        self._problem = problem
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._dirty = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self.checkpoints = 0  # how many ran (for tests and benchmarks)

    def poke(self) -> None:
        """Note a commit (the writer thread calls this); cheap, never blocks on I/O."""
        with self._cond:
            if self._closing:
                return
            self._dirty = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread (a checkpoint under way finishes) and close its connection."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        idle = 0.0
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closing, INTERVAL_S)
                    dirty, self._dirty = self._dirty, False
                    if self._closing or (not dirty and idle >= IDLE_EXIT_S):
                        self._thread = None
                        return
                idle = 0.0 if dirty else idle + INTERVAL_S
                if dirty and self._problem() is None:
                    conn = conn or sqlite3.connect(self._uri, uri=True, check_same_thread=False)
                    self._checkpoint(conn)
        except BaseException as exc:  # never die loudly on a background thread
            log.warning("checkpoint thread stopped: %s", exc)
            with self._cond:
                self._thread = None
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # busy or gone: the next one, or the backstop, copies
            log.debug("checkpoint skipped: %s", exc)
