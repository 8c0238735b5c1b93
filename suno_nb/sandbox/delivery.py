"""Callback delivery for the sandbox: the seeds' policy, driven from the server's loop.

:class:`CallbackSender` POSTs callbacks the way the seeds describe: JSON body, a timeout
per attempt, up to ``max_attempts`` attempts with exponential backoff
(``retry_backoff * 2 ** (n - 1)`` before attempt ``n + 1``), retrying on a connection
error, a timeout or a non-2xx answer, optionally signed.  Each copy of a callback is one
task on the loop (see :mod:`.runtime`); its waits are loop timers and only the POST itself
runs on a worker thread.  Every attempt is logged.

The callback URL's path is often a secret capability (``/callback/<token>``): nothing this
module records or logs carries it (see :func:`public_url` and :func:`redact`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests

from ..signing import signature_headers
from .runtime import Runtime

log = logging.getLogger("suno_nb.sandbox")

USER_AGENT = "suno_nb-sandbox/0.1 (callback sender)"
MAX_LOG = 10_000  # attempts kept; old ones are dropped first
TOKEN_LEN = 16  # a path segment this long is treated as a secret token
# A path segment in free text: after a single "/" (not the "//" before a host name).
_SEGMENT = re.compile(rf"(?<!/)/([^/\s'\"()<>?#]{{{TOKEN_LEN},}})")


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
    error: str | None  # connection error or timeout, or "HTTP <status>"; see redact()
    outcome: str  # "delivered" | "retry" | "failed"


def _short(segment: str) -> str:
    return f"{segment[:4]}…"


def public_url(url: str) -> str:
    """``url`` fit for logs and DataFrames: no query or fragment, and token-like path
    segments (16+ characters, as in an unguessable callback path) cut to 4 characters."""
    parts = urlsplit(url)
    path = "/".join(_short(seg) if len(seg) >= TOKEN_LEN else seg for seg in parts.path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact(text: str, url: str) -> str:
    """``text`` (an exception message) without the secrets of ``url``: its query, its
    fragment and every token-like path segment, raw or percent-decoded, are shortened; so
    is any other 16+ character path segment in the text (a message may re-encode the URL)."""
    parts = urlsplit(url)
    secrets = [parts.query, parts.fragment]
    secrets += [seg for seg in parts.path.split("/") if len(seg) >= TOKEN_LEN]
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, unquote(secret)}:
            text = text.replace(form, _short(form))
    return _SEGMENT.sub(lambda m: "/" + _short(m.group(1)), text)


def _reason(exc: Exception) -> str:
    """The innermost cause a requests error wraps (urllib3's ``MaxRetryError.reason``)."""
    cause = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
    return str(getattr(cause, "reason", None) or cause)


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass(frozen=True)
class _Callback:
    """One callback body to deliver (all copies share it)."""

    url: str
    payload: bytes
    task_id: str
    callback_type: str
    code: int
    wrong_signature: bool


class CallbackSender:
    """Deliver callback bodies with timeout, retries, backoff, signatures and a log."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        timeout: float = 10.0,
        max_attempts: int = 3,
        retry_backoff: float = 1.0,
        hmac_key: str | bytes | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self._runtime = runtime
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self._hmac_key = hmac_key
        self._lock = threading.Lock()
        self._log: list[DeliveryAttempt] = []

    def __repr__(self) -> str:  # no key, no URL
        return f"<CallbackSender timeout={self.timeout:g}s attempts={self.max_attempts}>"

    def send(
        self,
        url: str,
        body: dict[str, Any],
        *,
        copies: int = 1,
        delay: float = 0.0,
        wrong_signature: bool = False,
        kind: str | None = None,
    ) -> None:
        """Deliver ``copies`` independent copies of ``body`` to ``url`` after ``delay``
        seconds, each with its own retries.  Returns at once; callable from any thread.
        ``kind``: what the log calls a body without ``data.callbackType`` (``wav``,
        ``recovery``: a recovery names its task at the top level)."""
        data = body["data"] if isinstance(body.get("data"), dict) else {}
        # The family's callbacks say task_id; kie.ai's task API says taskId; a recovery
        # names its task at the top level.
        task_id = body.get("task_id") or data.get("task_id") or data["taskId"]
        callback = _Callback(
            url=url,
            payload=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            task_id=str(task_id),
            callback_type=str(kind or data["callbackType"]),
            code=int(body["code"]),
            wrong_signature=wrong_signature,
        )
        for copy in range(copies):
            self._runtime.spawn(partial(self._deliver, callback, copy, delay))

    async def _deliver(self, callback: _Callback, copy: int, delay: float) -> None:
        """One copy: wait, then attempt until delivered or out of attempts (on the loop)."""
        runtime = self._runtime
        if not await runtime.sleep(delay):
            return
        for attempt in range(1, self.max_attempts + 1):
            record = await runtime.blocking(self._attempt, callback, copy, attempt)
            self._record(record)
            if record.outcome != "retry":
                return
            if not await runtime.sleep(self.retry_backoff * 2 ** (attempt - 1)):
                return  # the sandbox stops: a pending retry is dropped

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

    def _attempt(self, callback: _Callback, copy: int, attempt: int) -> DeliveryAttempt:
        """One POST (blocking: on a worker thread)."""
        url = callback.url
        headers, signed = self._headers(callback.task_id, callback.wrong_signature)
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
                    url,
                    data=callback.payload,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
                status = resp.status_code
                resp.close()
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except requests.Timeout:
            error = f"timeout after {self.timeout:g} s"
        except requests.RequestException as exc:
            # requests quotes the whole URL in its messages: never keep it as it is.
            error = f"{type(exc).__name__}: {redact(_reason(exc), url)[:200]}"
        if error is None:
            outcome = "delivered"
        elif attempt < self.max_attempts:
            outcome = "retry"
        else:
            outcome = "failed"
        return DeliveryAttempt(
            task_id=callback.task_id,
            copy=copy,
            attempt=attempt,
            url=public_url(url),
            callback_type=callback.callback_type,
            code=callback.code,
            signed=signed,
            sent_at=sent_at,
            elapsed_s=round(time.perf_counter() - started, 4),
            status=status,
            error=error,
            outcome=outcome,
        )

    def _record(self, record: DeliveryAttempt) -> None:
        with self._lock:
            self._log.append(record)
            del self._log[:-MAX_LOG]
        # Host only: the callback path may be the receiver's unguessable secret.
        log.info(
            "callback %s task=%s to %s copy=%d attempt=%d/%d -> %s (%.3f s)",
            record.callback_type,
            record.task_id,
            urlsplit(record.url).netloc,
            record.copy,
            record.attempt,
            self.max_attempts,
            record.status if record.error is None else record.error,
            record.elapsed_s,
        )

    def attempts(self) -> list[DeliveryAttempt]:
        """Every attempt so far, oldest first."""
        with self._lock:
            return list(self._log)
