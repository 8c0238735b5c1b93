"""The tracker: a live table of this session's tasks, driven by the receiver's change feed.

By default it shows the tasks submitted (or first seen) since the receiver started plus any
still open; the "history" toggle shows every task in the store.  It subscribes to the
receiver's feed (``rx.subscribe``): a burst of commits (submissions, callbacks, poll
results) triggers one debounced re-read of this session's task rows (by key; tracks only of
tasks that changed) and one redraw, on the receiver's dispatcher thread.  While open tasks
are shown, a timer on the same thread (``rx.feed.call_later``) redraws the elapsed times
once a ``tick`` from what it has, without reading the store.  It starts no thread, only
sets the HTML widgets' ``value`` (under the package's update lock), and prints nothing.
While a request of this process waits for the API's rate limit (:mod:`suno_nb.throttle`)
the status line says what it waits for and how long.

One tracker per receiver is live.  Re-running its cell closes the previous one with every
model it made; a tracker made in another cell replaces it, and the old one says so in its
own output and stops updating.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from .. import throttle
from ._common import (
    UPDATE_LOCK,
    close_tree,
    current_cell_id,
    esc,
    free_slot,
    history_toggle,
    log,
    note,
    take_slot,
)
from ._feed import FeedJobs
from ._table import OPEN, STATES, render_tasks, shown_rows

if TYPE_CHECKING:
    from ..events import Change, Timer
    from ..session import Receiver

__all__ = ["STATES", "Tracker", "render_tasks", "tracker"]

DEBOUNCE_S = 0.08  # a burst of commits is drawn once, at most this long after it began
WATCHED = ("callback", "submission", "poll", "gave_up")  # what changes a task row
REPLACED = (
    "This tracker was replaced by a newer tracker of the same receiver (in another cell) "
    "and no longer updates. Re-run this cell to bring it back here."
)
STOPPED = (
    "The receiver is stopped: this table no longer updates. Start it again "
    "(<code>snb.start_receiver()</code>) and re-run this cell."
)


class Tracker(widgets.VBox):
    """Live table of this session's tasks: title, section, state, elapsed, details, source.

    ``filter`` (ToggleButtons) shows all / pending / succeeded / failed tasks; ``history``
    (ToggleButton) adds the tasks from before this receiver started; ``html`` is the table,
    ``status`` a line for what the user must know (receiver stopped, store trouble, replaced
    by a newer tracker).  :meth:`refresh` re-reads and redraws now (the widget does not need
    it); :meth:`wait_idle` waits until what was committed so far is drawn.  :meth:`close`
    unsubscribes and closes every model the tracker made.
    """

    def __init__(
        self,
        rx: Receiver,
        *,
        state: str = "all",
        tick: float = 1.0,
        max_rows: int = 200,
        history: bool = False,
        batch: Any = None,
    ) -> None:
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}, got {state!r}")
        self._rx = rx
        self._batch = batch  # a snb.run_batch Batch: show only its tasks, of any session
        self._tick = min(float(tick), 1.0)
        self._max_rows = int(max_rows)
        self._lock = threading.RLock()  # read + draw as one: an older draw never wins
        self._rows: list[dict[str, Any]] = []
        self._tracks: dict[str, tuple[Any, int, str | None]] = {}
        self._hidden = 0
        self._problem: str | None = None
        self._throttled: str | None = None  # what a request waits for (the API's rate limit)
        self._live = True
        self._timer: Timer | None = None  # the elapsed-time tick, while open tasks are shown
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
        self._bar = widgets.HBox([self.filter, self.history])
        super().__init__(
            children=[self._bar, self.html, self.status],
            layout=widgets.Layout(max_width="1100px"),
        )
        self.filter.observe(lambda _c: self._render(), names="value")
        self.history.observe(lambda _c: self.refresh(), names="value")
        self._jobs = FeedJobs(rx.feed, "tracker")
        self._redraw = self._jobs.debounced(self._refresh_from_feed, DEBOUNCE_S)
        take_slot("tracker", rx, self, current_cell_id())
        rx.subscribe(self._on_changes)
        throttle.watch(self._on_throttle)
        self.refresh()

    def __repr__(self) -> str:
        return f"Tracker(filter={self.filter.value!r})"

    @property
    def state(self) -> str:
        return str(self.filter.value)

    @property
    def task_ids(self) -> list[str]:
        """The task ids the current scope holds (oldest first), whatever the filter."""
        return [str(r["task_id"]) for r in self._rows]

    @property
    def live(self) -> bool:
        """True while this tracker follows its receiver (not closed, not replaced)."""
        return self._live

    # --- the feed (dispatcher thread) -------------------------------------------------------

    def _on_changes(self, changes: list[Change]) -> None:
        if not self._live:
            return
        if not self._rx.running:
            self._render()  # keep the table; say it no longer updates
        elif any(c.kind in WATCHED for c in changes):
            self._redraw.trigger()

    def _refresh_from_feed(self) -> None:
        if not self._live:
            return
        if self._rx.running:
            self.refresh()
        else:
            self._render()

    def _on_tick(self) -> None:
        with self._lock:
            self._timer = None
            if self._live:
                self._render()  # elapsed times only, from what is already read

    def _update_tick(self) -> None:  # under self._lock
        """Keep one elapsed-time timer pending while open tasks are shown, none otherwise."""
        needed = (
            self._live
            and self._rx.running
            and any(r["state"] in OPEN for r in shown_rows(self._rows, self.state))
        )
        if needed and self._timer is None:
            self._timer = self._rx.feed.call_later(self._tick, self._on_tick)
        elif not needed and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    @property
    def ticking(self) -> bool:
        """True while the elapsed-time redraw is scheduled (only while open tasks are
        shown)."""
        return self._timer is not None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every change committed so far is drawn (not from a feed handler)."""
        return self._jobs.wait_idle(timeout)

    # --- reading (by key) and drawing ---------------------------------------------------------

    def _reload(self) -> None:
        store = self._rx.store
        rows = self._rx.session_tasks(history=self.history.value or self._batch is not None)
        if self._batch is not None:
            mine = set(self._batch.task_ids())
            rows = [r for r in rows if r["task_id"] in mine]
        self.reads += 1
        hidden = self.history.value or self._batch is not None
        self._hidden = 0 if hidden else max(0, store.counts()["tasks"] - len(rows))
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
            if not self._live:
                return str(self.html.value)
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
            if not self._live:
                return str(self.html.value)
            html = self._draw()
            self._update_tick()
            return html

    def _on_throttle(self, text: str | None) -> None:
        """A request of this process started or stopped waiting for the API's rate limit
        (called on the waiting thread): say so in the status line."""
        with self._lock:
            self._throttled = text
            if self._live:
                self._show_status(self._rx.running)

    def _show_status(self, running: bool) -> None:
        if not running:
            status = note(STOPPED, kind="warn")
        elif self._problem:
            status = note(esc(self._problem), kind="error")
        elif self._throttled:
            status = note(esc(self._throttled), kind="info")
        else:
            status = ""
        with UPDATE_LOCK:
            if self.status.value != status:
                self.status.value = status

    def _draw(self) -> str:
        running = self._rx.running
        html = render_tasks(
            self._rows,
            self.state,
            max_rows=self._max_rows,
            live=running,
            hidden=self._hidden,
        )
        with UPDATE_LOCK:
            if self.html.value != html:
                self.html.value = html
        self._show_status(running)
        return html

    # --- lifecycle --------------------------------------------------------------------------

    def _stop(self) -> None:
        """Stop following the receiver: unsubscribe, cancel the tick and pending redraws."""
        with self._lock:
            self._live = False
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self._rx.unsubscribe(self._on_changes)
        throttle.watch(self._on_throttle, remove=True)
        self._jobs.close()

    def retire(self) -> None:
        """A newer tracker (in another cell) replaced this one: stop updating, close every
        model but the note that says so (it stays in this cell's output)."""
        self._stop()
        with self._lock, UPDATE_LOCK:
            self.status.value = note(REPLACED, kind="info")
            dropped = [self._bar, self.html]
            self.children = (self.status,)
        for child in dropped:
            close_tree(child)

    def close(self) -> None:
        """Stop updating and close the tracker with every widget model it made."""
        if self.comm is None and getattr(self, "_finished", False):
            return  # closed already (ipywidgets closes again when the object is collected)
        self._finished = True
        if getattr(self, "_jobs", None) is not None:  # not when __init__ failed early
            self._stop()
            free_slot("tracker", self._rx, self)
        close_tree(self)


def tracker(rx: Receiver, **kwargs: Any) -> Tracker:
    """A live table of ``rx``'s tasks of this session that updates itself as results land.

    Keyword arguments go to :class:`Tracker` (``state="pending"`` starts filtered,
    ``history=True`` starts with earlier sessions' tasks shown, ``batch=b`` shows only the
    tasks of the :func:`~suno_nb.run_batch` batch ``b``).  Re-running the cell
    closes the previous tracker of ``rx``; one in another cell says it was replaced.
    """
    return Tracker(rx, **kwargs)
