"""Where the sandbox's timed and blocking work runs: one event loop and two worker threads.

The loop is the HTTP server's own (:attr:`suno_nb.server.ServerThread.loop`): it already
serves the API, so it also keeps every timer (stage callbacks, results at ``delay``, callback
backoff) with ``loop.call_later`` and runs callback deliveries as tasks.  Work that blocks
(rendering and encoding audio, a callback POST through ``requests``) goes to one small
``ThreadPoolExecutor`` whose threads are named ``suno-sandbox-worker_N``.

:class:`Runtime` counts what is scheduled or running, which is what ``Sandbox.wait_idle``
waits on, and stops in order: nothing new is accepted, timers and backoffs not started are
dropped, sends already under way finish (up to a timeout), then the workers are joined.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("suno_nb.sandbox")

T = TypeVar("T")

WORKER_PREFIX = "suno-sandbox-worker"
MAX_WORKERS = 2  # the sandbox's thread budget: the server's loop thread + these


class Stopped(RuntimeError):
    """The runtime was stopped: no new work is accepted."""


class Runtime:
    """Timers and tasks on ``loop``, blocking calls on a bounded pool of worker threads.

    ``call_later`` and ``spawn`` may be called from any thread; everything they schedule
    runs on the loop.  ``blocking`` is awaited on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, workers: int = MAX_WORKERS) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.loop = loop
        self._threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(workers, MAX_WORKERS),
            thread_name_prefix=WORKER_PREFIX,
            initializer=self._register_thread,
        )
        self._cond = threading.Condition()
        self._pending = 0  # timers armed + tasks alive (across threads: under _cond)
        self._stopping = False
        self._closed = False
        # Touched on the loop only:
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sleepers: set[asyncio.Future[bool]] = set()

    def _register_thread(self) -> None:
        with self._threads_lock:
            self._threads.append(threading.current_thread())

    # -- scheduling (any thread) -------------------------------------------------------

    def _enter(self) -> bool:
        with self._cond:
            if self._stopping:
                return False
            self._pending += 1
            return True

    def _leave(self) -> None:
        with self._cond:
            self._pending = max(0, self._pending - 1)
            if not self._pending:
                self._cond.notify_all()

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Hand ``fn(*args)`` to the loop, or give the count back if the loop is gone."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the sandbox is stopping
            self._leave()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn()`` on the loop after ``delay`` seconds (dropped once stopping)."""
        if self._enter():
            self._post(self._arm, max(0.0, delay), fn)

    def spawn(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run the coroutine ``make()`` as a task on the loop (dropped once stopping)."""
        if self._enter():
            self._post(self._start, make)

    # -- on the loop -------------------------------------------------------------------

    def _arm(self, delay: float, fn: Callable[[], None]) -> None:
        if self._stopping:
            self._leave()
            return

        def fire() -> None:
            self._timers.discard(handle)
            try:
                fn()
            except Exception:  # one job's bug must not stop the others
                log.exception("sandbox timer failed")
            finally:
                self._leave()

        handle = self.loop.call_later(delay, fire)
        self._timers.add(handle)

    def _start(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self._stopping:
            self._leave()
            return
        task = self.loop.create_task(make())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sandbox task failed", exc_info=task.exception())
        self._leave()

    async def sleep(self, delay: float) -> bool:
        """Wait ``delay`` seconds on the loop; False (at once) if the runtime stops first."""
        if self._stopping:
            return False
        if delay <= 0:
            return True
        woken: asyncio.Future[bool] = self.loop.create_future()
        handle = self.loop.call_later(delay, _resolve, woken, True)
        self._sleepers.add(woken)
        try:
            return await woken
        finally:
            self._sleepers.discard(woken)
            handle.cancel()

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a worker thread, awaited on the loop."""
        if self._closed:
            raise Stopped("the sandbox is stopping")
        return await self.loop.run_in_executor(self.executor, fn, *args)

    # -- waiting and stopping (any thread but the loop's) ----------------------------------

    @property
    def pending(self) -> int:
        """Timers armed and tasks alive."""
        with self._cond:
            return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is scheduled or running; False if ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def drain(self, timeout: float) -> None:
        """Stop accepting work, drop timers and backoffs not started, and give the tasks
        under way (a callback POST) up to ``timeout`` seconds to finish.  Call this while
        the loop still runs, from another thread."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
        if _running_loop() is self.loop:  # called from the loop itself: cannot wait here
            self.loop.create_task(self._drain(timeout))
            return
        drained = self._drain(timeout)
        try:
            future = asyncio.run_coroutine_threadsafe(drained, self.loop)
        except RuntimeError:  # the loop is closed already: nothing runs on it any more
            drained.close()
            return
        try:
            future.result(timeout + 1.0)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            log.warning("the sandbox's tasks did not end within %.1f s", timeout)
            future.cancel()

    async def _drain(self, timeout: float) -> None:
        for handle in list(self._timers):
            handle.cancel()
            self._leave()
        self._timers.clear()
        for woken in list(self._sleepers):
            _resolve(woken, False)  # a backoff or late-callback wait ends now
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()

    def close(self, timeout: float) -> None:
        """After the loop has stopped: end the worker threads (up to ``timeout``), forget
        whatever was still counted.  Safe to call twice."""
        self._stopping = self._closed = True
        self.executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.warning("sandbox workers still busy after %.1f s: %s", timeout, alive)
        with self._cond:
            self._pending = 0
            self._cond.notify_all()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
