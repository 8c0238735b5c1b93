"""The emulated service behind the sandbox's routes: tasks, validation, credits, bodies.

Transport-free: each operation takes decoded JSON and returns ``(http_status, body)``, so
the HTTP layer (``server.py``) only routes, authenticates and serves bytes.  Timed work
(results after the delay, callbacks) goes through a :class:`~.delivery.Scheduler`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..contract import Provider
from .bodies import Bodies
from .delivery import CallbackSender, Scheduler
from .faults import Faults
from .records import AudioCache, Song, SongTrack, TaskRecord, TrackRecord
from .submit import Submissions
from .validate import Reply, code_of, fail, ok

__all__ = ["Reply", "Service", "Song", "SongTrack"]


# --- the service --------------------------------------------------------------------------


class Service(Bodies, Submissions):
    """Tasks, credits and faults of one sandbox; thread-safe."""

    def __init__(
        self,
        *,
        credits: float,
        delay: float,
        tracks_per_task: int,
        seed: int,
        sample_rate: int,
        cost_generate: float,
        cost_replace: float,
        faults: Faults | None,
        provider: Provider,
    ) -> None:
        self.provider = provider
        self.lock = threading.RLock()
        self.base_url = ""
        self.scheduler: Scheduler | None = None
        self.sender: CallbackSender | None = None
        self.credits = float(credits)
        self.delay = float(delay)
        self.tracks_per_task = tracks_per_task
        self.seed = seed
        self.cost_generate = float(cost_generate)
        self.cost_replace = float(cost_replace)
        self.default_faults = faults
        self.audio = AudioCache(sample_rate)
        self._rng = random.Random(seed)
        self._counter = itertools.count()
        self._tasks: dict[str, TaskRecord] = {}
        self._tracks: dict[str, TrackRecord] = {}
        self._injected: deque[list[Any]] = deque()  # [Faults, remaining count]

    # -- faults ------------------------------------------------------------------------

    def inject(self, faults: Faults, count: int) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self.lock:
            self._injected.append([faults, count])

    def _next_faults(self) -> Faults:
        with self.lock:
            if self._injected:
                entry = self._injected[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    self._injected.popleft()
                return entry[0]
            return self.default_faults or Faults()

    def set_task_faults(self, task_id: str, faults: Faults) -> None:
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

    def record_info(self, task_id: str) -> Reply:
        """``GET /api/v1/generate/record-info?taskId=``."""
        task_id = task_id.strip()
        if not task_id:
            return fail(400, "taskId: is required")
        data = self.record_data(task_id)
        if data is None:
            return fail(404, f"taskId: no task {task_id!r} was found for this account")
        return ok(data)

    def credit(self) -> Reply:
        """``GET /api/v1/generate/credit``: the remaining credits as ``data``."""
        return ok(self.credit_value())

    # -- task creation -----------------------------------------------------------------

    def _new_task(
        self,
        *,
        kind: str,
        param: dict[str, Any],
        parent_music_id: str,
        callback_url: str | None,
        cost: float,
        faults: Faults,
        tracks: Callable[[str, str], list[TrackRecord]],
        finished: bool = False,
    ) -> TaskRecord:
        now = time.monotonic()
        task_id = uuid.uuid4().hex  # unique across sandboxes in one process
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        task = TaskRecord(
            task_id=task_id,
            kind=kind,
            param=param,
            parent_music_id=parent_music_id,
            callback_url=callback_url,
            cost=cost,
            created=now,
            ready_at=now + (0.0 if finished else self.delay + faults.extra_delay),
            faults=faults,
            state="success" if finished else "pending",
        )
        task.tracks = tracks(task_id, created)
        self._tasks[task_id] = task
        for t in task.tracks:
            self._tracks[t.id] = t
        return task

    def _charge(self, cost: float, endpoint: str) -> Reply | None:
        if self.credits + 1e-9 < cost:
            # 402 on replace-section, 429 on the other endpoints: the endpoint's table says.
            return fail(
                code_of(self.provider, endpoint, "credits", 429),
                f"Insufficient credits: {self.credits:g} left and this task costs {cost:g}. "
                "Please top up to continue.",
            )
        self.credits = round(self.credits - cost, 6)
        return None

    def credit_value(self) -> float | int:
        with self.lock:
            c = round(self.credits, 2)
        return int(c) if float(c).is_integer() else c

    # -- results -----------------------------------------------------------------------

    def _schedule_completion(self, task_id: str, delay: float) -> None:
        if self.scheduler is not None:
            self.scheduler.call_later(max(0.0, delay), lambda: self._complete(task_id))

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
        """MP3 of a track whose result is out, or None."""
        track = self._published(audio_id)
        return None if track is None else self.audio.mp3(track.recipe)

    def cover_bytes(self, audio_id: str) -> bytes | None:
        """PNG cover of a track whose result is out, or None."""
        track = self._published(audio_id)
        return None if track is None else self.audio.cover(track.recipe.base_seed)

    def samples(self, audio_id: str) -> np.ndarray:
        """Float samples of any known track (before MP3 encoding)."""
        with self.lock:
            track = self._tracks.get(audio_id)
        if track is None:
            raise KeyError(f"no sandbox track {audio_id!r}")
        return self.audio.samples(track.recipe)
