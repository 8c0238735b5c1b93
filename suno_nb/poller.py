"""The polling fallback: fetch results whose callback never came.

A daemon thread looks at the store's pending tasks and, for each one older than the grace
period, asks ``record-info`` every ``interval`` seconds (never faster than the service's
3 queries per second per task).  A terminal answer is stored through the same path as a
callback, with ``source="poll"``; whichever of callback and poll lands second adds no row.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import ApiError, NetworkError, NotFoundError, PayloadError, StoreError
from .payloads import Callback, callback_from_record
from .store import Delivery, Store

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1 / 3  # the per-task query limit: 3 per second
RECORD_INFO_PATH = "/api/v1/generate/record-info"


class Poller:
    """Polls record-info for pending tasks on a background thread.

    ``store_result(delivery, callback)`` stores a terminal answer; ``get_client()`` returns
    the client to poll with (or None: then nothing is polled until one is known).
    """

    def __init__(
        self,
        store: Store,
        store_result: Callable[[Delivery, Callback], None],
        get_client: Callable[[], Any],
        *,
        interval: float = 30.0,
        grace: float | None = None,
    ):
        self.store = store
        self._store_result = store_result
        self._get_client = get_client
        self.interval = max(float(interval), MIN_INTERVAL_S)
        self.grace = self.interval if grace is None else max(0.0, float(grace))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned_no_client = False

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="suno_nb-poller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Re-plan now (a new task was submitted, or a client became known)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

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

    def _due_at(self, task: dict[str, Any]) -> float:
        born = task["submitted_at"] or task["first_seen_at"]
        last = task["last_polled_at"]
        return max(born + self.grace, (last + self.interval) if last else 0.0)

    def poll_due(self, now: float | None = None) -> float:
        """Poll every pending task that is due; return seconds until the next one is due."""
        pending = self.store.pending_tasks()
        if not pending:
            return self.interval
        client = self._get_client()
        if client is None:
            if not self._warned_no_client:
                log.warning(
                    "%d pending task(s) but no client to poll with: pass client= to "
                    "start_receiver() or submit through a SunoClient",
                    len(pending),
                )
                self._warned_no_client = True
            return self.interval
        now = time.time() if now is None else now
        next_due = now + self.interval
        for task in pending:
            if self._stop.is_set():
                break
            due = self._due_at(task)
            if due <= now:
                self.poll_task(client, task["task_id"])
                due = time.time() + self.interval
            next_due = min(next_due, due)
        return max(MIN_INTERVAL_S, next_due - time.time())

    def poll_task(self, client: Any, task_id: str) -> str | None:
        """Ask record-info once for ``task_id``; store a terminal answer.  Returns the status."""
        try:
            info = client.get_details(task_id)
        except NotFoundError as exc:
            log.warning("poll: task %s is unknown to the service: %s", task_id, exc.message)
            self.store.note_poll(task_id, None)
            return None
        except (ApiError, NetworkError, PayloadError) as exc:
            log.warning("poll of task %s failed (will retry): %s", task_id, exc)
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
