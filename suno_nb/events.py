"""Callback events and the dispatcher that runs user handlers off the request thread.

Handlers run on one dispatcher thread, in registration order, after the sender has its
acknowledgement.  A handler that raises is logged and does not affect the others.  After
:meth:`Dispatcher.stop` nothing is dispatched any more: a late acknowledgement's event is
dropped silently (the result is stored; only the notification is skipped).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .payloads import Callback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackEvent:
    """What a handler receives: one stored result, from a callback, a poll or a replay."""

    task_id: str
    state: str  # pending | running | succeeded | failed | unknown | expired
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


Handler = Callable[[CallbackEvent], object]


class Dispatcher:
    """Runs handlers for events on a daemon thread, started on first use."""

    def __init__(self, name: str = "suno_nb-dispatch"):
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()
        self._queue: queue.Queue[CallbackEvent | None] = queue.Queue()
        self._name = name
        self._thread: threading.Thread | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self._stopped = False

    def on(self, fn: Handler, remove: bool = False) -> Handler:
        """Register ``fn`` (or unregister it with ``remove=True``); returns ``fn``.

        Returning ``fn`` makes it usable as a decorator (``@dispatcher.on``).
        """
        with self._lock:
            if remove:
                self._handlers = [h for h in self._handlers if h != fn]
            elif fn not in self._handlers:
                self._handlers = [*self._handlers, fn]
        return fn

    @property
    def handlers(self) -> tuple[Handler, ...]:
        return tuple(self._handlers)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def dispatch(self, event: CallbackEvent) -> bool:
        """Queue ``event`` for the handlers; returns at once.  False if stopped (dropped)."""
        with self._lock:
            if self._stopped:
                log.debug("event for task %s dropped: the dispatcher is stopped", event.task_id)
                return False
            if not self._handlers:
                return True  # nobody listens: no thread wake-up per callback
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            with self._idle:
                self._pending += 1
            self._queue.put(event)
        return True

    def run_handlers(self, event: CallbackEvent) -> None:
        """Run every handler for ``event`` on the calling thread (tests call this directly)."""
        for fn in self._handlers:
            try:
                fn(event)
            except Exception:
                log.exception("callback handler %r raised for task %s", fn, event.task_id)

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                self.run_handlers(event)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued event has been handled; True if it got there."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new events, let queued ones finish, then end the thread.  Idempotent.

        Safe to call from a handler (then the thread ends after that handler returns).
        """
        with self._lock:
            self._stopped = True
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._queue.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)
