"""Store -> pandas DataFrames: the views of :mod:`suno_nb.rows`, typed by column kind.

Pure functions of the store.  Times are ``datetime64`` in UTC (stored as Unix seconds);
``created_at`` is the service's ``createTime``, which carries no zone, so it stays naive.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pandas as pd

from .rows import DELIVERIES_VIEW, FRAME, TASKS_VIEW, View

if TYPE_CHECKING:
    from .store import Store

__all__ = ["deliveries", "frame", "read_view", "tasks", "typed"]


def _convert(series: pd.Series, kind: str) -> pd.Series:
    if kind == "real":
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if kind == "int":
        return pd.to_numeric(series, errors="coerce").astype("Int64")
    if kind == "count":
        return pd.to_numeric(series, errors="coerce").fillna(0).astype("int64")
    if kind == "bool":
        return series.fillna(0).astype(bool)
    # Nanosecond resolution whatever pandas would infer (pandas 3 infers seconds from text).
    if kind == "time":
        seconds = pd.to_numeric(series, errors="coerce")
        return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ns, UTC]")
    if kind == "stamp":
        parsed = pd.to_datetime(series, format="%Y-%m-%d %H:%M:%S", errors="coerce")
        return parsed.astype("datetime64[ns]")
    if kind == "json":
        return series.map(_loads).astype("object")
    # text and blob: Python objects, None (never NaN) when missing
    return series.astype("object").where(series.notna(), None)


def _loads(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # a damaged value is shown as stored, not hidden


def typed(df: pd.DataFrame, view: View) -> pd.DataFrame:
    """``df`` with each column of ``view`` converted to its kind's dtype, in view order."""
    out = pd.DataFrame(index=df.index)
    for column in view.columns:
        series = df[column.name] if column.name in df else pd.Series([None] * len(df), dtype=object)
        out[column.name] = _convert(series, column.kind)
    return out


def read_view(store: Store, view: View, task_id: str | None = None) -> pd.DataFrame:
    """Rows of ``view`` (all, or one task's), typed."""
    sql = view.sql(one_task=task_id is not None)
    params = () if task_id is None else (task_id,)
    with store.reading() as conn:
        cur = conn.execute(sql, params)
        rows = cur.fetchall()
    return typed(pd.DataFrame.from_records(rows, columns=list(view.names)), view)


def frame(store: Store, task_id: str | None = None) -> pd.DataFrame:
    """One row per result track (deduplicated on ``(task_id, track_id)``), or one task's.

    ``rating`` (1..5, or missing), ``note`` and ``picked`` come from the ledger.
    """
    return read_view(store, FRAME, task_id)


def tasks(store: Store) -> pd.DataFrame:
    """One row per task with its state, stage, code, message and error text.

    ``state``: pending, running (a non-final stage arrived; ``stage`` says which),
    succeeded, failed, or unknown/expired (we gave up; ``reason`` says why).
    """
    return read_view(store, TASKS_VIEW)


def deliveries(store: Store) -> pd.DataFrame:
    """Every delivery, accepted, duplicate or rejected (with the reason), and poll answers."""
    return read_view(store, DELIVERIES_VIEW)
