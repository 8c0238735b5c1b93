"""The tracker: a live table of the receiver's tasks.

It updates by itself: a handler registered with ``rx.on_callback`` redraws when a callback or
poll result is stored, and a light daemon thread watches ``rx.store.version`` (submissions)
and ticks the elapsed time of pending tasks once a second.  Both only set the HTML widget's
``value`` trait, under the package's update lock; nothing is printed from a thread.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._common import (
    BOX_STYLE,
    MUTED,
    TABLE_STYLE,
    TD_STYLE,
    TH_STYLE,
    UPDATE_LOCK,
    badge,
    esc,
    fmt_elapsed,
    fmt_range,
    log,
    note,
    short_id,
    text,
)

if TYPE_CHECKING:
    import pandas as pd

    from ..events import CallbackEvent
    from ..session import Receiver

__all__ = ["STATES", "Tracker", "tracker"]

STATES = ("all", "pending", "succeeded", "failed")
NOWRAP = {0, 2, 3, 4, 7}  # task, section, state, elapsed, source


def _ts(value: Any) -> float | None:
    """A pandas Timestamp (or NaT/None) as Unix seconds."""
    if value is None or value != value:
        return None
    try:
        return float(value.timestamp())
    except (AttributeError, ValueError):
        return None


def render_tasks(
    tasks: pd.DataFrame, state: str = "all", *, now: float | None = None, max_rows: int = 200
) -> str:
    """The tracker's HTML for ``rx.tasks()``, newest first, filtered by ``state``."""
    now = time.time() if now is None else now
    total = len(tasks)
    counts = {s: int((tasks["state"] == s).sum()) for s in STATES[1:]} if total else {}
    if total == 0:
        return note(
            "No tasks yet. Submitted replace-section tasks appear here and update by "
            "themselves when their callbacks (or poll results) land.",
            kind="info",
        )
    summary = (
        f"<div style='{BOX_STYLE} margin-bottom: 4px;'><b>{total}</b> task"
        f"{'s' if total != 1 else ''} · {counts['pending']} pending · "
        f"{counts['succeeded']} succeeded · {counts['failed']} failed "
        f"<span style='{MUTED}'>· updates live</span></div>"
    )
    shown = tasks if state == "all" else tasks[tasks["state"] == state]
    if not len(shown):
        return summary + note(f"No {esc(state)} tasks.", kind="info")
    shown = shown.iloc[::-1].head(max_rows)
    heads = ["Task", "Title", "Section", "State", "Elapsed", "Tracks", "Code / message", "Source"]
    head = "".join(f"<th style='{TH_STYLE}'>{h}</th>" for h in heads)
    body = []
    for row in shown.itertuples(index=False):
        start = _ts(row.submitted_at) or _ts(row.first_seen_at)
        done = _ts(row.completed_at)
        if row.state == "pending":
            elapsed = fmt_elapsed(now - start) if start else "—"
        else:
            elapsed = fmt_elapsed(done - start) if (start and done) else "—"
        code = text(row.code)
        message = text(row.error) or text(row.msg)
        if row.state == "pending":
            detail = f"<span style='{MUTED}'>waiting for the callback…</span>"
        else:
            detail = esc(" · ".join(p for p in (code, message) if p)) or "—"
        source = text(row.source) or ("—" if row.state == "pending" else "")
        cells = [
            f"<code title='{esc(str(row.task_id))}'>{esc(short_id(row.task_id, 10))}</code>",
            esc(text(row.title, "—")),
            esc(fmt_range(row.infill_start_s, row.infill_end_s)),
            badge(str(row.state)),
            esc(elapsed),
            str(int(row.tracks)),
            detail,
            esc(source),
        ]
        body.append(
            f"<tr data-task-id='{esc(str(row.task_id))}' data-state='{esc(str(row.state))}'>"
            + "".join(
                f"<td style='{TD_STYLE}{' white-space: nowrap;' if i in NOWRAP else ''}'>{c}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    more = (
        f"<div style='{MUTED}'>showing the newest {max_rows} of {len(tasks)}</div>"
        if len(tasks) > max_rows and state == "all"
        else ""
    )
    return (
        f"<div style='{BOX_STYLE}'>{summary}<table class='suno-nb-tracker' style='{TABLE_STYLE}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}</div>"
    )


class Tracker(widgets.VBox):
    """Live table of ``rx.tasks()``: title, section, state, elapsed time, code/message, source.

    ``filter`` (ToggleButtons) shows all / pending / succeeded / failed tasks; ``html`` is the
    table widget.  :meth:`refresh` redraws now (tests call it; the widget does not need it).
    :meth:`close` stops the watcher thread and unregisters the callback handler.
    """

    def __init__(
        self, rx: Receiver, *, state: str = "all", tick: float = 1.0, max_rows: int = 200
    ) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        self._rx = rx
        self._tick = float(tick)
        self._max_rows = int(max_rows)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending = False
        self.filter = widgets.ToggleButtons(
            options=list(STATES),
            value=state,
            tooltips=[f"show {s} tasks" for s in STATES],
            style={"button_width": "90px"},
        )
        self.html = widgets.HTML()
        super().__init__(
            children=[self.filter, self.html], layout=widgets.Layout(max_width="1100px")
        )
        self.filter.observe(lambda _c: self.refresh(), names="value")
        rx.on_callback(self._on_event)
        self.refresh()
        self._thread = threading.Thread(
            target=_watch,
            args=(weakref.ref(self), rx, self._stop, self._tick),
            name="suno_nb-tracker",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"Tracker(filter={self.filter.value!r})"

    @property
    def state(self) -> str:
        return self.filter.value

    def refresh(self) -> str:
        """Redraw from ``rx.tasks()`` now and return the HTML shown."""
        # read and show under one lock: a slower, older read never overwrites a newer one
        with self._lock:
            try:
                tasks = self._rx.tasks()
            except Exception as exc:  # e.g. the receiver was stopped and its store closed
                log.debug("tracker: tasks unavailable: %s", exc)
                html = note(
                    "The receiver is stopped; start it again (snb.start_receiver) and "
                    "re-run this cell.",
                    kind="warn",
                )
                self._pending = False
            else:
                self._pending = bool((tasks["state"] == "pending").any()) if len(tasks) else False
                html = render_tasks(tasks, self.filter.value, max_rows=self._max_rows)
            with UPDATE_LOCK:
                self.html.value = html
            return html

    def _on_event(self, event: CallbackEvent) -> None:
        # dispatcher thread, after the result is stored
        self.refresh()

    def close(self) -> None:
        """Stop updating (watcher thread and callback handler) and close the widgets."""
        self._stop.set()
        try:
            self._rx.on_callback(self._on_event, remove=True)
        finally:
            super().close()


def _watch(ref: weakref.ref[Tracker], rx: Receiver, stop: threading.Event, tick: float) -> None:
    """Redraw on store changes (submissions, results) and tick while tasks are pending."""
    seen = -1
    while not stop.is_set():
        widget = ref()
        if widget is None:
            return
        try:
            version = rx.store.version
            if version != seen or widget._pending:
                seen = version
                widget.refresh()
            running = rx.running
        except Exception:
            # keep watching: one bad render must not freeze the table
            log.exception("tracker: redraw failed")
            running = True
            stop.wait(tick)
        if not running:
            widget.refresh()  # show that it stopped
            return
        del widget
        try:
            rx.store.wait_for_change(seen, timeout=tick)
        except Exception:
            return


def tracker(rx: Receiver, **kwargs: Any) -> Tracker:
    """A live table of ``rx``'s tasks that updates itself as callbacks land.

    Keyword arguments go to :class:`Tracker` (``state="pending"`` starts filtered).
    """
    return Tracker(rx, **kwargs)
