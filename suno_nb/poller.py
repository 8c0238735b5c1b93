"""The polling fallback: fetch results whose callback never came.

A daemon thread plans; a small bounded pool of workers asks ``record-info``, each request
with its own short timeout, so one hanging answer never stalls the other tasks.  A task is
polled once its grace period has passed, then every ``interval`` seconds (never faster than
the service's 3 queries per second per task), less and less often the longer it stays
pending.  A terminal answer is stored through the same path as a callback, with
``source="poll"``; whichever of callback and poll lands second adds no row.

The poller gives up (a final state decided by us, with a reason; a later real result still
decides) on a task the service reports unknown ``unknown_after`` times in a row (``unknown``)
and on a task older than the service keeps results (``expired``).  Terminal tasks are never
polled.  Nothing here prints: records go to the ``suno_nb.poller`` logger (kept by
``rx.log()``), and what a user must see is in the store (tracker, receiver repr).
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import ApiError, NetworkError, NotFoundError, PayloadError, StoreError
from .payloads import Callback, callback_from_record
from .store import TERMINAL_STATES, Delivery, Store

log = logging.getLogger(__name__)

# The store's gave-up states (store.UNKNOWN / store.EXPIRED; spelled here so this module
# imports whichever store version is installed beside it).
UNKNOWN, EXPIRED = "unknown", "expired"

MIN_INTERVAL_S = 1 / 3  # the per-task query limit: 3 per second
RECORD_INFO_PATH = "/api/v1/generate/record-info"
RETENTION_S = 14 * 24 * 3600  # the hosted service keeps generated files for 14 days
DEFAULT_WORKERS = 4
DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_UNKNOWN_AFTER = 3
DEFAULT_BACKOFF_AFTER = 10  # polls at the base interval before it starts doubling
DEFAULT_MAX_INTERVAL_S = 300.0


class Poller:
    """Polls record-info for pending tasks: a planning thread and a bounded worker pool.

    ``store_result(delivery, callback)`` stores a terminal answer; ``get_client()`` returns
    the client to poll with (or None: then nothing is polled until one is known).

    - ``workers``: at most this many requests at once (threads are made on demand);
    - ``request_timeout``: seconds one record-info request may take (no retries inside: the
      next poll is the retry);
    - ``unknown_after``: consecutive "unknown task" answers before giving up (``unknown``);
    - ``retention``: a task older than this (seconds) is not polled but marked ``expired``;
    - ``backoff_after``/``max_interval``: the interval doubles after every ``backoff_after``
      polls of a task, up to ``max_interval``.
    """

    def __init__(
        self,
        store: Store,
        store_result: Callable[[Delivery, Callback], None],
        get_client: Callable[[], Any],
        *,
        interval: float = 30.0,
        grace: float | None = None,
        workers: int = DEFAULT_WORKERS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
        unknown_after: int = DEFAULT_UNKNOWN_AFTER,
        retention: float = RETENTION_S,
        backoff_after: int = DEFAULT_BACKOFF_AFTER,
        max_interval: float = DEFAULT_MAX_INTERVAL_S,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0 s, got {request_timeout!r}")
        if unknown_after < 1:
            raise ValueError(f"unknown_after must be >= 1, got {unknown_after!r}")
        self.store = store
        self._store_result = store_result
        self._get_client = get_client
        self.interval = max(float(interval), MIN_INTERVAL_S)
        self.grace = self.interval if grace is None else max(0.0, float(grace))
        self.workers = int(workers)
        self.request_timeout = float(request_timeout)
        self.unknown_after = int(unknown_after)
        self.retention = float(retention)
        self.backoff_after = max(1, int(backoff_after))
        self.max_interval = max(self.interval, float(max_interval))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: set[str] = set()
        self._lock = threading.Lock()
        self._bounded: tuple[Any, Any] | None = None  # (client, its short-timeout copy)
        self._warned_no_client = False

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="suno_nb-poll-worker")
        self._thread = threading.Thread(target=self._loop, name="suno_nb-poller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Re-plan now (a new task was submitted, a poll ended, or a client became known)."""
        self._wake.set()

    def stop(self) -> None:
        """End the planning thread; queued polls are cancelled.  A request already under way
        ends by its own timeout (``request_timeout``), its answer is not stored."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def in_flight(self) -> frozenset[str]:
        """Task ids whose record-info request is under way now."""
        with self._lock:
            return frozenset(self._inflight)

    # --- planning -------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.poll_due()
            except StoreError:
                if self.store.closed:
                    return
                log.exception("poller could not read the store")
                delay = self.interval
            self._wake.wait(timeout=delay)
            self._wake.clear()

    def interval_for(self, task: dict[str, Any]) -> float:
        """The task's current interval: doubles every ``backoff_after`` polls, capped."""
        doublings = min(int(task.get("poll_count") or 0) // self.backoff_after, 30)
        return min(self.max_interval, self.interval * 2**doublings)

    def _due_at(self, task: dict[str, Any]) -> float:
        born = task["submitted_at"] or task["first_seen_at"]
        last = task["last_polled_at"]
        return max(born + self.grace, (last + self.interval_for(task)) if last else 0.0)

    def poll_due(self, now: float | None = None) -> float:
        """Start a poll of every pending task that is due (on the worker pool when running,
        else here, one by one); return seconds until the next one is due."""
        pending = [t for t in self.store.pending_tasks() if t["state"] not in TERMINAL_STATES]
        if not pending:
            return self.interval
        now = time.time() if now is None else now
        live = []
        for task in pending:
            born = task["submitted_at"] or task["first_seen_at"]
            if born is not None and now - born > self.retention:
                self._give_up(
                    task["task_id"],
                    EXPIRED,
                    f"submitted {(now - born) / 86400:.0f} days ago: the service keeps "
                    f"results for {self.retention / 86400:g} days",
                )
            else:
                live.append(task)
        if not live:
            return self.interval
        client = self._get_client()
        if client is None:
            if not self._warned_no_client:
                log.warning(
                    "%d pending task(s) but no client to poll with: pass client= to "
                    "start_receiver() or submit through a SunoClient",
                    len(live),
                )
                self._warned_no_client = True
            return self.interval
        next_due = now + self.interval
        for task in live:
            if self._stop.is_set():
                break
            task_id = task["task_id"]
            with self._lock:
                busy = task_id in self._inflight
            due = self._due_at(task)
            if busy:
                continue  # its worker wakes the planner when it is done
            if due <= now:
                self._launch(client, task_id)
                continue
            next_due = min(next_due, due)
        return max(MIN_INTERVAL_S, next_due - time.time())

    def _launch(self, client: Any, task_id: str) -> None:
        pool = self._pool
        if pool is None:  # not started (tests drive poll_due directly): poll here
            self._poll_guarded(client, task_id)
            return
        with self._lock:
            self._inflight.add(task_id)
        try:
            pool.submit(self._poll_guarded, client, task_id, True)
        except RuntimeError:  # shut down meanwhile
            with self._lock:
                self._inflight.discard(task_id)

    def _poll_guarded(self, client: Any, task_id: str, pooled: bool = False) -> None:
        try:
            if not self._stop.is_set() or not pooled:
                self.poll_task(client, task_id)
        except StoreError:
            if not self.store.closed:
                log.exception("poll of task %s could not be stored", task_id)
        except Exception:  # a worker must never die silently, nor print
            log.exception("poll of task %s failed unexpectedly", task_id)
        finally:
            if pooled:
                with self._lock:
                    self._inflight.discard(task_id)
                self._wake.set()

    # --- one poll ---------------------------------------------------------------------------

    def _short(self, client: Any) -> Any:
        """``client`` with this poller's request timeout and no retries of its own."""
        cached = self._bounded
        if cached is not None and cached[0] is client:
            return cached[1]
        short = client
        if isinstance(getattr(client, "timeout", None), (int, float)) and hasattr(
            client, "get_retries"
        ):
            try:
                short = copy.copy(client)  # shares the HTTP session; only settings differ
                short.timeout = min(float(client.timeout), self.request_timeout)
                short.get_retries = 0
                if hasattr(short, "_owns_session"):
                    short._owns_session = False  # closing the copy must not close the session
            except (AttributeError, TypeError):
                short = client
        self._bounded = (client, short)
        return short

    def _get_details(self, client: Any, task_id: str) -> Any:
        fn = client.get_details
        try:
            takes_timeout = "timeout" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            takes_timeout = False
        if takes_timeout:
            return fn(task_id, timeout=self.request_timeout)
        return self._short(client).get_details(task_id)

    def poll_task(self, client: Any, task_id: str) -> str | None:
        """Ask record-info once for ``task_id``; store a terminal answer.  Returns the status."""
        try:
            info = self._get_details(client, task_id)
        except NotFoundError as exc:
            misses = self.store.note_poll(task_id, None, unknown=True)
            log.info(
                "poll: task %s is unknown to the service (%d/%d): %s",
                task_id,
                misses,
                self.unknown_after,
                exc.message,
            )
            if misses >= self.unknown_after:
                self._give_up(
                    task_id,
                    UNKNOWN,
                    f"the service did not know this task in {misses} polls in a row "
                    f"({exc.message})",
                )
            return None
        except (ApiError, NetworkError, PayloadError) as exc:
            log.info("poll of task %s failed (will retry): %s", task_id, exc)
            self.store.note_poll(task_id, None)
            return None
        self.store.note_poll(task_id, info.status)
        if info.terminal:
            body = json.dumps({"code": 200, "msg": "success", "data": info.raw}).encode()
            delivery = Delivery(
                body=body,
                source="poll",
                method="GET",
                path=RECORD_INFO_PATH,
                remote_addr=None,
                headers={},
            )
            self._store_result(delivery, callback_from_record(info))
            log.info("poll: task %s is %s", task_id, info.status)
        return info.status

    def _give_up(self, task_id: str, state: str, reason: str) -> None:
        self.store.give_up(task_id, state, reason)
        # INFO, not WARNING: the receiver's repr and the tracker show gave-up tasks from the
        # store already, in plain words.
        log.info("poll: gave up on task %s (%s): %s", task_id, state, reason)
