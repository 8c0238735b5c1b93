"""The views shown as DataFrames: each column an SQL expression over the tables of
:mod:`suno_nb.rows`, with the kind (and so the dtype) of the column it comes from.

:mod:`suno_nb.frame` reads them: ``rx.frame()`` (one row per result track),
``rx.tasks()``, ``rx.deliveries()`` and ``rx.listening_tests()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .contract import RETENTION_DAYS
from .rows import (
    DELIVERIES,
    LISTENING,
    RATINGS,
    TASKS,
    TRACK_MEDIA,
    TRACKS,
    Column,
    Table,
)

# How long the service keeps a result's files (14 days, with its source in the contract).
RETENTION_S = RETENTION_DAYS * 24 * 3600
# When the service's copy goes: its createTime (UTC, as the service writes it), else when
# the track arrived here, plus the retention.
_EXPIRES = f"(coalesce(strftime('%s', tr.create_time) + 0.0, tr.received_at) + {RETENTION_S})"
_AUDIO_URL = "coalesce(tr.audio_url, tr.stream_audio_url)"
_AUDIO_STATE = (
    "CASE WHEN ar.path IS NOT NULL THEN 'archived'"
    f" WHEN ar.gone_url = {_AUDIO_URL} OR {_EXPIRES} < strftime('%s', 'now') + 0.0"
    " THEN 'expired' ELSE 'live' END"
)


@dataclass(frozen=True)
class View:
    """A DataFrame: each column an SQL expression over ``source`` with a kind."""

    name: str
    columns: tuple[Column, ...]
    expressions: tuple[str, ...]
    source: str
    order: str
    key: str  # the expression a one-task filter compares with the task id

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def sql(self, *, one_task: bool = False) -> str:
        select = ", ".join(
            f"{expr} AS {col.name}"
            for col, expr in zip(self.columns, self.expressions, strict=True)
        )
        where = f" WHERE {self.key} = ?" if one_task else ""
        return f"SELECT {select} FROM {self.source}{where} ORDER BY {self.order}"


def _view(name: str, source: str, order: str, key: str, *cols: tuple[str, str, Any]) -> View:
    """``cols``: (name, expression, a kind or a (table, column) whose kind it takes)."""
    columns, exprs = [], []
    for col_name, expr, kind in cols:
        if isinstance(kind, tuple):
            table, ref = kind
            kind = table[ref].kind
        columns.append(Column(col_name, kind))
        exprs.append(expr)
    return View(name, tuple(columns), tuple(exprs), source, order, key)


def _same(alias: str, table: Table, *names: str) -> list[tuple[str, str, Any]]:
    return [(n, f"{alias}.{n}", (table, n)) for n in names]


FRAME = _view(
    "frame",
    "tracks tr JOIN tasks t ON t.task_id = tr.task_id"
    " LEFT JOIN ratings r ON r.task_id = tr.task_id AND r.track_id = tr.track_id"
    " LEFT JOIN track_media m ON m.task_id = tr.task_id AND m.track_id = tr.track_id"
    " LEFT JOIN archive ar ON ar.task_id = tr.task_id AND ar.track_id = tr.track_id",
    "tr.rowid",
    "tr.task_id",
    *_same("tr", TRACKS, "task_id", "track_id"),
    *_same("t", TASKS, "callback_type", "code", "msg"),
    *_same("tr", TRACKS, "title", "tags", "prompt", "model_name", "duration"),
    *_same("tr", TRACKS, "audio_url", "stream_audio_url", "image_url"),
    ("created_at", "tr.create_time", (TRACKS, "create_time")),
    *_same("tr", TRACKS, "received_at", "source"),
    *_same("t", TASKS, "parent_task_id", "audio_id", "infill_start_s", "infill_end_s"),
    ("submitted_at", "t.submitted_at", (TASKS, "submitted_at")),
    ("latency_s", "tr.received_at - t.submitted_at", "real"),
    ("rating", "r.stars", (RATINGS, "stars")),
    ("note", "r.note", (RATINGS, "note")),
    ("picked", "coalesce(r.picked, 0)", (RATINGS, "picked")),
    ("rating_blind", "coalesce(r.blind, 0)", (RATINGS, "blind")),
    *_same("m", TRACK_MEDIA, "wav_url", "wav_error", "recovery", "audio_error"),
    ("expires_at", _EXPIRES, "time"),
    ("audio_state", _AUDIO_STATE, "text"),  # archived | expired | live
)

TASKS_VIEW = _view(
    "tasks",
    "tasks t",
    "coalesce(t.submitted_at, t.first_seen_at), t.rowid",
    "t.task_id",
    *_same("t", TASKS, "task_id", "state", "stage", "reason", "code", "msg", "error"),
    *_same("t", TASKS, "callback_type", "source", "service_status", "unconfirmed"),
    (
        "title",
        "coalesce(t.title, (SELECT tr.title FROM tracks tr WHERE tr.task_id = t.task_id"
        " ORDER BY tr.rowid LIMIT 1))",
        (TASKS, "title"),
    ),
    *_same("t", TASKS, "parent_task_id", "audio_id", "infill_start_s", "infill_end_s"),
    ("section_s", "round(t.infill_end_s - t.infill_start_s, 2)", "real"),
    ("tracks", "(SELECT count(*) FROM tracks tr WHERE tr.task_id = t.task_id)", "count"),
    *_same("t", TASKS, "submitted_at", "first_seen_at", "completed_at"),
    ("latency_s", "t.completed_at - t.submitted_at", "real"),
    *_same("t", TASKS, "poll_count", "last_polled_at", "prompt", "tags", "negative_tags"),
)

DELIVERIES_VIEW = _view(
    "deliveries",
    "deliveries",
    "id",
    "task_id",
    ("delivery_id", "id", (DELIVERIES, "id")),
    *_same("deliveries", DELIVERIES, "received_at", "source", "verdict", "status", "reason"),
    *_same("deliveries", DELIVERIES, "task_id", "remote_addr", "via_tunnel", "method"),
    ("size", "coalesce(length(body), 0)", "count"),
    *_same("deliveries", DELIVERIES, "headers", "replay_of"),
)


LISTENING_VIEW = _view(
    "listening_tests",
    "listening_trials l",
    "l.answered_at, l.id",
    "l.task_id",
    *_same("l", LISTENING, "session_id", "trial", "mode", "task_id", "track_1", "track_2"),
    ("a_track", "json_extract(l.mapping, '$.A')", "text"),
    ("b_track", "json_extract(l.mapping, '$.B')", "text"),
    ("x_track", "json_extract(l.mapping, '$.X')", "text"),
    *_same("l", LISTENING, "answer", "correct", "mapping", "started_at", "answered_at"),
)
