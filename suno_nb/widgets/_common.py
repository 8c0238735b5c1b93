"""Shared plumbing of the widgets: one update lock, a latest-job worker, formatting.

Widgets are updated from background threads (the receiver's dispatcher, the tracker's
watcher, the render worker).  Setting traits from several threads at once is not safe
(ipython#7411), so every update made by this package goes through :data:`UPDATE_LOCK`.
Nothing here prints: threads only set traits, and log through ``suno_nb.widgets``.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("suno_nb.widgets")

#: Serialises every widget update made by suno_nb, whatever the thread.
UPDATE_LOCK = threading.RLock()

esc = html.escape


def set_traits(widget: Any, **values: Any) -> None:
    """Set several traits of ``widget`` under :data:`UPDATE_LOCK`, sent as one message."""
    with UPDATE_LOCK, widget.hold_sync():
        for name, value in values.items():
            setattr(widget, name, value)


# --- one live widget of a kind per receiver --------------------------------------------------

_LIVE: weakref.WeakKeyDictionary[Any, dict[str, weakref.ref[Any]]] = weakref.WeakKeyDictionary()
_LIVE_LOCK = threading.Lock()


def take_slot(kind: str, rx: Any, widget: Any) -> None:
    """Make ``widget`` the live ``kind`` widget of ``rx``, closing the previous one.

    Re-running a widget cell must not add a thread and a handler each time: the instance the
    cell made before is closed (its output is being replaced anyway).
    """
    with _LIVE_LOCK:
        slots = _LIVE.setdefault(rx, {})
        old = slots.get(kind)
        slots[kind] = weakref.ref(widget)
    previous = old() if old is not None else None
    if previous is not None and previous is not widget:
        try:
            previous.close()
        except Exception:  # closing an old view must never break the new one
            log.exception("closing the previous %s failed", kind)


def current_cell_id() -> str | None:
    """The id of the notebook cell running now (JupyterLab, Notebook 7 and VS Code send it
    with each execute request), or None outside a notebook cell."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel is a dependency
        return None
    shell = get_ipython()
    get_parent = getattr(shell, "get_parent", None)
    if get_parent is None:
        return None
    try:
        metadata = (get_parent() or {}).get("metadata") or {}
    except Exception:  # an unusual shell: no cell id, no slot
        return None
    cell = metadata.get("cellId") or metadata.get("cell_id")
    return str(cell) if cell else None


def free_slot(kind: str, rx: Any, widget: Any) -> None:
    """Forget ``widget`` as the live ``kind`` widget of ``rx`` (it is being closed)."""
    with _LIVE_LOCK:
        slots = _LIVE.get(rx)
        if slots is not None and slots.get(kind) is not None and slots[kind]() is widget:
            del slots[kind]


def history_toggle(value: bool, what: str) -> Any:
    """The one-click "history" ToggleButton of the session-scoped views: off shows this
    session's tasks (``rx.session_tasks()``), on adds ``what`` from before."""
    import ipywidgets as widgets

    return widgets.ToggleButton(
        value=bool(value),
        description="history",
        icon="history",
        tooltip=f"also {what} from before this receiver started",
        layout=widgets.Layout(width="100px"),
    )


IDLE_EXIT_S = 30.0  # a render worker with nothing to do ends after this long


class LatestWorker:
    """Runs submitted jobs on one daemon thread; only the latest pending job is kept.

    ``submit(fn, delay=0.3)`` replaces any job not yet started and runs ``fn`` once
    ``delay`` seconds have passed without a newer submission (a debounce).  A job that
    raises is logged.  :meth:`wait_idle` blocks until nothing is queued or running.
    """

    def __init__(self, name: str):
        self._name = name
        self._cond = threading.Condition()
        self._job: Callable[[], None] | None = None
        self._due = 0.0
        self._busy = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def submit(self, fn: Callable[[], None], *, delay: float = 0.0) -> None:
        with self._cond:
            if self._stopped:
                return
            self._job = fn
            self._due = time.monotonic() + delay
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if self._job is not None:
                        wait = self._due - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    elif not self._cond.wait(IDLE_EXIT_S) and self._job is None:
                        self._thread = None  # idle: end; the next submit starts a new one
                        return
                if self._stopped:
                    return
                job, self._job, self._busy = self._job, None, True
            try:
                assert job is not None
                job()
            except Exception:
                log.exception("%s: background job failed", self._name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once no job is queued or running; False if ``timeout`` passes first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._job is None and not self._busy, timeout)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._job = None
            self._cond.notify_all()


# --- formatting -------------------------------------------------------------------------------


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(math.isnan(float(x)))
    except (TypeError, ValueError):
        return False


def fmt_clock(seconds: Any) -> str:
    """``m:ss.ss`` (musicians' clock), or an em dash when unknown."""
    if _missing(seconds):
        return "—"
    s = max(0.0, float(seconds))
    minutes = int(s // 60)
    return f"{minutes}:{s - 60 * minutes:05.2f}"


def fmt_range(start: Any, end: Any) -> str:
    """``0:20.00–0:32.00 (12.00 s)``, or an em dash when unknown."""
    if _missing(start) or _missing(end):
        return "—"
    return f"{fmt_clock(start)}–{fmt_clock(end)} ({float(end) - float(start):.2f} s)"


def fmt_elapsed(seconds: Any) -> str:
    """``7 s``, ``3 min 05 s``, ``2 h 03 min``; an em dash when unknown."""
    if _missing(seconds):
        return "—"
    s = max(0, round(float(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def short_id(task_id: Any, n: int = 8) -> str:
    text = "" if _missing(task_id) else str(task_id)
    return text if len(text) <= n + 1 else text[:n] + "…"


def text(value: Any, default: str = "") -> str:
    """``value`` as a string, with None/NaN/NA as ``default``."""
    if value is None:
        return default
    try:
        if value != value:  # NaN, pd.NA raises TypeError
            return default
    except TypeError:
        return default
    return str(value)


BOX_STYLE = "font-family: var(--jp-ui-font-family, sans-serif); font-size: 13px; line-height: 1.45;"
TABLE_STYLE = "border-collapse: collapse; width: 100%; line-height: 1.4; font-size: 13px;"
TH_STYLE = (
    "text-align: left; padding: 4px 8px; border-bottom: 2px solid #9e9e9e; "
    "font-weight: 600; white-space: nowrap;"
)
TD_STYLE = (
    "text-align: left; padding: 4px 8px; border-bottom: 1px solid #e0e0e0; vertical-align: top;"
)
MUTED = "color: #757575;"

STATE_COLORS = {
    "pending": "#b26a00",
    "running": "#1565c0",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "unknown": "#6d4c41",
    "expired": "#616161",
}


def badge(state: str) -> str:
    color = STATE_COLORS.get(state, "#546e7a")
    return (
        f"<span style='background: {color}; color: #fff; border-radius: 9px; "
        f"padding: 1px 8px; font-size: 12px; white-space: nowrap;'>{esc(state)}</span>"
    )


def note(message: str, *, kind: str = "info") -> str:
    """A one-line message box: ``info``, ``ok``, ``warn`` or ``error``."""
    colors = {
        "info": ("#546e7a", "#eceff1"),
        "ok": ("#2e7d32", "#e8f5e9"),
        "warn": ("#8a5a00", "#fff8e1"),
        "error": ("#b71c1c", "#ffebee"),
    }
    fg, bg = colors.get(kind, colors["info"])
    return (
        f"<div style='{BOX_STYLE} color: {fg}; background: {bg}; border-left: 4px solid {fg}; "
        f"padding: 4px 10px; margin: 2px 0;'>{message}</div>"
    )


class QuietMixin:
    """``with self._quietly():`` marks programmatic changes so this thread's observers skip
    them (another thread's genuine user change still goes through)."""

    _quiet_thread: int | None = None

    @contextlib.contextmanager
    def _quietly(self) -> Iterator[None]:
        previous, self._quiet_thread = self._quiet_thread, threading.get_ident()
        try:
            yield
        finally:
            self._quiet_thread = previous

    def _is_quiet(self) -> bool:
        return self._quiet_thread == threading.get_ident()
