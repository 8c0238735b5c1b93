"""Store -> pandas DataFrames: the views of :mod:`suno_nb.rows`, typed by column kind.

Pure functions of the store.  Times are ``datetime64`` in UTC (stored as Unix seconds);
``created_at`` is the service's ``createTime``, which carries no zone, so it stays naive.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import pandas as pd

from .views import DELIVERIES_VIEW, FRAME, LISTENING_VIEW, TASKS_VIEW, View

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "abx_p_value",
    "deliveries",
    "frame",
    "listening_summary",
    "listening_tests",
    "read_view",
    "tasks",
    "typed",
]

SIGNIFICANT = 0.05  # the usual threshold: guessing does this well at most 1 time in 20


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

    ``rating`` (1..5, or missing), ``note`` and ``picked`` come from the ledger;
    ``rating_blind`` is True when those stars were given in a blind test.
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


def listening_tests(store: Store) -> pd.DataFrame:
    """Every answered blind-listening trial, oldest first: session, trial number, mode, the
    pair (``track_1``/``track_2``), the hidden mapping (``a_track``, ``b_track``,
    ``x_track``; ``mapping`` as stored), the ``answer``, ``correct`` (ABX) and the times."""
    return read_view(store, LISTENING_VIEW)


def abx_p_value(correct: int, total: int) -> float:
    """One-sided exact binomial p-value: P(X >= correct) for X ~ Binomial(total, 1/2), the
    chance that pure guessing gets at least ``correct`` of ``total`` ABX trials right."""
    if total < 0 or not 0 <= correct <= total:
        raise ValueError(f"need 0 <= correct <= total, got correct={correct}, total={total}")
    hits = sum(math.comb(total, k) for k in range(correct, total + 1))
    return float(Fraction(hits, 2**total))


def _fewest_to_show() -> int:
    n = 1
    while abx_p_value(n, n) > SIGNIFICANT:
        n += 1
    return n  # 5: five right out of five


def verdict(correct: int, total: int) -> str:
    """What ``correct`` of ``total`` ABX answers say, in plain words."""
    p = abx_p_value(correct, total)
    if p <= SIGNIFICANT:
        return (
            f"a difference was heard: {correct} of {total} right; guessing does this well "
            f"{p:.1%} of the time"
        )
    fewest = _fewest_to_show()
    if total < fewest:
        return (
            f"too few trials to tell: {correct} of {total} right; at least {fewest} trials "
            "are needed (all right) to show a difference"
        )
    return (
        f"no reliable difference: {correct} of {total} right is what guessing gives "
        f"{p:.0%} of the time"
    )


def listening_summary(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per ABX pair (either order) of :func:`listening_tests`: ``task_id``,
    ``track_1``, ``track_2``, ``correct``, ``total``, ``p_value`` (:func:`abx_p_value`)
    and a plain-words ``verdict``.  Every session of the pair counts."""
    abx = trials[trials["mode"] == "abx"]
    rows: dict[frozenset[str], dict[str, Any]] = {}
    for r in abx.itertuples(index=False):
        key = frozenset((str(r.track_1), str(r.track_2)))
        row = rows.setdefault(
            key,
            {"task_id": r.task_id, "track_1": r.track_1, "track_2": r.track_2, "correct": 0,
             "total": 0},
        )  # fmt: skip
        row["total"] += 1
        row["correct"] += int(r.correct == 1)
    for row in rows.values():
        row["p_value"] = abx_p_value(row["correct"], row["total"])
        row["verdict"] = verdict(row["correct"], row["total"])
    columns = ["task_id", "track_1", "track_2", "correct", "total", "p_value", "verdict"]
    out = pd.DataFrame(list(rows.values()), columns=columns)
    return out.astype({"correct": "int64", "total": "int64", "p_value": "float64"})
