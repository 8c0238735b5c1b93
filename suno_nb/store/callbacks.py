"""Applying callbacks: the ONE state machine, for every callback the writer has queued.

The writer hands over the callbacks queued together (poll answers and replays too).  They
are applied in order, exactly as if one by one: a later delivery sees what an earlier one
of the same batch did.  But the work takes a fixed number of statements per batch, not per
callback: ONE read (the tasks, the tracks they name, the last delivery id) and ONE write (a
multi-row INSERT into a temporary view whose triggers route each row to ``deliveries``,
``tracks`` or ``tasks``).  Why: the sqlite3 module lets go of the GIL around every step of
every statement, and while the notebook's main thread is busy in Python, taking the GIL
back costs up to the interpreter's switch interval (5 ms) each time; BEGIN, the read, the
write and COMMIT are four such waits, where a statement per table and per lookup were
seven (docs/performance.md).  A batch of one is the single-callback case.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StoreError
from ..payloads import Callback, Track
from .schema import (
    DELIVERY_COLUMNS,
    FAILED,
    FINAL_STATES,
    RUNNING,
    SUCCEEDED,
    TASK_COLUMNS,
    TRACK_FIELDS,
    TRACK_ROW,
    Delivery,
    Outcome,
    clean_headers,
)

log = logging.getLogger("suno_nb.store")


# A result (or a stage) from the service clears a give-up's reason and the unknown count.
_TASK_UPSERT = (
    " ON CONFLICT(task_id) DO UPDATE SET state = excluded.state,"
    " stage = excluded.stage, code = excluded.code, msg = excluded.msg,"
    " error = excluded.error, callback_type = excluded.callback_type,"
    " source = excluded.source, reason = NULL, unknown_polls = 0,"
    " completed_at = CASE WHEN excluded.state IN ('pending', 'running') THEN NULL"
    " ELSE coalesce(excluded.completed_at, completed_at) END,"
    " updated_at = excluded.updated_at"
)
# A track already stored keeps where it first came from; only its values are merged.
_TRACK_UPSERT = " ON CONFLICT(task_id, track_id) DO UPDATE SET " + ", ".join(
    f"{name} = excluded.{name}" for name in (*TRACK_FIELDS, "extra")
)


_WIDTH = max(len(DELIVERY_COLUMNS) + 1, len(TRACK_ROW), len(TASK_COLUMNS))  # batch_rows


def delivery_row(
    d: Delivery, verdict: str, status: int | None, reason: str | None, task_id: str | None
) -> tuple:
    """The ``deliveries`` values (:data:`DELIVERY_COLUMNS`) for ``d``, as stored.

    Credential-like headers are dropped.  Text fields that came from the wire (path,
    method, reason, task id) are stored with any lone surrogate replaced by U+FFFD: a
    rejection must never fail to be recorded.
    """
    return (
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
    )


def _text(value: str | None) -> str | None:
    """``value`` as valid Unicode (lone surrogates → U+FFFD); SQLite stores UTF-8."""
    if value is None or value.isascii():
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


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


@dataclass
class _Batch:
    """What the batch's tasks and tracks look like so far, and what it will write."""

    tasks: dict[str, tuple[str, str | None]]  # task id -> (state, stage), known ones only
    tracks: dict[tuple[str, str], tuple]  # (task id, track id) -> values (TRACK_FIELDS, extra)
    next_id: int  # the next delivery id (the batch holds the write lock: ids are ours)
    task_rows: dict[str, tuple]  # task id -> the row to upsert
    track_rows: dict[tuple[str, str], tuple]  # the rows to upsert
    delivery_rows: list[tuple]


def apply_callbacks(
    conn: sqlite3.Connection, items: Sequence[tuple[Delivery, Callback]]
) -> list[Outcome]:
    """Store each delivery and what it says about its task and tracks; one Outcome each.

    Used for callbacks, poll answers and replays alike, in the order given.  A delivery
    that changes nothing (state, stage, tracks) is a ``duplicate``.  The connection must
    have been prepared with :func:`prepare_writer`.
    """
    task_ids = list(dict.fromkeys(cb.task_id for _, cb in items))
    track_ids = list(dict.fromkeys(t.id for _, cb in items for t in cb.tracks))
    last_id, tasks, tracks = _read(conn, task_ids, track_ids)
    batch = _Batch(tasks, tracks, last_id + 1, {}, {}, [])
    outcomes = [_apply(batch, d, cb) for d, cb in items]
    _write(conn, batch)
    return outcomes


def _apply(batch: _Batch, d: Delivery, cb: Callback) -> Outcome:
    """One delivery, applied to the batch's view (the rows are written after the last)."""
    source = "poll" if d.source == "poll" else "callback"
    now = d.received_at
    delivery_id, batch.next_id = batch.next_id, batch.next_id + 1
    if not cb.known:
        log.info("task %s: callback stage %r is not documented; stored", cb.task_id, cb.stage)
    before, before_stage = batch.tasks.get(cb.task_id, (None, None))
    after = decide(before, cb)
    fresh, updated = _merge_tracks(
        batch, cb, overwrite=after == SUCCEEDED, meta=(now, source, delivery_id)
    )
    # The stage shown is the latest one that still tells something: none after a final result
    # unless that result is the one deciding.
    stage = cb.stage if (before not in FINAL_STATES or after != before) else before_stage
    changed = after != before or stage != before_stage
    verdict = "accepted" if (changed or fresh or updated) else "duplicate"
    status = 200 if d.method == "POST" else None
    batch.delivery_rows.append((delivery_id, *delivery_row(d, verdict, status, None, cb.task_id)))
    if before is None or changed:
        # A task seen for the first time, or one this delivery moves.  Only the last change
        # of a batch is written, but a task's first sighting is its first delivery's time.
        written = batch.task_rows.get(cb.task_id)
        first_seen = written[_FIRST_SEEN] if written else now
        final_now = after in FINAL_STATES and after != before
        batch.task_rows[cb.task_id] = (
            cb.task_id,
            after,
            stage,
            cb.code,
            cb.msg,
            cb.error,
            cb.stage,
            source,
            first_seen,
            now if final_now else None,
            now,
        )
        batch.tasks[cb.task_id] = (after, stage)
    return Outcome(delivery_id, verdict, cb.task_id, after, tuple(fresh), cb.stage)


def _merge_tracks(
    batch: _Batch, cb: Callback, *, overwrite: bool, meta: tuple
) -> tuple[list[str], bool]:
    """Add new tracks and fill in (or, for a success, refresh) known ones; return the new
    track ids and whether a known one changed.  ``meta``: (received_at, source, delivery id)
    of this delivery, kept by a track it adds."""
    fresh: list[str] = []
    updated = False
    seen: set[str] = set()
    for t in cb.tracks:
        if t.id in seen:
            continue  # the same track twice in one body: the first counts
        seen.add(t.id)
        key = (cb.task_id, t.id)
        values = _track_values(t)
        old = batch.tracks.get(key)
        if old is None:
            fresh.append(t.id)
            merged = values
        else:
            merged = _merged(old, t, values, overwrite)
            if merged == old:
                continue
            updated = True
        batch.tracks[key] = merged
        # A track added earlier in this batch keeps the delivery that added it.
        written = batch.track_rows.get(key)
        batch.track_rows[key] = (*key, *merged, *(written[-3:] if written else meta))
    return fresh, updated


def _merged(old: tuple, t: Track, values: tuple, overwrite: bool) -> tuple:
    """A stored track with a later stage's data merged in (see :func:`_merge`)."""
    pairs = zip(old[:-1], values[:-1], strict=True)
    fields = tuple(_merge(prev, new, overwrite) for prev, new in pairs)
    extra = json.loads(old[-1] or "{}")
    for key, value in t.extra.items():
        if key in extra or _merge(None, value, overwrite) is not None:
            extra[key] = _merge(extra.get(key), value, overwrite)
    return (*fields, json.dumps(extra) if extra else None)


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


def _read(
    conn: sqlite3.Connection, task_ids: list[str], track_ids: list[str]
) -> tuple[int, dict[str, tuple], dict[tuple[str, str], tuple]]:
    """The last delivery id, the known tasks' (state, stage) and their stored tracks among
    ``track_ids``, in ONE row (more only for a batch naming a great many ids).

    One row, because every row fetched is one more step that lets go of the GIL: the tasks
    and tracks come as JSON arrays (``quote()`` keeps a REAL exact: it falls back to 20
    digits when 15 do not round-trip).  Tracks are found by the track-id index: the work is
    bounded by the batch, not by how many tracks a task has gathered."""
    fields = ", ".join("quote(duration)" if f == "duration" else f for f in TRACK_FIELDS)
    columns: list[tuple[str, str, list]] = [
        ("last", "(SELECT coalesce(max(id), 0) FROM deliveries)", [])
    ]
    limit = _variables(conn)
    for part in _chunks(task_ids, limit):
        columns.append(
            (
                "task",
                "(SELECT json_group_array(json_array(task_id, state, stage)) FROM tasks"
                f" WHERE task_id IN ({', '.join('?' * len(part))}))",
                part,
            )
        )
    for part in _chunks(track_ids, limit):
        columns.append(
            (
                "track",
                f"(SELECT json_group_array(json_array(task_id, track_id, {fields}, extra))"
                f" FROM tracks WHERE track_id IN ({', '.join('?' * len(part))}))",
                part,
            )
        )
    last_id, tasks, tracks = 0, {}, {}
    for group in _packed(columns, limit):
        sql = "SELECT " + ", ".join(expr for _, expr, _ in group)
        row = conn.execute(sql, [p for _, _, params in group for p in params]).fetchone()
        for (kind, _, _), value in zip(group, row, strict=True):
            if kind == "last":
                last_id = value
                continue
            for a, b, *rest in json.loads(value):
                if kind == "task":
                    tasks[a] = (b, rest[0])
                else:
                    rest[_DURATION] = _unquoted(rest[_DURATION])
                    tracks[(a, b)] = tuple(rest)
    # Another task's track with the same id is not ours; a new task has none stored.
    return last_id, tasks, {key: v for key, v in tracks.items() if key[0] in tasks}


def _variables(conn: sqlite3.Connection) -> int:
    """How many ``?`` one statement may hold: 32766 since SQLite 3.32, 999 before.  A batch
    that names more ids, or writes more values, takes more than one statement."""
    return conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


_DURATION = TRACK_FIELDS.index("duration")
_FIRST_SEEN = TASK_COLUMNS.index("first_seen_at")


def _unquoted(text: str) -> float | str | None:
    """A REAL as ``quote()`` wrote it (exact); anything else (never written by suno_nb) is
    kept as its text rather than failing the batch."""
    if text == "NULL":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _packed(columns: list[tuple[str, str, list]], limit: int) -> list[list]:
    """Columns grouped into as few one-row SELECTs as the variable limit allows."""
    out: list[list] = []
    used = 0
    for column in columns:
        if out and used + len(column[2]) <= limit:
            out[-1].append(column)
            used += len(column[2])
        else:
            out.append([column])
            used = len(column[2])
    return out


def prepare_writer(conn: sqlite3.Connection) -> None:
    """Create the write connection's temporary view ``batch_rows`` and its triggers.

    One multi-row ``INSERT INTO batch_rows`` writes all the rows of a batch: each row's
    ``kind`` routes it to ``deliveries``, ``tracks`` (a track already stored keeps where it
    first came from; only its values are merged) or ``tasks`` (a result or a stage from the
    service clears a give-up's reason and the unknown count).  Temporary: nothing of it is
    in the file, and every connection that writes callbacks makes its own.
    """
    # The batch read needs SQLite's JSON functions (built in since 3.38, and compiled into
    # every common build before): say so when the store opens, not at the first callback.
    try:
        conn.execute("SELECT json_group_array(json_array(1))").fetchone()
    except sqlite3.OperationalError as exc:
        raise StoreError(f"this SQLite ({sqlite3.sqlite_version}) lacks JSON1: {exc}") from exc
    # A multi-row INSERT whose triggers write three tables keeps a statement journal (to undo
    # just that statement on a constraint error): in memory, not in a temporary file that
    # every batch would write to and delete.  Per connection; nothing of it is durable data.
    conn.execute("PRAGMA temp_store=MEMORY")
    columns = ", ".join(f"NULL AS c{i}" for i in range(1, _WIDTH + 1))
    conn.execute(f"CREATE TEMP VIEW IF NOT EXISTS batch_rows AS SELECT NULL AS kind, {columns}")
    for kind, table, names, upsert in (
        ("delivery", "deliveries", ("id", *DELIVERY_COLUMNS), ""),
        ("track", "tracks", TRACK_ROW, _TRACK_UPSERT),
        ("task", "tasks", TASK_COLUMNS, _TASK_UPSERT),
    ):
        values = ", ".join(f"NEW.c{i}" for i in range(1, len(names) + 1))
        conn.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS batch_rows_{kind} INSTEAD OF INSERT ON"
            f" batch_rows WHEN NEW.kind = '{kind}' BEGIN INSERT INTO {table}"
            f" ({', '.join(names)}) VALUES ({values}){upsert}; END"
        )


def _write(conn: sqlite3.Connection, batch: _Batch) -> None:
    """Every row of the batch in one INSERT (deliveries first: tracks name them)."""
    rows = [
        *(("delivery", *r) for r in batch.delivery_rows),
        *(("track", *r) for r in batch.track_rows.values()),
        *(("task", *r) for r in batch.task_rows.values()),
    ]
    width = _WIDTH + 1  # the kind, then the values
    row = "(" + ", ".join("?" * width) + ")"
    for part in _chunks(rows, _variables(conn) // width):
        conn.execute(
            f"INSERT INTO batch_rows VALUES {', '.join([row] * len(part))}",
            [v for r in part for v in (*r, *(None,) * (width - len(r)))],
        )


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]
