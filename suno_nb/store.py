"""The SQLite store: every raw delivery, tasks, and deduplicated result tracks.

One writer thread owns the write connection and commits in groups: each request's work runs
in its own SAVEPOINT, the group shares one COMMIT (one fsync), and a caller returns only after
the COMMIT that holds its work succeeded.  That keeps "stored before acknowledged" cheap
under concurrent deliveries.  Reads use a second connection (WAL lets them run beside the
writer), except for ``":memory:"`` stores, which have one connection and one lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import StoreError
from .payloads import Callback, Track

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_PATH = "suno_callbacks.sqlite3"
MAX_GROUP = 256  # most transactions folded into one COMMIT

# Headers never stored: credentials of any kind.  Signature headers are kept: they are
# HMAC outputs, not keys, and replay() needs them to re-verify.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "ngrok-authtoken",
        "x-ngrok-authtoken",
    }
)

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        received_at REAL NOT NULL,
        source TEXT NOT NULL,
        remote_addr TEXT,
        via_tunnel INTEGER NOT NULL DEFAULT 0,
        method TEXT,
        path TEXT,
        headers TEXT NOT NULL DEFAULT '{}',
        body BLOB,
        status INTEGER,
        verdict TEXT NOT NULL,
        reason TEXT,
        task_id TEXT,
        replay_of INTEGER
    );
    CREATE INDEX deliveries_task ON deliveries(task_id);
    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        code INTEGER,
        msg TEXT,
        error TEXT,
        callback_type TEXT,
        source TEXT,
        service_status TEXT,
        parent_task_id TEXT,
        audio_id TEXT,
        infill_start_s REAL,
        infill_end_s REAL,
        prompt TEXT,
        tags TEXT,
        title TEXT,
        negative_tags TEXT,
        full_lyrics TEXT,
        params TEXT,
        submitted_at REAL,
        first_seen_at REAL NOT NULL,
        completed_at REAL,
        poll_count INTEGER NOT NULL DEFAULT 0,
        last_polled_at REAL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX tasks_state ON tasks(state);
    CREATE TABLE tracks (
        task_id TEXT NOT NULL,
        track_id TEXT NOT NULL,
        audio_url TEXT,
        stream_audio_url TEXT,
        image_url TEXT,
        prompt TEXT,
        model_name TEXT,
        title TEXT,
        tags TEXT,
        create_time TEXT,
        duration REAL,
        extra TEXT,
        received_at REAL NOT NULL,
        source TEXT NOT NULL,
        delivery_id INTEGER,
        PRIMARY KEY (task_id, track_id)
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Task states
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
TERMINAL_STATES = (SUCCEEDED, FAILED)


@dataclass
class Delivery:
    """What arrived: one HTTP request (or one poll answer), before it is judged."""

    body: bytes
    source: str = "callback"  # callback | poll | replay
    remote_addr: str | None = None
    via_tunnel: bool = False
    method: str | None = "POST"
    path: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    received_at: float = field(default_factory=time.time)
    replay_of: int | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of storing an accepted delivery."""

    delivery_id: int
    verdict: str  # accepted | duplicate
    task_id: str
    state: str
    new_track_ids: tuple[str, ...]


@dataclass(frozen=True)
class Submission:
    """A replace-section request as submitted (no secrets, no callback URL)."""

    task_id: str
    parent_task_id: str | None
    audio_id: str | None
    infill_start_s: float | None
    infill_end_s: float | None
    prompt: str | None = None
    tags: str | None = None
    title: str | None = None
    negative_tags: str | None = None
    full_lyrics: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    submitted_at: float = field(default_factory=time.time)


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as stored: secrets dropped."""
    return {k: v for k, v in headers.items() if k.lower() not in SECRET_HEADERS}


class Store:
    """Durable storage for deliveries, tasks and tracks.

    ``path`` is a file (default ``suno_callbacks.sqlite3`` in the working directory) or
    ``":memory:"``.  Reopening a file shows everything stored before.  Thread-safe.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, synchronous: str = "FULL"):
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self._closed = False
        try:
            self._wconn = self._connect()
            self._wconn.execute(f"PRAGMA synchronous={synchronous}")
            self._migrate()
            if self.memory:
                self._rconn = self._wconn
            else:
                self._rconn = self._connect()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from exc
        # One lock per connection: the memory store shares one connection for both.
        self._wlock = threading.Lock()
        self._rlock = self._wlock if self.memory else threading.Lock()
        self._queue: queue.Queue[tuple[Callable[[sqlite3.Connection], Any], Future] | None]
        self._queue = queue.Queue()
        self._version = 0
        self._version_cond = threading.Condition()
        self._writer = threading.Thread(
            target=self._write_loop, name="suno_nb-store-writer", daemon=True
        )
        self._writer.start()

    # --- connection and schema -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        if not self.memory:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _migrate(self) -> None:
        conn = self._wconn
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this "
                f"suno_nb understands ({SCHEMA_VERSION}); upgrade suno_nb"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("store %s migrated to schema version %d", self.path, version)

    @property
    def schema_version(self) -> int:
        with self.reading() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # --- the writer ------------------------------------------------------------------------

    def transact(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in a write transaction; return its result once committed.

        Raises :class:`StoreError` if the work or its COMMIT fails; then nothing of it is
        stored.
        """
        if self._closed:
            raise StoreError("the store is closed")
        fut: Future = Future()
        self._queue.put((fn, fut))
        return fut.result()

    def _write_loop(self) -> None:
        conn = self._wconn
        while True:
            item = self._queue.get()
            if item is None:
                return
            group = [item]
            stop = False
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                group.append(more)
            self._commit_group(conn, group)
            if stop:
                return

    def _commit_group(self, conn: sqlite3.Connection, group: list) -> None:
        results: list[tuple[Future, bool, Any]] = []
        with self._wlock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                for _fn, fut in group:
                    fut.set_exception(StoreError(f"store write failed: {exc}"))
                return
            for fn, fut in group:
                conn.execute("SAVEPOINT item")
                try:
                    value = fn(conn)
                except Exception as exc:  # one bad item must not sink the group
                    conn.execute("ROLLBACK TO item")
                    conn.execute("RELEASE item")
                    err = (
                        exc
                        if isinstance(exc, StoreError)
                        else StoreError(f"store write failed: {exc}")
                    )
                    err.__cause__ = exc
                    results.append((fut, False, err))
                else:
                    conn.execute("RELEASE item")
                    results.append((fut, True, value))
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                for fut, _ok, _value in results:
                    fut.set_exception(StoreError(f"store commit failed: {exc}"))
                return
        with self._version_cond:
            self._version += 1
            self._version_cond.notify_all()
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    @property
    def version(self) -> int:
        """A counter that grows with every commit; widgets poll it to notice change."""
        return self._version

    # --- reads -----------------------------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, held for the block (for pandas.read_sql_query)."""
        if self._closed:
            raise StoreError("the store is closed")
        with self._rlock:
            yield self._rconn

    def query(self, sql: str, params: tuple | Mapping = ()) -> list[sqlite3.Row]:
        with self.reading() as conn:
            cur = conn.execute(sql, params)
            cols = [d[0] for d in cur.description or ()]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def counts(self) -> dict[str, int]:
        """Numbers for a repr: tasks, tracks, deliveries, rejected, pending."""
        rows = self.query(
            "SELECT (SELECT count(*) FROM tasks) AS tasks,"
            " (SELECT count(*) FROM tracks) AS tracks,"
            " (SELECT count(*) FROM deliveries WHERE source != 'poll') AS deliveries,"
            " (SELECT count(*) FROM deliveries WHERE verdict = 'rejected') AS rejected,"
            " (SELECT count(*) FROM tasks WHERE state = 'pending') AS pending"
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
        """Tasks without a final result, oldest first (what the poller works on)."""
        return self.query(
            "SELECT * FROM tasks WHERE state = 'pending' "
            "ORDER BY coalesce(submitted_at, first_seen_at)"
        )

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """Block until :attr:`version` exceeds ``seen`` or ``timeout`` passes."""
        with self._version_cond:
            self._version_cond.wait_for(lambda: self._version > seen, timeout)
            return self._version

    # --- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self.transact(
            lambda c: c.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )

    # --- writes ----------------------------------------------------------------------------

    def record_rejection(
        self, delivery: Delivery, status: int, reason: str, task_id: str | None = None
    ) -> int:
        """Keep a rejected delivery with its reason; return its id."""
        return self.transact(
            lambda c: _insert_delivery(c, delivery, "rejected", status, reason, task_id)
        )

    def record_callback(self, delivery: Delivery, callback: Callback) -> Outcome:
        """Store the raw delivery and its parsed result in one transaction.

        Returns only when committed.  A delivery that adds nothing new is ``duplicate``.
        """
        return self.transact(lambda c: _apply_callback(c, delivery, callback))

    def record_submission(self, sub: Submission) -> None:
        """Record a submitted task (parameters, time, task id) as pending."""

        def work(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(
                "INSERT INTO tasks (task_id, state, parent_task_id, audio_id, infill_start_s,"
                " infill_end_s, prompt, tags, title, negative_tags, full_lyrics, params,"
                " submitted_at, first_seen_at, updated_at)"
                " VALUES (?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(task_id) DO UPDATE SET parent_task_id = excluded.parent_task_id,"
                " audio_id = excluded.audio_id, infill_start_s = excluded.infill_start_s,"
                " infill_end_s = excluded.infill_end_s, prompt = excluded.prompt,"
                " tags = excluded.tags, title = excluded.title,"
                " negative_tags = excluded.negative_tags, full_lyrics = excluded.full_lyrics,"
                " params = excluded.params, submitted_at = excluded.submitted_at,"
                " updated_at = excluded.updated_at",
                (
                    sub.task_id,
                    sub.parent_task_id,
                    sub.audio_id,
                    sub.infill_start_s,
                    sub.infill_end_s,
                    sub.prompt,
                    sub.tags,
                    sub.title,
                    sub.negative_tags,
                    sub.full_lyrics,
                    json.dumps(dict(sub.params), sort_keys=True),
                    sub.submitted_at,
                    now,
                    now,
                ),
            )

        self.transact(work)

    def note_poll(self, task_id: str, service_status: str | None) -> None:
        """Count a poll of ``task_id`` and remember the service's last status."""
        now = time.time()
        self.transact(
            lambda c: c.execute(
                "UPDATE tasks SET poll_count = poll_count + 1, last_polled_at = ?,"
                " service_status = coalesce(?, service_status), updated_at = ? WHERE task_id = ?",
                (now, service_status, now, task_id),
            )
        )

    def close(self) -> None:
        """Finish queued writes, stop the writer and close the connections.  Idempotent."""
        if self._closed:
            return
        self._queue.put(None)
        self._writer.join(timeout=10)
        self._closed = True
        for conn in {id(self._wconn): self._wconn, id(self._rconn): self._rconn}.values():
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        return f"Store({self.path!r}{', closed' if self._closed else ''})"


# --- transaction bodies (run on the writer thread) ------------------------------------------


def _insert_delivery(
    conn: sqlite3.Connection,
    d: Delivery,
    verdict: str,
    status: int | None,
    reason: str | None,
    task_id: str | None,
) -> int:
    cur = conn.execute(
        "INSERT INTO deliveries (received_at, source, remote_addr, via_tunnel, method, path,"
        " headers, body, status, verdict, reason, task_id, replay_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.received_at,
            d.source,
            d.remote_addr,
            int(d.via_tunnel),
            d.method,
            d.path,
            json.dumps(clean_headers(d.headers)),
            bytes(d.body),
            status,
            verdict,
            reason,
            task_id,
            d.replay_of,
        ),
    )
    return int(cur.lastrowid)


def _track_values(
    task_id: str, t: Track, received_at: float, source: str, delivery_id: int
) -> tuple:
    return (
        task_id,
        t.id,
        t.audio_url,
        t.stream_audio_url,
        t.image_url,
        t.prompt,
        t.model_name,
        t.title,
        t.tags,
        t.create_time,
        t.duration,
        json.dumps(t.extra) if t.extra else None,
        received_at,
        source,
        delivery_id,
    )


def _apply_callback(conn: sqlite3.Connection, d: Delivery, cb: Callback) -> Outcome:
    source = "poll" if d.source == "poll" else "callback"
    delivery_id = _insert_delivery(
        conn, d, "accepted", 200 if d.method == "POST" else None, None, cb.task_id
    )
    now = d.received_at
    conn.execute(
        "INSERT OR IGNORE INTO tasks (task_id, state, first_seen_at, updated_at)"
        " VALUES (?, 'pending', ?, ?)",
        (cb.task_id, now, now),
    )
    before = conn.execute("SELECT state FROM tasks WHERE task_id = ?", (cb.task_id,)).fetchone()[0]
    new_ids: list[str] = []
    for t in cb.tracks:
        cur = conn.execute(
            "INSERT OR IGNORE INTO tracks (task_id, track_id, audio_url, stream_audio_url,"
            " image_url, prompt, model_name, title, tags, create_time, duration, extra,"
            " received_at, source, delivery_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _track_values(cb.task_id, t, now, source, delivery_id),
        )
        if cur.rowcount:
            new_ids.append(t.id)
    # The first final result decides the task; a later success (new tracks) upgrades a
    # failure, since the audio exists.  Nothing ever downgrades a success.
    after = SUCCEEDED if cb.succeeded else (FAILED if before == PENDING else before)
    changed = after != before
    if changed:
        conn.execute(
            "UPDATE tasks SET state = ?, code = ?, msg = ?, error = ?, callback_type = ?,"
            " source = ?, completed_at = ?, updated_at = ? WHERE task_id = ?",
            (after, cb.code, cb.msg, cb.error, cb.callback_type, source, now, now, cb.task_id),
        )
    verdict = "accepted" if (changed or new_ids) else "duplicate"
    if verdict == "duplicate":
        conn.execute("UPDATE deliveries SET verdict = 'duplicate' WHERE id = ?", (delivery_id,))
    return Outcome(delivery_id, verdict, cb.task_id, after, tuple(new_ids))
