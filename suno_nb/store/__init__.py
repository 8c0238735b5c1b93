"""The SQLite store: every raw delivery, tasks, deduplicated result tracks, and the ledger.

One writer: a single thread owns the write connection (:mod:`.writer`); callers submit
transaction bodies and get a future, resolved once the COMMIT holding their work succeeded.
Reads use their own connection (WAL lets them run beside the writer), held under a lock so
that :meth:`Store.close` can wait for them; a ``":memory:"`` store shares one connection
under one lock.  Before each COMMIT (and on :attr:`Store.healthy`) the store checks that its
file is still the one it opened: a deleted or replaced file fails every write with a
:class:`StoreError` instead of acknowledging data that would be lost (:mod:`.guard`).
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
from ..payloads import Callback
from . import apply as _apply
from . import callbacks as _callbacks
from . import ledger as _ledger
from .checkpoint import BACKSTOP_PAGES, Checkpointer
from .guard import FileGuard
from .schema import (
    DEFAULT_PATH,
    EXPIRED,
    FAILED,
    FINAL_STATES,
    GAVE_UP_STATES,
    MAX_REJECTED,
    MIGRATIONS,
    OPEN_STATES,
    PENDING,
    RUNNING,
    SCHEMA_VERSION,
    SUCCEEDED,
    TERMINAL_STATES,
    UNKNOWN,
    Delivery,
    Outcome,
    Submission,
    clean_headers,
    is_secret_header,
    migrate,
)
from .writer import MAX_BATCH, Writer

__all__ = [
    "DEFAULT_PATH",
    "EXPIRED",
    "FAILED",
    "FINAL_STATES",
    "GAVE_UP_STATES",
    "MAX_BATCH",
    "MAX_REJECTED",
    "MIGRATIONS",
    "OPEN_STATES",
    "PENDING",
    "RUNNING",
    "SCHEMA_VERSION",
    "SUCCEEDED",
    "TERMINAL_STATES",
    "UNKNOWN",
    "Delivery",
    "Outcome",
    "Store",
    "Submission",
    "clean_headers",
    "is_secret_header",
]

log = logging.getLogger("suno_nb.store")
T = TypeVar("T")
_OPEN = "('pending', 'running')"
_SINCE = "coalesce(submitted_at, first_seen_at)"


class Store:
    """Durable storage for deliveries, tasks, tracks and ratings.

    ``path`` is a file (default ``suno_callbacks.sqlite3`` in the working directory) or
    ``":memory:"``.  Reopening a file shows everything stored before.  Thread-safe.
    ``max_rejected`` bounds the rejected deliveries kept (the newest are kept).
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_PATH,
        *,
        synchronous: str = "FULL",
        max_rejected: int = MAX_REJECTED,
    ):
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self.max_rejected = max_rejected
        self._closed = False
        self._version = 0
        self._version_cond = threading.Condition()
        wconn = rconn = None
        try:
            wconn = self._connect()
            wconn.execute(f"PRAGMA synchronous={synchronous}")
            migrate(wconn, self.path)
            _callbacks.prepare_writer(wconn)
            if not self.memory:  # checkpoints run on their own thread (see .checkpoint)
                wconn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
            rconn = wconn if self.memory else self._connect()
            self._rejected = wconn.execute(
                "SELECT count(*) FROM deliveries WHERE verdict = 'rejected'"
            ).fetchone()[0]
            self._guard = FileGuard(None if self.memory else self.path)
        except BaseException as exc:  # release what was opened, then say why
            for conn in (rconn, wconn):
                if conn is not None:
                    conn.close()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
            raise
        self._wconn, self._rconn = wconn, rconn
        # One lock per connection: the memory store shares one connection for both.
        self._wlock = threading.RLock()  # re-entrant: a body may read a memory store
        self._rlock = self._wlock if self.memory else threading.RLock()
        self._writer = Writer(wconn, self._wlock, check=self._guard.problem, committed=self._bump)
        self._checkpointer = None if self.memory else Checkpointer(self.path, self._guard.problem)

    # --- connection and schema -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        if not self.memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @property
    def schema_version(self) -> int:
        with self.reading() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    @property
    def healthy(self) -> bool:
        """True while the store is open and its file is the one it opened."""
        return not self._closed and self._guard.problem() is None

    @property
    def problem(self) -> str | None:
        """Why the store cannot keep writes (closed, file deleted or replaced), or None."""
        if self._closed:
            return "the store is closed"
        return self._guard.problem()

    # --- the writer ------------------------------------------------------------------------

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> Future[T]:
        """Queue ``fn(conn)`` for the writer; the future resolves once its COMMIT succeeded.

        The future raises :class:`StoreError` if the work or its COMMIT failed (then nothing
        of it is stored).  ``fn`` runs on the writer thread, inside the batch's
        transaction, so it must not wait for another store write; it runs again if another
        body of its batch fails (its writes are kept once).
        """
        self._not_on_writer()
        return self._writer.submit(fn)

    def _not_on_writer(self) -> None:
        if self._writer.on_writer_thread():
            raise StoreError("a store transaction cannot wait for another one")

    def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in a write transaction; return its result once committed.

        Raises :class:`StoreError` if the work or its COMMIT fails; then nothing of it is
        stored.  ``fn`` runs on the writer thread.
        """
        return self.submit(fn).result()

    def _bump(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.poke()
        with self._version_cond:
            self._version += 1
            self._version_cond.notify_all()

    @property
    def version(self) -> int:
        """A counter that grows with every commit; widgets poll it to notice change."""
        return self._version

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """Block until :attr:`version` exceeds ``seen`` or ``timeout`` passes."""
        with self._version_cond:
            self._version_cond.wait_for(lambda: self._version > seen, timeout)
            return self._version

    # --- writes ----------------------------------------------------------------------------

    def submit_callback(self, delivery: Delivery, callback: Callback) -> Future[Outcome]:
        """Queue a delivery and its parsed callback; the future holds the :class:`Outcome`.

        Non-blocking (for the receiver's event loop: ``asyncio.wrap_future``).  A delivery
        that adds nothing new is ``duplicate``.
        """
        self._not_on_writer()
        # An item, not a body: the writer applies every callback queued together at once.
        return self._writer.submit_item(_callbacks.apply_callbacks, (delivery, callback))

    def record_callback(self, delivery: Delivery, callback: Callback) -> Outcome:
        """Store the raw delivery and its parsed result; returns only when committed."""
        return self.submit_callback(delivery, callback).result()

    def submit_rejection(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> Future[int]:
        """Queue a rejected delivery with its reason; the future holds its row id.

        Only the newest :attr:`max_rejected` rejected rows are kept (older ones are deleted
        in the same transaction), so that scanners cannot fill the disk.
        """

        def work(conn: sqlite3.Connection) -> int:
            row_id = _apply.insert_delivery(conn, delivery, "rejected", status, reason, task_id)
            self._rejected += 1  # only the writer thread touches this count
            if self._rejected > self.max_rejected:
                # Trim to 99 %: the count query runs once per 1 % of the cap, not per row.
                self._rejected = _apply.trim_rejected(conn, max(1, self.max_rejected * 99 // 100))
            return row_id

        return self.submit(work)

    def record_rejection(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> int:
        """Keep a rejected delivery with its reason; return its id once committed."""
        return self.submit_rejection(delivery, status, reason, task_id).result()

    def record_submission(self, sub: Submission) -> None:
        """Record a submitted task (parameters, time, task id) as pending."""
        self.transact(lambda c: _apply.record_submission(c, sub))

    def note_poll(self, task_id: str, service_status: str | None, *, unknown: bool = False) -> int:
        """Count a poll of ``task_id`` and remember the service's last status.

        ``unknown=True``: the service said it does not know the task.  Returns the number of
        consecutive such answers (a known answer resets it to 0).
        """
        return self.transact(lambda c: _apply.note_poll(c, task_id, service_status, unknown))

    def give_up(self, task_id: str, state: str, reason: str) -> None:
        """Stop waiting for an open task: ``state`` is UNKNOWN or EXPIRED, with ``reason``.

        A task that is already decided is left alone; a later real result still decides a
        task given up on.  Unknown ``task_id`` → KeyError.
        """
        if state not in GAVE_UP_STATES:
            raise ValueError(f"state must be one of {', '.join(GAVE_UP_STATES)}, got {state!r}")
        if self.task(task_id) is None:
            raise KeyError(f"no task {task_id!r} in the store")
        self.transact(lambda c: _apply.give_up(c, task_id, state, reason))

    def set_meta(self, key: str, value: str) -> None:
        self.transact(
            lambda c: c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # --- the ledger ------------------------------------------------------------------------

    def rate(
        self, track_id: str, stars: int, note: str | None = None, *, task_id: str | None = None
    ) -> None:
        """Give a track 1..5 ``stars`` (and a ``note``; None keeps the note it has).

        Unknown track → KeyError; a track id found in several tasks → ValueError asking for
        ``task_id``; stars outside 1..5 → ValueError.
        """
        stars = _ledger.check_stars(stars)
        note = _ledger.check_note(note)
        self._ledger(lambda c: _ledger.rate(c, track_id, stars, note, task_id))

    def pick(self, track_id: str, *, task_id: str | None = None) -> None:
        """Pick a track as the take to keep; any other pick of its task is cleared."""
        self._ledger(lambda c: _ledger.pick(c, track_id, task_id))

    def unpick(self, task_id: str) -> None:
        """Clear the pick of ``task_id``."""
        self._ledger(lambda c: _ledger.unpick(c, task_id))

    def _ledger(self, fn: Callable[[sqlite3.Connection], Exception | None]) -> None:
        err = self.transact(fn)
        if err is not None:
            raise err

    def ratings(self, task_id: str | None = None) -> list[dict[str, Any]]:
        """Rows of the ledger (of one task, or all), oldest first."""
        if task_id is None:
            return self.query("SELECT * FROM ratings ORDER BY rowid")
        return self.query("SELECT * FROM ratings WHERE task_id = ? ORDER BY rowid", (task_id,))

    # --- reads -----------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, held for the block (for pandas.read_sql_query).

        :meth:`close` waits for the block to end; after close this raises StoreError.
        """
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
        rows = self.query(
            "SELECT (SELECT count(*) FROM tasks) AS tasks,"
            " (SELECT count(*) FROM tracks) AS tracks,"
            " (SELECT count(*) FROM deliveries WHERE source != 'poll') AS deliveries,"
            " (SELECT count(*) FROM deliveries WHERE verdict = 'rejected') AS rejected,"
            f" (SELECT count(*) FROM tasks WHERE state IN {_OPEN}) AS pending"
        )
        return rows[0]

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
        return self.query(f"SELECT * FROM tasks WHERE state IN {_OPEN} ORDER BY {_SINCE}, rowid")

    def tasks_since(self, since: float, *, include_open: bool = True) -> list[dict[str, Any]]:
        """Tasks submitted (or first seen) at or after ``since``, oldest first.

        ``include_open``: also every task still pending or running, however old.
        """
        extra = f" OR state IN {_OPEN}" if include_open else ""
        return self.query(
            f"SELECT * FROM tasks WHERE {_SINCE} >= ?{extra} ORDER BY {_SINCE}, rowid", (since,)
        )

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    # --- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Finish queued writes, wait for readers, refuse everything after, close.  Idempotent.

        Any read or write after (or racing with) close raises :class:`StoreError`.
        """
        self._writer.close(timeout)
        if self._checkpointer is not None:
            self._checkpointer.close(timeout)
        with self._wlock, contextlib.nullcontext() if self.memory else self._rlock:
            if self._closed:
                return
            self._closed = True
            for conn in {id(self._wconn): self._wconn, id(self._rconn): self._rconn}.values():
                with contextlib.suppress(sqlite3.Error):
                    conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = ", closed" if self._closed else (", UNHEALTHY" if self._guard.known_problem else "")
        return f"Store({self.path!r}{state})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
