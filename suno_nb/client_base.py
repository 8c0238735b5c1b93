"""The client's plumbing: the receiver it reports to, the job handles it returns, and its
HTTP transport (key, base URL, retries, error mapping per endpoint).

:class:`~suno_nb.client.SunoClient` adds the endpoints on top of :class:`BaseClient`.
The API key travels only in the ``Authorization`` header; every message built here passes
through :meth:`BaseClient._redact`.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import requests

from . import throttle
from .client_errors import (
    error_for_code,
    int_code,
    may_have_reached,
    network_reason,
    retry_after_s,
    snippet,
    url_origin,
)
from .contract import Provider, get_provider
from .credentials import Secret, find_secret
from .errors import (
    AuthError,
    NetworkError,
    PayloadError,
    RateLimitError,
    ServerError,
    SunoNbError,
)
from .payloads import decode_json
from .rows import Submission

log = logging.getLogger("suno_nb.client")

DEFAULT_BASE_URL = get_provider().base_url

ENV_API_KEY = "SUNO_API_KEY"
ENV_BASE_URL = "SUNO_API_BASE_URL"
REDACTED = "***"
MAX_RETRY_AFTER_S = 60.0  # a longer wait than this is the caller's decision, not ours
POST_RATE_RETRIES = 3  # resends of a POST the service refused for the rate limit

MISSING_KEY_MESSAGE = (
    f"no API key: pass api_key=..., set the environment variable {ENV_API_KEY}, put "
    f"{ENV_API_KEY}=... in a .env file, or (Colab) add it to the notebook's secrets"
)


# --- receivers ----------------------------------------------------------------------------


class ReceiverLike(Protocol):
    """What the client needs of a receiver: where callbacks go, and where a submitted task
    is recorded (with the function that can poll it: ``fetch(task_id, timeout)``)."""

    @property
    def url(self) -> str: ...

    def record_submission(
        self, submission: Submission, fetch: Callable[[str, float], Any] | None = None
    ) -> None: ...


# --- job handles --------------------------------------------------------------------------


def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _callback_origin(url: str | None) -> str | None:
    # The callback path is the receiver's capability token: show the host only.
    return url_origin(url) + "/…" if url else None


@dataclass(frozen=True)
class ReplaceJob:
    """A submitted replace-section task.

    ``task_id`` is the new task's id (give it to ``rx.wait``).  Mode 1 names the original
    by ``parent_task_id`` + ``audio_id``; mode 2 by ``upload_url`` + ``model``.
    ``submitted_at`` is a Unix time in seconds.
    """

    task_id: str
    parent_task_id: str | None
    audio_id: str | None
    infill_start_s: float
    infill_end_s: float
    submitted_at: float
    callback_url: str | None = None
    upload_url: str | None = None
    model: str | None = None
    # Set by replace_lines: the lines replaced, their own span, and why the section differs.
    lines: tuple[int, ...] | None = None
    span_start_s: float | None = None
    span_end_s: float | None = None
    widened: str | None = None

    @property
    def section_length_s(self) -> float:
        """Length of the replaced section in seconds."""
        return round(self.infill_end_s - self.infill_start_s, 2)

    def __repr__(self) -> str:
        source = (
            f"upload={url_origin(self.upload_url)}/…, model={self.model!r}"
            if self.upload_url
            else f"parent_task_id={self.parent_task_id!r}, audio_id={self.audio_id!r}"
        )
        if self.lines:
            first, last = self.lines[0], self.lines[-1]
            said = f"{first}" if first == last else f"{first}-{last}"
            source += f", lines={said}" + (" (widened)" if self.widened else "")
        return (
            f"ReplaceJob(task_id={self.task_id!r}, {source}, section={self.infill_start_s:.2f}-"
            f"{self.infill_end_s:.2f} s, submitted_at='{_when(self.submitted_at)} UTC', "
            f"callback={_callback_origin(self.callback_url)!r})"
        )


@dataclass(frozen=True)
class GenerateJob:
    """A submitted ``generate`` task (two original tracks): ``rx.wait(job.task_id)``."""

    task_id: str
    model: str
    title: str | None
    submitted_at: float
    callback_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"GenerateJob(task_id={self.task_id!r}, model={self.model!r}, "
            f"title={self.title!r}, submitted_at='{_when(self.submitted_at)} UTC', "
            f"callback={_callback_origin(self.callback_url)!r})"
        )


# --- transport ----------------------------------------------------------------------------


class BaseClient:
    """Key, base URL, session and the request/answer cycle of a :class:`SunoClient`."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        provider: str | Provider | None = None,
        base_url: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        receiver: ReceiverLike | None = None,
        get_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self.provider: Provider = get_provider(provider)
        secret = find_secret(ENV_API_KEY, api_key)
        key = secret.text.strip() if secret is not None else ""
        if not key:
            raise AuthError(None, MISSING_KEY_MESSAGE)
        if any(ch.isspace() or ord(ch) < 32 for ch in key):
            # requests would reject it later with a message that quotes the header value.
            raise AuthError(
                None,
                "the API key contains whitespace or control characters: check how it was "
                f"copied into api_key=... or {ENV_API_KEY}",
            )
        self.key_source: str = secret.source if secret is not None else "argument"
        self._key = Secret(ENV_API_KEY, key, self.key_source)

        url = base_url if base_url is not None else os.environ.get(ENV_BASE_URL)
        url = (url or self.provider.base_url).strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {url_origin(url)!r}")
        self.base_url: str = url

        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 s, got {timeout!r}")
        if get_retries < 0:
            raise ValueError(f"get_retries must be >= 0, got {get_retries!r}")
        if backoff < 0:
            raise ValueError(f"backoff must be >= 0 s, got {backoff!r}")
        self.timeout = float(timeout)
        self.get_retries = int(get_retries)
        self.backoff = float(backoff)
        self.receiver = receiver
        self._sent = threading.local()  # when this thread's last request went out
        self._owns_session = session is None
        self.session: requests.Session = session if session is not None else requests.Session()
        # A suno_nb receiver polls with its client from now on: tasks left pending by an
        # earlier kernel are fetched without waiting for this client's first submission.
        hand_over = getattr(receiver, "use_client", None)
        if hand_over is not None:
            hand_over(self)

    def _sent_at(self) -> float:
        """When this thread's last request was sent: a submission's ``submitted_at`` (its
        accepted attempt, not the throttle's wait or a refused attempt before it)."""
        return float(getattr(self._sent, "at", time.time()))

    def close(self) -> None:
        """Close the session if the client created it (a passed-in session is left open)."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"SunoClient(provider={self.provider.name!r}, base_url={self.base_url!r}, "
            f"api_key=set from {self.key_source})"
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.text}", "Accept": "application/json"}

    def _redact(self, text: str) -> str:
        key = self._key.text
        return text.replace(key, REDACTED) if key in text else text

    def _endpoint_name(self, method: str, route: str) -> str:
        return f"{method} {self.provider.routes[route]}"

    def _request(
        self,
        method: str,
        route: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> Any:
        """Send one request to ``route`` (a contract endpoint) and return the reply's
        ``data``; GETs are retried (connection errors, timeouts, 5xx, rate limits), POSTs
        only after a rate-limit refusal.  Every attempt first waits for the throttle of this
        host and key (:mod:`suno_nb.throttle`).  ``timeout``/``retries`` override the
        client's for this request."""
        endpoint = self._endpoint_name(method, route)
        timeout = self.timeout if timeout is None else float(timeout)
        retries = self.get_retries if retries is None else int(retries)
        attempts = 1 + (retries if method == "GET" else POST_RATE_RETRIES)
        name = f"{self.provider.name} at {url_origin(self.base_url)}"
        gate = throttle.for_key(self.base_url, self._key.text, self.provider.rate_limit, name=name)
        for attempt in range(attempts):
            err: SunoNbError
            wait: float | None = None
            if gate is not None:
                gate.acquire(task=(params or {}).get("taskId"), what=endpoint)
            self._sent.at = time.time()  # this attempt's, after any throttle wait
            try:
                resp = self.session.request(
                    method,
                    self.base_url + self.provider.routes[route],
                    params=params,
                    json=body,
                    headers=self._headers(),
                    timeout=timeout,
                )
            except requests.RequestException as exc:
                retryable = method == "GET" and isinstance(
                    exc,
                    (
                        requests.ConnectionError,
                        requests.Timeout,
                        requests.exceptions.ChunkedEncodingError,
                    ),
                )
                err = self._network_error(
                    method, endpoint, exc, attempts=attempt + 1, timeout=timeout
                )
                why = network_reason(exc, timeout)
            else:
                try:
                    return self._parse(resp, endpoint, route)
                except (ServerError, RateLimitError) as exc:
                    # A rate-limit refusal proves the service did not accept the request (no
                    # task, nothing spent): even a submit may be sent again.  Any other
                    # failure of a POST might have created a task, so it is never resent.
                    limited = isinstance(exc, RateLimitError)
                    err, retryable, why = exc, method == "GET" or limited, f"code {exc.code}"
                    wait = getattr(exc, "retry_after", None)
                    if wait is not None and wait > MAX_RETRY_AFTER_S:
                        retryable = False  # the service asks for a long pause: say so
                finally:
                    resp.close()
            if not retryable or attempt == attempts - 1:
                # Raised outside the except block: no chained requests exception, whose
                # text we do not control, rides along in the traceback.
                err.__cause__ = None
                err.__suppress_context__ = True
                raise err
            # Full jitter around the exponential step keeps many clients from retrying in
            # lockstep; a Retry-After from the service wins.
            delay = (
                wait if wait is not None else self.backoff * 2**attempt * random.uniform(0.5, 1.5)
            )
            log.info(
                "%s failed (%s); retry %d/%d in %.2f s",
                endpoint,
                self._redact(why),
                attempt + 1,
                attempts - 1,
                delay,
            )
            if gate is not None and isinstance(err, RateLimitError):
                gate.hold(delay)  # every request with this key waits it out in acquire()
            else:
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, resp: requests.Response, endpoint: str, route: str) -> Any:
        """Return ``data`` of a ``code == 200`` reply; raise the mapped error otherwise."""
        status = resp.status_code
        try:
            doc = decode_json(resp.content)
        except PayloadError:
            doc = None
        retry_after = retry_after_s(resp)
        if isinstance(doc, dict):
            code = int_code(doc.get("code"))
            if code == 200 and status != 429:
                return doc.get("data")
            if code is not None:
                msg = doc.get("msg")
                if not isinstance(msg, str):
                    msg = "" if msg is None else str(msg)
                if status == 429:  # HTTP's own "too many requests" (kie.ai's refusal) whatever
                    # the JSON code: the generic table would read a JSON 429 as no credits.
                    raise RateLimitError(
                        code,
                        self._redact(msg),
                        endpoint=endpoint,
                        meaning="too many requests",
                        retry_after=retry_after,
                    )
                raise error_for_code(
                    code,
                    self._redact(msg),
                    endpoint=endpoint,
                    provider=self.provider,
                    route=route,
                    retry_after=retry_after,
                )
            if 200 <= status < 300:  # an envelope without a code: take it at its word
                return doc.get("data")
        what = "a body that is not the API's JSON" if doc is None else "JSON without a code"
        message = f"HTTP {status} {resp.reason or ''}".rstrip() + f" with {what}: {snippet(resp)!r}"
        if status == 429:  # HTTP's own "too many requests" (a gateway's, not the API's code)
            raise RateLimitError(
                status,
                self._redact(message),
                endpoint=endpoint,
                meaning="too many requests",
                retry_after=retry_after,
            )
        raise error_for_code(
            status,
            self._redact(message),
            endpoint=endpoint,
            provider=self.provider,
            route=route,
            retry_after=retry_after,
        )

    def _network_error(
        self,
        method: str,
        endpoint: str,
        exc: requests.RequestException,
        *,
        attempts: int,
        timeout: float,
    ) -> NetworkError:
        message = f"{endpoint} to {url_origin(self.base_url)}: {network_reason(exc, timeout)}"
        if method == "GET" and attempts > 1:
            message += f" (gave up after {attempts} attempts)"
        reached = method != "GET" and may_have_reached(exc)
        if reached:
            message += (
                ". The request may have reached the service and created a task (spending "
                "credits). Do not resubmit blindly: that could create a second paid task. "
                "First look for it: its callback (rx.deliveries()), your task list on the "
                "provider's dashboard, or client.get_details(<task id>) once you know the id."
            )
        else:
            message += "."
        return NetworkError(self._redact(message), may_have_reached=reached)
