"""The polling fallback: fetch results whose callback never came.

Rounds run as timer jobs on the receiver's feed thread (no thread of its own).  A task is
polled once its grace period has passed, then every ``interval`` seconds (never faster than
the service's 3 queries per second per task), less and less often the longer it stays open.
Each request is the ``fetch(task_id, timeout)`` function the client handed over with the
task (``SunoClient.get_details`` with a short timeout and no retries of its own: the next
poll is the retry).  A terminal answer is stored through the same path as a callback, with
``source="poll"``; whichever of callback and poll lands second adds no row.

The poller gives up (a final state decided by us, with a reason; a later real result still
decides) on a task the service reports unknown ``unknown_after`` times in a row (``unknown``)
and on a task older than the service keeps results (``expired``).  Nothing here prints:
records go to the ``suno_nb.poller`` logger (kept by ``rx.log()``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .contract import RETENTION_DAYS
from .errors import ApiError, NetworkError, NotFoundError, PayloadError, StoreError
from .events import Feed, Timer
from .payloads import STAGE_OF_STATUS, RecordInfo, callback_from_record
from .rows import Delivery
from .store import Store
from .store.schema import EXPIRED, UNKNOWN

log = logging.getLogger(__name__)

Fetch = Callable[[str, float], RecordInfo]

MIN_INTERVAL_S = 1 / 3  # the per-task query limit: 3 per second
RECORD_INFO_PATH = "/api/v1/generate/record-info"
RETENTION_S = RETENTION_DAYS * 24 * 3600  # the hosted service keeps generated files 14 days


class Poller:
    """Polls record-info for open tasks, as timer jobs on ``feed``'s thread.

    - ``request_timeout``: seconds one record-info request may take;
    - ``unknown_after``: consecutive "unknown task" answers before giving up (``unknown``);
    - ``retention``: a task older than this (seconds) is not polled but marked ``expired``;
    - ``backoff_after``/``max_interval``: the interval doubles after every ``backoff_after``
      polls of a task, up to ``max_interval``.
    """

    def __init__(
        self,
        store: Store,
        feed: Feed,
        *,
        interval: float = 30.0,
        grace: float | None = None,
        request_timeout: float = 10.0,
        unknown_after: int = 3,
        retention: float = RETENTION_S,
        backoff_after: int = 10,
        max_interval: float = 300.0,
    ) -> None:
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be > 0 s, got {request_timeout!r}")
        if unknown_after < 1:
            raise ValueError(f"unknown_after must be >= 1, got {unknown_after!r}")
        self.store = store
        self.feed = feed
        self.interval = max(float(interval), MIN_INTERVAL_S)
        self.grace = self.interval if grace is None else max(0.0, float(grace))
        self.request_timeout = float(request_timeout)
        self.unknown_after = int(unknown_after)
        self.retention = float(retention)
        self.backoff_after = max(1, int(backoff_after))
        self.max_interval = max(self.interval, float(max_interval))
        self.fetch: Fetch | None = None
        self._timer: Timer | None = None
        self._lock = threading.Lock()
        self._running = False
        self._stopped = False
        self._warned_no_fetch = False

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self.wake()

    def wake(self) -> None:
        """Plan a round now (a task was submitted, or a fetch function became known)."""
        self._schedule(0.0)

    def confirm(self, task_id: str) -> None:
        """Ask the service about ``task_id`` now (an unconfirmed callback came), on the
        feed's thread, at most 3 times a second per task like every poll."""
        task = self.store.task(task_id)
        last = (task or {}).get("last_polled_at") or 0.0
        wait = max(0.0, last + MIN_INTERVAL_S - time.time())
        self.feed.call_later(wait, lambda: self._confirm_now(task_id))

    def _confirm_now(self, task_id: str) -> None:
        if self._stopped or self.fetch is None:
            return
        try:
            self.poll_task(task_id, confirm=True)
        except Exception:  # never let a confirmation end the feed's work
            log.exception("confirming task %s with the service failed", task_id)

    def stop(self) -> None:
        """No more rounds (a request under way ends by its own timeout)."""
        with self._lock:
            self._running = False
            self._stopped = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    @property
    def running(self) -> bool:
        return self._running

    def _schedule(self, delay: float) -> None:
        with self._lock:
            if not self._running:
                return
            if self._timer is not None:
                if self._timer.due <= time.monotonic() + delay:
                    return  # an earlier round is planned already
                self._timer.cancel()
            self._timer = self.feed.call_later(delay, self._round)

    def _round(self) -> None:
        with self._lock:
            self._timer = None
        try:
            delay = self.poll_due()
        except StoreError:
            if self.store.closed:
                return
            log.exception("poller could not use the store")
            delay = self.interval
        except Exception:  # a round must never end the polling for good
            log.exception("poll round failed unexpectedly")
            delay = self.interval
        self._schedule(delay)

    # --- planning -------------------------------------------------------------------------

    def interval_for(self, task: dict[str, Any]) -> float:
        """The task's current interval: doubles every ``backoff_after`` polls, capped."""
        doublings = min(int(task.get("poll_count") or 0) // self.backoff_after, 30)
        return float(min(self.max_interval, self.interval * 2**doublings))

    def _due_at(self, task: dict[str, Any]) -> float:
        born = task["submitted_at"] or task["first_seen_at"]
        last = task["last_polled_at"]
        return float(max(born + self.grace, (last + self.interval_for(task)) if last else 0.0))

    def poll_due(self, now: float | None = None) -> float:
        """Poll every open task that is due, one by one; return seconds until the next."""
        pending = self.store.pending_tasks()
        now = time.time() if now is None else now
        live = []
        for task in pending:
            born = task["submitted_at"] or task["first_seen_at"]
            if born is not None and now - born > self.retention:
                days = (now - born) / 86400
                self._give_up(
                    task["task_id"],
                    EXPIRED,
                    f"submitted {days:.0f} days ago: the service keeps results for "
                    f"{self.retention / 86400:g} days",
                )
            else:
                live.append(task)
        if not live:
            return self.interval
        if self.fetch is None:
            if not self._warned_no_fetch:
                log.warning(
                    "%d pending task(s) but no client to poll with: pass client= to "
                    "start_receiver() or submit through a SunoClient with receiver=rx",
                    len(live),
                )
                self._warned_no_fetch = True
            return self.interval
        next_due = now + self.interval
        for task in live:
            if self._stopped:
                break
            due = self._due_at(task)
            if due <= now:
                self.poll_task(task["task_id"], confirm=bool(task.get("unconfirmed")))
            else:
                next_due = min(next_due, due)
        return max(MIN_INTERVAL_S, next_due - time.time())

    # --- one poll ---------------------------------------------------------------------------

    def poll_task(self, task_id: str, *, confirm: bool = False) -> str | None:
        """Ask record-info once for ``task_id``; store a terminal answer (and, ``confirm``-ing
        an unconfirmed callback, an interim stage too).  Returns the status."""
        if self.fetch is None:
            raise RuntimeError("the poller has no fetch function yet")
        try:
            info = self.fetch(task_id, self.request_timeout)
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
        if info.terminal or (confirm and info.status in STAGE_OF_STATUS):
            body = json.dumps({"code": 200, "msg": "success", "data": info.raw}).encode()
            delivery = Delivery(body=body, source="poll", method="GET", path=RECORD_INFO_PATH)
            self.store.record_callback(delivery, callback_from_record(info)).result()
            log.info("poll: task %s is %s", task_id, info.status)
        return info.status

    def _give_up(self, task_id: str, state: str, reason: str) -> None:
        self.store.give_up(task_id, state, reason)
        # INFO, not WARNING: the receiver's repr and the tracker show given-up tasks.
        log.info("poll: gave up on task %s (%s): %s", task_id, state, reason)
