"""The ledger: the user's star ratings, notes and picks of result tracks.

One row per rated or picked track in ``ratings``; at most one pick per task (a partial
unique index enforces it).  The checks run on the caller's thread, before anything is
queued, so a mistake is a plain ``ValueError``/``TypeError``/``KeyError`` naming the field;
the bodies run on the writer thread.
"""

from __future__ import annotations

import numbers
import sqlite3
import time

MAX_NOTE = 2000  # characters
MAX_ID = 200  # characters of a task or track id


def check_id(field: str, value: object, *, optional: bool = False) -> str | None:
    """``value`` as an id: a non-empty string of valid Unicode, at most :data:`MAX_ID`."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{field} must be a non-empty string, got {type(value).__name__}")
    if len(value) > MAX_ID:
        raise ValueError(f"{field} must be at most {MAX_ID} characters, got {len(value)}")
    _check_unicode(field, value)
    return value


def _check_unicode(field: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field} holds a lone surrogate (not valid Unicode)") from None


def check_stars(stars: object) -> int:
    """``stars`` as an int 1..5 (any integral number, e.g. numpy's), else ValueError naming
    the field and the range."""
    if (
        isinstance(stars, bool)
        or not isinstance(stars, numbers.Integral)
        or not 1 <= int(stars) <= 5
    ):
        raise ValueError(f"stars must be an integer from 1 to 5, got {stars!r}")
    return int(stars)


def check_note(note: object) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise TypeError(f"note must be a string, got {type(note).__name__}")
    if len(note) > MAX_NOTE:
        raise ValueError(f"note must be at most {MAX_NOTE} characters, got {len(note)}")
    _check_unicode("note", note)
    return note


def resolve(conn: sqlite3.Connection, track_id: str, task_id: str | None) -> tuple[str, str]:
    """The (task_id, track_id) a user means; KeyError or ValueError explaining why not."""
    if task_id is None:
        rows = conn.execute(
            "SELECT task_id FROM tracks WHERE track_id = ? ORDER BY rowid LIMIT 6", (track_id,)
        ).fetchall()
    else:
        rows = conn.execute(
            "SELECT task_id FROM tracks WHERE track_id = ? AND task_id = ?", (track_id, task_id)
        ).fetchall()
    if not rows:
        where = f" in task {task_id!r}" if task_id is not None else ""
        raise KeyError(f"no track {track_id!r}{where} in the store")
    if len(rows) > 1:
        tasks = ", ".join(repr(r[0]) for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise ValueError(
            f"track {track_id!r} belongs to several tasks ({tasks}); pass task_id= to choose"
        )
    return rows[0][0], track_id


def rate(
    conn: sqlite3.Connection,
    track_id: str,
    stars: int,
    note: str | None,
    task_id: str | None,
    blind: bool = False,
) -> str:
    """Set the stars (and the note, unless None) of a track; return its task id.  ``blind``:
    given without knowing which take it was (the latest stars say how they were given)."""
    key = resolve(conn, track_id, task_id)
    conn.execute(
        "INSERT INTO ratings (task_id, track_id, stars, note, blind, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT(task_id, track_id) DO UPDATE SET stars = excluded.stars,"
        " note = coalesce(excluded.note, note), blind = excluded.blind,"
        " updated_at = excluded.updated_at",
        (*key, stars, note, int(bool(blind)), time.time()),
    )
    return key[0]


def pick(conn: sqlite3.Connection, track_id: str, task_id: str | None) -> str:
    """Pick a track: the one take of its task the user keeps (unpicks any other)."""
    key = resolve(conn, track_id, task_id)
    now = time.time()
    conn.execute(
        "UPDATE ratings SET picked = 0, updated_at = ? WHERE task_id = ? AND picked"
        " AND track_id != ?",
        (now, key[0], key[1]),
    )
    conn.execute(
        "INSERT INTO ratings (task_id, track_id, picked, updated_at) VALUES (?, ?, 1, ?)"
        " ON CONFLICT(task_id, track_id) DO UPDATE SET picked = 1,"
        " updated_at = excluded.updated_at",
        (*key, now),
    )
    return key[0]


def unpick(conn: sqlite3.Connection, task_id: str) -> str:
    """Clear the pick of ``task_id`` (nothing picked afterwards)."""
    if conn.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,)).fetchone() is None:
        raise KeyError(f"no task {task_id!r} in the store")
    conn.execute(
        "UPDATE ratings SET picked = 0, updated_at = ? WHERE task_id = ? AND picked",
        (time.time(), task_id),
    )
    return task_id
