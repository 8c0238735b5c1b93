"""A widget's share of the receiver's change feed: its background work, with no thread.

The receiver runs ONE dispatcher thread (:class:`suno_nb.events.Feed`); the widgets run all
their timed and background work there: one-off jobs (:meth:`FeedJobs.post`: a lookup, a
submit, audio for a page) and debounced redraws (:meth:`FeedJobs.debounced`, built on
:class:`suno_nb.events.Debounced`).  What this adds is bookkeeping: :meth:`FeedJobs.wait_idle`
(everything posted or triggered so far has run: what tests and scripts wait on) and
:meth:`FeedJobs.close` (nothing that has not started will run).  A job that raises is logged
to ``suno_nb.widgets`` (kept by ``rx.log()``), never printed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import ReceiverError
from ..events import Debounced, Feed, Timer
from ._common import log

__all__ = ["FeedJobs", "Redraw"]


class FeedJobs:
    """The jobs one widget runs on ``feed``'s dispatcher thread (see the module docstring)."""

    def __init__(self, feed: Feed, name: str) -> None:
        self.feed = feed
        self.name = name
        self._cond = threading.Condition()
        self._posted = 0
        self._done = 0
        self._timers: set[Timer] = set()
        self._redraws: list[Redraw] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran or the feed closed (the receiver stopped)."""
        return self._closed or self.feed.closed

    def post(self, fn: Callable[[], object], delay: float = 0.0) -> bool:
        """Run ``fn()`` once on the dispatcher thread after ``delay`` s; False (and nothing
        will run) when this or the feed is closed."""
        with self._cond:
            if self.closed:
                return False
            self._posted += 1
            timer: Timer | None = None

            def run() -> None:
                with self._cond:
                    if timer is not None:
                        self._timers.discard(timer)
                    cancelled = self._closed
                try:
                    if not cancelled:
                        fn()
                except Exception:
                    log.exception("%s: background job failed", self.name)
                finally:
                    with self._cond:
                        self._done += 1
                        self._cond.notify_all()

            timer = self.feed.call_later(delay, run)
            self._timers.add(timer)
        return True

    def debounced(self, fn: Callable[[], object], delay: float) -> Redraw:
        """A :class:`Redraw` of ``fn``: each :meth:`Redraw.trigger` makes ``fn`` run on the
        dispatcher thread, at most once per ``delay`` s however many triggers come."""
        redraw = Redraw(self, fn, delay)
        with self._cond:
            self._redraws.append(redraw)
        return redraw

    def _idle(self) -> bool:  # under self._cond
        return self._done >= self._posted and not any(r.pending for r in self._redraws)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every change committed so far reached the subscribers and every job
        posted or triggered so far has run; False if ``timeout`` s pass first.  Not from a
        feed job (it would wait for itself)."""
        if self.feed.on_thread():
            raise ReceiverError(f"{self.name}: wait_idle() cannot run on the dispatcher thread")
        deadline = time.monotonic() + timeout
        while True:
            if not self.feed.join(max(0.0, deadline - time.monotonic())):
                return False
            with self._cond:
                if not self._cond.wait_for(
                    lambda: self._idle() or self.closed, max(0.0, deadline - time.monotonic())
                ):
                    return False
                if self.closed:
                    return True
            # a job may have committed something whose subscribers queue more work
            if self.feed.join(0) and self._settled():
                return True

    def _settled(self) -> bool:
        with self._cond:
            return self._idle()

    def close(self) -> None:
        """Cancel every job and redraw that has not started (one under way finishes)."""
        with self._cond:
            self._closed = True
            timers, self._timers = self._timers, set()
            redraws = list(self._redraws)
            self._cond.notify_all()
        for timer in timers:
            timer.cancel()
        for redraw in redraws:
            redraw.cancel()


class Redraw:
    """A debounced job of :class:`FeedJobs` (see :meth:`FeedJobs.debounced`)."""

    def __init__(self, jobs: FeedJobs, fn: Callable[[], object], delay: float) -> None:
        self._jobs = jobs
        self._fn = fn
        self._debounced = Debounced(jobs.feed, self._run, delay)
        self._triggered = 0
        self._ran = 0

    @property
    def pending(self) -> bool:
        """True while a trigger has not been followed by a run."""
        return self._ran < self._triggered

    def trigger(self) -> None:
        """Ask for a run (coalesced with the other triggers of the next ``delay`` s)."""
        with self._jobs._cond:
            if self._jobs.closed:
                return
            self._triggered += 1
        self._debounced.trigger()

    def _run(self) -> None:
        with self._jobs._cond:
            seen = self._triggered  # every trigger up to here sees what this run draws
            cancelled = self._jobs._closed
        try:
            if not cancelled:
                self._fn()
        except Exception:
            log.exception("%s: redraw failed", self._jobs.name)
        finally:
            with self._jobs._cond:
                self._ran = max(self._ran, seen)
                self._jobs._cond.notify_all()

    def cancel(self) -> None:
        self._debounced.cancel()
        with self._jobs._cond:
            self._ran = self._triggered
            self._jobs._cond.notify_all()
