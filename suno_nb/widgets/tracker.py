"""The tracker: a live table of this session's tasks.

By default it shows the tasks submitted (or first seen) since the receiver started plus any
still open; the "history" toggle shows every task in the store.  One light daemon thread
watches ``rx.store.version``: a burst of commits (submissions, callbacks, poll results)
causes one re-read of this session's task rows (by key, a track count only for tasks that
changed) and one redraw; while open tasks are shown it re-renders once a ``tick`` from what it
has (elapsed time), without reading the store.  It only sets the HTML widgets' ``value``,
under the package's update lock; nothing is printed.  Re-running the cell closes the
previous tracker of the same receiver.
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
    free_slot,
    history_toggle,
    log,
    note,
    short_id,
    take_slot,
    text,
)

if TYPE_CHECKING:
    from ..session import Receiver

__all__ = ["STATES", "Tracker", "render_tasks", "tracker"]

STATES = ("all", "pending", "succeeded", "failed")
# what each filter button shows: "pending" = still open, "failed" = failed or given up
SHOWN = {
    "pending": ("pending", "running"),
    "succeeded": ("succeeded",),
    "failed": ("failed", "unknown", "expired"),
}
OPEN = SHOWN["pending"]
GAVE_UP = ("unknown", "expired")
NOWRAP = {0, 2, 3, 4, 7}  # task, section, state, elapsed, source
DEBOUNCE_S = 0.08  # a burst of commits closer together than this is drawn once
MAX_DEBOUNCE_S = 0.5  # ... but a continuous stream is still drawn twice a second


def _elapsed(row: dict[str, Any], now: float) -> str:
    start = row.get("submitted_at") or row.get("first_seen_at")
    if not start:
        return "—"
    if row["state"] in OPEN:
        return fmt_elapsed(now - start)
    done = row.get("completed_at")
    return fmt_elapsed(done - start) if done else "—"


def _detail(row: dict[str, Any]) -> str:
    state = row["state"]
    if state in OPEN:
        service = text(row.get("service_status"))
        extra = f" (service: {esc(service)})" if service else ""
        return f"<span style='{MUTED}'>waiting for the callback…{extra}</span>"
    if state in GAVE_UP:
        return esc(text(row.get("reason")) or "no longer polled")
    code, message = text(row.get("code")), text(row.get("error")) or text(row.get("msg"))
    return esc(" · ".join(p for p in (code, message) if p)) or "—"


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
    shown = rows if state == "all" else [r for r in rows if r["state"] in SHOWN[state]]
    if not shown:
        return summary + note(f"No {esc(state)} tasks.", kind="info")
    shown = shown[::-1][:max_rows]
    heads = ["Task", "Title", "Section", "State", "Elapsed", "Tracks", "Code / message", "Source"]
    head = "".join(f"<th style='{TH_STYLE}'>{h}</th>" for h in heads)
    body = []
    for row in shown:
        task_id, row_state = str(row["task_id"]), str(row["state"])
        source = text(row.get("source")) or ("—" if row_state in OPEN else "")
        cells = [
            f"<code title='{esc(task_id)}'>{esc(short_id(task_id, 10))}</code>",
            esc(text(row.get("title"), "—")),
            esc(fmt_range(row.get("infill_start_s"), row.get("infill_end_s"))),
            badge(row_state),
            esc(_elapsed(row, now)),
            str(int(row.get("tracks") or 0)),
            _detail(row),
            esc(source),
        ]
        body.append(
            f"<tr data-task-id='{esc(task_id)}' data-state='{esc(row_state)}'>"
            + "".join(
                f"<td style='{TD_STYLE}{' white-space: nowrap;' if i in NOWRAP else ''}'>{c}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    more = (
        f"<div style='{MUTED}'>showing the newest {max_rows} of {len(rows)}</div>"
        if len(rows) > max_rows and state == "all"
        else ""
    )
    return (
        f"<div style='{BOX_STYLE}'>{summary}<table class='suno-nb-tracker' style='{TABLE_STYLE}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}</div>"
    )


class Tracker(widgets.VBox):
    """Live table of this session's tasks: title, section, state, elapsed, code/message, source.

    ``filter`` (ToggleButtons) shows all / pending / succeeded / failed tasks; ``history``
    (ToggleButton) adds the tasks from before this receiver started; ``html`` is the table,
    ``status`` a line for what the user must know (receiver stopped, store trouble).
    :meth:`refresh` re-reads and redraws now (the widget does not need it).  :meth:`close`
    stops the watcher thread.  One tracker per receiver is live: a new one closes the old.
    """

    def __init__(
        self,
        rx: Receiver,
        *,
        state: str = "all",
        tick: float = 1.0,
        max_rows: int = 200,
        history: bool = False,
    ) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        self._rx = rx
        self._tick = min(float(tick), 1.0)
        self._max_rows = int(max_rows)
        self._stop = threading.Event()
        self._lock = threading.RLock()  # read + draw as one: an older draw never wins
        self._rows: list[dict[str, Any]] = []
        self._tracks: dict[str, tuple[Any, int, str | None]] = {}
        self._hidden = 0
        self._problem: str | None = None
        self.reads = 0  # store re-reads so far (tests check bursts are drawn once)
        self.filter = widgets.ToggleButtons(
            options=list(STATES),
            value=state,
            tooltips=["every task", "still open", "succeeded", "failed or given up"],
            style={"button_width": "90px"},
        )
        self.history = history_toggle(history, "show tasks")
        self.html = widgets.HTML()
        self.status = widgets.HTML()
        super().__init__(
            children=[widgets.HBox([self.filter, self.history]), self.html, self.status],
            layout=widgets.Layout(max_width="1100px"),
        )
        self.filter.observe(lambda _c: self._render(), names="value")
        self.history.observe(lambda _c: self.refresh(), names="value")
        take_slot("tracker", rx, self)
        seen = self._version()
        self.refresh()
        self._thread = threading.Thread(
            target=_watch,
            args=(weakref.ref(self), rx, self._stop, self._tick, seen),
            name="suno_nb-tracker",
            daemon=True,
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"Tracker(filter={self.filter.value!r})"

    @property
    def state(self) -> str:
        return self.filter.value

    @property
    def task_ids(self) -> list[str]:
        """The task ids the current scope holds (oldest first), whatever the filter."""
        return [str(r["task_id"]) for r in self._rows]

    def _version(self) -> int:
        try:
            return self._rx.store.version
        except Exception:
            return -1

    # --- reading (by key) and drawing -----------------------------------------------------------

    def _reload(self) -> None:
        store = self._rx.store
        rows = self._rx.session_tasks(history=self.history.value)
        self.reads += 1
        self._hidden = 0 if self.history.value else max(0, store.counts()["tasks"] - len(rows))
        for row in rows[-self._max_rows :]:
            task_id = row["task_id"]
            mark = (row.get("updated_at"), row["state"])
            known = self._tracks.get(task_id)
            if known is None or known[0] != mark:
                tracks = store.tracks_of(task_id) if row["state"] not in OPEN else []
                title = next((t["title"] for t in tracks if t.get("title")), None)
                known = (mark, len(tracks), title)
                self._tracks[task_id] = known
            row["tracks"], row["title"] = known[1], row.get("title") or known[2]
        self._rows = rows

    def refresh(self) -> str:
        """Re-read this session's tasks and redraw now; return the table's HTML."""
        with self._lock:
            try:
                self._reload()
            except Exception as exc:  # e.g. the receiver was stopped and its store closed
                log.debug("tracker: tasks unavailable: %s", exc)
                self._problem = None if not self._rx.running else f"cannot read the store: {exc}"
            else:
                self._problem = None
            return self._render()

    def _render(self) -> str:
        with self._lock:
            return self._draw()

    def _draw(self) -> str:
        running = self._rx.running
        html = render_tasks(
            self._rows,
            self.filter.value,
            max_rows=self._max_rows,
            live=running,
            hidden=self._hidden,
        )
        if not running:
            status = note(
                "The receiver is stopped: this table no longer updates. Start it again "
                "(<code>snb.start_receiver()</code>) and re-run this cell.",
                kind="warn",
            )
        elif self._problem:
            status = note(esc(self._problem), kind="error")
        else:
            status = ""
        with UPDATE_LOCK:
            if self.html.value != html:
                self.html.value = html
            if self.status.value != status:
                self.status.value = status
        return html

    @property
    def _open_shown(self) -> bool:
        return any(r["state"] in OPEN for r in self._rows)

    def close(self) -> None:
        """Stop updating (the watcher thread ends within a tick) and close the widgets."""
        self._stop.set()
        free_slot("tracker", self._rx, self)
        super().close()


def _watch(
    ref: weakref.ref[Tracker], rx: Receiver, stop: threading.Event, tick: float, seen: int
) -> None:
    """Redraw once per burst of store commits, and tick the elapsed time of open tasks."""
    while not stop.is_set():
        widget = ref()
        if widget is None:
            return
        if not rx.running:
            widget._render()  # keep the table; say it no longer updates
            return
        del widget  # never keep a closed, forgotten widget alive while waiting
        try:
            version = rx.store.wait_for_change(seen, timeout=tick)
            if version != seen:
                started = time.monotonic()  # let the burst finish: one read, one redraw
                while not stop.wait(DEBOUNCE_S) and time.monotonic() - started < MAX_DEBOUNCE_S:
                    latest = rx.store.version
                    if latest == version:
                        break
                    version = latest
        except Exception:
            version = seen  # the store closed under us: the next turn sees rx stopped
            stop.wait(tick)
        widget = ref()
        if widget is None or stop.is_set():
            return
        try:
            if version != seen:
                seen = version
                widget.refresh()
            elif widget._open_shown:
                widget._render()  # elapsed time only, from what is already read
        except Exception:
            log.exception("tracker: redraw failed")  # kept by rx.log(), never printed
        del widget


def tracker(rx: Receiver, **kwargs: Any) -> Tracker:
    """A live table of ``rx``'s tasks of this session that updates itself as results land.

    Keyword arguments go to :class:`Tracker` (``state="pending"`` starts filtered,
    ``history=True`` starts with earlier sessions' tasks shown).  Re-running the cell
    replaces the previous tracker of ``rx`` (its thread ends).
    """
    return Tracker(rx, **kwargs)
