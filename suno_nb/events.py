"""The change feed: what the store committed, delivered in order on one thread.

The store's writer publishes one :class:`Change` per committed transaction (a callback
stored, a task submitted, a poll noted, a rating...).  :class:`Feed` hands them to its
subscribers on ONE daemon thread (``suno_nb-dispatch``), in commit order: user handlers
(``rx.on_callback``), the widgets, and anything else that must react.  The same thread runs
timed work (:meth:`Feed.call_later`, :class:`Debounced`: the poller's rounds, widget
redraws), so a receiver needs no other thread for it.  :meth:`Feed.wait` lets a caller's own
thread (``rx.wait``) block until something new was committed.

A subscriber that raises is logged and does not affect the others.  Subscribers must not
wait for the feed themselves (it delivers one thing at a time).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .payloads import Callback

log = logging.getLogger(__name__)

__all__ = [
    "CallbackEvent",
    "CallbackFilter",
    "Change",
    "Debounced",
    "Feed",
    "Handler",
    "MediaEvent",
    "Timer",
]


@dataclass(frozen=True)
class Change:
    """One committed change to the store.

    ``kind``: ``callback`` (a :class:`CallbackEvent`), ``submission``, ``poll`` (a poll was
    noted), ``gave_up``, ``ledger`` (a rating or pick) or ``meta``.
    """

    kind: str
    task_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class CallbackEvent(Change):
    """A stored callback, poll answer or replay: what it did to its task.

    ``verdict`` is ``accepted`` (it changed the task or its tracks) or ``duplicate``.
    """

    kind: str = "callback"
    task_id: str
    state: str  # the task's state after it: pending | running | succeeded | failed | ...
    verdict: str  # accepted | duplicate
    source: str  # callback | poll | replay
    delivery_id: int
    new_track_ids: tuple[str, ...]
    callback: Callback

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    @property
    def stage(self) -> str:
        """The callback's stage (text/first/complete/error/...)."""
        return self.callback.stage

    @property
    def final(self) -> bool:
        """True for a final stage (the task's result), False for text/first and the like."""
        return self.callback.final


@dataclass(frozen=True, kw_only=True)
class MediaEvent(CallbackEvent):
    """A stored WAV or recovery callback (or WAV poll answer), published for the
    *original* task (``task_id``) whose tracks it changed, so the widgets and handlers that
    follow that task see it.  ``job_id``/``job_kind`` (``wav`` | ``recovery``) name the job,
    ``track_ids`` the tracks it changed; ``callback`` is that task's family-shaped view
    (stage ``wav`` or ``recovery``, the changed tracks)."""

    job_id: str
    job_kind: str
    track_ids: tuple[str, ...] = ()


Handler = Callable[[CallbackEvent], object]


class Timer:
    """A pending :meth:`Feed.call_later`; :meth:`cancel` stops it if it has not run."""

    __slots__ = ("cancelled", "due", "fn")

    def __init__(self, due: float, fn: Callable[[], object]) -> None:
        self.due = due
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass(eq=False)
class _Subscriber:
    fn: Callable[[Any], object]
    batch: bool


class Feed:
    """Delivers published changes to subscribers, and runs timers, on one daemon thread."""

    def __init__(self, name: str = "suno_nb-dispatch") -> None:
        self.name = name
        self._cond = threading.Condition()
        self._queue: deque[Change] = deque()
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._subscribers: list[_Subscriber] = []
        self._published = 0
        self._delivered = 0
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    # --- publishing and waiting --------------------------------------------------------

    def publish(self, change: Change) -> None:
        """Queue ``change`` for the subscribers and wake :meth:`wait`; never blocks."""
        with self._cond:
            if self._closed:
                return
            self._published += 1
            self._queue.append(change)
            self._start()
            self._cond.notify_all()

    @property
    def seq(self) -> int:
        """How many changes were published so far (for :meth:`wait`)."""
        return self._published

    def wait(self, seen: int, timeout: float | None) -> int:
        """Block until more than ``seen`` changes were published (or ``timeout`` passes, or
        the feed closes); return :attr:`seq`."""
        with self._cond:
            self._cond.wait_for(lambda: self._published > seen or self._closed, timeout)
            return self._published

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every change published so far was delivered, and every timer job due
        by now has run."""
        with self._cond:
            target, now = self._published, time.monotonic()

            def done() -> bool:
                due = any(due <= now and not t.cancelled for due, _, t in self._timers)
                return self._closed or (self._delivered >= target and not self._busy and not due)

            return self._cond.wait_for(done, timeout)

    # --- subscribers -----------------------------------------------------------------------

    def subscribe(self, fn: Callable[[Any], object], *, batch: bool = False) -> None:
        """Call ``fn(change)`` for every change (``batch=True``: ``fn(list_of_changes)``
        once per burst: whatever queued up while the feed was busy).  Idempotent."""
        with self._cond:
            if all(s.fn != fn for s in self._subscribers):
                self._subscribers = [*self._subscribers, _Subscriber(fn, batch)]

    def unsubscribe(self, fn: Callable[[Any], object]) -> None:
        with self._cond:
            self._subscribers = [s for s in self._subscribers if s.fn != fn]

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    # --- timers ----------------------------------------------------------------------------

    def call_later(self, delay: float, fn: Callable[[], object]) -> Timer:
        """Run ``fn()`` on the feed's thread after ``delay`` seconds (never after close)."""
        timer = Timer(time.monotonic() + max(0.0, delay), fn)
        with self._cond:
            if not self._closed:
                heapq.heappush(self._timers, (timer.due, next(self._order), timer))
                self._start()
                self._cond.notify_all()
        return timer

    def on_thread(self) -> bool:
        """True when called from the feed's own thread (a subscriber or timer job)."""
        return self._thread is threading.current_thread()

    # --- lifecycle -------------------------------------------------------------------------

    def _start(self) -> None:  # under self._cond
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, drop pending timers, end the thread.  Idempotent; safe
        from a subscriber (the thread then ends after it returns)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._timers.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def _next(self) -> tuple[list[Change], list[Timer]] | None:
        """Wait for queued changes or due timers; None once closed and drained."""
        with self._cond:
            while True:
                now = time.monotonic()
                due: list[Timer] = []
                while self._timers and self._timers[0][0] <= now:
                    timer = heapq.heappop(self._timers)[2]
                    if not timer.cancelled:
                        due.append(timer)
                if self._queue or due:
                    changes = list(self._queue)
                    self._queue.clear()
                    self._busy = True
                    return changes, due
                if self._closed:
                    return None
                wait = self._timers[0][0] - now if self._timers else None
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            work = self._next()
            if work is None:
                return
            changes, due = work
            try:
                if changes:
                    self._deliver(changes)
                for timer in due:
                    _guarded(timer.fn, "timer job")
            finally:
                with self._cond:
                    self._delivered += len(changes)
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, changes: list[Change]) -> None:
        subscribers = self._subscribers
        for change in changes:
            for sub in subscribers:
                if not sub.batch:
                    _guarded(sub.fn, "subscriber", change)
        for sub in subscribers:
            if sub.batch:
                _guarded(sub.fn, "subscriber", changes)


def _guarded(fn: Callable[..., object], what: str, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("%s %r raised", what, fn)


class Debounced:
    """Runs ``fn`` on the feed's thread at most once per ``delay`` seconds after a
    :meth:`trigger`: a burst of triggers costs one call (the widgets' redraws)."""

    def __init__(self, feed: Feed, fn: Callable[[], object], delay: float = 0.1) -> None:
        self._feed = feed
        self._fn = fn
        self._delay = delay
        self._lock = threading.Lock()
        self._timer: Timer | None = None

    def trigger(self) -> None:
        with self._lock:
            if self._timer is None:
                self._timer = self._feed.call_later(self._delay, self._run)

    def _run(self) -> None:
        with self._lock:
            self._timer = None
        self._fn()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class CallbackFilter:
    """A user handler on the feed: only callback events that changed their task (and
    replays).  Equal to any other filter of the same function, so it can be removed."""

    def __init__(self, fn: Handler) -> None:
        self.fn = fn

    def __call__(self, change: Change) -> None:
        if isinstance(change, CallbackEvent) and (
            change.verdict == "accepted" or change.source == "replay"
        ):
            self.fn(change)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CallbackFilter) and other.fn == self.fn

    def __hash__(self) -> int:
        return hash(self.fn)
