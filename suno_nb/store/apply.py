"""Transaction bodies: the ONE function that applies a callback, and the other writes.

Each runs on the store's writer thread inside the batch's transaction (again, in a new
one, if another body of the batch failed), takes the write connection and returns what the
caller gets.  Lookups are by key; nothing here loads a whole table.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time

from ..payloads import Callback, Track
from .schema import (
    FAILED,
    FINAL_STATES,
    OPEN_STATES,
    PENDING,
    RUNNING,
    SUCCEEDED,
    Delivery,
    Outcome,
    Submission,
    clean_headers,
)

log = logging.getLogger("suno_nb.store")
_CHUNK = 64  # rows per multi-row statement: 64 x 15 values stays far below SQLite's limit

# Track fields the service may send in stages: a later stage fills in what an earlier one
# left empty (``first`` often has no ``audio_url`` yet).
_TRACK_FIELDS = (
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


def insert_delivery(
    conn: sqlite3.Connection,
    d: Delivery,
    verdict: str,
    status: int | None,
    reason: str | None,
    task_id: str | None,
) -> int:
    """One deliveries row, as stored (credential-like headers dropped); returns its id.

    Text fields that came from the wire (path, method, reason, task id) are stored with any
    lone surrogate replaced by U+FFFD: a rejection must never fail to be recorded.
    """
    cur = conn.execute(
        "INSERT INTO deliveries (received_at, source, remote_addr, via_tunnel, method, path,"
        " headers, body, status, verdict, reason, task_id, replay_of)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            d.received_at,
            d.source,
            _text(d.remote_addr),
            int(d.via_tunnel),
            _text(d.method),
            _text(d.path),
            json.dumps(clean_headers(d.headers)),
            bytes(d.body),
            status,
            verdict,
            _text(reason),
            _text(task_id),
            d.replay_of,
        ),
    )
    return int(cur.lastrowid)


def _text(value: str | None) -> str | None:
    """``value`` as valid Unicode (lone surrogates → U+FFFD); SQLite stores UTF-8."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


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


def decide(before: str | None, cb: Callback) -> str:
    """The task's state after ``cb``, given its state before (None: first seen).

    The first final result decides; a later success upgrades a failure (the audio exists);
    nothing downgrades a success; a real result also decides a task we gave up on.  A
    non-final stage (documented or not) makes an open or given-up task ``running``.
    """
    if cb.succeeded:
        return SUCCEEDED
    if before in FINAL_STATES:
        return before  # type: ignore[return-value]
    return FAILED if cb.final else RUNNING


def apply_callback(conn: sqlite3.Connection, d: Delivery, cb: Callback) -> Outcome:
    """Store a delivery and what it says about its task and tracks.

    Used for callbacks, poll answers and replays alike.  A delivery that changes nothing
    (state, stage, tracks) is a ``duplicate``.
    """
    source = "poll" if d.source == "poll" else "callback"
    now = d.received_at
    if not cb.known:
        log.info("task %s: callback stage %r is not documented; stored", cb.task_id, cb.stage)
    row = conn.execute("SELECT state, stage FROM tasks WHERE task_id = ?", (cb.task_id,)).fetchone()
    before, before_stage = (None, None) if row is None else row
    after = decide(before, cb)
    fresh, updated = _merge_tracks(conn, cb, overwrite=after == SUCCEEDED, known=row is not None)
    # The stage shown is the latest one that still tells something: none after a final result
    # unless that result is the one deciding.
    stage = cb.stage if (before not in FINAL_STATES or after != before) else before_stage
    changed = after != before or stage != before_stage
    # The verdict is known before the delivery row is written: one INSERT, no UPDATE after.
    verdict = "accepted" if (changed or fresh or updated) else "duplicate"
    delivery_id = insert_delivery(
        conn, d, verdict, 200 if d.method == "POST" else None, None, cb.task_id
    )
    _insert_tracks(conn, [(*values, now, source, delivery_id) for values in fresh.values()])
    if row is None or changed:
        # A task seen for the first time, or one this delivery moves: one UPSERT.  A result
        # (or a stage) from the service clears a give-up's reason and the unknown count.
        final_now = after in FINAL_STATES and after != before
        conn.execute(
            "INSERT INTO tasks (task_id, state, stage, code, msg, error, callback_type, source,"
            " first_seen_at, completed_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(task_id) DO UPDATE SET state = excluded.state,"
            " stage = excluded.stage, code = excluded.code, msg = excluded.msg,"
            " error = excluded.error, callback_type = excluded.callback_type,"
            " source = excluded.source, reason = NULL, unknown_polls = 0,"
            " completed_at = CASE WHEN excluded.state IN ('pending', 'running') THEN NULL"
            " ELSE coalesce(excluded.completed_at, completed_at) END,"
            " updated_at = excluded.updated_at",
            (
                cb.task_id,
                after,
                stage,
                cb.code,
                cb.msg,
                cb.error,
                cb.stage,
                source,
                now,
                now if final_now else None,
                now,
            ),
        )
    return Outcome(delivery_id, verdict, cb.task_id, after, tuple(fresh), cb.stage)


def _merge_tracks(
    conn: sqlite3.Connection, cb: Callback, *, overwrite: bool, known: bool
) -> tuple[dict[str, tuple], bool]:
    """Fill in (or, for a success, refresh) known tracks; return the new ones and whether a
    known one changed.  New tracks come back as ``{track id: (task id, track id, values)}``
    for :func:`_insert_tracks` (they need the delivery's id, not written yet).

    ``known``: the task existed before this delivery (a new task has no tracks to look up).
    """
    if not cb.tracks:
        return {}, False
    existing: dict[str, tuple] = {}
    if known:
        ids = list(dict.fromkeys(t.id for t in cb.tracks))
        for part in _chunks(ids, _CHUNK):
            marks = ", ".join("?" * len(part))
            for r in conn.execute(
                f"SELECT track_id, {', '.join(_TRACK_FIELDS)}, extra FROM tracks"
                f" WHERE task_id = ? AND track_id IN ({marks})",
                (cb.task_id, *part),
            ):
                existing[r[0]] = r[1:]
    fresh: dict[str, tuple] = {}
    updated = False
    for t in cb.tracks:
        values = _track_values(t)
        if t.id in fresh:
            continue  # the same track twice in one body: the first counts
        if t.id not in existing:
            fresh[t.id] = (cb.task_id, t.id, *values)
        elif _update_track(conn, cb.task_id, t, existing[t.id], values, overwrite):
            updated = True
    return fresh, updated


def _insert_tracks(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert new track rows, one statement for up to ``_CHUNK`` of them."""
    row = "(" + ", ".join("?" * (len(_TRACK_FIELDS) + 6)) + ")"
    for part in _chunks(rows, _CHUNK):
        conn.execute(
            f"INSERT INTO tracks (task_id, track_id, {', '.join(_TRACK_FIELDS)}, extra,"
            f" received_at, source, delivery_id) VALUES {', '.join([row] * len(part))}",
            [v for values in part for v in values],
        )


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _update_track(
    conn: sqlite3.Connection, task_id: str, t: Track, old: tuple, values: tuple, overwrite: bool
) -> bool:
    """Merge a later stage's data into a stored track; True if anything changed."""
    merged = tuple(
        _merge(prev, new, overwrite) for prev, new in zip(old[:-1], values[:-1], strict=True)
    )
    extra = json.loads(old[-1] or "{}")
    for key, value in t.extra.items():
        if key in extra or _merge(None, value, overwrite) is not None:
            extra[key] = _merge(extra.get(key), value, overwrite)
    merged_extra = json.dumps(extra) if extra else None
    if merged == tuple(old[:-1]) and merged_extra == old[-1]:
        return False
    conn.execute(
        "UPDATE tracks SET "
        + ", ".join(f"{name} = ?" for name in _TRACK_FIELDS)
        + ", extra = ? WHERE task_id = ? AND track_id = ?",
        (*merged, merged_extra, task_id, t.id),
    )
    return True


def _merge(prev: object, new: object, overwrite: bool) -> object:
    """A later stage fills in what is missing; only a success replaces what is there."""
    if new is None or new == "":
        return prev
    return new if overwrite or prev is None or prev == "" else prev


def _track_values(t: Track) -> tuple:
    return (
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
