"""Transaction bodies other than callbacks (those are :mod:`.callbacks`).

Each runs on the store's writer thread inside the batch's transaction (again, in a new
one, if another body of the batch failed), takes the write connection and returns what the
caller gets.  Lookups are by key; nothing here loads a whole table.
"""

from __future__ import annotations

import json
import sqlite3
import time

from .callbacks import delivery_row
from .schema import DELIVERY_COLUMNS, OPEN_STATES, PENDING, Delivery, Submission

_INSERT_DELIVERY = (
    f"INSERT INTO deliveries ({', '.join(DELIVERY_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(DELIVERY_COLUMNS))})"
)


def insert_delivery(
    conn: sqlite3.Connection,
    d: Delivery,
    verdict: str,
    status: int | None,
    reason: str | None,
    task_id: str | None,
) -> int:
    """One deliveries row, as stored (see :func:`.callbacks.delivery_row`); returns its id."""
    cur = conn.execute(_INSERT_DELIVERY, delivery_row(d, verdict, status, reason, task_id))
    return int(cur.lastrowid)


def trim_rejected(conn: sqlite3.Connection, keep: int) -> int:
    """Delete the oldest rejected deliveries so that at most ``keep`` remain; return the count."""
    conn.execute(
        "DELETE FROM deliveries WHERE verdict = 'rejected' AND id <= coalesce("
        "(SELECT id FROM deliveries WHERE verdict = 'rejected' ORDER BY id DESC"
        " LIMIT 1 OFFSET ?), -1)",
        (keep,),
    )
    return int(
        conn.execute("SELECT count(*) FROM deliveries WHERE verdict = 'rejected'").fetchone()[0]
    )


def record_submission(conn: sqlite3.Connection, sub: Submission) -> None:
    """A submitted task, pending (or its parameters refreshed if callbacks came first)."""
    now = time.time()
    conn.execute(
        "INSERT INTO tasks (task_id, state, parent_task_id, audio_id, infill_start_s,"
        " infill_end_s, prompt, tags, title, negative_tags, full_lyrics, params,"
        " submitted_at, first_seen_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(task_id) DO UPDATE SET parent_task_id = excluded.parent_task_id,"
        " audio_id = excluded.audio_id, infill_start_s = excluded.infill_start_s,"
        " infill_end_s = excluded.infill_end_s, prompt = excluded.prompt,"
        " tags = excluded.tags, title = excluded.title,"
        " negative_tags = excluded.negative_tags, full_lyrics = excluded.full_lyrics,"
        " params = excluded.params, submitted_at = excluded.submitted_at,"
        " updated_at = excluded.updated_at",
        (
            sub.task_id,
            PENDING,
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


def note_poll(
    conn: sqlite3.Connection, task_id: str, service_status: str | None, unknown: bool
) -> int:
    """Count a poll; return the consecutive "unknown to the service" answers (0 if known)."""
    now = time.time()
    row = conn.execute(
        "UPDATE tasks SET poll_count = poll_count + 1, last_polled_at = ?,"
        " service_status = coalesce(?, service_status),"
        " unknown_polls = CASE WHEN ? THEN unknown_polls + 1 ELSE 0 END, updated_at = ?"
        " WHERE task_id = ? RETURNING unknown_polls",
        (now, service_status, bool(unknown), now, task_id),
    ).fetchone()
    return int(row[0]) if row else 0


def give_up(conn: sqlite3.Connection, task_id: str, state: str, reason: str) -> bool:
    """Mark an open task ``state`` (unknown/expired) with ``reason``; False if not open."""
    now = time.time()
    cur = conn.execute(
        f"UPDATE tasks SET state = ?, reason = ?, completed_at = ?, updated_at = ?"
        f" WHERE task_id = ? AND state IN ({', '.join('?' * len(OPEN_STATES))})",
        (state, reason, now, now, task_id, *OPEN_STATES),
    )
    return cur.rowcount > 0
