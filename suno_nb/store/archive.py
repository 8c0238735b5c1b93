"""The archive's rows (table ``archive`` of :mod:`suno_nb.rows`): what was archived from
which URL, and which URLs are gone.  Written through the store's one writer; each write
publishes ``Change("archive", task_id)`` so a caller can wait for it on the feed."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..events import Change

if TYPE_CHECKING:
    import sqlite3

    from ..store import Store

GONE_STATUSES = (404, 410)  # the service's copy expired (or never was)

_UPSERT = (
    "INSERT INTO archive (task_id, track_id, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT(task_id, track_id) DO UPDATE SET updated_at = excluded.updated_at"
)


def _announce(task_id: str) -> Any:
    return lambda _result: Change("archive", task_id)


def record_archived(
    store: Store, task_id: str, track_id: str, url: str, name: str, size: int
) -> Future[None]:
    """``url`` is now archived as ``name`` (``size`` bytes): the track reads as ``archived``."""

    def work(conn: sqlite3.Connection) -> None:
        now = time.time()
        conn.execute(_UPSERT, (task_id, track_id, now))
        conn.execute(
            "UPDATE archive SET url = ?, path = ?, bytes = ?, archived_at = ?, error = NULL "
            "WHERE task_id = ? AND track_id = ?",
            (url, name, int(size), now, task_id, track_id),
        )

    return store.submit(work, _announce(task_id))


def record_failure(
    store: Store, task_id: str, track_id: str, url: str, status: int | None, error: str
) -> Future[None]:
    """Archiving ``url`` failed; a 404/410 marks the URL gone (the track reads ``expired``
    unless a file was archived before)."""

    def work(conn: sqlite3.Connection) -> None:
        conn.execute(_UPSERT, (task_id, track_id, time.time()))
        conn.execute(
            "UPDATE archive SET error = ? WHERE task_id = ? AND track_id = ?",
            (error, task_id, track_id),
        )
        if status in GONE_STATUSES:
            conn.execute(
                "UPDATE archive SET gone_url = ?, gone_status = ? "
                "WHERE task_id = ? AND track_id = ?",
                (url, status, task_id, track_id),
            )

    return store.submit(work, _announce(task_id))


def wanted(store: Store, task_id: str | None) -> list[dict[str, Any]]:
    """Tracks to archive now: those of ``task_id`` (just arrived), and any track whose URL
    changed since its file was archived (a recovery re-issued it); never a URL already
    archived or known to be gone."""
    return store.query(
        "SELECT tr.task_id, tr.track_id, tr.audio_url AS url FROM tracks tr "
        "LEFT JOIN archive ar ON ar.task_id = tr.task_id AND ar.track_id = tr.track_id "
        "WHERE tr.audio_url IS NOT NULL AND tr.audio_url != '' "
        "AND (tr.task_id = ? OR (ar.url IS NOT NULL AND ar.url != tr.audio_url)) "
        "AND (ar.url IS NULL OR ar.url != tr.audio_url OR ar.path IS NULL) "
        "AND (ar.gone_url IS NULL OR ar.gone_url != tr.audio_url) "
        "ORDER BY tr.rowid",
        (task_id or "",),
    )


def row(store: Store, task_id: str, track_id: str) -> dict[str, Any] | None:
    """The archive row of one track, if any."""
    rows = store.query(
        "SELECT * FROM archive WHERE task_id = ? AND track_id = ?", (task_id, track_id)
    )
    return rows[0] if rows else None
