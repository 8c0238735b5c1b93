"""The store's one writer: a thread that owns the write connection and commits in batches.

Callers hand it a transaction body and get a :class:`~concurrent.futures.Future`.  The
thread takes whatever is queued (up to :data:`MAX_BATCH`), runs the bodies in one
transaction and COMMITs once (one fsync for the batch).  A caller may instead hand it one
*item* of a body that takes many (:meth:`Writer.submit_item`): consecutive items of the same
body run as one call (the callbacks of a batch are applied with a few statements, not a few
per callback).  A body that raises fails alone: the transaction is rolled back and the
other bodies run again without it (a many-body that raises runs again once per item, to
find the one at fault).  A future is resolved only after the COMMIT that holds its work
succeeded; a failed COMMIT fails every body of the batch.  No caller ever runs SQL on the
write connection itself, so there is nothing to hand over and no leader to elect.

:class:`LoopWaker` lets an event loop await those futures with one wake-up per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError

log = logging.getLogger("suno_nb.store")

MAX_BATCH = 256  # most transaction bodies folded into one COMMIT
IDLE_EXIT_S = 30.0  # the writer thread ends after this long without work

Work = Callable[[sqlite3.Connection], Any]
ManyWork = Callable[[sqlite3.Connection, list[Any]], list[Any]]  # one result per item


@dataclass(eq=False)
class _Job:
    """One queued body, or one item of a many-body, and the future its caller holds."""

    fut: Future
    fn: Work | None = None
    many: ManyWork | None = None
    item: Any = None
    alone: bool = False  # its many-body failed with others: run it on its own

    def joins(self, other: _Job) -> bool:
        """True if this item can run in the same call as ``other`` (the run's first job)."""
        return (
            self.many is not None and self.many is other.many and not self.alone and not other.alone
        )


def as_store_error(exc: BaseException) -> StoreError:
    """``exc`` as the StoreError a caller sees (the original kept as its cause)."""
    if isinstance(exc, StoreError):
        return exc
    err = StoreError(f"store write failed: {exc}")
    err.__cause__ = exc
    return err


class Writer:
    """One daemon thread, one queue, one write connection (used under ``lock``).

    ``check()`` runs before every COMMIT: a non-None answer (a reason) rolls the batch back
    and fails it with that reason.  ``committed()`` runs after every successful COMMIT.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        lock: threading.Lock,
        *,
        check: Callable[[], str | None],
        committed: Callable[[], None],
        name: str = "suno_nb-store-writer",
    ) -> None:
        self._conn = conn
        self._lock = lock
        self._check = check
        self._committed = committed
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Job] = deque()
        self._closing = False
        # Started on the first write and ended after IDLE_EXIT_S without work (restarted by
        # the next write), so a store that is only read, or never closed, holds no thread.
        self._thread: threading.Thread | None = None

    def submit(self, fn: Work) -> Future:
        """Queue ``fn(conn)``; the future holds its result once committed (or a StoreError)."""
        return self._queued(_Job(Future(), fn=fn))

    def submit_item(self, many: ManyWork, item: Any) -> Future:
        """Queue ``item`` for ``many(conn, items)``, run once for consecutive items of the
        same ``many``; the future holds this item's result once committed."""
        return self._queued(_Job(Future(), many=many, item=item))

    def _queued(self, job: _Job) -> Future:
        fut = job.fut
        with self._cond:
            if self._closing:
                fut.set_exception(StoreError("the store is closed"))
                return fut
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return fut

    def on_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    @property
    def running(self) -> bool:
        """True while the writer thread exists (it ends when idle or closed)."""
        return self._thread is not None

    def close(self, timeout: float = 30.0) -> bool:
        """Refuse new work, finish what is queued, end the thread; True if it ended."""
        with self._cond:
            self._closing = True
            thread = self._thread
            self._cond.notify()
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._queue or self._closing, IDLE_EXIT_S):
                    self._thread = None  # idle: the next submit starts a new thread
                    return
                if not self._queue:
                    self._thread = None
                    return  # closing, and everything queued is done
                n = min(MAX_BATCH, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
            try:
                self._commit(batch)
            except BaseException as exc:  # never leave a caller waiting, never die
                err = as_store_error(exc)
                for job in batch:
                    if not job.fut.done():
                        job.fut.set_exception(err)

    def _commit(self, batch: list[_Job]) -> None:
        jobs = [job for job in batch if job.fut.set_running_or_notify_cancel()]
        # No SAVEPOINT per body (two statements each, and every statement lets go of the
        # GIL): when a body fails, the transaction is rolled back, that body fails alone and
        # the others run again in a new one.  Each round drops one body or splits one run of
        # items into single ones, so this ends.
        while jobs:
            jobs = self._try(jobs)

    def _try(self, jobs: list[_Job]) -> list[_Job]:
        """Run ``jobs`` in one transaction and commit; return the jobs to run again."""
        conn = self._conn
        done: list[tuple[Future, Any]] = []  # ran in the open transaction, not yet committed
        with self._lock:
            try:
                # executescript() and commit() let go of the GIL once; execute() does
                # three times (step, column count, reset), and while the notebook's main
                # thread is busy each let-go costs up to a switch interval (5 ms).
                if conn.in_transaction:  # never let executescript() commit leftovers
                    conn.rollback()
                conn.executescript("BEGIN IMMEDIATE")
                for run in _runs(jobs):
                    try:
                        values = _call(conn, run)
                    except BaseException as exc:
                        self._rollback()
                        if len(run) > 1:  # which item was it?  Each runs on its own next
                            for job in run:
                                job.alone = True
                            return jobs
                        run[0].fut.set_exception(as_store_error(exc))
                        return [job for job in jobs if job is not run[0]]
                    done.extend(zip((job.fut for job in run), values, strict=True))
                problem = self._check()
                if problem is not None:
                    raise StoreError(problem)
                conn.commit()
            except (sqlite3.Error, StoreError) as exc:
                self._rollback()
                err = as_store_error(exc)
                for job in jobs:
                    if not job.fut.done():
                        job.fut.set_exception(err)
                return []
        # Callers first, then the version watchers: whoever waits for its own write (the
        # receiver, before it queues the event) is not overtaken by a reader woken here.
        for fut, value in done:
            fut.set_result(value)
        if done:
            self._committed()
        return []

    def _rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            if self._conn.in_transaction:
                self._conn.rollback()


def _runs(jobs: list[_Job]) -> list[list[_Job]]:
    """``jobs`` in order, consecutive items of the same many-body together."""
    runs: list[list[_Job]] = []
    for job in jobs:
        if runs and job.joins(runs[-1][0]):
            runs[-1].append(job)
        else:
            runs.append([job])
    return runs


def _call(conn: sqlite3.Connection, run: list[_Job]) -> list[Any]:
    """Run one body, or one many-body for its items; one result per job."""
    first = run[0]
    if first.fn is not None:
        return [first.fn(conn)]
    assert first.many is not None
    values = first.many(conn, [job.item for job in run])
    if len(values) != len(run):
        raise StoreError(f"a batch body gave {len(values)} results for {len(run)} items")
    return values


class LoopWaker:
    """Hands futures resolved on the store's writer thread to one event loop.

    Like ``asyncio.wrap_future``, but the loop is woken once for all the futures the writer
    resolves together (one batch), not once per future: each wake-up is a write to the
    loop's self-pipe and a hand-over of the GIL.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future, Future]] = []

    def wrap(self, future: Future[Any]) -> asyncio.Future[Any]:
        """An awaitable that ends like ``future`` (its result or its exception)."""
        waiter = self.loop.create_future()
        future.add_done_callback(lambda done: self._resolved(waiter, done))
        return waiter

    def _resolved(self, waiter: asyncio.Future, future: Future) -> None:
        with self._lock:
            self._ready.append((waiter, future))
            if len(self._ready) > 1:
                return  # a wake-up is already on its way and will take this one too
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self.loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for waiter, future in ready:
            if waiter.cancelled():
                continue  # the request went away
            if future.cancelled():
                waiter.cancel()
            elif (exc := future.exception()) is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(future.result())
