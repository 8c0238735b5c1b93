"""The client's media endpoints: WAV conversion of a track, and Recovery Audio of a task.

The bodies of :meth:`SunoClient.wav <suno_nb.client.SunoClient.wav>`,
:meth:`SunoClient.wav_details <suno_nb.client.SunoClient.wav_details>` and
:meth:`SunoClient.recover <suno_nb.client.SunoClient.recover>`, as functions of the client
(kept out of ``client.py``, which holds the submit endpoints).

Both endpoints require a callback URL (the receiver's by default).  A receiver that can
(``record_job``) records each job with the original task it belongs to, so it can place the
result when it comes: the WAV link on the track, the recovered links on the original's
tracks.  A WAV job whose callback is lost is polled through ``wav/record-info``.

Floors: beside ``client_base``; it reaches the client only through the object passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .client_errors import tell_user
from .errors import ApiError, SectionValidationError
from .payloads.media import WavRecord, parse_wav_record
from .rows import MediaSubmission
from .rules import check_url, validate_text

log = logging.getLogger("suno_nb.client")

__all__ = ["WavJob", "recover", "wav", "wav_details", "wav_poll_fetch"]


@dataclass(frozen=True)
class WavJob:
    """A WAV conversion asked for: ``task_id`` is the WAV task's id; the result lands on
    track ``audio_id`` of ``parent_task_id`` (``wav_url`` in ``rx.frame()``)."""

    task_id: str
    parent_task_id: str
    audio_id: str
    submitted_at: float
    callback_url: str | None = None

    def __repr__(self) -> str:  # no callback URL: its path is a capability
        when = datetime.fromtimestamp(self.submitted_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        return (
            f"WavJob(task_id={self.task_id!r}, parent_task_id={self.parent_task_id!r}, "
            f"audio_id={self.audio_id!r}, submitted_at='{when} UTC')"
        )


def _route(client: Any, endpoint: str, what: str) -> None:
    """Refuse, before any request, an endpoint the provider's table does not have."""
    if endpoint not in client.provider.routes:
        raise SectionValidationError(
            "provider",
            f"{client.provider.name} has no {what} endpoint ({endpoint!r}) in suno_nb's "
            "contract table; use a provider that documents it (e.g. 'sunoapi.org')",
            limit=f"a {endpoint} route",
            value=client.provider.name,
        )


def _id(client: Any, name: str, value: object) -> str:
    text = validate_text(name, value, required=True, provider=client.provider)
    assert text is not None
    return text.strip()


def _new_id(data: Any, endpoint: str) -> str:
    """The job id of a reply: ``data.taskId`` (WAV) or ``data.task_id`` (recovery)."""
    if isinstance(data, dict):
        for key in ("taskId", "task_id"):
            value = data.get(key)
            if isinstance(value, str) and value.strip():
                return value
    raise ApiError(
        200,
        "the service accepted the request but its reply has no task id; a job may exist: "
        "check your task list before asking again",
        endpoint=endpoint,
    )


def _record(client: Any, rx: Any, sub: MediaSubmission, fetch: Any) -> None:
    if rx is None:
        return
    record = getattr(rx, "record_job", None)
    if record is None:
        tell_user(
            f"{sub.kind} job {sub.job_id} was submitted; this receiver cannot record such "
            "jobs, so its callback will be refused: pass a suno_nb receiver"
        )
        return
    try:
        record(sub, fetch)
    except Exception as exc:  # the job exists at the service: never lose the handle
        tell_user(
            f"{sub.kind} job {sub.job_id} was submitted, but the receiver could not record "
            f"it ({client._redact(f'{type(exc).__name__}: {exc}')}); its callback will be "
            "refused until it is recorded"
        )


def wav(
    client: Any,
    *,
    task_id: str,
    audio_id: str,
    callback_url: str | None = None,
    receiver: Any = None,
) -> WavJob:
    """Convert track ``audio_id`` of task ``task_id`` to WAV (``POST /api/v1/wav/generate``).

    The callback URL is required (the receiver's by default); the receiver records the job
    and puts the WAV link on the track when its callback (or, if that is lost, a
    ``wav/record-info`` poll) comes: ``rx.frame()``'s ``wav_url``.  Bad input raises
    :class:`SectionValidationError` naming the field, before any request.
    """
    _route(client, "wav", "WAV conversion")
    task_id = _id(client, "task_id", task_id)
    audio_id = _id(client, "audio_id", audio_id)
    rx = client._pick_receiver(receiver)
    url = client._callback_for(check_url("callback_url", callback_url), rx, required=True)
    body = {"taskId": task_id, "audioId": audio_id, "callBackUrl": url}
    data = client._request("POST", "wav", body=body)
    submitted_at = client._sent_at()  # the accepted attempt's
    job_id = _new_id(data, client._endpoint_name("POST", "wav"))
    sub = MediaSubmission(job_id, "wav", task_id, audio_id, submitted_at)
    _record(client, rx, sub, wav_fetch(client))
    log.info("submitted WAV conversion %s of %s/%s", job_id, task_id, audio_id)
    return WavJob(job_id, task_id, audio_id, submitted_at, url)


def wav_details(
    client: Any, task_id: str, *, timeout: float | None = None, retries: int | None = None
) -> WavRecord:
    """A WAV task's details (``GET /api/v1/wav/record-info``): ``status`` (successFlag),
    ``url`` when done, the error otherwise.  A GET: retried like record-info."""
    _route(client, "wav-info", "WAV details")
    task_id = _id(client, "task_id", task_id)
    data = client._request(
        "GET", "wav-info", params={"taskId": task_id}, timeout=timeout, retries=retries
    )
    return parse_wav_record(data)


def wav_poll_fetch(client: Any, task_id: str, timeout: float) -> WavRecord:
    """One WAV details request within ``timeout`` seconds, no retries (the poller's)."""
    return wav_details(client, task_id, timeout=timeout, retries=0)


def wav_fetch(client: Any) -> Callable[[str, float], WavRecord] | None:
    """What polls ``client``'s WAV jobs (``fetch(job_id, timeout)``), or None when its
    provider publishes no WAV details route."""
    if "wav-info" not in client.provider.routes:
        return None
    return lambda job_id, timeout: wav_poll_fetch(client, job_id, timeout)


def recover(
    client: Any, task_id: str, *, callback_url: str | None = None, receiver: Any = None
) -> str:
    """Ask the service for new links to task ``task_id``'s tracks (Recovery Audio,
    ``POST /api/v1/suno/recovery``) and return the recovery task's id.

    ``task_id`` is the original music task (``sunoTaskId``).  The callback URL is required
    (the receiver's by default); the receiver records the recovery with that task and, when
    its callback comes, gives the task's tracks their new ``audio_url`` (and stream/cover
    links if sent), or says per track why it was not recovered (``recovery``,
    ``audio_error`` in ``rx.frame()``).  Bad input raises naming the field, before any
    request.
    """
    _route(client, "recovery", "Recovery Audio")
    task_id = _id(client, "task_id", task_id)
    rx = client._pick_receiver(receiver)
    url = client._callback_for(check_url("callback_url", callback_url), rx, required=True)
    data = client._request("POST", "recovery", body={"sunoTaskId": task_id, "callBackUrl": url})
    submitted_at = client._sent_at()  # the accepted attempt's
    job_id = _new_id(data, client._endpoint_name("POST", "recovery"))
    _record(client, rx, MediaSubmission(job_id, "recovery", task_id, None, submitted_at), None)
    log.info("submitted recovery %s of task %s", job_id, task_id)
    return job_id
