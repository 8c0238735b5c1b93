"""The store's one schema, what makes a file ours, and the task states.

The tables are :mod:`suno_nb.rows`' definitions.  There are no migrations before 1.0: a new
file gets the schema once, marked with an ``application_id`` and ``user_version``; a file
written by an older 0.x, or by somebody else, is refused *before anything is written to it*
(its header is read as plain bytes, and if need be its tables through an immutable,
read-only connection), with a message saying what to do.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sqlite3
from collections.abc import Mapping

from ..errors import StoreError
from ..rows import TABLES

DEFAULT_PATH = "suno_callbacks.sqlite3"

# Task states.  ``running``: the service reported a non-final stage.
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
STATES = OPEN_STATES + TERMINAL_STATES

APPLICATION_ID = 0x534E4E42  # "SNNB": this file is a suno_nb store
SCHEMA_VERSION = 6  # 0.x stores: 1..3 had no application_id; 4 lacked signatures;
# 5 lacked listening_trials, ratings.blind, media_jobs, track_media, batch_jobs and archive
_OPEN_SQL = "('pending', 'running')"

INDEXES = (
    "CREATE INDEX tasks_open ON tasks(state) WHERE state IN " + _OPEN_SQL,
    "CREATE INDEX tasks_seen ON tasks(coalesce(submitted_at, first_seen_at))",
    "CREATE INDEX tracks_track ON tracks(track_id)",
    "CREATE INDEX deliveries_rejected ON deliveries(id) WHERE verdict = 'rejected'",
    "CREATE UNIQUE INDEX ratings_one_pick ON ratings(task_id) WHERE picked",
    "CREATE INDEX signatures_seen ON signatures(seen_at)",
    "CREATE INDEX batch_jobs_rows ON batch_jobs(batch, row)",
)

# Headers never stored: anything credential-like, by name (generously: a harmless header
# dropped costs nothing).  The webhook's own timestamp and signature are kept: they are HMAC
# outputs, not keys, and replay() needs them.
_SECRET_HEADER = re.compile(
    r"auth|bearer|cookie|token|key|secret|pass|pwd|jwt|otp|cert|session|credential", re.I
)
KEPT_HEADERS = frozenset({"x-webhook-timestamp", "x-webhook-signature"})


def create(conn: sqlite3.Connection) -> None:
    """Give an empty database the schema, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in TABLES:
            conn.execute(table.ddl)
        for index in INDEXES:
            conn.execute(index)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def check_file(path: str) -> bool:
    """Whether ``path`` needs the schema (True: new or empty), or is a store of ours (False).

    Anything else raises :class:`StoreError` saying what the file is and what to do, having
    read it only: a refused file is left byte for byte as it was (no journal switch, no
    ``-wal``/``-shm`` files).
    """
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        raise StoreError(f"{path} is a directory; pass a file path for the store") from None
    except OSError as exc:
        raise StoreError(f"cannot read the store at {path}: {exc}") from None
    if not header:
        return True
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise StoreError(
            f"{path} is not a SQLite database; refusing to use it as the store (nothing was "
            "written to it). Pass another store path."
        )
    user_version = int.from_bytes(header[60:64], "big")
    application_id = int.from_bytes(header[68:72], "big")
    if application_id == APPLICATION_ID:
        if user_version == SCHEMA_VERSION:
            return False
        if user_version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has store schema {user_version}, newer than this suno_nb understands "
                f"({SCHEMA_VERSION}); upgrade suno_nb, or pass another store path"
            )
    if (application_id == APPLICATION_ID and user_version < SCHEMA_VERSION) or (
        application_id == 0 and _is_old_store(path)
    ):
        raise StoreError(
            f"{path} was written by an older suno_nb (store schema {user_version}). Before "
            "1.0 stores are not migrated: move the file aside (rename it, e.g. to "
            f"{os.path.basename(path)}.old) to start a new store there, or pass another store "
            "path. Nothing was written to it."
        )
    raise StoreError(
        f"{path} is a SQLite database that suno_nb did not create; refusing to use it as the "
        "store (nothing was written to it). Pass another store path."
    )


def _is_old_store(path: str) -> bool:
    """A 0.x suno_nb store (tables ``deliveries`` and ``tasks``), looked at without writing."""
    uri = "file:" + os.path.abspath(path).replace("?", "%3f").replace("#", "%23")
    try:
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return False
    with contextlib.closing(conn):
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        except sqlite3.Error:
            return False
    return {"deliveries", "tasks"} <= names


@functools.lru_cache(maxsize=512)  # the same few names arrive with every callback
def is_secret_header(name: str) -> bool:
    """True for a credential-like header name (never stored, never shown)."""
    return name.lower() not in KEPT_HEADERS and bool(_SECRET_HEADER.search(name))


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers as stored: every credential-like header dropped (by name)."""
    return {k: v for k, v in headers.items() if not is_secret_header(k)}
