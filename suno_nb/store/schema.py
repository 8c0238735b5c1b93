"""What the store keeps: the schema (as migrations), task states, and the records passed in.

Tables: ``deliveries`` (every request and poll answer, raw), ``tasks`` (one row per task, its
state and the service's last word), ``tracks`` (result tracks, unique per task), ``ratings``
(the user's stars, notes and picks), ``meta`` (small settings such as the callback token).
"""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import StoreError

log = logging.getLogger("suno_nb.store")

DEFAULT_PATH = "suno_callbacks.sqlite3"

# Task states.  ``running`` is a task the service reported a non-final stage for.
PENDING, RUNNING, SUCCEEDED, FAILED, UNKNOWN, EXPIRED = (
    "pending",
    "running",
    "succeeded",
    "failed",
    "unknown",
    "expired",
)
OPEN_STATES = (PENDING, RUNNING)  # still polled
FINAL_STATES = (SUCCEEDED, FAILED)  # decided by the service
GAVE_UP_STATES = (UNKNOWN, EXPIRED)  # decided by us; a later real result still decides
TERMINAL_STATES = FINAL_STATES + GAVE_UP_STATES  # nothing more is polled

MAX_REJECTED = 10_000  # rejected deliveries kept (the newest); scanners cannot fill the disk

# Headers never stored: anything credential-like, by name pattern.  The webhook's own
# timestamp and signature are kept: they are HMAC outputs, not keys, and replay() needs them.
_SECRET_HEADER = re.compile(r"authorization|cookie|token|key|secret|passw|session|credential", re.I)
KEPT_HEADERS = frozenset({"x-webhook-timestamp", "x-webhook-signature"})

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
    # 2: stages, giving up, the ledger (ratings and picks), indexes for lookups by key
    """
    ALTER TABLE tasks ADD COLUMN stage TEXT;
    ALTER TABLE tasks ADD COLUMN reason TEXT;
    ALTER TABLE tasks ADD COLUMN unknown_polls INTEGER NOT NULL DEFAULT 0;
    UPDATE tasks SET stage = callback_type;
    CREATE INDEX tasks_seen ON tasks(coalesce(submitted_at, first_seen_at));
    CREATE INDEX tracks_track ON tracks(track_id);
    CREATE INDEX deliveries_verdict ON deliveries(verdict, id);
    CREATE TABLE ratings (
        task_id TEXT NOT NULL,
        track_id TEXT NOT NULL,
        stars INTEGER CHECK (stars IS NULL OR stars BETWEEN 1 AND 5),
        note TEXT,
        picked INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        PRIMARY KEY (task_id, track_id)
    );
    CREATE UNIQUE INDEX ratings_one_pick ON ratings(task_id) WHERE picked;
    """,
    # 3: fewer index pages per callback.  Every index a callback touches is at least one
    # more 4 KiB page written to the WAL (and again at the checkpoint) per commit; these
    # three were touched by every callback and read by almost nothing: deliveries by task
    # (no query), by verdict (only the rejected ring), tasks by state (only the open ones).
    """
    DROP INDEX deliveries_task;
    DROP INDEX deliveries_verdict;
    CREATE INDEX deliveries_rejected ON deliveries(id) WHERE verdict = 'rejected';
    DROP INDEX tasks_state;
    CREATE INDEX tasks_open ON tasks(state) WHERE state IN ('pending', 'running');
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Column orders of the rows the store writes (see .callbacks).
# Track fields the service may send in stages: a later stage fills in what an earlier one
# left empty (``first`` often has no ``audio_url`` yet).
TRACK_FIELDS = (
    "audio_url",
    "stream_audio_url",
    "image_url",
    "prompt",
    "model_name",
    "title",
    "tags",
    "create_time",
    "duration",
)
DELIVERY_COLUMNS = (
    "received_at",
    "source",
    "remote_addr",
    "via_tunnel",
    "method",
    "path",
    "headers",
    "body",
    "status",
    "verdict",
    "reason",
    "task_id",
    "replay_of",
)
TASK_COLUMNS = (
    "task_id",
    "state",
    "stage",
    "code",
    "msg",
    "error",
    "callback_type",
    "source",
    "first_seen_at",
    "completed_at",
    "updated_at",
)
TRACK_ROW = (
    "task_id",
    "track_id",
    *TRACK_FIELDS,
    "extra",
    "received_at",
    "source",
    "delivery_id",
)


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
    state: str  # the task's state after this delivery
    new_track_ids: tuple[str, ...]
    stage: str | None = None  # the callbackType stage stored (text/first/complete/error/...)


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


@functools.lru_cache(maxsize=512)  # the same few names arrive with every callback
def is_secret_header(name: str) -> bool:
    """True for a credential-like header name (never stored, never shown)."""
    return name.lower() not in KEPT_HEADERS and bool(_SECRET_HEADER.search(name))


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as stored: every credential-like header dropped (by name pattern)."""
    return {k: v for k, v in headers.items() if not is_secret_header(k)}


def migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the schema of the store at ``path`` up to :data:`SCHEMA_VERSION`, one
    migration per transaction; a store newer than this suno_nb raises StoreError."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"{path} has schema version {current}, newer than this "
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
        log.info("store %s migrated to schema version %d", path, version)
