"""Shared plumbing of the widgets: one update lock, live slots, closing, formatting.

Widgets are updated from the kernel's thread (a cell, a click) and from the receiver's ONE
dispatcher thread (feed subscribers and jobs, see :mod:`._feed`); they start no thread of
their own.  Setting traits from several threads at once is not safe (ipython#7411), so
every update made by this package goes through :data:`UPDATE_LOCK`.  Nothing here prints:
background work only sets traits, and logs through ``suno_nb.widgets``.  Every colour is a
JupyterLab CSS variable (with a light-theme fallback), so dark themes stay dark.
"""

from __future__ import annotations

import contextlib
import html
import logging
import math
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ipywidgets import Widget

log = logging.getLogger("suno_nb.widgets")

#: Serialises every widget update made by suno_nb, whatever the thread.
UPDATE_LOCK = threading.RLock()

esc = html.escape


def set_traits(widget: Any, **values: Any) -> None:
    """Set several traits of ``widget`` under :data:`UPDATE_LOCK`, sent as one message."""
    with UPDATE_LOCK, widget.hold_sync():
        for name, value in values.items():
            setattr(widget, name, value)


# --- one live widget of a kind per receiver (or per cell), and closing one for good ----------

_LIVE: weakref.WeakKeyDictionary[Any, dict[str, tuple[weakref.ref[Any], str | None]]]
_LIVE = weakref.WeakKeyDictionary()
_RETIRED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], weakref.ref[Any]]]
_RETIRED = weakref.WeakKeyDictionary()
_LIVE_LOCK = threading.Lock()


def take_slot(kind: str, rx: Any, widget: Any, cell: str | None) -> None:
    """Make ``widget`` (made in notebook cell ``cell``) the live ``kind`` widget of ``rx``.

    The previous one is closed for good when it was made in the same cell (the cell is being
    re-run: its output is replaced anyway) or when either cell is unknown; one made in
    another cell is *retired* instead, when it can be (``previous.retire()``: it stops
    updating and says, in its own output, that a newer one replaced it).  A widget retired
    earlier from ``cell`` is closed now: that cell is being re-run.
    """
    with _LIVE_LOCK:
        slots = _LIVE.setdefault(rx, {})
        retired = _RETIRED.setdefault(rx, {})
        old_ref, old_cell = slots.get(kind, (None, None))
        slots[kind] = (weakref.ref(widget), cell)
        stale = retired.pop((kind, cell), None) if cell else None
        previous = old_ref() if old_ref is not None else None
        retire = bool(
            previous is not None
            and cell
            and old_cell
            and old_cell != cell
            and hasattr(previous, "retire")
        )
        if retire and old_cell:
            retired[(kind, old_cell)] = weakref.ref(previous)
    for target, how in (
        (stale() if stale is not None else None, "close"),
        (previous, "retire" if retire else "close"),
    ):
        if target is None or target is widget:
            continue
        try:
            getattr(target, how)()
        except Exception:  # closing an old view must never break the new one
            log.exception("closing the previous %s failed", kind)


def free_slot(kind: str, rx: Any, widget: Any) -> None:
    """Forget ``widget`` as the live (or a retired) ``kind`` widget of ``rx``."""
    with _LIVE_LOCK:
        slots = _LIVE.get(rx)
        if slots is not None and kind in slots and slots[kind][0]() is widget:
            del slots[kind]
        retired = _RETIRED.get(rx) or {}
        for key in [k for k, ref in retired.items() if k[0] == kind and ref() is widget]:
            del retired[key]


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
    except Exception:  # an unusual shell: no cell id
        return None
    cell = metadata.get("cellId") or metadata.get("cell_id")
    return str(cell) if cell else None


def close_tree(widget: Any) -> None:
    """Close ``widget`` and every widget model it holds (children, layout, style...): a
    closed box alone leaves its children's models open in the kernel and the page."""
    seen: set[int] = set()

    def walk(w: Any) -> None:
        if id(w) in seen:
            return
        seen.add(id(w))
        held = []
        for name in w.keys:
            try:
                value = getattr(w, name)
            except Exception:  # a trait that cannot be read any more: nothing to close there
                continue
            for item in value if isinstance(value, (list, tuple)) else (value,):
                if isinstance(item, Widget):
                    held.append(item)
        with UPDATE_LOCK:
            Widget.close(w)  # the model itself (a subclass's close() may call close_tree)
        for item in held:
            walk(item)

    walk(widget)


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


def var(name: str, fallback: str) -> str:
    """A JupyterLab theme variable with its light-theme fallback (other front ends)."""
    return f"var(--jp-{name}, {fallback})"


FG = var("ui-font-color1", "#212121")
MUTED_FG = var("ui-font-color2", "#616161")
BOX_STYLE = (
    f"font-family: {var('ui-font-family', 'sans-serif')}; font-size: 13px; line-height: 1.45; "
    f"color: {FG};"
)
TABLE_STYLE = (
    f"border-collapse: collapse; width: 100%; line-height: 1.4; font-size: 13px; color: {FG};"
)
RULE = var("border-color1", "#bdbdbd")  # the table head's underline
DIVIDER = var("border-color2", "#e0e0e0")  # between rows
TH_STYLE = (
    f"text-align: left; padding: 4px 8px; border-bottom: 2px solid {RULE}; "
    "font-weight: 600; white-space: nowrap;"
)
TD_STYLE = (
    f"text-align: left; padding: 4px 8px; border-bottom: 1px solid {DIVIDER}; vertical-align: top;"
)
MUTED = f"color: {MUTED_FG};"
WARN_FG = var("warn-color0", "#e65100")

# badge backgrounds; the text is the inverse font colour (white on light, black on dark)
STATE_COLORS = {
    "pending": var("warn-color1", "#f57c00"),
    "running": var("brand-color1", "#1976d2"),
    "succeeded": var("success-color1", "#388e3c"),
    "failed": var("error-color1", "#d32f2f"),
    "unknown": var("layout-color4", "#757575"),
    "expired": var("layout-color4", "#757575"),
}


def badge(state: str) -> str:
    color = STATE_COLORS.get(state, var("layout-color4", "#757575"))
    fg = var("ui-inverse-font-color0", "#ffffff")
    return (
        f"<span style='background: {color}; color: {fg}; border-radius: 9px; "
        f"padding: 1px 8px; font-size: 12px; white-space: nowrap;'>{esc(state)}</span>"
    )


NOTE_ACCENTS = {
    "info": var("brand-color1", "#1976d2"),
    "ok": var("success-color1", "#388e3c"),
    "warn": var("warn-color1", "#f57c00"),
    "error": var("error-color1", "#d32f2f"),
}


def note(message: str, *, kind: str = "info") -> str:
    """A one-line message box: ``info``, ``ok``, ``warn`` or ``error``.  Its text and
    background follow the theme; the kind shows as the accent of the left border and a
    faint tint of it (``color-mix``; a plain theme background where that is unknown)."""
    accent = NOTE_ACCENTS.get(kind, NOTE_ACCENTS["info"])
    tint = f"color-mix(in srgb, {accent} 12%, {var('layout-color1', '#ffffff')})"
    return (
        f"<div style='{BOX_STYLE} background: {var('layout-color2', '#eeeeee')}; "
        f"background: {tint}; border-left: 4px solid {accent}; "
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


STATIC = Path(__file__).parent / "static"


def esm(*names: str) -> str:
    """A widget's front-end module: the shared wavesurfer.js loader (``static/libs.js``) and
    DOM helpers (``static/dom.js``), followed by the widget's own ``static/<name>`` files."""
    return "\n".join((STATIC / n).read_text() for n in ("libs.js", "dom.js", *names))


def close_player(widget: Any) -> None:
    """Close a player widget (the audition, the blind test): stop listening to its receiver,
    free its cell's slot, end its feed jobs, close its models.  Idempotent (ipywidgets
    closes again when the object is collected); safe after a failed ``__init__``."""
    if widget.comm is None and getattr(widget, "_finished", False):
        return
    widget._finished = True
    rx, jobs = getattr(widget, "_rx", None), getattr(widget, "_jobs", None)
    try:
        if rx is not None:
            rx.unsubscribe(widget._on_changes)
            slot = getattr(widget, "_slot", None)
            if slot is not None:
                free_slot(slot, rx, widget)
    finally:
        if jobs is not None:
            jobs.close()
        close_tree(widget)
