"""A batch's rows in the store (table ``batch_jobs`` of :mod:`suno_nb.rows`).

Every write goes through the store's one writer (``store.write``); a row exists, with its
key, before its request is sent, and says ``sending`` while the request is out — so a
process that dies mid-request leaves a row a re-run treats as ``uncertain``.

Adoption: a callback for a task nobody recorded (no ``submitted_at``), first seen after an
uncertain row's request went out, whose tracks echo that row's prompt, title and tags is that
row's task, unless other uncertain rows echo the same (then none is guessed).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from ..client_lyrics import default_prompt
from ..rows import BATCH_JOBS, Submission
from .jobs import Job

# Stored states; "succeeded"/"failed" are read from the task's row.
QUEUED, SENDING, SUBMITTED, UNCERTAIN = "queued", "sending", "submitted", "uncertain"
REJECTED, SKIPPED, OVER_BUDGET = "rejected", "skipped", "over_budget"

_ROWS_SQL = """
SELECT b.key, b.row, b.kind, b.params, b.state, b.task_id, b.error, b.sends, b.sent_at,
       t.state AS task_state, coalesce(t.error, t.msg, t.reason) AS task_error,
       (SELECT count(*) FROM tracks k WHERE k.task_id = b.task_id) AS takes
FROM batch_jobs b LEFT JOIN tasks t ON t.task_id = b.task_id
WHERE b.batch = ? ORDER BY b.row
"""


def ensure(store: Any, name: str, jobs: Iterable[Job], skip: set[str]) -> None:
    """Record every job (``queued``, or ``skipped`` when its key is in ``skip``) that is not
    recorded yet; a recorded row keeps its state.  A row skipped before but valid now is
    queued again, and a row left over budget is queued again (the budget is per run)."""
    now = time.time()
    cols = ("key", "batch", "row", "kind", "params", "state", "created_at", "updated_at")
    values = [
        (
            j.key,
            name,
            j.row,
            j.kind,
            json.dumps(j.params, sort_keys=True, default=str),
            SKIPPED if j.key in skip else QUEUED,
            now,
            now,
        )
        for j in jobs
    ]

    def work(conn: sqlite3.Connection) -> None:
        conn.executemany(BATCH_JOBS.insert_sql(cols) + " ON CONFLICT(key) DO NOTHING", values)
        conn.execute(
            "UPDATE batch_jobs SET state = ?, updated_at = ? WHERE batch = ? AND state = ?",
            (QUEUED, now, name, OVER_BUDGET),
        )
        # A crashed run's request in flight may have reached the service.
        conn.execute(
            "UPDATE batch_jobs SET state = ?, error = ?, updated_at = ? "
            "WHERE batch = ? AND state = ?",
            (UNCERTAIN, "the run stopped while this request was out", now, name, SENDING),
        )
        for j in jobs:
            if j.key not in skip:
                conn.execute(
                    "UPDATE batch_jobs SET state = ?, updated_at = ? WHERE key = ? AND state = ?",
                    (QUEUED, now, j.key, SKIPPED),
                )

    store.write(work)


def rows(store: Any, name: str, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The batch's rows, in job order, joined with their tasks' states and take counts;
    only those of ``keys`` when given (a row edited since an earlier run has a new key)."""
    out = store.query(_ROWS_SQL, (name,))
    if keys is not None:
        wanted = set(keys)
        out = [r for r in out if r["key"] in wanted]
    for r in out:
        r["params"] = json.loads(r["params"]) if isinstance(r["params"], str) else r["params"]
    return out


def set_state(store: Any, key: str, state: str, **cols: Any) -> None:
    """Move one row to ``state``, setting ``cols`` (task_id, error, sent_at, sends+=1)."""
    now = time.time()
    sets = ["state = ?", "updated_at = ?"]
    args: list[Any] = [state, now]
    if cols.pop("sent", False):
        sets += ["sent_at = ?", "sends = sends + 1"]
        args.append(now)
    for k, v in cols.items():
        if k not in BATCH_JOBS.names:
            raise KeyError(k)
        sets.append(f"{k} = ?")
        args.append(v)
    store.write(
        lambda c: c.execute(f"UPDATE batch_jobs SET {', '.join(sets)} WHERE key = ?", (*args, key))
    )


def expected_echo(params: dict[str, Any], provider: Any) -> tuple[str, str, str]:
    """The (prompt, title, tags) a job's task echoes in its callback."""
    prompt = params.get("prompt")
    if prompt is None and "new_lyrics" in params:  # replace_lines' default prompt
        prompt = default_prompt(
            str(params["new_lyrics"]), str(params.get("tags", "")), provider.max_chars.get("prompt")
        )
    return (
        str(prompt or "").strip(),
        str(params.get("title", "")).strip(),
        str(params.get("tags", "")).strip(),
    )


def adopt(
    store: Any, name: str, provider: Any, rx: Any = None, keys: Iterable[str] | None = None
) -> list[tuple[str, str]]:
    """Give uncertain rows the unrecorded tasks whose tracks echo their prompt, title and
    tags (first seen after the row's request went out); returns the (key, task_id) pairs
    adopted.  Rows that share one echo (the same words for two sections, say) are not
    guessed between: they stay uncertain and say why.  With ``rx``, each adopted task is
    recorded as a submission (its parameters kept, the poller told)."""
    waiting = [r for r in rows(store, name, keys) if r["state"] == UNCERTAIN]
    if not waiting:
        return []
    found = store.query(
        "SELECT k.task_id, k.prompt, k.title, k.tags, min(t.first_seen_at) AS seen "
        "FROM tracks k JOIN tasks t ON t.task_id = k.task_id WHERE t.submitted_at IS NULL "
        "AND k.task_id NOT IN (SELECT task_id FROM batch_jobs WHERE task_id IS NOT NULL) "
        "GROUP BY k.task_id, k.prompt, k.title, k.tags ORDER BY seen"
    )
    echoes: dict[tuple[str, ...], list[tuple[str, float]]] = {}
    for f in found:
        echo = tuple(str(f[c] or "").strip() for c in ("prompt", "title", "tags"))
        known = echoes.setdefault(echo, [])
        if all(f["task_id"] != t for t, _ in known):
            known.append((f["task_id"], float(f["seen"] or 0.0)))
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in waiting:
        groups.setdefault(expected_echo(r["params"], provider), []).append(r)
    adopted = []
    for echo, group in groups.items():
        sent = min(float(r["sent_at"] or 0.0) for r in group)
        tasks = [t for t, seen in echoes.get(echo, []) if seen >= sent]
        if not tasks:
            continue
        if len(group) > 1:  # which task is which row's cannot be told: never guess
            why = (
                f"{len(group)} uncertain rows ask for the same prompt, title and tags, so "
                f"their tasks ({', '.join(tasks)}) cannot be told apart: see rx.tasks(), or "
                "resubmit_uncertain=True sends them again"
            )
            for r in group:
                if r["error"] != why:
                    set_state(store, r["key"], UNCERTAIN, error=why)
            continue
        (r,) = group
        set_state(store, r["key"], SUBMITTED, task_id=tasks[0], error=None)
        if rx is not None:
            rx.record_submission(_submission(tasks[0], r))
        adopted.append((r["key"], tasks[0]))
    return adopted


def _submission(task_id: str, row: dict[str, Any]) -> Submission:
    p = row["params"]
    return Submission(
        task_id=task_id,
        parent_task_id=p.get("task_id"),
        audio_id=p.get("audio_id"),
        infill_start_s=p.get("infill_start_s"),
        infill_end_s=p.get("infill_end_s"),
        prompt=p.get("prompt"),
        tags=p.get("tags"),
        title=p.get("title"),
        negative_tags=p.get("negative_tags"),
        full_lyrics=p.get("full_lyrics"),
        params={"batch_key": row["key"]},
        submitted_at=row.get("sent_at") or time.time(),
    )
