"""One request throttle per provider host and API key, shared by the whole process.

Both hosted providers accept about 20 requests per 10 s per API key and refuse the rest
(sunoapi.org with code 430, kie.ai with 429); kie.ai also allows at most 3 record-info
queries a second per task.  The numbers live in the contract (``Provider.rate_limit``).
Every client, poller and widget that talks to one host with one key asks the same
:class:`Throttle` before each request, so together they stay under the limit:

>>> from suno_nb.contract import get_provider
>>> gate = for_key("https://api.sunoapi.org", "sk-example", get_provider().rate_limit)
>>> gate is for_key("https://api.sunoapi.org", "sk-example", get_provider().rate_limit)
True

The registry is keyed by ``(base URL, sha256 of the key)``: the key itself is never kept,
shown or logged.  A wait longer than :data:`LOG_WAIT_S` is logged once at INFO on
``suno_nb.throttle`` (``rx.log()`` keeps it) and is readable meanwhile from
:func:`status` (or pushed to :func:`watch` callbacks), for a widget's status line.

Proportion: a notebook sends tens of requests, so a sliding window of request times per
key (a deque of at most ``requests`` floats) is exact and small.  Nothing is reserved while
a caller sleeps: a slot is taken only when it is free, under the lock, so an interrupted
wait (KeyboardInterrupt in the kernel) leaves the window as it was.

Floors: imports only the contract.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from .contract import RateLimit

__all__ = ["LOG_WAIT_S", "Throttle", "Window", "for_key", "register", "registry", "status", "watch"]

log = logging.getLogger(__name__)

LOG_WAIT_S = 0.5  # shorter waits pass silently
# Requests take time in transit, so the service may count one a little later than we sent
# it: keep each request in our window this much longer than the documented period.
MARGIN_S = 0.25
_TASKS_KEPT = 1000  # per-task windows kept at most (oldest dropped): a notebook polls tens

Clock = Callable[[], float]
Sleep = Callable[[float], object]


class Window:
    """At most ``count`` events in any ``period`` seconds (not locked: the owner locks)."""

    def __init__(self, count: int, period: float) -> None:
        self.count = count
        self.period = period
        self._times: deque[float] = deque(maxlen=count)

    def wait(self, now: float) -> float:
        """Seconds until one more event fits (0.0: now)."""
        if len(self._times) < self.count:
            return 0.0
        return max(0.0, self._times[0] + self.period - now)

    def add(self, now: float) -> None:
        self._times.append(now)

    def times(self) -> list[float]:
        """The newest ``count`` event times, oldest first."""
        return list(self._times)

    def recent(self, now: float) -> int:
        """Events inside the window ending ``now``."""
        return sum(1 for t in self._times if t > now - self.period)


def _task_window(per_s: float, margin: float) -> Window:
    # "3 per second" -> 3 in any 1 s; "0.5 per second" -> 1 in any 2 s.
    count = max(1, math.floor(per_s))
    return Window(count, count / per_s + margin)


class Throttle:
    """The request limit of one host and key: :meth:`acquire` before each request.

    ``limit`` is the provider's :class:`~suno_nb.contract.RateLimit`; ``name`` says whose
    limit it is in log lines (never the key).  ``clock`` (monotonic seconds) and ``sleep``
    are injectable, e.g. for tests that must not wait.  Thread-safe.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        name: str = "the service",
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        margin: float = MARGIN_S,
    ) -> None:
        if not isinstance(limit, RateLimit):
            raise TypeError(f"limit must be a suno_nb.contract.RateLimit, got {limit!r}")
        if margin < 0:
            raise ValueError(f"margin must be >= 0 s, got {margin!r}")
        self.limit = limit
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._margin = float(margin)
        self._lock = threading.Lock()
        self._window = Window(limit.requests, limit.per_s + self._margin)
        self._tasks: dict[str, Window] = {}
        self._held_until = 0.0  # the service asked us to pause (Retry-After) until then
        self._waiting: dict[int, str] = {}  # thread id -> what it waits for

    def _take(self, task: str | None) -> tuple[float, str]:
        """Take a slot now (0.0) or say how long until one may be free, and why."""
        with self._lock:
            now = self._clock()
            why, wait = "", 0.0
            held = self._held_until - now
            if held > 0:
                why, wait = "the service asked to wait (Retry-After)", held
            key_wait = self._window.wait(now)
            if key_wait > wait:
                why, wait = f"{self.name} allows {self.limit.describe()}", key_wait
            per_task = self.limit.per_task_poll_per_s
            tw = None
            if task is not None and per_task is not None:
                tw = self._tasks.pop(task, None) or _task_window(per_task, self._margin)
                self._tasks[task] = tw  # re-inserted: the dict stays in last-use order
                while len(self._tasks) > _TASKS_KEPT:
                    del self._tasks[next(iter(self._tasks))]
                task_wait = tw.wait(now)
                if task_wait > wait:
                    why = f"{self.name} allows {per_task:g} record-info queries per s per task"
                    wait = task_wait
            if wait > 0:
                return wait, why
            self._window.add(now)
            if tw is not None:
                tw.add(now)
            return 0.0, ""

    def acquire(self, *, task: str | None = None, what: str = "a request") -> float:
        """Block until a request may go out and count it; return the seconds waited.

        ``task``: a record-info poll's task id (the per-task limit applies when the
        provider states one).  ``what`` names the request in the log line."""
        started = self._clock()
        logged = False
        me = threading.get_ident()
        try:
            while True:
                wait, why = self._take(task)
                if wait <= 0:
                    return self._clock() - started
                if wait > LOG_WAIT_S and not logged:
                    logged = True
                    log.info("waiting %.1f s before %s: %s", wait, what, why)
                with self._lock:
                    self._waiting[me] = f"waiting {wait:.1f} s before {what}: {why}"
                _changed()
                self._sleep(wait)
        finally:
            # Also on KeyboardInterrupt: nothing was reserved, only the status line to clear.
            with self._lock:
                had = self._waiting.pop(me, None)
            if had is not None:
                _changed()

    def set_limit(self, limit: RateLimit) -> None:
        """Follow another limit from now on (the requests already counted stay counted)."""
        with self._lock:
            window = Window(limit.requests, limit.per_s + self._margin)
            for t in self._window.times():
                window.add(t)
            self.limit, self._window = limit, window
            self._tasks.clear()

    def hold(self, seconds: float) -> None:
        """The service said to wait ``seconds`` (a rate-limit refusal's Retry-After): every
        request of this host and key waits that long."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + max(0.0, seconds))

    def status(self) -> str | None:
        """What a caller is waiting for now, or None."""
        with self._lock:
            return next(iter(self._waiting.values()), None)

    def __repr__(self) -> str:
        with self._lock:
            used = self._window.recent(self._clock())
        return (
            f"<Throttle {self.name}: {used}/{self.limit.requests} in the last "
            f"{self.limit.per_s:g} s>"
        )


# --- the process-wide registry -----------------------------------------------------------


def _fingerprint(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


class _Registry:
    """(base URL, sha256 of the key) -> Throttle.  Its repr names hosts, never keys."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._throttles: dict[tuple[str, str], Throttle] = {}
        self._pinned: set[tuple[str, str]] = set()  # put there by register()
        self._watchers: list[Callable[[str | None], object]] = []

    def get(
        self, base_url: str, api_key: str, limit: RateLimit | None, name: str
    ) -> Throttle | None:
        k = (base_url.rstrip("/"), _fingerprint(api_key))
        with self._lock:
            gate = self._throttles.get(k)
            if k in self._pinned or limit is None:
                return gate if k in self._pinned else None
            if gate is None:
                gate = self._throttles[k] = Throttle(limit, name=name)
            elif gate.limit != limit:
                # A copied Provider with another rate for the same host and key: the newest
                # contract wins (the requests already counted stay counted).
                log.info("rate limit for %s is now %s", name, limit.describe())
                gate.set_limit(limit)
            return gate

    def put(self, base_url: str, api_key: str, gate: Throttle | None) -> None:
        k = (base_url.rstrip("/"), _fingerprint(api_key))
        with self._lock:
            if gate is None:
                self._throttles.pop(k, None)
                self._pinned.discard(k)
            else:
                self._throttles[k] = gate
                self._pinned.add(k)

    def all(self) -> list[Throttle]:
        with self._lock:
            return list(self._throttles.values())

    def __repr__(self) -> str:
        gates = self.all()
        return f"<throttle registry: {', '.join(map(repr, gates)) or 'empty'}>"


_REGISTRY = _Registry()


def for_key(
    base_url: str, api_key: str, limit: RateLimit | None, *, name: str | None = None
) -> Throttle | None:
    """The one :class:`Throttle` of ``base_url`` + ``api_key`` in this process (made on
    first use with ``limit``); None when ``limit`` is None (no limit known)."""
    return _REGISTRY.get(base_url, api_key, limit, name or base_url.rstrip("/"))


def register(base_url: str, api_key: str, gate: Throttle | None) -> None:
    """Use ``gate`` for every request to ``base_url`` with ``api_key`` from now on (e.g. a
    stricter limit for a key another program shares, or a test clock); None forgets it."""
    if gate is not None and not isinstance(gate, Throttle):
        raise TypeError(f"gate must be a Throttle or None, got {type(gate).__name__}")
    _REGISTRY.put(base_url, api_key, gate)


def registry() -> _Registry:
    """The process's throttles (its repr lists hosts and recent use, never a key)."""
    return _REGISTRY


def status() -> str | None:
    """What some request in this process is waiting for now (for a status line), or None."""
    for gate in _REGISTRY.all():
        text = gate.status()
        if text is not None:
            return text
    return None


def watch(fn: Callable[[str | None], object], *, remove: bool = False) -> None:
    """Call ``fn(status())`` whenever a wait starts or ends (on the waiting thread; keep it
    short, e.g. set a widget trait).  ``remove=True`` unregisters it."""
    with _REGISTRY._lock:
        if remove:
            if fn in _REGISTRY._watchers:
                _REGISTRY._watchers.remove(fn)
        elif fn not in _REGISTRY._watchers:
            _REGISTRY._watchers.append(fn)


def _changed() -> None:
    with _REGISTRY._lock:
        watchers = list(_REGISTRY._watchers)
    if not watchers:
        return
    text = status()
    for fn in watchers:
        try:
            fn(text)
        except Exception:  # a watcher's bug must not break a request
            log.exception("throttle watcher %r failed", fn)
