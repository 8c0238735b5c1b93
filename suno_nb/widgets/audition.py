"""Audition: an A/B player for the takes of replace-section tasks (an ``anywidget``).

Original and takes (and a master, when there is one) share one time axis with the section
marked; one transport plays one track at a time and switches between them at the same
position (buttons, keys 1-9), loops the section with pre-roll, seeks on click, and can match
the tracks' loudness.  Each take shows its metrics (:func:`suno_nb.analysis.compare_takes`)
and takes stars, a pick and a note (written to the receiver's store: ``rx.rate`` /
``rx.pick``); a difference view shows a spectrogram of take minus original (``_diff``).

The browser code is ``static/audition*.js``; wavesurfer.js 7 is vendored beside it and sent
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
(``rx.rate`` in a cell) show up too.  A new take of the shown task is added to it; a new
task is announced (``fresh``) and the page moves to it when nothing is playing.  When the
receiver stops, the rating controls are disabled with the one line that brings it back.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import SunoNbError
from ..events import CallbackEvent
from . import _lanes
from ._audition_io import AuditionMessages, ledger_problem, offline_line, ratings_of
from ._common import (
    STATIC,
    UPDATE_LOCK,
    QuietMixin,
    close_player,
    current_cell_id,
    esm,
    fmt_range,
    log,
    short_id,
    take_slot,
)
from ._feed import FeedJobs
from ._lanes import fragment_url

if TYPE_CHECKING:
    from ..events import Change
    from ..master import Master
    from ..session import Receiver
    from .blind import BlindTest

__all__ = ["Audition", "audition", "fragment_url"]

#: The audition's front end, in the order it is concatenated (one module for anywidget).
MODULES = (
    "audition_ui.js",
    "audition_ratings.js",
    "audition_diff.js",
    "audition_header.js",
    "audition.js",
)


RELOAD_S = 0.2  # new results are picked up at most this long after they land
KEEP_BUILT = 16  # tasks whose lanes stay in memory (switching back needs no receiver)
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


class Audition(QuietMixin, AuditionMessages, anywidget.AnyWidget):
    """Original vs takes of a finished replace-section task, in one player.

    ``task_id`` (synced) is the task shown; ``tasks`` the picker's choices (a batch when
    ``task_ids`` was given, else this session's finished replace tasks, newest first), each
    with its section, prompt, time, state and takes.  ``ratings`` mirrors the store's ledger
    for the shown task.  ``preroll`` (0..30 s), ``loop`` and ``level_match`` are the
    transport's settings.  ``live`` is False when ratings cannot be kept (receiver stopped,
    store closed); ``offline`` then says how to bring the receiver back.  ``fresh``: tasks
    whose results arrived since and are not shown.
    """

    _esm = esm(*MODULES)
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
    live = traitlets.Bool(True).tag(sync=True)
    offline = traitlets.Unicode("").tag(sync=True)
    fresh: traitlets.List[str] = traitlets.List().tag(sync=True)

    def __init__(
        self,
        rx: Receiver,
        task_id: str | None = None,
        *,
        task_ids: list[str] | None = None,
        context: float = 3.0,
        master: Master | None = None,
    ) -> None:
        if not 0 <= context <= 30:
            raise ValueError(f"context must be 0..30 s, got {context!r}")
        super().__init__(preroll=float(context))
        self._rx = rx
        self._master = master
        self._batch = [str(t) for t in task_ids] if task_ids else None
        self._wanted = task_id or (self._batch[0] if self._batch else None)
        self._sources: dict[str, str | Path] = {}  # lane key -> archived file or URL
        self._blobs: dict[str, tuple[bytes, str]] = {}  # lane key -> audio made in the kernel
        self._notes: dict[str, str] = {}  # notes typed before any stars were given
        self._built: dict[str, dict[str, Any]] = {}  # task id -> what show() set
        self._seen: list[str] | None = None  # task ids of the last refresh
        self._encoded: tuple[str, bytes, str] | None = None  # (master id, bytes, mime)
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
        if ledger_problem(rx) is None:
            rx.subscribe(self._on_changes)
        self.refresh()

    @traitlets.validate("preroll")
    def _valid_preroll(self, proposal: dict[str, Any]) -> float:
        # the page's box may send anything typed (-5): the value used is what it shows
        return min(30.0, max(0.0, float(proposal["value"])))

    def __repr__(self) -> str:
        # Stable (no ids, no numbers measured): nbval compares it in saved notebooks.
        return f"Audition(context={self.preroll:g} s)"

    def summary(self) -> str:
        """One line on what is shown: title, section, original, takes (and a master)."""
        if not self.lanes:
            return self.message or "nothing to show yet"
        takes = sum(1 for lane in self.lanes if lane["kind"] == "take")
        has_original = any(lane["kind"] == "original" for lane in self.lanes)
        has_master = any(lane["kind"] == "master" for lane in self.lanes)
        what = ("original + " if has_original else "") + f"{takes} take{'s' * (takes != 1)}"
        what += " + master" if has_master else ""
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
        close_player(self)

    def _libs(self) -> list[bytes]:
        return _libraries()

    # --- which task ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the task list; show the wanted task, else keep the current one (with any
        new takes), else the newest finished one.  Tasks that arrived since go to ``fresh``."""
        with self._lock:  # one refresh/show at a time: the kernel's and the feed's
            self._refresh()

    def _refresh(self) -> None:
        why = ledger_problem(self._rx)
        if why is not None:
            self._go_offline(why)
        try:
            options = _lanes.choices(self._rx, self._batch)
        except SunoNbError as exc:
            log.debug("audition: tasks unavailable: %s", exc)
            if not self.lanes:
                self._set(message=f"Nothing can be shown: {exc}.")
            return
        ids = [o["task_id"] for o in options]
        shown = self.task_id if self.lanes else None
        target = self._wanted or (shown if shown in ids else None) or (ids[0] if ids else None)
        fresh = [t for t in self.fresh if t in ids and t != target]
        if self._seen is not None:
            fresh += [t for t in ids if t not in self._seen and t != target and t not in fresh]
        self._seen = ids
        with UPDATE_LOCK, self.hold_sync():
            if options != self.tasks:
                self.tasks = options
            if fresh != self.fresh:
                self.fresh = fresh
        if target is None:
            self._set(heading={}, section=[], lanes=[], message=EMPTY_MESSAGE)
        elif target != self.task_id or not self.lanes or self._new_takes(target, options):
            self.show(target)

    def _new_takes(self, task_id: str, options: list[dict[str, str]]) -> bool:
        listed = next((o.get("takes") for o in options if o["task_id"] == task_id), None)
        shown = sum(1 for lane in self.lanes if lane["kind"] == "take")
        return listed is not None and listed != str(shown)

    def show(self, task_id: str) -> None:
        """Show ``task_id`` (fetches its audio into the cache and measures its takes)."""
        with self._lock:
            if ledger_problem(self._rx) is not None and task_id in self._built:
                data = dict(self._built[task_id])  # the store is closed: what was built
            else:
                data = _lanes.build(self._rx, task_id)
                self._add_master(data, task_id)
            self._wanted = task_id if not data["lanes"] else None
            if data["lanes"]:
                self._built.pop(task_id, None)
                self._built[task_id] = dict(data)
                while len(self._built) > KEEP_BUILT:
                    self._built.pop(next(iter(self._built)))
            self._sources = dict(data["sources"])
            self._blobs = dict(data.get("blobs", {}))
            values = {k: v for k, v in data.items() if k not in ("sources", "blobs", "parent")}
            with UPDATE_LOCK, self._quietly():  # our own change: _on_task must not show again
                self.task_id = task_id
            fresh = [t for t in self.fresh if t != task_id]
            self._set(**values, ratings=ratings_of(self._rx, task_id), feedback="", fresh=fresh)

    def show_master(self, master: Master | None) -> None:
        """Show ``master`` (from ``rx.master()``) as the "master" lane of every task of its
        original, from now on; ``None`` goes back to the newest saved one, if any."""
        with self._lock:
            self._master = master
            self._built.clear()
            if self.task_id and self.lanes:
                self.show(self.task_id)

    def _add_master(self, data: dict[str, Any], task_id: str) -> None:
        if not data["lanes"]:
            return
        try:
            source = _lanes.master_source(self._rx, self._master, data.get("parent", ""))
        except Exception as exc:  # a master that cannot be read must not hide the takes
            log.warning("audition: master not shown: %s", exc)
            return
        if source is None:
            return
        samples, sr, master_id = source
        if self._encoded is None or self._encoded[0] != master_id:
            self._encoded = (master_id, *_lanes.encode_for_page(samples, sr))
        sections = getattr(self._master, "sections", None) if self._master else None
        data["lanes"].append(_lanes.master_lane(samples, sr, master_id, sections, task_id))
        data["blobs"] = {"master": self._encoded[1:]}

    def _set(self, **values: Any) -> None:
        with UPDATE_LOCK, self.hold_sync():
            for name, value in values.items():
                setattr(self, name, value)

    def _go_offline(self, why: str) -> None:
        line = offline_line(self._rx, why)
        if self.live or self.offline != line:
            self._set(live=False, offline=line)

    def _on_task(self, change: dict[str, Any]) -> None:
        # the picker in the browser changed task_id (kernel thread): its lanes are built on
        # the dispatcher thread (audio is fetched and measured), the kernel stays free
        if self._is_quiet() or not change["new"]:
            return
        task_id, before = str(change["new"]), str(change["old"] or "")
        why = ledger_problem(self._rx)
        if why is None:
            with UPDATE_LOCK:
                self.feedback = f"Loading task {short_id(task_id)}…"
            if self._jobs.post(lambda: self._show_picked(task_id)):
                return
            why = "the receiver is stopped"
        if task_id in self._built:  # shown before: no receiver needed
            self.show(task_id)
            return
        # Nothing can load it: the picker goes back to the task the player plays.
        self._go_offline(why)
        with UPDATE_LOCK, self._quietly():
            self.task_id = before
        self._set(feedback=f"Task {short_id(task_id)} cannot be loaded: {why}.")

    def _show_picked(self, task_id: str) -> None:
        if self.task_id == task_id:  # not if another task was picked meanwhile
            self.show(task_id)

    def _on_changes(self, changes: list[Change]) -> None:
        # dispatcher thread: new results reload (debounced); ledger changes of the task
        # shown (a rating given in a cell) redraw the stars; a stop disables the ratings
        for change in changes:
            if isinstance(change, CallbackEvent):
                new = change.verdict == "accepted" or change.source == "replay"
                if new and (change.state == "succeeded" or change.task_id == self._wanted):
                    self._reload.trigger()
            elif change.kind == "ledger" and change.task_id == self.task_id:
                self._rerate.trigger()
            elif change.kind == "stopped":
                self._go_offline("the receiver is stopped")

    def _reload_ratings(self) -> None:
        ratings = ratings_of(self._rx, self.task_id)
        with UPDATE_LOCK:
            self.ratings = ratings

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the work started so far (reloads after new results, a task picked in
        the page, audio asked for) is done; not from a feed handler."""
        return self._jobs.wait_idle(timeout)


def audition(
    rx: Receiver,
    task_id: str | None = None,
    *,
    task_ids: list[str] | None = None,
    context: float = 3.0,
    master: Master | None = None,
    blind: bool = False,
    **blind_options: Any,
) -> Audition | BlindTest:
    """Listen to replace-section takes against their original, A/B, at the same position.

    ``task_id`` defaults to the newest finished replace task of this session (a picker
    lists the others); ``task_ids`` makes a batch view that steps through those tasks in
    order.  ``context`` is the seconds of pre-roll (and post-roll) when looping the section;
    the player can change it.  ``master`` (from ``rx.master()``) is shown as one more lane
    against the original; without it, the newest saved master of the task's original in
    ``rx.masters()`` is, if any.  ``blind=True``: a blind test of those takes and the
    original instead (:class:`~suno_nb.widgets.blind.BlindTest`: ``mode="abx"`` or
    ``"rating"``, ``trials``, ``pair``, ``seed``).
    """
    if blind:
        from .blind import BlindTest

        return BlindTest(rx, task_id, task_ids=task_ids, context=context, **blind_options)
    if blind_options:
        raise TypeError(f"{', '.join(blind_options)}: only with blind=True")
    return Audition(rx, task_id, task_ids=task_ids, context=context, master=master)
