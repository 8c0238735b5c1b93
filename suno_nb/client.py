"""SunoClient: the Suno API over a ``requests.Session``, one method per endpoint.

The client checks every replace-section rule before it sends anything, so no credit is
spent on a request the service would reject.  It never retries a POST that may have reached
the service (a second POST could create a second paid task); it does retry the idempotent
GETs on connection errors, timeouts and 5xx answers, with exponential backoff.

The API key travels only in the ``Authorization`` header.  Every message this module builds
(errors, log lines, reprs) is written here and passed through a redaction step, so the key
never shows up in a notebook's output even if the service echoes it back.

Floors: this module sits beside ``store`` and below ``receiver``/``session``.  It knows a
receiver only by duck type (``.url`` and ``.record_submission(sub)``) and holds the default
one, which ``start_receiver()`` registers, through a weak reference.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .errors import (
    ApiError,
    ApiValidationError,
    AuthError,
    InsufficientCreditsError,
    MaintenanceError,
    NetworkError,
    NotFoundError,
    PayloadError,
    RateLimitError,
    SectionValidationError,
    ServerError,
    SunoNbError,
)
from .payloads import RecordInfo, decode_json, parse_record_info
from .rules import validate_section, validate_text
from .store import Submission

__all__ = [
    "DEFAULT_BASE_URL",
    "ReplaceJob",
    "SunoClient",
    "error_for_code",
    "get_default_receiver",
    "set_default_receiver",
]

log = logging.getLogger("suno_nb.client")

DEFAULT_BASE_URL = "https://api.sunoapi.org"
ENV_API_KEY = "SUNO_API_KEY"
ENV_BASE_URL = "SUNO_API_BASE_URL"

REPLACE_SECTION_PATH = "/api/v1/generate/replace-section"
RECORD_INFO_PATH = "/api/v1/generate/record-info"
CREDIT_PATH = "/api/v1/generate/credit"
GENERATE_PATH = "/api/v1/generate"

SNIPPET_CHARS = 200  # how much of a non-JSON body an error message quotes
REDACTED = "***"

MISSING_KEY_MESSAGE = f"no API key: pass api_key=... or set {ENV_API_KEY}"


# --- receivers (duck-typed) ---------------------------------------------------------------


class ReceiverLike(Protocol):
    """What the client needs of a receiver: where callbacks go, and a place to record."""

    @property
    def url(self) -> str: ...

    def record_submission(self, submission: Submission) -> None: ...


_default_lock = threading.Lock()
_default_ref: weakref.ref[Any] | None = None


def set_default_receiver(rx: ReceiverLike | None) -> None:
    """Register ``rx`` as the receiver every client uses when none is passed (None clears).

    Only a weak reference is kept: a receiver that is gone is no longer the default.
    """
    global _default_ref
    with _default_lock:
        _default_ref = None if rx is None else weakref.ref(rx)


def get_default_receiver() -> ReceiverLike | None:
    """The registered default receiver, or None (never set, cleared, or garbage-collected)."""
    with _default_lock:
        ref = _default_ref
    return None if ref is None else ref()


# --- error mapping ------------------------------------------------------------------------

_CODE_ERRORS: dict[int, type[ApiError]] = {
    400: ApiValidationError,
    413: ApiValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    405: RateLimitError,
    430: RateLimitError,
    429: InsufficientCreditsError,
    455: MaintenanceError,
}


def error_for_code(code: int | None, message: str, *, endpoint: str = "") -> ApiError:
    """The :class:`ApiError` subclass for a service ``code`` (or HTTP status), built."""
    if code is not None and 500 <= code <= 599:
        cls: type[ApiError] = ServerError
    else:
        cls = _CODE_ERRORS.get(code, ApiError) if code is not None else ApiError
    return cls(code, message, endpoint=endpoint)


# --- the job handle -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaceJob:
    """A submitted replace-section task.

    ``task_id`` is the new task's id (give it to ``rx.wait``); ``parent_task_id`` and
    ``audio_id`` name the original; ``submitted_at`` is a Unix time in seconds.
    """

    task_id: str
    parent_task_id: str
    audio_id: str
    infill_start_s: float
    infill_end_s: float
    submitted_at: float
    callback_url: str | None = None

    @property
    def section_length_s(self) -> float:
        """Length of the replaced section in seconds."""
        return round(self.infill_end_s - self.infill_start_s, 2)

    def __repr__(self) -> str:
        when = _dt.datetime.fromtimestamp(self.submitted_at, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        # The callback path is the receiver's capability token: show the host only.
        callback = _url_origin(self.callback_url) + "/…" if self.callback_url else None
        return (
            f"ReplaceJob(task_id={self.task_id!r}, parent_task_id={self.parent_task_id!r}, "
            f"audio_id={self.audio_id!r}, section={self.infill_start_s:.2f}-"
            f"{self.infill_end_s:.2f} s, submitted_at='{when} UTC', callback={callback!r})"
        )


# --- the client ---------------------------------------------------------------------------


class SunoClient:
    """Client for the Suno API (hosted, or the local ``Sandbox`` via ``base_url``).

    ``api_key`` falls back to ``$SUNO_API_KEY`` and ``base_url`` to ``$SUNO_API_BASE_URL``
    (default ``https://api.sunoapi.org``).  ``session`` may be any ``requests.Session`` (for
    proxies, custom adapters or tests); the client never changes its headers or cookies.
    ``timeout`` (seconds) applies to connecting and to each read.  GETs are retried
    ``get_retries`` times on connection errors, timeouts and 5xx, waiting
    ``backoff * 2**n`` seconds; POSTs are never retried.  A session adapter that retries POSTs
    on its own would defeat that: don't mount one.

    ``receiver`` (any object with ``.url`` and ``.record_submission(sub)``) supplies the
    default callback URL and records each submission; without it the receiver registered by
    ``start_receiver()`` is used.

    Thread safety: the client keeps no per-request state, and ``requests.Session`` is safe in
    practice for the sequential use here plus the receiver's poller calling
    :meth:`get_details` from its thread.  For heavy concurrent use, give each thread its own
    client.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        receiver: ReceiverLike | None = None,
        get_retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(ENV_API_KEY)
        key = key.strip() if isinstance(key, str) else key
        if not key:
            raise _auth_error(MISSING_KEY_MESSAGE)
        if not isinstance(key, str) or any(ch.isspace() or ord(ch) < 32 for ch in key):
            # requests would reject it later with a message that quotes the header value.
            raise _auth_error(
                "the API key contains whitespace or control characters: check how it was "
                f"copied into api_key=... or {ENV_API_KEY}"
            )
        self._api_key: str = key

        url = base_url if base_url is not None else os.environ.get(ENV_BASE_URL)
        url = (url or DEFAULT_BASE_URL).strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {_url_origin(url)!r}")
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
        self._owns_session = session is None
        self.session: requests.Session = session if session is not None else requests.Session()

    # --- public endpoints -----------------------------------------------------------------

    def replace_section(
        self,
        *,
        task_id: str,
        audio_id: str,
        prompt: str,
        tags: str,
        title: str,
        infill_start_s: float,
        infill_end_s: float,
        negative_tags: str | None = None,
        full_lyrics: str | None = None,
        callback_url: str | None = None,
        original_duration: float | None = None,
        receiver: ReceiverLike | None = None,
    ) -> ReplaceJob:
        """Replace ``infill_start_s``-``infill_end_s`` of track ``audio_id`` of task ``task_id``.

        Every rule is checked before any credit is spent: required strings non-empty; the
        section 6-60 s long, start < end, both >= 0; at most 50 % of the original and not
        past its end.  The original's length is ``original_duration`` or, when omitted, looked
        up with :meth:`get_details` (a free GET).  Breaking a rule raises
        :class:`SectionValidationError` naming the field and the limit.

        ``callback_url`` defaults to the receiver's URL (``receiver``, the client's, or the
        one ``start_receiver()`` registered); that receiver also records the submission so
        ``rx.wait(job.task_id)`` and the polling fallback know the task.

        Returns a :class:`ReplaceJob`.  Raises an :class:`ApiError` subclass when the service
        refuses, :class:`NetworkError` when no answer came (check ``may_have_reached``).
        """
        task_id = _required("task_id", task_id)
        audio_id = _required("audio_id", audio_id)
        prompt = _required("prompt", prompt)
        tags = _required("tags", tags)
        title = _required("title", title)
        negative_tags = validate_text("negative_tags", negative_tags, required=False)
        full_lyrics = validate_text("full_lyrics", full_lyrics, required=False)
        callback_url = _check_callback_url(callback_url)

        if original_duration is not None:
            if isinstance(original_duration, bool) or not isinstance(
                original_duration, (int, float)
            ):
                raise SectionValidationError(
                    "original_duration",
                    f"must be a number of seconds, got {original_duration!r}",
                    value=original_duration,
                )
            section = validate_section(infill_start_s, infill_end_s, original_duration)
        else:
            # The duration-free rules first: a bad section needs no lookup.
            validate_section(infill_start_s, infill_end_s)
            duration = self._original_duration(task_id, audio_id)
            section = validate_section(infill_start_s, infill_end_s, duration)

        rx = self._pick_receiver(receiver)
        if callback_url is None and rx is not None:
            callback_url = rx.url

        body: dict[str, Any] = {
            "taskId": task_id,
            "audioId": audio_id,
            "prompt": prompt,
            "tags": tags,
            "title": title,
            "infillStartS": section.start,
            "infillEndS": section.end,
        }
        if negative_tags is not None:
            body["negativeTags"] = negative_tags
        if full_lyrics is not None:
            body["fullLyrics"] = full_lyrics
        if callback_url is not None:
            body["callBackUrl"] = callback_url

        submitted_at = time.time()
        data = self._request("POST", REPLACE_SECTION_PATH, body=body)
        new_task_id = _task_id_from(data, f"POST {REPLACE_SECTION_PATH}")

        job = ReplaceJob(
            task_id=new_task_id,
            parent_task_id=task_id,
            audio_id=audio_id,
            infill_start_s=section.start,
            infill_end_s=section.end,
            submitted_at=submitted_at,
            callback_url=callback_url,
        )
        if rx is not None:
            params = {k: v for k, v in body.items() if k != "callBackUrl"}
            sub = Submission(
                task_id=new_task_id,
                parent_task_id=task_id,
                audio_id=audio_id,
                infill_start_s=section.start,
                infill_end_s=section.end,
                prompt=prompt,
                tags=tags,
                title=title,
                negative_tags=negative_tags,
                full_lyrics=full_lyrics,
                params=params,
                submitted_at=submitted_at,
            )
            self._record(rx, sub)
        log.info("submitted replace-section task %s (parent %s)", new_task_id, task_id)
        return job

    def get_details(self, task_id: str) -> RecordInfo:
        """Fetch a task's record-info (status, tracks, errors); a GET, costs no credit.

        Retried on connection errors, timeouts and 5xx.  Raises :class:`NotFoundError` for
        an unknown task, :class:`PayloadError` when the answer has the wrong shape.
        """
        task_id = _required("task_id", task_id)
        data = self._request("GET", RECORD_INFO_PATH, params={"taskId": task_id})
        return parse_record_info(data)

    def credits(self) -> float:
        """The account's remaining credits (a GET, retried like :meth:`get_details`)."""
        data = self._request("GET", CREDIT_PATH)
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        if isinstance(data, str):
            try:
                return float(data)
            except ValueError:
                pass
        raise ApiError(
            200,
            f"credit answer is not a number: {type(data).__name__}",
            endpoint=f"GET {CREDIT_PATH}",
        )

    def generate(
        self,
        *,
        prompt: str | None,
        style: str | None = None,
        title: str | None = None,
        custom_mode: bool = False,
        instrumental: bool = False,
        model: str = "V4_5",
        callback_url: str | None = None,
    ) -> str:
        """Create original music (two tracks) and return the new task's id.

        ``prompt`` is required, except for an instrumental in custom mode; custom mode also
        requires ``style`` and ``title``.  Not retried (a POST creates a paid task).
        """
        custom_mode = bool(custom_mode)
        instrumental = bool(instrumental)
        prompt = validate_text("prompt", prompt, required=not (custom_mode and instrumental))
        style = validate_text("style", style, required=custom_mode)
        title = validate_text("title", title, required=custom_mode)
        model = _required("model", model)
        callback_url = _check_callback_url(callback_url)
        body: dict[str, Any] = {"customMode": custom_mode, "instrumental": instrumental}
        if prompt is not None:
            body["prompt"] = prompt
        if style is not None:
            body["style"] = style
        if title is not None:
            body["title"] = title
        body["model"] = model
        if callback_url is not None:
            body["callBackUrl"] = callback_url
        data = self._request("POST", GENERATE_PATH, body=body)
        return _task_id_from(data, f"POST {GENERATE_PATH}")

    # --- lifecycle and display ------------------------------------------------------------

    def close(self) -> None:
        """Close the session if the client created it (a passed-in session is left open)."""
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> SunoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SunoClient(base_url={self.base_url!r}, api_key=set)"

    # --- internals ------------------------------------------------------------------------

    def _pick_receiver(self, receiver: ReceiverLike | None) -> ReceiverLike | None:
        if receiver is not None:
            return receiver
        if self.receiver is not None:
            return self.receiver
        rx = get_default_receiver()
        # A stopped receiver would take no callbacks; the session unregisters it on stop,
        # this guards the gap.
        if rx is not None and getattr(rx, "running", True) is False:
            return None
        return rx

    def _record(self, rx: ReceiverLike, sub: Submission) -> None:
        """Hand the submission to the receiver; a failure here must not lose the job."""
        try:
            # The session's Receiver also takes the client, so its poller can use it.
            if _accepts_client(rx.record_submission):
                rx.record_submission(sub, client=self)  # type: ignore[call-arg]
            else:
                rx.record_submission(sub)
        except Exception as exc:
            log.warning(
                "task %s was submitted, but the receiver could not record it (%s): "
                "rx.wait() may not know it; its callback is still stored when it arrives",
                sub.task_id,
                self._redact(f"{type(exc).__name__}: {exc}"),
            )

    def _original_duration(self, task_id: str, audio_id: str) -> float | None:
        """The original track's duration from its parent task, or None when unknown."""
        try:
            info = self.get_details(task_id)
        except (ApiError, NetworkError, PayloadError) as exc:
            # The service checks the section again; the lookup is only an early warning.
            log.warning(
                "could not look up the original's duration (%s); checking the section "
                "without it (pass original_duration=... to check the 50 %% rule here)",
                exc,
            )
            return None
        for track in info.tracks:
            if track.id == audio_id:
                return track.duration
        ids = [t.id for t in info.tracks]
        have = (
            f"its tracks are {', '.join(map(repr, ids))}"
            if ids
            else f"it has no tracks yet (status {info.status})"
        )
        raise SectionValidationError(
            "audio_id",
            f"{audio_id!r} is not a track of task {task_id!r}: {have}",
            limit=ids,
            value=audio_id,
        )

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self._api_key}",
            "Accept": "application/json",
        }

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, REDACTED) if self._api_key in text else text

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request (GETs: with retries) and return the reply's ``data``."""
        endpoint = f"{method} {path}"
        attempts = 1 + (self.get_retries if method == "GET" else 0)
        for attempt in range(attempts):
            err: SunoNbError
            try:
                resp = self.session.request(
                    method,
                    self.base_url + path,
                    params=params,
                    json=body,
                    headers=self._headers(),
                    timeout=self.timeout,
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
                err = self._network_error(method, endpoint, exc, attempts=attempt + 1)
                why = _network_reason(exc, self.timeout)
            else:
                try:
                    return self._parse(resp, endpoint)
                except ServerError as exc:
                    err, retryable, why = exc, method == "GET", f"code {exc.code}"
                finally:
                    resp.close()
            if not retryable or attempt == attempts - 1:
                # Raised outside the except block: no chained requests exception, whose
                # text we do not control, rides along in the traceback.
                err.__cause__ = None
                err.__suppress_context__ = True
                raise err
            delay = self.backoff * 2**attempt
            log.info(
                "%s failed (%s); retry %d/%d in %.2f s",
                endpoint,
                self._redact(why),
                attempt + 1,
                self.get_retries,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _parse(self, resp: requests.Response, endpoint: str) -> Any:
        """Return ``data`` of a ``code == 200`` reply; raise the mapped error otherwise."""
        status = resp.status_code
        try:
            doc = decode_json(resp.content)
        except PayloadError:
            doc = None
        if isinstance(doc, dict):
            code = _int_code(doc.get("code"))
            if code == 200:
                return doc.get("data")
            if code is not None:
                msg = doc.get("msg")
                if not isinstance(msg, str):
                    msg = "" if msg is None else str(msg)
                raise error_for_code(code, self._redact(msg), endpoint=endpoint)
            if 200 <= status < 300:  # an envelope without a code: take it at its word
                return doc.get("data")
        snippet = _snippet(resp)
        what = "a body that is not the API's JSON" if doc is None else "JSON without a code"
        message = f"HTTP {status} {resp.reason or ''}".rstrip() + f" with {what}: {snippet!r}"
        raise error_for_code(status, self._redact(message), endpoint=endpoint)

    def _network_error(
        self,
        method: str,
        endpoint: str,
        exc: requests.RequestException,
        *,
        attempts: int,
    ) -> NetworkError:
        host = _url_origin(self.base_url)
        reason = _network_reason(exc, self.timeout)
        message = f"{endpoint} to {host}: {reason}"
        if method == "GET" and attempts > 1:
            message += f" (gave up after {attempts} attempts)"
        reached = method != "GET" and _may_have_reached(exc)
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


# --- helpers ------------------------------------------------------------------------------


def _auth_error(message: str) -> AuthError:
    return AuthError(None, message)


def _required(field: str, value: object) -> str:
    text = validate_text(field, value, required=True)
    assert text is not None  # validate_text raised otherwise
    return text


def _check_callback_url(url: object) -> str | None:
    text = validate_text("callback_url", url, required=False)
    if text is None:
        return None
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SectionValidationError(
            "callback_url", "must be an http(s) URL", limit="http(s) URL", value=text
        )
    return text.strip()


def _accepts_client(fn: Any) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "client" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def _int_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _task_id_from(data: Any, endpoint: str) -> str:
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if isinstance(task_id, str) and task_id.strip():
        return task_id
    raise ApiError(
        200,
        "the service accepted the request but its reply has no data.taskId; a task may "
        "exist: check your task list before resubmitting",
        endpoint=endpoint,
    )


def _snippet(resp: requests.Response) -> str:
    text = resp.content[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")


def _url_origin(url: str) -> str:
    """scheme://host[:port] of a URL, without credentials, path or query."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "<invalid URL>"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _may_have_reached(exc: requests.RequestException) -> bool:
    """Could the service have received the request before this failure?"""
    if isinstance(
        exc,
        (
            requests.ConnectTimeout,
            requests.exceptions.SSLError,
            requests.exceptions.ProxyError,
        ),
    ):
        return False
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, MaxRetryError):
            inner = inner.reason
        # No connection was made: nothing was sent.
        return not isinstance(inner, NewConnectionError)
    # Read timeouts and broken replies happen after the request was sent.
    return isinstance(
        exc,
        (
            requests.ReadTimeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
    )


def _network_reason(exc: requests.RequestException, timeout: float) -> str:
    """A short, secret-free description of a requests failure."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"could not connect within {timeout:g} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {timeout:g} s (read timeout)"
    root = _os_error(exc)
    if root:
        return f"{type(exc).__name__}: {root}"
    if isinstance(exc, requests.ConnectionError):
        return f"{type(exc).__name__}: the connection failed or was dropped"
    return type(exc).__name__


def _os_error(exc: BaseException) -> str | None:
    """The ``strerror`` of the first OS error behind ``exc`` (e.g. "Connection refused")."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return str(e.strerror)
        todo.extend(a for a in e.args if isinstance(a, BaseException))
        for nxt in (getattr(e, "reason", None), e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None
