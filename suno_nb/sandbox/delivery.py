"""Timed work and callback delivery for the sandbox, on a bounded set of threads.

:class:`Scheduler` is one timer thread plus a fixed pool of daemon worker threads (never a
thread per job, and daemon so a forgotten sandbox cannot hang a kernel at exit).  It counts
jobs that are scheduled or running, which is what ``Sandbox.wait_idle`` waits on.

:class:`CallbackSender` POSTs callbacks the way the seeds describe: JSON body, a timeout
per attempt, up to ``max_attempts`` attempts with exponential backoff
(``retry_backoff * 2 ** (n - 1)`` before attempt ``n + 1``), retrying on a connection
error, a timeout or a non-2xx answer, optionally signed.  Every attempt is logged.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ..signing import signature_headers

log = logging.getLogger("suno_nb.sandbox")

USER_AGENT = "suno_nb-sandbox/0.1 (callback sender)"
MAX_LOG = 10_000  # attempts kept; old ones are dropped first


class Scheduler:
    """Run callables at given times on ``workers`` daemon threads."""

    def __init__(self, workers: int = 8, name: str = "suno-sandbox") -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._pending = 0  # scheduled + queued + running
        self._stopped = False
        self._timer = threading.Thread(target=self._run_timer, name=f"{name}-timer", daemon=True)
        self._workers = [
            threading.Thread(target=self._run_worker, name=f"{name}-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        self._timer.start()
        for w in self._workers:
            w.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a worker after ``delay`` seconds (ignored once stopped)."""
        with self._cond:
            if self._stopped:
                return
            self._pending += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), fn))
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Jobs scheduled, queued or running."""
        with self._cond:
            return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is scheduled or running; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Drop jobs not started yet, let running ones finish (up to ``timeout``), join."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._pending -= len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for t in (self._timer, *self._workers):
            t.join(max(0.0, deadline - time.monotonic()))

    def _run_timer(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._heap:
                    self._cond.wait()
                    continue
                left = self._heap[0][0] - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                _, _, fn = heapq.heappop(self._heap)
                self._queue.put(fn)

    def _run_worker(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            try:
                fn()
            except Exception:  # a job's bug must not kill the worker
                log.exception("sandbox job failed")
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of a callback, as logged by the sandbox."""

    task_id: str
    copy: int  # 0 for the delivery, 1.. for duplicates injected by a fault
    attempt: int  # 1-based
    url: str  # see public_url(): no query, token-like path segments shortened
    callback_type: str
    code: int  # the body's code
    signed: bool
    sent_at: datetime
    elapsed_s: float
    status: int | None  # HTTP status of the answer, None when there was none
    error: str | None  # connection error or timeout, or "HTTP <status>"
    outcome: str  # "delivered" | "retry" | "failed"


def public_url(url: str) -> str:
    """``url`` fit for logs and DataFrames: no query or fragment, and token-like path
    segments (16+ characters, as in an unguessable callback path) cut to 4 characters."""
    parts = urlsplit(url)
    path = "/".join(f"{seg[:4]}…" if len(seg) >= 16 else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


class CallbackSender:
    """Deliver callback bodies with timeout, retries, backoff, signatures and a log."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        timeout: float = 10.0,
        max_attempts: int = 3,
        retry_backoff: float = 1.0,
        hmac_key: str | bytes | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._scheduler = scheduler
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self._hmac_key = hmac_key
        self._lock = threading.Lock()
        self._log: list[DeliveryAttempt] = []

    def send(
        self,
        url: str,
        body: dict[str, Any],
        *,
        copies: int = 1,
        delay: float = 0.0,
        wrong_signature: bool = False,
    ) -> None:
        """Schedule ``copies`` independent deliveries of ``body`` to ``url`` after ``delay``."""
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        meta = (str(body["data"]["task_id"]), str(body["data"]["callbackType"]), body["code"])
        for copy in range(copies):
            self._scheduler.call_later(
                delay,
                lambda c=copy: self._attempt(url, payload, meta, c, 1, wrong_signature),
            )

    def _headers(self, task_id: str, wrong_signature: bool) -> tuple[dict[str, str], bool]:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        key: str | bytes | None = self._hmac_key
        if wrong_signature:
            # Any key but the right one; also signs when the sandbox has no key at all, so
            # a receiver expecting signatures rejects it either way.
            key = b"wrong-" + (key.encode() if isinstance(key, str) else key or b"key")
        if key is None:
            return headers, False
        headers.update(signature_headers(key, task_id))  # fresh timestamp per attempt
        return headers, True

    def _attempt(
        self,
        url: str,
        payload: bytes,
        meta: tuple[str, str, int],
        copy: int,
        attempt: int,
        wrong_signature: bool,
    ) -> None:
        task_id, callback_type, code = meta
        headers, signed = self._headers(task_id, wrong_signature)
        sent_at = datetime.now(UTC)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            with requests.Session() as session:
                # Loopback targets must not go through an environment proxy; public ones
                # (a tunnel) may need it.
                session.trust_env = not _is_loopback(url)
                resp = session.post(
                    url, data=payload, headers=headers, timeout=self.timeout, allow_redirects=False
                )
                status = resp.status_code
                resp.close()
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except requests.Timeout:
            error = f"timeout after {self.timeout:g} s"
        except requests.RequestException as exc:
            error = f"{type(exc).__name__}: {str(exc)[:200]}"
        elapsed = time.perf_counter() - started
        if error is None:
            outcome = "delivered"
        elif attempt < self.max_attempts:
            outcome = "retry"
        else:
            outcome = "failed"
        record = DeliveryAttempt(
            task_id=task_id,
            copy=copy,
            attempt=attempt,
            url=public_url(url),
            callback_type=callback_type,
            code=code,
            signed=signed,
            sent_at=sent_at,
            elapsed_s=round(elapsed, 4),
            status=status,
            error=error,
            outcome=outcome,
        )
        with self._lock:
            self._log.append(record)
            del self._log[:-MAX_LOG]
        # Host only: the callback path may be the receiver's unguessable secret.
        log.info(
            "callback %s task=%s to %s copy=%d attempt=%d/%d -> %s (%.3f s)",
            callback_type,
            task_id,
            urlsplit(url).netloc,
            copy,
            attempt,
            self.max_attempts,
            status if error is None else error,
            elapsed,
        )
        if outcome == "retry":
            backoff = self.retry_backoff * 2 ** (attempt - 1)
            self._scheduler.call_later(
                backoff,
                lambda: self._attempt(url, payload, meta, copy, attempt + 1, wrong_signature),
            )

    def attempts(self) -> list[DeliveryAttempt]:
        """Every attempt so far, oldest first."""
        with self._lock:
            return list(self._log)
