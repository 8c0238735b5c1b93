"""WAV conversions and recoveries in the store: their jobs, and what their results change.

A job (``media_jobs``) is recorded when the client asks for it; its callback (or, for WAV,
a details poll) is then applied in one transaction with its raw delivery, like a music
callback: the WAV link lands on the track (``track_media.wav_url``); a recovery gives the
*original* task's tracks their new URLs (``tracks``) and says per track whether it came back
(``track_media.recovery`` / ``audio_error``).  The first final result decides; a later
success upgrades a failure; nothing downgrades a success; the same body twice is a
``duplicate``.  A signed body under a signature used before with another body is kept
``unconfirmed`` and not applied (see :func:`.writes.apply_callback` for why).

Functions of a :class:`~suno_nb.store.Store` through its public ``submit``/``query``: the
writer thread runs the ``_apply``/``_record`` bodies.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..events import Change, MediaEvent
from ..payloads import Callback
from ..payloads.media import RecoveryCallback, WavCallback
from ..rows import MEDIA_JOBS, TRACK_MEDIA, Delivery, MediaSubmission
from .writes import UNCONFIRMED, _reused, insert_delivery

if TYPE_CHECKING:
    from ..store import Store

log = logging.getLogger("suno_nb.store")

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
MediaCallback = WavCallback | RecoveryCallback
NOT_RECOVERED = "not recovered (the service gave no reason)"

_MEDIA_COLS = ("wav_url", "wav_error", "recovery", "audio_error", "recovered_at")
_UPSERT_MEDIA = (
    TRACK_MEDIA.insert_sql(("task_id", "track_id", *_MEDIA_COLS, "updated_at"))
    + " ON CONFLICT(task_id, track_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in (*_MEDIA_COLS, "updated_at"))
)


def job(store: Store, job_id: str) -> dict[str, Any] | None:
    """The ``media_jobs`` row of ``job_id``, or None."""
    rows = store.query("SELECT * FROM media_jobs WHERE job_id = ?", (job_id,))
    return rows[0] if rows else None


def jobs(store: Store, kind: str | None = None) -> list[dict[str, Any]]:
    """Every job (of one ``kind``), oldest first."""
    if kind is None:
        return store.query("SELECT * FROM media_jobs ORDER BY submitted_at, rowid")
    return store.query(
        "SELECT * FROM media_jobs WHERE kind = ? ORDER BY submitted_at, rowid", (kind,)
    )


def unknown_job(store: Store, cb: MediaCallback) -> str | None:
    """Why a WAV/recovery callback cannot be placed (its job was never asked for through
    this store, or is of the other kind), or None.  Such a delivery is refused like a body
    of unknown shape (400) and kept with the reason; recording the job applies it
    (:func:`suno_nb.session.media.record_job`)."""
    found = job(store, cb.task_id)
    what = "WAV conversion" if cb.kind == "wav" else "recovery"
    if found is None:
        return (
            f"no {what} task {cb.task_id!r} was asked for through this receiver: nothing "
            "to attach it to"
        )
    if found["kind"] != cb.kind:
        return f"task {cb.task_id!r} is a {found['kind']} job, but this is a {what} callback"
    return None


def record_job(store: Store, sub: MediaSubmission) -> None:
    """Record a job the client asked for, pending (a result that came first is kept)."""

    def work(conn: sqlite3.Connection) -> None:
        now = time.time()
        conn.execute(
            MEDIA_JOBS.insert_sql(
                ("job_id", "kind", "task_id", "audio_id", "state", "submitted_at", "updated_at")
            )
            + " ON CONFLICT(job_id) DO NOTHING",
            (sub.job_id, sub.kind, sub.task_id, sub.audio_id, PENDING, sub.submitted_at, now),
        )

    store.write(work, lambda _: Change("submission", sub.task_id))


def note_poll(store: Store, job_id: str) -> None:
    """Count a details poll of ``job_id``."""
    store.write(
        lambda c: c.execute(
            "UPDATE media_jobs SET poll_count = poll_count + 1, last_polled_at = ?,"
            " updated_at = ? WHERE job_id = ?",
            (time.time(), time.time(), job_id),
        )
    )


def record_result(
    store: Store, delivery: Delivery, cb: MediaCallback, *, signature_ts: int | None = None
) -> Future[MediaEvent]:
    """Queue a WAV or recovery result for a known job; the future holds what it did."""
    return store.submit(lambda conn: _apply(conn, delivery, cb, signature_ts), lambda e: e)


# --- the transaction body (writer thread) ---------------------------------------------------


def _media_rows(conn: sqlite3.Connection, task_id: str) -> dict[str, dict[str, Any]]:
    cur = conn.execute(
        f"SELECT track_id, {', '.join(_MEDIA_COLS)} FROM track_media WHERE task_id = ?",
        (task_id,),
    )
    return {r[0]: dict(zip(_MEDIA_COLS, r[1:], strict=True)) for r in cur.fetchall()}


def _track_urls(conn: sqlite3.Connection, task_id: str) -> dict[str, tuple[Any, ...]]:
    cur = conn.execute(
        "SELECT track_id, audio_url, stream_audio_url, image_url FROM tracks WHERE task_id = ?",
        (task_id,),
    )
    return {r[0]: tuple(r[1:]) for r in cur.fetchall()}


def _wav_changes(
    cb: WavCallback, task_id: str, audio_id: str | None, media: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    if audio_id is None:
        return {}
    row = dict(media.get(audio_id) or dict.fromkeys(_MEDIA_COLS))
    if cb.succeeded:
        row.update(wav_url=cb.url, wav_error=None)
    else:
        row["wav_error"] = f"WAV conversion failed (code {cb.code}): {cb.msg}"
    return {audio_id: row}


def _recovery_changes(
    cb: RecoveryCallback,
    media: dict[str, dict[str, Any]],
    urls: dict[str, tuple[Any, ...]],
    now: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[Any, ...]]]:
    rows, new_urls = {}, {}
    for item in cb.tracks:
        if item.id not in urls:  # not a track we hold: the raw delivery keeps it
            log.info("recovery %s: track %s is not in the store; skipped", cb.task_id, item.id)
            continue
        row = dict(media.get(item.id) or dict.fromkeys(_MEDIA_COLS))
        if item.recovered:
            old = urls[item.id]
            fresh = (item.audio_url, item.stream_audio_url or old[1], item.image_url or old[2])
            if fresh != old:
                new_urls[item.id] = fresh
            if row["recovery"] != "recovered" or new_urls.get(item.id):
                row["recovered_at"] = now
            row.update(recovery="recovered", audio_error=None)
        else:
            row.update(recovery="failed", audio_error=item.error or NOT_RECOVERED)
        rows[item.id] = row
    return rows, new_urls


def _apply(
    conn: sqlite3.Connection, d: Delivery, cb: MediaCallback, signature_ts: int | None
) -> MediaEvent:
    found = conn.execute(
        "SELECT kind, task_id, audio_id, state FROM media_jobs WHERE job_id = ?", (cb.task_id,)
    ).fetchone()
    if found is None or found[0] != cb.kind:
        raise KeyError(f"no {cb.kind} job {cb.task_id!r} in the store")
    kind, task_id, audio_id, before = found
    now = d.received_at
    ok = cb.succeeded
    # The first final result decides; a later success upgrades a failure.
    decides = before == PENDING or (before == FAILED and ok)
    media = _media_rows(conn, task_id)
    urls: dict[str, tuple[Any, ...]] = {}
    if not decides:
        rows: dict[str, dict[str, Any]] = {}
    elif isinstance(cb, WavCallback):
        rows = _wav_changes(cb, task_id, audio_id, media)
    else:
        rows, urls = _recovery_changes(cb, media, _track_urls(conn, task_id), now)
    rows = {k: v for k, v in rows.items() if v != media.get(k)}
    changed = decides and (bool(rows) or bool(urls) or (SUCCEEDED if ok else FAILED) != before)
    status = 200 if d.method == "POST" else None
    what = f"{kind} of task {task_id}" + (f", track {audio_id}" if audio_id else "")
    reused = signature_ts is not None and _reused(conn, d, cb.task_id, signature_ts)
    if reused and changed:
        delivery_id = insert_delivery(conn, d, "unconfirmed", status, UNCONFIRMED, cb.task_id)
        return _event(conn, cb, d, task_id, "unconfirmed", delivery_id, ())
    verdict = "accepted" if changed else "duplicate"
    delivery_id = insert_delivery(conn, d, verdict, status, what, cb.task_id)
    if not changed:
        return _event(conn, cb, d, task_id, verdict, delivery_id, ())
    conn.executemany(
        _UPSERT_MEDIA,
        [(task_id, t, *(r[n] for n in _MEDIA_COLS), now) for t, r in rows.items()],
    )
    conn.executemany(
        "UPDATE tracks SET audio_url = ?, stream_audio_url = ?, image_url = ?"
        " WHERE task_id = ? AND track_id = ?",
        [(*u, task_id, t) for t, u in urls.items()],
    )
    error = None if ok else _error(cb)
    conn.execute(
        "UPDATE media_jobs SET state = ?, code = ?, msg = ?, error = ?, url = ?, source = ?,"
        " completed_at = ?, updated_at = ? WHERE job_id = ?",
        (
            SUCCEEDED if ok else FAILED,
            cb.code,
            cb.msg,
            error,
            cb.url if isinstance(cb, WavCallback) else None,
            "poll" if d.source == "poll" else "callback",
            now,
            now,
            cb.task_id,
        ),
    )
    return _event(conn, cb, d, task_id, verdict, delivery_id, tuple(sorted({*rows, *urls})))


def _error(cb: MediaCallback) -> str:
    if isinstance(cb, WavCallback):
        return f"{cb.code}: {cb.msg}"
    failed = [t for t in cb.tracks if not t.recovered]
    reasons = sorted({t.error or NOT_RECOVERED for t in failed})
    return f"{cb.code}: {cb.msg} ({len(failed)} track(s) failed: {'; '.join(reasons)})"


def _event(
    conn: sqlite3.Connection,
    cb: MediaCallback,
    d: Delivery,
    task_id: str,
    verdict: str,
    delivery_id: int,
    track_ids: tuple[str, ...],
) -> MediaEvent:
    row = conn.execute("SELECT state FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    family = Callback(
        code=cb.code,
        msg=cb.msg,
        callback_type=cb.kind,
        task_id=task_id,
        tracks=(),
        error=None if cb.succeeded else _error(cb),
        raw=cb.raw,
    )
    return MediaEvent(
        task_id=task_id,
        state=row[0] if row else "unknown",
        verdict=verdict,
        source=d.source,
        delivery_id=delivery_id,
        new_track_ids=(),
        callback=family,
        job_id=cb.task_id,
        job_kind=cb.kind,
        track_ids=track_ids,
    )
