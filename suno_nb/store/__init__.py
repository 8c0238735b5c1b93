"""The SQLite store: every raw delivery, tasks, deduplicated result tracks, and the ledger.

One writer, datasette's way: a single thread owns the write connection and runs the
functions queued for it, each in a transaction; the caller gets a
:class:`~concurrent.futures.Future` (``asyncio.wrap_future`` on an event loop), resolved
only after the COMMIT (``synchronous=FULL``: on disk).  When several are queued at once
they share one COMMIT, each inside its own SAVEPOINT, so one that raises is undone alone.
After every COMMIT the writer publishes what changed (``on_commit``, the receiver's
:class:`~suno_nb.events.Feed`).  Reads use their own connection (WAL lets them run beside
the writer).  SQLite checkpoints the WAL by itself.

Never acknowledge what cannot be kept: before each COMMIT the store checks that its file is
still the one it opened (:mod:`.guard`); a file it cannot write is refused when it opens,
and so is a file that is not a suno_nb store (:func:`.schema.check_file`), before anything
is written to it.  Every failure to store is a :class:`StoreError`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..errors import StoreError
from ..events import CallbackEvent, Change
from ..payloads import Callback
from ..rows import Delivery, Submission, Trial
from . import ledger, trials, writes
from .guard import FileGuard
from .schema import (
    DEFAULT_PATH,
    GAVE_UP_STATES,
    OPEN_STATES,
    TERMINAL_STATES,
    check_file,
    create,
)
from .writer import Writer

__all__ = ["DEFAULT_PATH", "OPEN_STATES", "TERMINAL_STATES", "Store"]

log = logging.getLogger("suno_nb.store")
T = TypeVar("T")

MAX_REJECTED = 10_000  # rejected deliveries kept (the newest): scanners cannot fill the disk
MAX_REJECTED_BYTES = 32 * 1024 * 1024  # ... nor by sending large rejected requests
_OPEN_SQL = "('pending', 'running')"
_SINCE = "coalesce(submitted_at, first_seen_at)"


class Store:
    """Durable storage for deliveries, tasks, tracks and ratings.  Thread-safe.

    ``path``: a file (default ``suno_callbacks.sqlite3`` here) or ``":memory:"``.
    ``signature_window``: seconds a webhook signature's first body is remembered (twice the
    receiver's freshness tolerance).
    ``on_commit(change)`` is called on the writer thread after each committed change (keep
    it cheap and non-blocking: :meth:`suno_nb.events.Feed.publish`).
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        on_commit: Callable[[Change], None] | None = None,
        max_rejected: int = MAX_REJECTED,
        max_rejected_bytes: int = MAX_REJECTED_BYTES,
        signature_window: float = 600.0,
    ) -> None:
        self.path = str(path)
        self.signature_window = signature_window  # how long a signature's body is remembered
        self._forgot = 0.0
        self.memory = self.path == ":memory:"
        self.max_rejected = max_rejected
        self.max_rejected_bytes = max_rejected_bytes
        self._closed = False
        new = True if self.memory else check_file(self.path)
        wconn = rconn = None
        try:
            wconn = self._connect(wal=False)
            if new:  # in the rollback journal: the header that marks it ours is in the file
                create(wconn)
            if not self.memory:
                wconn.execute("PRAGMA journal_mode=WAL")
            # Refuse now what would fail every write later (a read-only file or folder).
            wconn.execute("BEGIN IMMEDIATE")
            wconn.execute("ROLLBACK")
            rconn = wconn if self.memory else self._connect()
            self._rejected = writes.rejected_totals(wconn)
        except BaseException as exc:
            for conn in (rconn, wconn):
                if conn is not None:
                    conn.close()
            if isinstance(exc, sqlite3.Error | OSError):
                raise StoreError(
                    f"cannot use the store at {self.path}: {exc}. Check that the file and its "
                    "folder are writable, or pass another store path"
                ) from exc
            raise
        self._wconn, self._rconn = wconn, rconn
        self._wlock = threading.RLock()  # re-entrant: a read inside a read (or a body)
        self._rlock = self._wlock if self.memory else threading.RLock()
        self._guard = FileGuard(None if self.memory else self.path)
        self._writer = Writer(wconn, self._wlock, check=self._guard.problem, on_commit=on_commit)

    def _connect(self, *, wal: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if wal and not self.memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    # --- state ---------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """True while the store is open and its file is the one it opened."""
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why the store cannot keep writes (closed, file deleted or replaced), or None."""
        return "the store is closed" if self._closed else self._guard.problem()

    @property
    def closed(self) -> bool:
        return self._closed

    # --- the writer ------------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        announce: Callable[[T], Change | None] | None = None,
    ) -> Future[T]:
        """Queue ``fn(conn)`` for the writer; the future resolves once its COMMIT succeeded.

        SQLite's errors come back as :class:`StoreError` (nothing of ``fn`` is stored); any
        other exception ``fn`` raises comes back as is.  ``announce(result)`` names the
        change to publish after the COMMIT.
        """
        return self._writer.submit(fn, announce)

    def write(self, fn: Callable[[sqlite3.Connection], T], announce: Any = None) -> T:
        """:meth:`submit` and wait for the result."""
        return self.submit(fn, announce).result()

    # --- writes ----------------------------------------------------------------------------

    def record_callback(
        self, delivery: Delivery, callback: Callback, *, signature_ts: int | None = None
    ) -> Future[CallbackEvent]:
        """Queue a delivery and its parsed callback; the future holds what it did
        (``verdict``: ``accepted``, ``duplicate`` when it added nothing, or ``unconfirmed``).

        ``signature_ts``: the verified webhook timestamp of a signed delivery.  The store
        remembers which body each (task, timestamp) signature first came with, for every
        process on the file; a later, different body under it that would change results is
        kept ``unconfirmed`` and not applied (see :func:`.writes.apply_callback`).
        """

        def work(conn: sqlite3.Connection) -> CallbackEvent:
            if signature_ts is not None and delivery.received_at - self._forgot > 60:
                writes.forget_signatures(conn, delivery.received_at - self.signature_window)
                self._forgot = delivery.received_at  # writer thread only
            return writes.apply_callback(conn, delivery, callback, signature_ts)

        return self.submit(work, _same)

    def record_rejection(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Future[int]:
        """Queue a rejected delivery with its reason; the future holds its row id.

        Only the newest rejected rows are kept (:attr:`max_rejected` of them, at most
        :attr:`max_rejected_bytes` of headers and bodies), so scanners cannot fill the disk.
        """

        def work(conn: sqlite3.Connection) -> int:
            row_id = writes.insert_delivery(conn, delivery, "rejected", status, reason, task_id)
            count, size = self._rejected  # only the writer thread touches these totals
            size += len(delivery.body) + sum(len(k) + len(v) for k, v in delivery.headers.items())
            count += 1
            if count > self.max_rejected or size > self.max_rejected_bytes:
                count, size = writes.trim_rejected(
                    conn, self.max_rejected * 9 // 10, self.max_rejected_bytes * 9 // 10
                )
            self._rejected = (count, size)
            return row_id

        return self.submit(work)

    def record_submission(self, sub: Submission) -> None:
        """Record a submitted task (parameters, time, task id) as pending."""
        self.write(
            lambda c: writes.record_submission(c, sub), lambda _: Change("submission", sub.task_id)
        )

    def note_poll(self, task_id: str, service_status: str | None, *, unknown: bool = False) -> int:
        """Count a poll of ``task_id`` and remember the service's last status.  ``unknown``:
        the service said it does not know the task; returns how many times in a row."""
        return self.write(
            lambda c: writes.note_poll(c, task_id, service_status, unknown),
            lambda _n: Change("poll", task_id),
        )

    def give_up(self, task_id: str, state: str, reason: str) -> None:
        """Stop waiting for an open task: ``state`` is ``unknown`` or ``expired``, with
        ``reason``.  A decided task is left alone; a later real result still decides."""
        if state not in GAVE_UP_STATES:
            raise ValueError(f"state must be one of {', '.join(GAVE_UP_STATES)}, got {state!r}")
        if self.task(task_id) is None:
            raise KeyError(f"no task {task_id!r} in the store")
        self.write(
            lambda c: writes.give_up(c, task_id, state, reason),
            lambda moved: Change("gave_up", task_id) if moved else None,
        )

    def set_meta(self, key: str, value: str) -> None:
        self.write(
            lambda c: c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # --- the ledger ------------------------------------------------------------------------

    def rate(
        self,
        track_id: str,
        stars: int,
        note: str | None = None,
        *,
        task_id: str | None = None,
        blind: bool = False,
    ) -> None:
        """Give a track 1..5 ``stars`` (and a ``note``; None keeps the note it has);
        ``blind``: given in a blind test (``rating_blind`` in the frame).

        Unknown track → KeyError; a track id found in several tasks → ValueError asking for
        ``task_id``; stars outside 1..5 → ValueError.
        """
        track = ledger.check_id("track_id", track_id)
        task = ledger.check_id("task_id", task_id, optional=True)
        stars = ledger.check_stars(stars)
        note = ledger.check_note(note)
        if not isinstance(blind, bool):
            raise TypeError(f"blind must be True or False, got {type(blind).__name__}")
        assert track is not None
        self.write(lambda c: ledger.rate(c, track, stars, note, task, blind), _ledger_change)

    def record_trial(self, trial: Trial) -> None:
        """Store one answered listening trial (checked here, written by the one writer);
        a trial number already stored for its session → ValueError."""
        checked = trials.check(trial)
        self.write(lambda c: trials.insert(c, checked))

    def pick(self, track_id: str, *, task_id: str | None = None) -> None:
        """Pick a track as the take to keep; any other pick of its task is cleared."""
        track = ledger.check_id("track_id", track_id)
        task = ledger.check_id("task_id", task_id, optional=True)
        assert track is not None
        self.write(lambda c: ledger.pick(c, track, task), _ledger_change)

    def unpick(self, task_id: str) -> None:
        """Clear the pick of ``task_id``."""
        task = ledger.check_id("task_id", task_id)
        assert task is not None
        self.write(lambda c: ledger.unpick(c, task), _ledger_change)

    def ratings(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of the ledger (of one task, or all), oldest first."""
        if task_id is None:
            return self.query("SELECT * FROM ratings ORDER BY rowid")
        return self.query("SELECT * FROM ratings WHERE task_id = ? ORDER BY rowid", (task_id,))

    # --- reads -----------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, held for the block.  After :meth:`close`: StoreError."""
        with self._rlock:
            if self._closed:
                raise StoreError("the store is closed")
            yield self._rconn

    def query(self, sql: str, params: tuple | Mapping = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts."""
        with self.reading() as conn:
            try:
                cur = conn.execute(sql, params)
                cols = [d[0] for d in cur.description or ()]
                return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
            except sqlite3.Error as exc:
                raise StoreError(f"store read failed: {exc}") from exc

    def counts(self) -> dict[str, int]:
        """Numbers for a repr: tasks, tracks, deliveries, rejected, pending (open)."""
        return self.query(
            "SELECT (SELECT count(*) FROM tasks) AS tasks,"
            " (SELECT count(*) FROM tracks) AS tracks,"
            " (SELECT count(*) FROM deliveries WHERE source != 'poll') AS deliveries,"
            " (SELECT count(*) FROM deliveries WHERE verdict = 'rejected') AS rejected,"
            f" (SELECT count(*) FROM tasks WHERE state IN {_OPEN_SQL}) AS pending"
        )[0]

    def task(self, task_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM tasks WHERE task_id = ?", (task_id,))
        return rows[0] if rows else None

    def tracks_of(self, task_id: str) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM tracks WHERE task_id = ? ORDER BY rowid", (task_id,))

    def delivery(self, delivery_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        return rows[0] if rows else None

    def pending_tasks(self) -> list[dict[str, Any]]:
        """Open tasks (pending or running), oldest first: what the poller works on."""
        return self.query(
            f"SELECT * FROM tasks WHERE state IN {_OPEN_SQL} ORDER BY {_SINCE}, rowid"
        )

    def tasks_since(self, since: float, *, include_open: bool = True) -> list[dict[str, Any]]:
        """Tasks submitted (or first seen) at or after ``since``, oldest first;
        ``include_open``: also every task still pending or running, however old."""
        extra = f" OR state IN {_OPEN_SQL}" if include_open else ""
        return self.query(
            f"SELECT * FROM tasks WHERE {_SINCE} >= ?{extra} ORDER BY {_SINCE}, rowid", (since,)
        )

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    # --- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued writes, refuse new ones, wait for readers, close.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._writer.close(timeout)
        with self._wlock, contextlib.nullcontext() if self.memory else self._rlock:
            for conn in {id(self._wconn): self._wconn, id(self._rconn): self._rconn}.values():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else (", UNHEALTHY" if self._guard.known_problem else "")
        return f"Store({self.path!r}{state})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _same(event: CallbackEvent) -> Change:
    return event


def _ledger_change(task_id: str) -> Change:
    return Change("ledger", task_id)
