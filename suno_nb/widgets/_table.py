"""The tracker's table as HTML: pure functions of task rows (no widgets, no store).

Every colour is a JupyterLab theme variable (see :mod:`._common`).  A row says what is worth
reading: the code and message only when they tell something (a failure, a code other than
200, why polling gave up), titles on one line (an ellipsis, the full title as a tooltip).
"""

from __future__ import annotations

import time
from typing import Any

from ._common import (
    BOX_STYLE,
    MUTED,
    TABLE_STYLE,
    TD_STYLE,
    TH_STYLE,
    WARN_FG,
    badge,
    esc,
    fmt_elapsed,
    fmt_range,
    note,
    short_id,
    text,
)

__all__ = ["GAVE_UP", "OPEN", "SHOWN", "STATES", "render_tasks", "shown_rows"]

STATES = ("all", "pending", "succeeded", "failed")
# what each filter button shows: "pending" = still open, "failed" = failed or given up
SHOWN = {
    "pending": ("pending", "running"),
    "succeeded": ("succeeded",),
    "failed": ("failed", "unknown", "expired"),
}
OPEN = SHOWN["pending"]
GAVE_UP = ("unknown", "expired")
HEADS = ("Task", "Title", "Section", "State", "Elapsed", "Tracks", "Details", "Source")
NOWRAP = {0, 1, 2, 3, 4, 7}  # task, title (truncated), section, state, elapsed, source
TITLE_STYLE = "max-width: 22em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap;"
OK_CODES = ("", "200")


def _elapsed(row: dict[str, Any], now: float) -> str:
    start = row.get("submitted_at") or row.get("first_seen_at")
    if not start:
        return "—"
    if row["state"] in OPEN:
        return fmt_elapsed(now - start)
    done = row.get("completed_at")
    return fmt_elapsed(done - start) if done else "—"


def _code(row: dict[str, Any]) -> str:
    code = text(row.get("code"))
    return code[:-2] if code.endswith(".0") else code  # a float column's 200.0


def _detail(row: dict[str, Any]) -> str:
    """What the row's code/message tell, or "" when they only say it went well."""
    state = row["state"]
    if row.get("unconfirmed"):  # a body under a reused signature, held back (see the docs)
        said = "an unconfirmed callback is held back: checking with the service"
        return f"<span style='color: {WARN_FG};'>{said}</span>"
    if state in OPEN:
        service = text(row.get("service_status"))
        extra = f" (service: {esc(service)})" if service else ""
        return f"<span style='{MUTED}'>waiting for the callback…{extra}</span>"
    if state in GAVE_UP:
        return esc(text(row.get("reason")) or "no longer polled")
    code, error = _code(row), text(row.get("error"))
    message = error or text(row.get("msg"))
    if state == "succeeded" and code in OK_CODES and not error:
        return ""  # "200 · All generated successfully." on every row says nothing
    return esc(" · ".join(p for p in (code, message) if p)) or "—"


def shown_rows(rows: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    """The rows the filter ``state`` shows (in the order given)."""
    return rows if state == "all" else [r for r in rows if r["state"] in SHOWN[state]]


def _row(row: dict[str, Any], now: float) -> str:
    task_id, row_state = str(row["task_id"]), str(row["state"])
    source = text(row.get("source")) or ("—" if row_state in OPEN else "")
    title = text(row.get("title"), "—")
    cells = [
        f"<code title='{esc(task_id)}'>{esc(short_id(task_id, 10))}</code>",
        f"<div class='suno-nb-title' style='{TITLE_STYLE}' title='{esc(title)}'>{esc(title)}</div>",
        esc(fmt_range(row.get("infill_start_s"), row.get("infill_end_s"))),
        badge(row_state),
        esc(_elapsed(row, now)),
        str(int(row.get("tracks") or 0)),
        _detail(row),
        esc(source),
    ]
    return (
        f"<tr data-task-id='{esc(task_id)}' data-state='{esc(row_state)}'>"
        + "".join(
            f"<td style='{TD_STYLE}{' white-space: nowrap;' if i in NOWRAP else ''}'>{c}</td>"
            for i, c in enumerate(cells)
        )
        + "</tr>"
    )


def render_tasks(
    rows: list[dict[str, Any]],
    state: str = "all",
    *,
    now: float | None = None,
    max_rows: int = 200,
    live: bool = True,
    hidden: int = 0,
) -> str:
    """The tracker's HTML for task rows (``store.tasks_since`` rows with ``tracks``), newest
    first, filtered by ``state``; ``hidden`` earlier tasks are mentioned, not shown."""
    now = time.time() if now is None else now
    history_hint = (
        f" <span style='{MUTED}'>· {hidden} earlier task{'s' if hidden != 1 else ''} hidden "
        "(<b>history</b> shows them)</span>"
        if hidden
        else ""
    )
    if not rows:
        return note(
            "No tasks yet. Submitted replace-section tasks appear here and update by "
            "themselves when their callbacks (or poll results) land." + history_hint,
            kind="info",
        )
    counts = {k: sum(r["state"] in v for r in rows) for k, v in SHOWN.items()}
    gave_up = sum(r["state"] in GAVE_UP for r in rows)
    total = len(rows)
    summary = (
        f"<div style='{BOX_STYLE} margin-bottom: 4px;'><b>{total}</b> task"
        f"{'s' if total != 1 else ''} · {counts['pending']} pending · "
        f"{counts['succeeded']} succeeded · {counts['failed'] - gave_up} failed"
        f"{f' · {gave_up} given up' if gave_up else ''} "
        f"<span style='{MUTED}'>· {'updates live' if live else 'not updating'}</span>"
        f"{history_hint}</div>"
    )
    shown = shown_rows(rows, state)
    if not shown:
        return summary + note(f"No {esc(state)} tasks.", kind="info")
    shown = shown[::-1][:max_rows]
    head = "".join(f"<th style='{TH_STYLE}'>{h}</th>" for h in HEADS)
    body = "".join(_row(row, now) for row in shown)
    more = (
        f"<div style='{MUTED}'>showing the newest {max_rows} of {len(rows)}</div>"
        if len(rows) > max_rows and state == "all"
        else ""
    )
    return (
        f"<div style='{BOX_STYLE}'>{summary}<table class='suno-nb-tracker' style='{TABLE_STYLE}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}</div>"
    )
