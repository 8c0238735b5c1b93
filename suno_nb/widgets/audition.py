"""Audition: an A/B player for the takes of replace-section tasks (an ``anywidget``).

Original and takes share one time axis with the section marked; one transport plays one
track at a time and switches between them at the same position (buttons, keys 1-9), loops
the section with pre-roll, seeks on click, and can match the tracks' loudness.  Each take
shows its metrics (:func:`suno_nb.analysis.compare_takes`) and takes stars, a pick and a note
(written to the receiver's store: ``rx.rate`` / ``rx.pick``).

The browser code is ``static/audition.js``; wavesurfer.js 7 is vendored beside it and sent
by the kernel when a view asks (nothing from a CDN, nothing big in the saved widget state).
Audio of loopback/sandbox URLs and of anything in the cache is sent through the widget
channel as message buffers when a view asks for it, so players keep working after the
sandbox stops and on remote kernels; public URLs are streamed by the browser.  No audio is
in a synced trait, so none is saved into the notebook.  Front ends without a widget manager
show a PNG of the waveforms and a text summary instead.

It runs on the receiver's change feed and starts no thread: new results (``rx.subscribe``)
trigger a debounced reload on the receiver's dispatcher thread, which is also where the
slow work runs (building a task's lanes: fetching, decoding and measuring its audio; audio
for a page), so a pick in the browser never blocks the kernel.  Ratings given elsewhere
(``rx.rate`` in a cell) show up too.
"""

from __future__ import annotations

import mimetypes
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import SunoNbError
from ..events import CallbackEvent
from . import _lanes
from ._common import (
    UPDATE_LOCK,
    QuietMixin,
    close_tree,
    current_cell_id,
    fmt_range,
    free_slot,
    log,
    short_id,
    take_slot,
)
from ._feed import FeedJobs

if TYPE_CHECKING:
    from ..events import Change
    from ..session import Receiver
    from .blind import BlindTest

__all__ = ["Audition", "audition", "fragment_url"]

STATIC = Path(__file__).parent / "static"


def esm(name: str) -> str:
    """A widget's front-end module: the shared wavesurfer.js loader (``static/libs.js``)
    followed by the widget's own ``static/<name>``."""
    return (STATIC / "libs.js").read_text() + "\n" + (STATIC / name).read_text()


RELOAD_S = 0.2  # new results are picked up at most this long after they land
EMPTY_MESSAGE = (
    "Nothing to audition yet: no replace-section task has succeeded in this receiver. "
    "Submit one; it shows here when its result lands."
)


#: wavesurfer.js 7.12.12 (npm), vendored unchanged but for a license line; see wavesurfer.LICENSE.
LIBRARIES = ("wavesurfer.esm.js", "wavesurfer.regions.esm.js")


@lru_cache(maxsize=1)
def _libraries() -> list[bytes]:
    """The vendored player code, sent to a page once when its first view asks."""
    return [(STATIC / name).read_bytes() for name in LIBRARIES]


def fragment_url(
    url: str, start: float, end: float, context: float, duration: float | None = None
) -> str:
    """``url#t=a,b`` with ``a = start - context`` (>= 0) and ``b = end + context``
    (<= ``duration`` when known): a media fragment that plays the section with context."""
    a = max(0.0, float(start) - context)
    b = float(end) + context
    if duration and duration > 0:
        b = min(b, float(duration))
    base = url.split("#", 1)[0]
    return f"{base}#t={a:.2f},{b:.2f}"


class Audition(QuietMixin, anywidget.AnyWidget):
    """Original vs takes of a finished replace-section task, in one player.

    ``task_id`` (synced) is the task shown; ``tasks`` the picker's choices (a batch when
    ``task_ids`` was given, else this session's finished replace tasks, newest first).
    ``ratings`` mirrors the store's ledger for the shown task.  ``preroll``, ``loop`` and
    ``level_match`` are the transport's settings.  New results are picked up by themselves.
    """

    _esm = esm("audition.js")
    _css = STATIC / "audition.css"

    task_id = traitlets.Unicode("").tag(sync=True)
    tasks: traitlets.List[dict[str, str]] = traitlets.List().tag(sync=True)
    heading = traitlets.Dict().tag(sync=True)
    section: traitlets.List[float] = traitlets.List().tag(sync=True)
    lanes: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    ratings = traitlets.Dict().tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    feedback = traitlets.Unicode("").tag(sync=True)
    preroll = traitlets.Float(3.0).tag(sync=True)
    loop = traitlets.Bool(False).tag(sync=True)
    level_match = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        rx: Receiver,
        task_id: str | None = None,
        *,
        task_ids: list[str] | None = None,
        context: float = 3.0,
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0 s, got {context!r}")
        super().__init__(preroll=float(context))
        self._rx = rx
        self._batch = [str(t) for t in task_ids] if task_ids else None
        self._wanted = task_id or (self._batch[0] if self._batch else None)
        self._sources: dict[str, str | Path] = {}  # lane key -> archived file or URL
        self._notes: dict[str, str] = {}  # notes typed before any stars were given
        self._jobs = FeedJobs(rx.feed, "audition")
        self._reload = self._jobs.debounced(self.refresh, RELOAD_S)
        self._rerate = self._jobs.debounced(self._reload_ratings, RELOAD_S)
        self._lock = threading.RLock()
        self.on_msg(self._on_msg)
        self.observe(self._on_task, names="task_id")
        # Re-running an audition cell closes the audition that cell made before (with its
        # models and subscription); auditions in different cells live side by side.
        cell = current_cell_id()
        self._slot = f"audition:{cell}" if cell else None
        if self._slot is not None:
            take_slot(self._slot, rx, self, cell)
        rx.subscribe(self._on_changes)
        self.refresh()

    def __repr__(self) -> str:
        # Stable (no ids, no numbers measured): nbval compares it in saved notebooks.
        return f"Audition(context={self.preroll:g} s)"

    def summary(self) -> str:
        """One line on what is shown: title, section, original and takes."""
        if not self.lanes:
            return self.message or "nothing to show yet"
        takes = sum(1 for lane in self.lanes if lane["kind"] == "take")
        has_original = any(lane["kind"] == "original" for lane in self.lanes)
        what = ("original + " if has_original else "") + f"{takes} take{'s' * (takes != 1)}"
        sec = fmt_range(*self.section) if len(self.section) == 2 else "—"
        batch = f" (1 of {len(self.tasks)} tasks)" if len(self.tasks) > 1 else ""
        return f"{self.heading.get('title', '')!r} {sec}: {what}{batch}"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view, plus a PNG and text for front ends without a widget manager."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if data is None:
            return bundle
        data["text/plain"] = repr(self)  # without a widget manager the PNG is shown instead
        try:
            png = _lanes.fallback_png(self.lanes, self.section)
        except Exception as exc:  # a picture is a nicety: never fail the display for it
            log.debug("audition: no static picture: %s", exc)
            png = None
        if png is not None:
            data["image/png"] = png
        return bundle

    def close(self) -> None:
        """Stop listening to the receiver and close the widget (and its layout model)."""
        if self.comm is None and getattr(self, "_finished", False):
            return  # closed already (ipywidgets closes again when the object is collected)
        self._finished = True
        rx, jobs = getattr(self, "_rx", None), getattr(self, "_jobs", None)
        try:
            if rx is not None:
                rx.unsubscribe(self._on_changes)
                slot = getattr(self, "_slot", None)
                if slot is not None:
                    free_slot(slot, rx, self)
        finally:
            if jobs is not None:
                jobs.close()
            close_tree(self)

    # --- which task ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the task list; show the wanted task, else keep the current one, else the
        newest finished one."""
        with self._lock:  # one refresh/show at a time: the kernel's and the feed's
            self._refresh()

    def _refresh(self) -> None:
        try:
            options = _lanes.choices(self._rx, self._batch)
        except SunoNbError as exc:
            log.debug("audition: tasks unavailable: %s", exc)
            return
        ids = [o["task_id"] for o in options]
        target = self._wanted or (self.task_id if self.task_id in ids else None)
        target = target or (ids[0] if ids else None)
        with UPDATE_LOCK:
            if options != self.tasks:
                self.tasks = options
        if target is None:
            self._set(heading={}, section=[], lanes=[], message=EMPTY_MESSAGE)
        elif target != self.task_id or not self.lanes:
            self.show(target)

    def show(self, task_id: str) -> None:
        """Show ``task_id`` (fetches its audio into the cache and measures its takes)."""
        with self._lock:
            data = _lanes.build(self._rx, task_id)
            self._wanted = task_id if not data["lanes"] else None
            self._sources = data.pop("sources")
            with UPDATE_LOCK, self._quietly():  # our own change: _on_task must not show again
                self.task_id = task_id
            self._set(**data, ratings=self._ratings(task_id), feedback="")

    def _set(self, **values: Any) -> None:
        with UPDATE_LOCK, self.hold_sync():
            for name, value in values.items():
                setattr(self, name, value)

    def _on_task(self, change: dict[str, Any]) -> None:
        # the picker in the browser changed task_id (kernel thread): its lanes are built on
        # the dispatcher thread (audio is fetched and measured), the kernel stays free
        if self._is_quiet() or not change["new"]:
            return
        task_id = str(change["new"])
        with UPDATE_LOCK:
            self.feedback = f"Loading task {short_id(task_id)}…"
        self._jobs.post(lambda: self._show_picked(task_id))

    def _show_picked(self, task_id: str) -> None:
        if self.task_id == task_id:  # not if another task was picked meanwhile
            self.show(task_id)

    def _on_changes(self, changes: list[Change]) -> None:
        # dispatcher thread: new results reload (debounced); ledger changes of the task
        # shown (a rating given in a cell) redraw the stars
        for change in changes:
            if isinstance(change, CallbackEvent):
                new = change.verdict == "accepted" or change.source == "replay"
                if new and (change.state == "succeeded" or change.task_id == self._wanted):
                    self._reload.trigger()
            elif change.kind == "ledger" and change.task_id == self.task_id:
                self._rerate.trigger()

    def _reload_ratings(self) -> None:
        ratings = self._ratings(self.task_id)
        with UPDATE_LOCK:
            self.ratings = ratings

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the work started so far (reloads after new results, a task picked in
        the page, audio asked for) is done; not from a feed handler."""
        return self._jobs.wait_idle(timeout)

    # --- messages from the browser (kernel thread) ---------------------------------------------

    def _on_msg(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "libs":
                self.send({"type": "libs"}, buffers=_libraries())
            elif kind == "audio":  # may fetch: on the dispatcher thread, not the kernel's
                key = str(content.get("key"))
                self._jobs.post(lambda: self._guarded(kind, lambda: self._send_audio(key)))
            elif kind in ("rate", "note", "pick"):
                self._rate(kind, content)
        except Exception as exc:  # a message from the page must never kill the widget
            self._failed(kind, exc)

    def _guarded(self, kind: str | None, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:
            self._failed(kind, exc)

    def _failed(self, kind: str | None, exc: Exception) -> None:
        log.warning("audition: %s message failed: %s", kind, exc)
        with UPDATE_LOCK:
            self.feedback = f"Could not do that: {exc}"

    def _send_audio(self, key: str) -> None:
        url = self._sources.get(key)
        label = next((lane["label"] for lane in self.lanes if lane["key"] == key), key)
        if not url:
            self.send({"type": "audio_error", "key": key, "message": f"{label}: no audio URL."})
            return
        from .. import audio

        try:  # an archived file as it is; a URL from the cache (no request when there)
            path = url if isinstance(url, Path) else audio.fetch(url)
        except SunoNbError as exc:
            message = _lanes.plain_error(_lanes.what(label), exc)
            self.send({"type": "audio_error", "key": key, "message": message})
            return
        mime = mimetypes.guess_type(path.name)[0] or "audio/mpeg"
        self.send({"type": "audio", "key": key, "mime": mime}, buffers=[path.read_bytes()])

    def _rate(self, kind: str, content: dict[str, Any]) -> None:
        track_id = str(content.get("track_id") or "")
        task_id = self.task_id
        current = self.ratings.get(track_id, {})
        if kind == "rate":
            note = self._notes.pop(track_id, None)
            self._rx.rate(track_id, int(content.get("stars", 0)), note, task_id=task_id)
            feedback = f"Rated take {short_id(track_id)}: {int(content['stars'])} ★"
        elif kind == "note":
            note = str(content.get("note") or "")
            if current.get("stars"):
                self._rx.rate(track_id, int(current["stars"]), note, task_id=task_id)
                feedback = "Note saved."
            else:
                self._notes[track_id] = note
                feedback = "Note kept: it is saved with the stars you give this take."
        elif content.get("picked", True):
            self._rx.pick(track_id, task_id=task_id)
            feedback = f"Keeping take {short_id(track_id)}."
        else:
            self._rx.unpick(task_id)
            feedback = "No take kept for this task."
        self._set(feedback=feedback, ratings=self._ratings(task_id))

    def _ratings(self, task_id: str) -> dict[str, dict[str, Any]]:
        store = getattr(self._rx, "store", None)
        if store is None or not hasattr(store, "ratings"):
            return {}
        try:
            rows = store.ratings(task_id)
        except SunoNbError:
            return {}
        return {
            str(r["track_id"]): {
                "stars": r.get("stars"),
                "note": r.get("note") or "",
                "picked": bool(r.get("picked")),
            }
            for r in rows
        }


def audition(
    rx: Receiver,
    task_id: str | None = None,
    *,
    task_ids: list[str] | None = None,
    context: float = 3.0,
    blind: bool = False,
    **blind_options: Any,
) -> Audition | BlindTest:
    """Listen to replace-section takes against their original, A/B, at the same position.

    ``task_id`` defaults to the newest finished replace task of this session (a picker
    lists the others); ``task_ids`` makes a batch view that steps through those tasks in
    order.  ``context`` is the seconds of pre-roll (and post-roll) when looping the section;
    the player can change it.  ``blind=True``: a blind test of those takes and the original
    instead (:class:`~suno_nb.widgets.blind.BlindTest`: ``mode="abx"`` or ``"rating"``,
    ``trials``, ``pair``, ``seed``).
    """
    if blind:
        from .blind import BlindTest

        return BlindTest(rx, task_id, task_ids=task_ids, context=context, **blind_options)
    if blind_options:
        raise TypeError(f"{', '.join(blind_options)}: only with blind=True")
    return Audition(rx, task_id, task_ids=task_ids, context=context)
