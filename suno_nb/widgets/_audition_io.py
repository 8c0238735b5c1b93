"""The audition's messages from the page: audio, ratings, the difference view; and whether
the receiver can still keep a rating.

Ratings go to the receiver's store.  When the receiver is stopped (or its store closed, or
the file replaced) nothing can be kept: the controls are disabled in the page (trait
``live``) with one line (``offline``) saying how to bring the receiver back, and a click that
still arrives is answered with that line, never with a claim that something was saved.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SunoNbError
from . import _lanes
from ._common import UPDATE_LOCK, log, short_id


def ledger_problem(rx: Any) -> str | None:
    """Why ratings cannot be kept now ("the receiver is stopped", the store's problem), or
    None when they can."""
    if not getattr(rx, "running", True):
        return "the receiver is stopped"
    store = getattr(rx, "store", None)
    try:
        problem = getattr(store, "problem", None)
    except Exception as exc:  # a store that cannot even say: nothing can be kept either
        return str(exc)
    return str(problem) if problem else None


def offline_line(rx: Any, why: str) -> str:
    """The one line that says ratings are off and how to bring the receiver back."""
    store = getattr(rx, "store", None)
    path = getattr(store, "path", None)
    where = f'"{path}"' if path and path != ":memory:" else "..."
    return (
        f"Ratings are off: {why}. To rate again run "
        f"rx = snb.start_receiver({where}) and snb.widgets.audition(rx)."
    )


class AuditionMessages:
    """Mixin of :class:`~suno_nb.widgets.audition.Audition`: what the page asks for."""

    _rx: Any
    _jobs: Any
    _sources: dict[str, str | Path]  # lane key -> archived file or URL
    _blobs: dict[str, tuple[bytes, str]]
    _notes: dict[str, str]
    lanes: list[dict[str, Any]]
    section: list[float]
    task_id: str
    ratings: dict[str, Any]

    feedback: str

    if TYPE_CHECKING:  # provided by the widget class (anywidget's send, the audition's own)

        def send(self, content: Any, buffers: Any = None) -> None: ...
        def _set(self, **values: Any) -> None: ...
        def _libs(self) -> list[bytes]: ...

    def _on_msg(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "libs":
                self.send({"type": "libs"}, buffers=self._libs())
            elif kind == "ping":  # the page checks that the kernel still hears it
                self.send({"type": "pong", "n": content.get("n")})
            elif kind in ("audio", "diff"):  # fetches, measures: on the dispatcher thread
                key = str(content.get("key"))
                work = self._send_audio if kind == "audio" else self._send_diff
                if not self._jobs.post(lambda: self._guarded(kind, lambda: work(key))):
                    self._guarded(kind, lambda: work(key))  # no feed (stopped): here, now
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

    def _label(self, key: str) -> str:
        return next((lane["label"] for lane in self.lanes if lane["key"] == key), key)

    def _send_audio(self, key: str) -> None:
        if key in self._blobs:  # made in the kernel (a master): no URL to fetch
            data, mime = self._blobs[key]
            self.send({"type": "audio", "key": key, "mime": mime}, buffers=[data])
            return
        url = self._sources.get(key)
        label = self._label(key)
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

    def _send_diff(self, key: str) -> None:
        """The difference view of lane ``key`` against the original, as a PNG."""
        from ._diff import difference, difference_png

        lane = next((x for x in self.lanes if x["key"] == key), None)
        try:
            if lane is None or lane["kind"] == "original":
                raise ValueError("pick a take (or the master) to compare with the original")
            if len(self.section) != 2:
                raise ValueError("this task has no section to look at")
            original = self._samples("original")
            take = self._samples(key)
            d = difference(
                original[0], take[0], original[1], *self.section, offset_s=lane["offset_s"]
            )
            png = difference_png(d, label=lane["label"])
        except (SunoNbError, ValueError, KeyError) as exc:
            self.send({"type": "diff_error", "key": key, "message": f"No difference view: {exc}"})
            return
        inside = d.level(*self.section)
        outside = max(d.level(d.window[0], self.section[0]), d.level(self.section[1], d.window[1]))
        caption = (
            f"{lane['label']} − original: {inside:.0f} dB inside the section, "
            f"{outside:.0f} dB around it (−80 = identical)"
        )
        self.send({"type": "diff", "key": key, "caption": caption}, buffers=[png])

    def _samples(self, key: str) -> tuple[Any, int]:
        from .. import audio

        if key in self._blobs:
            return audio.decode(self._blobs[key][0])
        url = self._sources.get(key)
        if not url:
            raise KeyError(f"{self._label(key)} has no audio")
        return audio.load(url)

    def _rate(self, kind: str, content: dict[str, Any]) -> None:
        track_id = str(content.get("track_id") or "")
        task_id = self.task_id
        why = ledger_problem(self._rx)
        if why is not None:  # nothing can be kept: say so, change nothing, claim nothing
            line = offline_line(self._rx, why)
            self._set(live=False, offline=line, feedback=f"Not saved. {line}")
            return
        current = self.ratings.get(track_id, {})
        if kind == "rate":
            note = content.get("note") or self._notes.pop(track_id, None)
            self._rx.rate(track_id, int(content.get("stars", 0)), note, task_id=task_id)
            feedback = f"Rated take {short_id(track_id)}: {int(content['stars'])} ★"
        elif kind == "note":
            note = str(content.get("note") or "")
            if current.get("stars"):
                self._rx.rate(track_id, int(current["stars"]), note, task_id=task_id)
                feedback = "Note saved."
            else:  # the store keeps notes with stars: held here until they come
                self._notes[track_id] = note
                feedback = "Note not saved yet: give this take stars and it is saved with them."
        elif content.get("picked", True):
            self._rx.pick(track_id, task_id=task_id)
            feedback = f"Keeping take {short_id(track_id)}."
        else:
            self._rx.unpick(task_id)
            feedback = "No take kept for this task."
        self._set(feedback=feedback, ratings=ratings_of(self._rx, task_id))


def ratings_of(rx: Any, task_id: str) -> dict[str, dict[str, Any]]:
    """The store's ledger for ``task_id``: track id -> stars, note, picked."""
    store = getattr(rx, "store", None)
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
