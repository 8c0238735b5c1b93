"""The store's one writer, datasette's way: a thread that owns the write connection and runs
the functions queued for it, each in a transaction, and resolves a future per function only
after its COMMIT.  Functions that queue up while a transaction runs share the next COMMIT,
each in its own SAVEPOINT, so one that raises is undone alone.  After each COMMIT the change
a function announces is published (``on_commit``) before its future resolves."""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import StoreError
from ..events import Change

log = logging.getLogger("suno_nb.store")
T = TypeVar("T")

MAX_GROUP = 64  # most queued functions sharing one COMMIT


@dataclass(eq=False)
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    announce: Callable[[Any], Change | None] | None
    future: Future = field(default_factory=Future)
    value: Any = None
    error: BaseException | None = None


def _failure(exc: BaseException) -> BaseException:
    """What a caller sees: SQLite's errors as StoreError; a caller's own mistake as is."""
    if isinstance(exc, sqlite3.Error):
        err = StoreError(f"store write failed: {exc}")
        err.__cause__ = exc
        return err
    return exc


class Writer:
    """One daemon thread, one queue, one write connection (used under ``lock``).

    ``check()`` runs before every COMMIT: a reason (not None) rolls the group back and fails
    it with that reason.  ``on_commit(change)`` publishes what a committed function changed.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: threading.RLock,
        *,
        check: Callable[[], str | None],
        on_commit: Callable[[Change], None] | None,
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._check = check
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="suno_nb-store-writer", daemon=True)
        self._thread.start()

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], announce: Callable[[T], Change | None] | None
    ) -> Future[T]:
        if threading.current_thread() is self._thread:
            raise StoreError("a store transaction cannot wait for another one")
        job = _Job(fn, announce)
        if self._closed:
            job.future.set_exception(StoreError("the store is closed"))
        else:
            self._queue.put(job)
        return job.future

    def close(self, timeout: float) -> None:
        """Run what is queued, then end the thread; refuse whatever comes after."""
        self._closed = True
        self._queue.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        while True:  # queued after the thread stopped: refused, not lost silently
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.future.set_exception(StoreError("the store is closed"))

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            stop = False
            while len(jobs) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                jobs.append(more)
            self._commit(jobs)
            if stop:
                return

    def _commit(self, jobs: list[_Job]) -> None:
        conn = self._conn
        with self._lock:
            try:
                self._attempt(conn, jobs)
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                for job in jobs:
                    job.error = job.error or exc
                log.error("store write failed: %s", exc)
        for job in jobs:  # publish first: flush() after a write must see its change
            if job.error is None and job.announce is not None and self._on_commit is not None:
                change = job.announce(job.value)
                if change is not None:
                    try:
                        self._on_commit(change)
                    except Exception:
                        log.exception("publishing a committed change failed")
        for job in jobs:
            if job.error is None:
                job.future.set_result(job.value)
            else:
                job.future.set_exception(_failure(job.error))

    def _attempt(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """Run ``jobs`` in one transaction (each in a savepoint when there are several)."""
        conn.execute("BEGIN IMMEDIATE")
        several = len(jobs) > 1
        for job in jobs:
            if several:
                conn.execute("SAVEPOINT job")
            try:
                job.value = job.fn(conn)
            except Exception as exc:
                job.error = exc
                if not conn.in_transaction:  # SQLite gave up the whole transaction
                    raise sqlite3.OperationalError(f"transaction aborted: {exc}") from exc
                if several:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                else:
                    conn.execute("ROLLBACK")
                    return
            else:
                if several:
                    conn.execute("RELEASE job")
        problem = self._check()
        if problem is not None:
            conn.execute("ROLLBACK")
            for job in jobs:
                job.error = job.error or StoreError(problem)
            return
        conn.execute("COMMIT")
