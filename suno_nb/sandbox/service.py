"""The emulated service behind the sandbox's routes: tasks, validation, credits, bodies.

Transport-free: each operation takes decoded JSON and returns ``(http_status, body)``, so
the HTTP layer (``app.py``) only routes, authenticates and serves bytes.  Timed work
(results after the delay, stage callbacks) is set on the server's loop through a
:class:`~.runtime.Runtime`; callbacks go out through a :class:`~.delivery.CallbackSender`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from . import lyrics
from .delivery import CallbackSender
from .faults import Faults
from .records import Song, SongTrack, TrackRecord
from .runtime import Runtime
from .submit import Submissions
from .validate import DROPPED, Reply, fail, ok

__all__ = ["Reply", "Service", "Song", "SongTrack"]

STAGES = (("text", 1 / 3), ("first", 2 / 3))  # /generate's stages, as fractions of delay


class Service(Submissions):
    """Tasks, credits and faults of one sandbox; thread-safe.

    The submit and status operations are cheap and run on the server's loop; only the
    ``*_bytes`` and :meth:`samples` calls may render audio (about 1 s for 120 s of music),
    so the HTTP layer runs those on a worker thread unless :meth:`peek_file` has them.
    """

    runtime: Runtime | None = None  # set by Sandbox.start()
    sender: CallbackSender | None = None

    # -- submissions ---------------------------------------------------------------------

    def generate(self, body: Any) -> Reply:
        """``POST /api/v1/generate``: staged callbacks text -> first -> complete."""
        reply, task = self._submit_generate(body)
        if task is not None:
            span = task.ready_at - time.monotonic()
            # The stages land where record-info moves to TEXT_SUCCESS and FIRST_SUCCESS.
            for stage, at in STAGES:
                self._later(span * at, partial(self._send_stage, task.task_id, stage))
            self._schedule_completion(task.task_id, span)
        return reply

    def replace_section(self, body: Any) -> Reply:
        """``POST /api/v1/generate/replace-section``."""
        reply, task = self._submit_replace(body)
        if task is not None:
            self._schedule_completion(task.task_id, task.ready_at - time.monotonic())
            if task.faults.drop_connection:
                return DROPPED, reply[1]
        return reply

    def record_info(self, task_id: str) -> Reply:
        """``GET /api/v1/generate/record-info?taskId=``."""
        task_id = task_id.strip()
        if not task_id:
            return fail(400, "taskId: is required")
        data = self.record_data(task_id)
        if data is None:
            return fail(404, f"taskId: no task {task_id!r} was found for this account")
        return ok(data)

    def timestamped_lyrics(self, body: Any) -> Reply:
        """``POST /api/v1/generate/get-timestamped-lyrics`` (see :mod:`.lyrics`)."""
        return lyrics.timestamped_lyrics(self, body)

    def credit(self) -> Reply:
        """``GET /api/v1/generate/credit``: the remaining credits as ``data``."""
        return ok(self.credit_value())

    def set_task_faults(self, task_id: str, faults: Faults) -> None:
        """Replace the faults of a task whose result is not produced yet."""
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise KeyError(f"no sandbox task {task_id!r}")
            if task.state != "pending":
                raise ValueError(
                    f"task {task_id!r} already has its result ({task.state}); set faults "
                    "before the delay runs out (or use inject() before submitting)"
                )
            task.faults = faults
            task.ready_at = task.created + self.delay + faults.extra_delay
            left = task.ready_at - time.monotonic()
        self._schedule_completion(task_id, left)

    # -- timed work (runs on the loop) ---------------------------------------------------

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        if self.runtime is not None:
            self.runtime.call_later(max(0.0, delay), fn)

    def _schedule_completion(self, task_id: str, delay: float) -> None:
        self._later(delay, lambda: self._complete(task_id))

    def _send_stage(self, task_id: str, stage: str) -> None:
        """An intermediate callback of a /generate task that is on its way to success."""
        with self.lock:
            task = self._tasks[task_id]
            faults = task.faults
            if task.state != "pending" or faults.fails or faults.drop:
                return
            body = self.callback_body(task, stage=stage)
            url = task.callback_url
        if url and self.sender is not None:
            self.sender.send(url, body, wrong_signature=faults.wrong_signature)

    def _complete(self, task_id: str) -> None:
        """Produce a task's result (success or its fault's failure) and send the callback."""
        with self.lock:
            task = self._tasks[task_id]
            if task.state != "pending":
                return  # already produced (set_task_faults schedules a second check)
            left = task.ready_at - time.monotonic()
            if left > 0.001:
                self._schedule_completion(task_id, left)  # extra_delay was added later
                return
            faults = task.faults
            task.failure = faults.failure()
            if task.failure is None:
                task.state = "success"
            else:
                task.state = "failed"
                if task.failure.refund:
                    self.credits += task.cost
            body = self.callback_body(
                task, error_form=faults.error_form, failure_stage=faults.failure_stage
            )
            url = task.callback_url
        if url and not faults.drop and self.sender is not None:
            self.sender.send(
                url,
                body,
                copies=1 + faults.duplicates,
                delay=faults.callback_delay,
                wrong_signature=faults.wrong_signature,
            )

    # -- files -------------------------------------------------------------------------

    def _published(self, audio_id: str) -> TrackRecord | None:
        with self.lock:
            track = self._tracks.get(audio_id)
            if track is None:
                return None
            task = self._tasks[track.task_id]
            status = self._status(task, time.monotonic())
            visible = self._visible_tracks(task, status)
            return track if any(t is track for t in visible) else None

    def audio_bytes(self, audio_id: str) -> bytes | None:
        """MP3 of a track whose result is out, or None (may render: blocking)."""
        track = self._published(audio_id)
        return None if track is None else self.audio.mp3(track.recipe)

    def cover_bytes(self, audio_id: str) -> bytes | None:
        """PNG cover of a track whose result is out, or None (may render: blocking)."""
        track = self._published(audio_id)
        return None if track is None else self.audio.cover(track.recipe.base_seed)

    def file_bytes(self, audio_id: str, ext: str) -> bytes | None:
        """``audio_bytes`` for ``"mp3"``, ``cover_bytes`` for ``"png"`` (blocking)."""
        return self.cover_bytes(audio_id) if ext == "png" else self.audio_bytes(audio_id)

    def peek_file(self, audio_id: str, ext: str) -> tuple[bool, bytes | None]:
        """``(published, data)``: whether the track's result is out, and its file if it is
        rendered already (``None`` if not).  Never renders, so never blocks for long."""
        track = self._published(audio_id)
        if track is None:
            return False, None
        if ext == "png":
            return True, self.audio.peek_cover(track.recipe.base_seed)
        return True, self.audio.peek_mp3(track.recipe)

    def samples(self, audio_id: str) -> np.ndarray:
        """Float samples of any known track (before MP3 encoding)."""
        with self.lock:
            track = self._tracks.get(audio_id)
        if track is None:
            raise KeyError(f"no sandbox track {audio_id!r}")
        return self.audio.samples(track.recipe)
