"""The hosted API's request limits, as the sandbox enforces them.

The provider's :class:`~suno_nb.contract.RateLimit` says how many requests one API key may
send in any window (both hosts: 20 per 10 s) and, for kie.ai, how many record-info queries
a second one task may get (3).  Past either, the sandbox refuses like the provider:
sunoapi.org with HTTP 200 and the JSON code 430 "calls too frequent", kie.ai with HTTP 429
(JSON code 429), both with a ``Retry-After`` in whole seconds.  A refused request is not
counted.  The sandbox accepts one key, so one window per sandbox is one window per key.

:meth:`Limiter.admitted` keeps the time of every request let through, so a test can check
what the "service" saw; ``clock`` is injectable to share a test's fake clock with the
client's :class:`~suno_nb.throttle.Throttle`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..contract import RateLimit
from ..throttle import Window
from .validate import Reply

__all__ = ["Limiter", "refusal"]

_TASKS_KEPT = 1000


class Limiter:
    """Counts the requests of the sandbox's key against ``limit``; thread-safe."""

    def __init__(self, limit: RateLimit, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(limit, RateLimit):
            raise TypeError(f"limit must be a suno_nb.contract.RateLimit, got {limit!r}")
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._window = Window(limit.requests, limit.per_s)
        self._tasks: dict[str, Window] = {}
        self._admitted: list[float] = []
        self._refused = 0

    def check(self, task: str | None = None) -> float | None:
        """Count one request (None) or refuse it: the seconds until it would fit.

        ``task``: a record-info query's task id (the per-task limit, when stated)."""
        per_task = self.limit.per_task_poll_per_s
        with self._lock:
            now = self._clock()
            wait = self._window.wait(now)
            tw = None
            if task is not None and per_task is not None:
                tw = self._tasks.get(task)
                if tw is None:
                    count = max(1, math.floor(per_task))
                    tw = self._tasks[task] = Window(count, count / per_task)
                    if len(self._tasks) > _TASKS_KEPT:
                        del self._tasks[next(iter(self._tasks))]
                wait = max(wait, tw.wait(now))
            if wait > 0:
                self._refused += 1
                return wait
            self._window.add(now)
            if tw is not None:
                tw.add(now)
            self._admitted.append(now)
            return None

    def admitted(self) -> list[float]:
        """The clock time of every request let through, oldest first."""
        with self._lock:
            return list(self._admitted)

    @property
    def refused(self) -> int:
        """How many requests were refused for the rate limit."""
        with self._lock:
            return self._refused

    def __repr__(self) -> str:
        let = len(self.admitted())
        return f"<Limiter {self.limit.describe()}: {let} let through, {self.refused} refused>"


def refusal(limit: RateLimit, wait: float) -> tuple[Reply, dict[str, str]]:
    """The provider's answer to one request too many: ((HTTP status, body), headers)."""
    headers = {"Retry-After": str(max(1, math.ceil(wait)))}
    body = {"code": limit.code, "msg": f"calls too frequent: {limit.describe()}"}
    # sunoapi.org puts the refusal in the JSON code of an HTTP 200; a 429 is HTTP's own too.
    return (429 if limit.code == 429 else 200, body), headers
