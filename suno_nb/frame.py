"""Store -> pandas DataFrames.  Pure functions of the store; no side effects.

Columns have real dtypes: numbers are float64/Int64, times are datetime64 (``received_at``
and friends in UTC; ``created_at`` is the service's ``createTime``, which carries no zone,
so it stays naive).
"""

from __future__ import annotations

import json

import pandas as pd

from .store import Store

FRAME_COLUMNS = [
    "task_id",
    "track_id",
    "callback_type",
    "code",
    "msg",
    "title",
    "tags",
    "prompt",
    "model_name",
    "duration",
    "audio_url",
    "stream_audio_url",
    "image_url",
    "created_at",
    "received_at",
    "source",
    "parent_task_id",
    "audio_id",
    "infill_start_s",
    "infill_end_s",
    "submitted_at",
    "latency_s",
    "rating",
    "note",
    "picked",
]

TASK_COLUMNS = [
    "task_id",
    "state",
    "stage",
    "reason",
    "code",
    "msg",
    "error",
    "callback_type",
    "source",
    "service_status",
    "title",
    "parent_task_id",
    "audio_id",
    "infill_start_s",
    "infill_end_s",
    "section_s",
    "tracks",
    "submitted_at",
    "first_seen_at",
    "completed_at",
    "latency_s",
    "poll_count",
    "last_polled_at",
    "prompt",
    "tags",
    "negative_tags",
]

DELIVERY_COLUMNS = [
    "delivery_id",
    "received_at",
    "source",
    "verdict",
    "status",
    "reason",
    "task_id",
    "remote_addr",
    "via_tunnel",
    "method",
    "size",
    "headers",
    "replay_of",
]

_FRAME_SQL = """
SELECT tr.task_id, tr.track_id, t.callback_type, t.code, t.msg, tr.title, tr.tags, tr.prompt,
       tr.model_name, tr.duration, tr.audio_url, tr.stream_audio_url, tr.image_url,
       tr.create_time AS created_at, tr.received_at, tr.source, t.parent_task_id, t.audio_id,
       t.infill_start_s, t.infill_end_s, t.submitted_at, r.stars AS rating, r.note,
       coalesce(r.picked, 0) AS picked
FROM tracks tr JOIN tasks t ON t.task_id = tr.task_id
LEFT JOIN ratings r ON r.task_id = tr.task_id AND r.track_id = tr.track_id
ORDER BY tr.rowid
"""

_TASKS_SQL = """
SELECT t.task_id, t.state, t.stage, t.reason, t.code, t.msg, t.error, t.callback_type, t.source,
       t.service_status,
       coalesce(t.title, (SELECT tr.title FROM tracks tr WHERE tr.task_id = t.task_id
                          ORDER BY tr.rowid LIMIT 1)) AS title,
       t.parent_task_id, t.audio_id, t.infill_start_s, t.infill_end_s,
       (SELECT count(*) FROM tracks tr WHERE tr.task_id = t.task_id) AS tracks,
       t.submitted_at, t.first_seen_at, t.completed_at, t.poll_count, t.last_polled_at,
       t.prompt, t.tags, t.negative_tags
FROM tasks t
ORDER BY coalesce(t.submitted_at, t.first_seen_at), t.rowid
"""

_DELIVERIES_SQL = """
SELECT id AS delivery_id, received_at, source, verdict, status, reason, task_id, remote_addr,
       via_tunnel, method, length(body) AS size, headers, replay_of
FROM deliveries ORDER BY id
"""


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series.astype("float64"), unit="s", utc=True)


def _read(store: Store, sql: str) -> pd.DataFrame:
    with store.reading() as conn:
        return pd.read_sql_query(sql, conn)


def frame(store: Store) -> pd.DataFrame:
    """One row per result track (deduplicated on ``(task_id, track_id)``).

    ``rating`` (1..5, or missing), ``note`` and ``picked`` come from the ledger
    (:meth:`Store.rate`, :meth:`Store.pick`).
    """
    df = _read(store, _FRAME_SQL)
    df["code"] = df["code"].astype("Int64")
    for col in ("duration", "infill_start_s", "infill_end_s"):
        df[col] = df[col].astype("float64")
    df["created_at"] = pd.to_datetime(df["created_at"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    latency = df["received_at"].astype("float64") - df["submitted_at"].astype("float64")
    df["received_at"] = _utc(df["received_at"])
    df["submitted_at"] = _utc(df["submitted_at"])
    df["latency_s"] = latency.astype("float64")
    df["rating"] = df["rating"].astype("Int64")
    df["note"] = df["note"].astype("object").where(df["note"].notna(), None)
    df["picked"] = df["picked"].fillna(0).astype(bool)
    return df[FRAME_COLUMNS]


def tasks(store: Store) -> pd.DataFrame:
    """One row per task with its state, stage, code, message and error text.

    ``state``: pending, running (a non-final stage arrived; ``stage`` says which),
    succeeded, failed, or unknown/expired (we gave up; ``reason`` says why).
    """
    df = _read(store, _TASKS_SQL)
    df["code"] = df["code"].astype("Int64")
    for col in ("infill_start_s", "infill_end_s"):
        df[col] = df[col].astype("float64")
    df["section_s"] = (df["infill_end_s"] - df["infill_start_s"]).round(2)
    df["latency_s"] = df["completed_at"].astype("float64") - df["submitted_at"].astype("float64")
    for col in ("submitted_at", "first_seen_at", "completed_at", "last_polled_at"):
        df[col] = _utc(df[col])
    df["tracks"] = df["tracks"].astype("int64")
    df["poll_count"] = df["poll_count"].astype("int64")
    return df[TASK_COLUMNS]


def deliveries(store: Store) -> pd.DataFrame:
    """Every delivery, accepted, duplicate or rejected (with the reason), and poll answers."""
    df = _read(store, _DELIVERIES_SQL)
    df["received_at"] = _utc(df["received_at"])
    df["status"] = df["status"].astype("Int64")
    df["replay_of"] = df["replay_of"].astype("Int64")
    df["via_tunnel"] = df["via_tunnel"].astype(bool)
    df["size"] = df["size"].fillna(0).astype("int64")
    df["headers"] = df["headers"].map(json.loads)
    return df[DELIVERY_COLUMNS]
