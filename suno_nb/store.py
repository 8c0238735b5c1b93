"""The SQLite store: every raw delivery, tasks, and deduplicated result tracks.

Writes are committed in groups by one writer at a time (leader/follower group commit): the
caller that finds no commit in progress becomes the writer and commits, on its own thread,
every transaction queued so far; callers that arrive meanwhile queue up and the next of them
leads the next group.  Each transaction's work runs in its own SAVEPOINT (when the group holds
more than one), the group shares one COMMIT (one fsync), and a caller returns only after the
COMMIT that holds its work succeeded.  That keeps "stored before acknowledged" cheap under
concurrent deliveries, without handing each write to another thread and back (two thread
wake-ups per request, each costing up to a GIL switch interval when the notebook's main
thread is busy; see docs/performance.md).  Reads use a second connection (WAL lets them run
beside the writer), except for ``":memory:"`` stores, which have one connection and one lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
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


class _Job:
    """One ``transact()`` call: its work, and a gate its caller waits on."""

    __slots__ = ("batch", "done", "fn", "gate", "ok", "promoted", "value")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        batch: tuple[Delivery, Callback] | None = None,
    ) -> None:
        self.fn = fn
        self.batch = batch  # a callback to store: may be applied in bulk with its neighbours
        self.gate = threading.Lock()
        self.gate.acquire()
        self.done = False
        self.promoted = False  # woken to lead the next group
        self.ok = False
        self.value: Any = None

    def finish(self, ok: bool, value: Any) -> None:
        self.ok, self.value, self.done = ok, value, True
        if not self.promoted:
            self.gate.release()


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
        # The group-commit queue: jobs waiting for a COMMIT, and whether a leader is at work.
        self._gcond = threading.Condition(threading.Lock())
        self._pending: list[_Job] = []
        self._leading = False
        self._closing = False
        self._version = 0
        self._version_cond = threading.Condition()

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
        stored.  ``fn`` may run on another caller's thread (whichever leads the group).
        """
        return self._submit(_Job(fn))

    def _submit(self, job: _Job) -> Any:
        with self._gcond:
            if self._closing:
                raise StoreError("the store is closed")
            self._pending.append(job)
            lead = not self._leading
            if lead:
                self._leading = True
        if not lead:
            try:
                job.gate.acquire()  # released when committed, or when it is our turn to lead
            except BaseException:  # interrupted (KeyboardInterrupt in the main thread)
                self._abandon(job)
                raise
        if not job.done:
            self._lead()
        if job.ok:
            return job.value
        raise job.value

    def _abandon(self, job: _Job) -> None:
        """An interrupted caller leaves the queue; if it was due to lead, the next one leads."""
        with self._gcond:
            if job in self._pending:
                self._pending.remove(job)
            if job.promoted and not job.done:
                self._pass_lead()

    def _pass_lead(self) -> None:
        """Hand the writer role to the oldest waiting job, or stand down (``_gcond`` held)."""
        if self._pending:
            nxt = self._pending[0]
            nxt.promoted = True
            nxt.gate.release()
        else:
            self._leading = False
            self._gcond.notify_all()

    def _lead(self) -> None:
        """Commit one group: everything queued so far (up to MAX_GROUP), then pass the lead.

        The leader's own job is the oldest queued one, so it is always in its group.
        """
        with self._gcond:
            group = self._pending[:MAX_GROUP]
            del self._pending[:MAX_GROUP]
        try:
            self._commit_group(self._wconn, group)
        finally:
            with self._gcond:
                self._pass_lead()

    def _commit_group(self, conn: sqlite3.Connection, group: list[_Job]) -> None:
        """Run ``group`` in one transaction, each job in its own SAVEPOINT, one COMMIT.

        Consecutive callback jobs are applied together (:func:`_apply_callbacks`: a fixed
        handful of statements for the whole run instead of ~6 per callback, each of which
        lets go of the GIL); if that fails for any reason they are redone one by one, each
        in its own SAVEPOINT, so one bad job never sinks the others.  Every job of the group
        is finished (result or error) whatever happens, even if the leading thread is
        interrupted; a job is reported stored only after its COMMIT.
        """
        results: list[tuple[_Job, bool, Any]] = []
        committed = False
        try:
            with self._wlock:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    err = StoreError(f"store write failed: {exc}")
                    results = [(job, False, err) for job in group]
                    return
                if len(group) == 1:  # one job: the transaction is its savepoint
                    results.append(self._run_job(conn, group[0], savepoint=False))
                    if not conn.in_transaction:  # it failed and was rolled back
                        return
                else:
                    i = 0
                    while i < len(group):
                        j = i
                        while j < len(group) and group[j].batch is not None:
                            j += 1
                        whole = i == 0 and j == len(group)
                        if j - i >= 2 and self._run_bulk(conn, group[i:j], results, whole):
                            i = j
                            continue
                        for job in group[i : max(j, i + 1)]:
                            results.append(self._run_job(conn, job, savepoint=True))
                        i = max(j, i + 1)
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    err = StoreError(f"store commit failed: {exc}")
                    results = [(job, False, err) for job, _ok, _value in results]
                    return
                committed = True
        except BaseException as exc:
            # SQLite gave up mid-group (e.g. it rolled the transaction back by itself), or the
            # leading thread was interrupted: nothing uncommitted may count as stored.
            if not committed:
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                err = StoreError(f"store write failed: {exc!r}")
                results = [(job, False, err) for job in group]
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and friends reach the leading caller
        finally:
            if committed:
                with self._version_cond:
                    self._version += 1
                    self._version_cond.notify_all()
            finished = set()
            for job, ok, value in results:
                job.finish(ok, value)
                finished.add(id(job))
            for job in group:  # interrupted before its result was known
                if id(job) not in finished:
                    job.finish(False, StoreError("store write interrupted"))

    @staticmethod
    def _run_job(conn: sqlite3.Connection, job: _Job, *, savepoint: bool) -> tuple:
        """Run one job (in a SAVEPOINT unless it is alone); ``(job, ok, value or error)``."""
        if savepoint:
            conn.execute("SAVEPOINT item")
        try:
            value = job.fn(conn)
        except Exception as exc:  # one bad job must not sink the group
            if savepoint:
                conn.execute("ROLLBACK TO item")
                conn.execute("RELEASE item")
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
            err = exc if isinstance(exc, StoreError) else StoreError(f"store write failed: {exc}")
            err.__cause__ = exc
            return (job, False, err)
        if savepoint:
            conn.execute("RELEASE item")
        return (job, True, value)

    @staticmethod
    def _run_bulk(conn: sqlite3.Connection, jobs: list[_Job], results: list, whole: bool) -> bool:
        """Apply a run of callback jobs together; False (nothing applied) if that failed.

        When the run is the ``whole`` group there is nothing else to protect, so no
        SAVEPOINT: a failure rolls the transaction back and begins a new one.
        """
        if not whole:
            conn.execute("SAVEPOINT bulk")
        try:
            outcomes = _apply_callbacks(conn, [job.batch for job in jobs])  # type: ignore[misc]
        except Exception as exc:
            if whole:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            else:
                conn.execute("ROLLBACK TO bulk")
                conn.execute("RELEASE bulk")
            log.debug("bulk apply failed (%s); storing the group one by one", exc)
            return False
        if not whole:
            conn.execute("RELEASE bulk")
        results.extend((job, True, outcome) for job, outcome in zip(jobs, outcomes, strict=True))
        return True

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
        job = _Job(lambda c: _apply_callback(c, delivery, callback), (delivery, callback))
        return self._submit(job)

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
        """Finish queued writes, refuse new ones and close the connections.  Idempotent."""
        with self._gcond:
            if self._closing:
                return
            self._closing = True
            self._gcond.wait_for(lambda: not self._leading, timeout=10)
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
        _delivery_values(d, verdict, status, reason, task_id),
    )
    return int(cur.lastrowid)


def _delivery_values(
    d: Delivery, verdict: str, status: int | None, reason: str | None, task_id: str | None
) -> tuple:
    """One deliveries row (without its id), as stored: secrets dropped from the headers."""
    return (
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
    )


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
    row = conn.execute("SELECT state FROM tasks WHERE task_id = ?", (cb.task_id,)).fetchone()
    before = PENDING if row is None else row[0]
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
    if row is None:
        # A task first seen in this delivery: one INSERT with its final state (the same row
        # an INSERT of a pending task followed by the UPDATE below would leave).
        conn.execute(
            "INSERT INTO tasks (task_id, state, code, msg, error, callback_type, source,"
            " first_seen_at, completed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cb.task_id, after, cb.code, cb.msg, cb.error, cb.callback_type, source, now, now, now),
        )
    elif changed:
        conn.execute(
            "UPDATE tasks SET state = ?, code = ?, msg = ?, error = ?, callback_type = ?,"
            " source = ?, completed_at = ?, updated_at = ? WHERE task_id = ?",
            (after, cb.code, cb.msg, cb.error, cb.callback_type, source, now, now, cb.task_id),
        )
    verdict = "accepted" if (changed or new_ids) else "duplicate"
    if verdict == "duplicate":
        conn.execute("UPDATE deliveries SET verdict = 'duplicate' WHERE id = ?", (delivery_id,))
    return Outcome(delivery_id, verdict, cb.task_id, after, tuple(new_ids))


_DELIVERY_COLUMNS = (
    "id, received_at, source, remote_addr, via_tunnel, method, path, headers, body, status,"
    " verdict, reason, task_id, replay_of"
)
_TRACK_COLUMNS = (
    "task_id, track_id, audio_url, stream_audio_url, image_url, prompt, model_name, title, tags,"
    " create_time, duration, extra, received_at, source, delivery_id"
)
_EXISTING = (
    "SELECT 0, task_id, state FROM tasks WHERE task_id IN (SELECT value FROM json_each(?1))"
    " UNION ALL SELECT 1, task_id, track_id FROM tracks"
    " WHERE task_id IN (SELECT value FROM json_each(?1))"
    " UNION ALL SELECT 2, coalesce(max(id), 0), NULL FROM deliveries"
)
_TASK_UPSERT = (
    "INSERT INTO tasks (task_id, state, code, msg, error, callback_type, source, first_seen_at,"
    " completed_at, updated_at) VALUES {values} ON CONFLICT(task_id) DO UPDATE SET"
    " state = excluded.state, code = excluded.code, msg = excluded.msg, error = excluded.error,"
    " callback_type = excluded.callback_type, source = excluded.source,"
    " completed_at = excluded.completed_at, updated_at = excluded.updated_at"
)


def _insert_rows(conn: sqlite3.Connection, sql: str, rows: list[tuple | list]) -> None:
    """Multi-row INSERT: one statement (one step, one GIL release) per chunk of rows."""
    if not rows:
        return
    width = len(rows[0])
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    chunk = max(1, min(256, limit // width))
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        params = [value for row in part for value in row]
        conn.execute(sql.format(values=", ".join([one] * len(part))), params)


def _apply_callbacks(conn: sqlite3.Connection, items: list[tuple[Delivery, Callback]]) -> list:
    """:func:`_apply_callback` for several deliveries at once, with the same rows and outcomes.

    Reads what exists (task states, stored track ids, the last delivery id), decides every
    verdict in Python in arrival order (a repeat within the run is a duplicate, as it would
    be one by one), then writes with three multi-row statements.  Delivery ids are assigned
    as SQLite would (max + 1, in order: this connection is the only writer).
    """
    task_ids = list(dict.fromkeys(cb.task_id for _d, cb in items))
    if any("\x00" in t for t in task_ids):
        raise ValueError("a task id holds NUL; not for json_each")  # one by one instead
    # One query (each statement step lets go of the GIL): task states, stored track ids, and
    # the last delivery id.
    states: dict[str, str] = {}
    have: set[tuple[str, str]] = set()
    base = 0
    for kind, a, b in conn.execute(_EXISTING, (json.dumps(task_ids),)).fetchall():
        if kind == 0:
            states[a] = b
        elif kind == 1:
            have.add((a, b))
        else:
            base = a
    deliveries: list[tuple] = []
    tracks: list[tuple] = []
    tasks: dict[str, list] = {}
    outcomes: list[Outcome] = []
    for k, (d, cb) in enumerate(items, 1):
        delivery_id = base + k
        source = "poll" if d.source == "poll" else "callback"
        now = d.received_at
        exists = cb.task_id in states
        before = states.get(cb.task_id, PENDING)
        new_ids: list[str] = []
        for t in cb.tracks:
            key = (cb.task_id, t.id)
            if key not in have:
                have.add(key)
                new_ids.append(t.id)
                tracks.append(_track_values(cb.task_id, t, now, source, delivery_id))
        after = SUCCEEDED if cb.succeeded else (FAILED if before == PENDING else before)
        changed = after != before
        if changed or not exists:
            states[cb.task_id] = after
            row = tasks.get(cb.task_id)
            values = [after, cb.code, cb.msg, cb.error, cb.callback_type, source]
            if row is None:  # first_seen_at (index 7) only counts for a new task
                tasks[cb.task_id] = [cb.task_id, *values, now, now, now]
            else:
                row[1:7] = values
                row[8] = row[9] = now
        verdict = "accepted" if (changed or new_ids) else "duplicate"
        status = 200 if d.method == "POST" else None
        deliveries.append((delivery_id, *_delivery_values(d, verdict, status, None, cb.task_id)))
        outcomes.append(Outcome(delivery_id, verdict, cb.task_id, after, tuple(new_ids)))
    _insert_rows(
        conn, f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES {{values}}", deliveries
    )
    _insert_rows(conn, f"INSERT INTO tracks ({_TRACK_COLUMNS}) VALUES {{values}}", tracks)
    _insert_rows(conn, _TASK_UPSERT, list(tasks.values()))
    return outcomes
