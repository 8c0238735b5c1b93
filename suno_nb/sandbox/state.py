"""The sandbox service's state: account, tasks, tracks and faults, behind one lock.

The base of the service's layers (:class:`~.bodies.Bodies` shows it, :class:`~.submit.
Submissions` adds to it, :class:`~.service.Service` times it): they share this one typed
state instead of mixins guessing at each other's attributes.  The lock is held only for
short bookkeeping, never across rendering or the network, so the event loop may take it.
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

from ..contract import Provider
from .faults import Faults
from .records import AudioCache, TaskRecord, TrackRecord
from .validate import Reply, code_of, fail


class State:
    """Tasks, tracks, credits and faults of one sandbox; thread-safe through ``lock``."""

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
        """Apply ``faults`` to the next ``count`` tasks."""
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
                faults: Faults = entry[0]
                return faults
            return self.default_faults or Faults()

    # -- tasks and credits ---------------------------------------------------------------

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
        """Record a task (the caller holds ``lock``)."""
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
        """Take ``cost`` credits, or the endpoint's refusal (the caller holds ``lock``)."""
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
        """The remaining credits as the API shows them (an int when whole)."""
        with self.lock:
            c = round(self.credits, 2)
        return int(c) if float(c).is_integer() else c
