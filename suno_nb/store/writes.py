"""Transaction bodies: each runs on the store's writer thread inside one transaction and
returns what the caller gets.  Lookups are by key; per table, one ``INSERT … ON CONFLICT``.
The decisions themselves are :mod:`.state`'s pure functions."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Mapping

from ..errors import StoreError
from ..events import CallbackEvent
from ..payloads import Callback
from ..rows import DELIVERIES, TASKS, TRACK_VALUES, TRACKS, Delivery, Submission, Track
from .schema import FINAL_STATES, OPEN_STATES, PENDING, STATES, SUCCEEDED, clean_headers
from .state import decide, merge_tracks

log = logging.getLogger("suno_nb.store")

MAX_REJECTED_HEADER_BYTES = 4096  # what a rejected delivery keeps of its headers

_DELIVERY_COLUMNS = DELIVERIES.names[1:]  # all but the id
_INSERT_DELIVERY = DELIVERIES.insert_sql(_DELIVERY_COLUMNS)
_TRACK_KEY = ("task_id", "track_id")
_TRACK_PROVENANCE = ("received_at", "source", "delivery_id")
_TRACK_COLUMNS = (*_TRACK_KEY, *TRACK_VALUES, *_TRACK_PROVENANCE)
assert set(_TRACK_COLUMNS) == set(TRACKS.names), "tracks table and Track disagree"
# A stored track keeps where it first came from; only its values are merged.
_UPSERT_TRACK = (
    TRACKS.insert_sql(_TRACK_COLUMNS)
    + " ON CONFLICT(task_id, track_id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in TRACK_VALUES)
)
_TRACKS_OF = f"SELECT track_id, {', '.join(TRACK_VALUES)} FROM tracks WHERE task_id = ?"
_TASK_RESULT = (
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
# A result (or a stage) from the service clears a give-up's reason and the unknown count.
_UPSERT_TASK = (
    TASKS.insert_sql(_TASK_RESULT) + " ON CONFLICT(task_id) DO UPDATE SET"
    " state = excluded.state, stage = excluded.stage, code = excluded.code,"
    " msg = excluded.msg, error = excluded.error, callback_type = excluded.callback_type,"
    " source = excluded.source, reason = NULL, unknown_polls = 0,"
    " completed_at = CASE WHEN excluded.state IN ('pending', 'running') THEN NULL"
    " ELSE coalesce(excluded.completed_at, completed_at) END,"
    " updated_at = excluded.updated_at"
)


def _text(value: str | None) -> str | None:
    """``value`` as valid Unicode (lone surrogates → U+FFFD): a row must never fail to be
    written because of what the wire sent."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _clipped(headers: Mapping[str, str], limit: int) -> dict[str, str]:
    """At most ``limit`` bytes of headers (names and values), in order; the rest counted."""
    kept: dict[str, str] = {}
    used = dropped = 0
    for name, value in headers.items():
        size = len(name) + len(value)
        if used + size <= limit:
            kept[_text(name) or ""] = _text(value) or ""
            used += size
        else:
            dropped += size
    if dropped:
        kept["…"] = f"{dropped} more bytes of headers not kept"
    return kept


def insert_delivery(
    conn: sqlite3.Connection,
    d: Delivery,
    verdict: str,
    status: int | None,
    reason: str | None,
    task_id: str | None,
) -> int:
    """One ``deliveries`` row (credential-like headers dropped; a rejected one keeps at most
    :data:`MAX_REJECTED_HEADER_BYTES` of headers and no body beyond what the caller kept)."""
    headers = clean_headers(d.headers)
    if verdict == "rejected":
        headers = _clipped(headers, MAX_REJECTED_HEADER_BYTES)
    values = (
        d.received_at,
        d.source,
        _text(d.remote_addr),
        int(d.via_tunnel),
        _text(d.method),
        _text(d.path),
        json.dumps(headers),
        bytes(d.body),
        status,
        verdict,
        _text(reason),
        _text(task_id),
        d.replay_of,
    )
    return int(conn.execute(_INSERT_DELIVERY, values).lastrowid or 0)


def damaged(what: str, detail: object) -> StoreError:
    """The error for a row that is not what suno_nb wrote (edited by hand, or corrupted)."""
    return StoreError(
        f"the store's {what} is damaged ({detail}); it was not written by suno_nb as it is. "
        "Move the store file aside (or pass another store path) to start a new one"
    )


def _stored_tracks(conn: sqlite3.Connection, task_id: str) -> dict[str, Track]:
    tracks = {}
    for track_id, *values in conn.execute(_TRACKS_OF, (task_id,)):
        fields = dict(zip(TRACK_VALUES, values, strict=True))
        try:
            extra = json.loads(fields["extra"] or "{}")
            duration = fields["duration"]
            if not isinstance(extra, dict) or not isinstance(track_id, str):
                raise TypeError("not an object")
            if duration is not None and not isinstance(duration, int | float):
                raise TypeError(f"duration {duration!r}")
        except (ValueError, TypeError) as exc:
            raise damaged(f"track row ({task_id!r}, {track_id!r})", exc) from None
        fields["extra"] = extra
        tracks[track_id] = Track(id=track_id, **fields)
    return tracks


UNCONFIRMED = (
    "signed with a signature that came before with another body: kept, not applied until "
    "the service confirms it"
)


def _reused(conn: sqlite3.Connection, d: Delivery, task_id: str, ts: int) -> bool:
    """Remember which body the signature (task_id, ts) came with; True if it came before
    with another body."""
    digest = hashlib.sha256(d.body).hexdigest()
    row = conn.execute(
        "SELECT body_sha256 FROM signatures WHERE task_id = ? AND ts = ?", (task_id, ts)
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO signatures (task_id, ts, body_sha256, seen_at) VALUES (?, ?, ?, ?)",
            (task_id, ts, digest, d.received_at),
        )
        return False
    return bool(row[0] != digest)


def apply_callback(
    conn: sqlite3.Connection, d: Delivery, cb: Callback, signature_ts: int | None = None
) -> CallbackEvent:
    """Store a delivery and what it says about its task and tracks.

    Used for callbacks, poll answers and replays alike.  A delivery that changes nothing
    (state, stage, tracks) is a ``duplicate``.  A signed one (``signature_ts``) whose
    signature came before with another body, and which would change results, is kept as
    ``unconfirmed`` and changes nothing but the task's ``unconfirmed`` count: the service
    is asked (a poll) before any result moves.
    """
    source = "poll" if d.source == "poll" else "callback"
    if not cb.known:
        log.info("task %s: callback stage %r is not documented; stored", cb.task_id, cb.stage)
    row = conn.execute("SELECT state, stage FROM tasks WHERE task_id = ?", (cb.task_id,)).fetchone()
    before, before_stage = (row[0], row[1]) if row else (None, None)
    if row is not None and before not in STATES:
        raise damaged(f"task row {cb.task_id!r}", f"state {before!r}")
    after, stage = decide(before, before_stage, cb)
    stored = _stored_tracks(conn, cb.task_id) if row else {}
    fresh, changed = merge_tracks(stored, cb.tracks, overwrite=after == SUCCEEDED)
    moved = after != before or stage != before_stage
    status = 200 if d.method == "POST" else None
    now = d.received_at
    # The signature is remembered whatever happens; only a changing body is held back.
    reused = signature_ts is not None and _reused(conn, d, cb.task_id, signature_ts)
    if reused and (moved or changed):
        delivery_id = insert_delivery(conn, d, "unconfirmed", status, UNCONFIRMED, cb.task_id)
        conn.execute(
            "INSERT INTO tasks (task_id, state, first_seen_at, updated_at, unconfirmed)"
            " VALUES (?, ?, ?, ?, 1) ON CONFLICT(task_id) DO UPDATE SET"
            " unconfirmed = unconfirmed + 1, updated_at = excluded.updated_at",
            (cb.task_id, PENDING, now, now),
        )
        return CallbackEvent(
            task_id=cb.task_id,
            state=before or PENDING,
            verdict="unconfirmed",
            source=d.source,
            delivery_id=delivery_id,
            new_track_ids=(),
            callback=cb,
        )
    verdict = "accepted" if (moved or changed) else "duplicate"
    delivery_id = insert_delivery(conn, d, verdict, status, None, cb.task_id)
    if changed:
        conn.executemany(
            _UPSERT_TRACK,
            [
                (cb.task_id, t.id, *_stored_values(t), now, source, delivery_id)
                for t in changed.values()
            ],
        )
    if before is None or moved:
        final_now = after in FINAL_STATES and after != before
        conn.execute(
            _UPSERT_TASK,
            (
                cb.task_id,
                after,
                stage,
                cb.code,
                _text(cb.msg),
                _text(cb.error),
                cb.stage,
                source,
                now,
                now if final_now else None,
                now,
            ),
        )
    return CallbackEvent(
        task_id=cb.task_id,
        state=after,
        verdict=verdict,
        source=d.source,
        delivery_id=delivery_id,
        new_track_ids=tuple(fresh),
        callback=cb,
    )


def _stored_values(t: Track) -> list:
    values = []
    for name in TRACK_VALUES:
        value = getattr(t, name)
        if name == "extra":
            value = json.dumps(value) if value else None
        elif isinstance(value, str):
            value = _text(value)
        values.append(value)
    return values


def trim_rejected(conn: sqlite3.Connection, keep: int, keep_bytes: int) -> tuple[int, int]:
    """Delete the oldest rejected deliveries so that at most ``keep`` of them, and at most
    ``keep_bytes`` of their headers and bodies, remain; return the (count, bytes) left."""
    conn.execute(
        "DELETE FROM deliveries WHERE verdict = 'rejected' AND id <= coalesce(("
        " SELECT id FROM (SELECT id, row_number() OVER w AS n,"
        "  sum(length(headers) + coalesce(length(body), 0)) OVER w AS size"
        "  FROM deliveries WHERE verdict = 'rejected'"
        "  WINDOW w AS (ORDER BY id DESC ROWS UNBOUNDED PRECEDING))"
        " WHERE n > ? OR size > ? ORDER BY id DESC LIMIT 1), -1)",
        (keep, keep_bytes),
    )
    return rejected_totals(conn)


def rejected_totals(conn: sqlite3.Connection) -> tuple[int, int]:
    """(count, bytes of headers and bodies) of the rejected deliveries kept."""
    row = conn.execute(
        "SELECT count(*), coalesce(sum(length(headers) + coalesce(length(body), 0)), 0)"
        " FROM deliveries WHERE verdict = 'rejected'"
    ).fetchone()
    return int(row[0]), int(row[1])


def record_submission(conn: sqlite3.Connection, sub: Submission) -> None:
    """A submitted task, pending (or its parameters refreshed if callbacks came first)."""
    now = time.time()
    names = (
        "parent_task_id",
        "audio_id",
        "infill_start_s",
        "infill_end_s",
        "prompt",
        "tags",
        "title",
        "negative_tags",
        "full_lyrics",
        "params",
        "submitted_at",
    )
    values = [getattr(sub, n) for n in names]
    values[names.index("params")] = json.dumps(dict(sub.params), sort_keys=True, default=str)
    columns = ("task_id", "state", *names, "first_seen_at", "updated_at")
    conn.execute(
        TASKS.insert_sql(columns)
        + " ON CONFLICT(task_id) DO UPDATE SET "
        + ", ".join(f"{n} = excluded.{n}" for n in (*names, "updated_at")),
        (sub.task_id, PENDING, *values, now, now),
    )


def note_poll(
    conn: sqlite3.Connection, task_id: str, service_status: str | None, unknown: bool
) -> int:
    """Count a poll; return the consecutive "unknown to the service" answers (0 if known).
    A poll the service answered (``service_status``) settles unconfirmed deliveries: what
    the service said is what is stored."""
    now = time.time()
    row = conn.execute(
        "UPDATE tasks SET poll_count = poll_count + 1, last_polled_at = ?,"
        " service_status = coalesce(?, service_status),"
        " unconfirmed = CASE WHEN ? IS NULL THEN unconfirmed ELSE 0 END,"
        " unknown_polls = CASE WHEN ? THEN unknown_polls + 1 ELSE 0 END, updated_at = ?"
        " WHERE task_id = ? RETURNING unknown_polls",
        (now, service_status, service_status, bool(unknown), now, task_id),
    ).fetchone()
    return int(row[0]) if row else 0


def forget_signatures(conn: sqlite3.Connection, before: float) -> None:
    """Drop the memory of signatures first seen before ``before`` (stale by then anyway)."""
    conn.execute("DELETE FROM signatures WHERE seen_at < ?", (before,))


def give_up(conn: sqlite3.Connection, task_id: str, state: str, reason: str) -> bool:
    """Mark an open task ``state`` (unknown/expired) with ``reason``; False if not open."""
    now = time.time()
    cur = conn.execute(
        "UPDATE tasks SET state = ?, reason = ?, completed_at = ?, updated_at = ?"
        f" WHERE task_id = ? AND state IN ({', '.join('?' * len(OPEN_STATES))})",
        (state, reason, now, now, task_id, *OPEN_STATES),
    )
    return cur.rowcount > 0
