"""SunoClient: the Suno API over a ``requests.Session``, one method per endpoint.

What the client knows about the service comes from a provider's contract table
(:mod:`suno_nb.contract`; ``provider="sunoapi.org"`` by default, ``"kie.ai"``, or your own
:class:`~suno_nb.contract.Provider`): routes, required fields, the section rules and each
endpoint's code table.  Every rule is checked before anything is sent, so no credit is
spent on a request the service would refuse.  POSTs are never retried (a second POST could
create a second paid task); the idempotent GETs are retried on connection errors, timeouts,
5xx and rate limits (honouring ``Retry-After``), with exponential backoff and jitter.

The API key travels only in the ``Authorization`` header.  Every message this module builds
(errors, log lines, reprs) passes through a redaction step, so the key never shows up in a
notebook's output even if the service echoes it back.

Floors: this module sits beside ``store`` and below ``receiver``/``session``.  It meets a
receiver only when given one (``SunoClient(receiver=rx)`` or ``receiver=rx`` per call), and
knows it by its protocol (``.url`` and ``.record_submission(sub, fetch)``).
"""

from __future__ import annotations

import logging
from typing import Any

from . import client_checks, client_lyrics, client_media
from .client_base import (
    DEFAULT_BASE_URL,
    MISSING_KEY_MESSAGE,
    BaseClient,
    GenerateJob,
    ReceiverLike,
    ReplaceJob,
)
from .client_errors import error_for_code, reachable_callback, tell_user
from .client_media import WavJob
from .contract import Provider
from .errors import ApiError, NetworkError, PayloadError, SectionValidationError
from .payloads import RecordInfo, parse_record_info, parse_task_record
from .rows import Submission
from .rules import (
    check_url,
    pick_model,
    recorded_params,
    request_body,
    required_by,
    validate_text,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "MISSING_KEY_MESSAGE",
    "GenerateJob",
    "ReplaceJob",
    "SunoClient",
    "WavJob",
    "error_for_code",
]

log = logging.getLogger("suno_nb.client")


# --- the client ---------------------------------------------------------------------------


class SunoClient(BaseClient):
    """Client for the Suno API (hosted, or the local ``Sandbox`` via ``base_url``).

    ``provider``: ``"sunoapi.org"`` (default), ``"kie.ai"`` or a
    :class:`~suno_nb.contract.Provider`; it supplies the routes, rules and code tables
    (``client.provider``).  ``api_key``: the argument, else ``SUNO_API_KEY`` from the
    environment, a ``.env`` file or Colab's secrets.  ``base_url``: the argument, else
    ``$SUNO_API_BASE_URL``, else the provider's.  ``session`` may be any
    ``requests.Session``.  ``timeout`` (seconds) applies to connecting and to each read.
    GETs are retried ``get_retries`` times (connection errors, timeouts, 5xx, rate limits),
    waiting ``Retry-After`` when the service says, else ``backoff * 2**n`` seconds with
    jitter; POSTs are never retried.

    ``receiver`` (the ``rx`` from ``start_receiver()``, or any object with ``.url`` and
    ``.record_submission(sub, fetch)``) supplies the default callback URL, records each
    submission (so ``rx.wait(job.task_id)`` knows it) and may poll it with this client; a
    suno_nb receiver polls with it from the start (``rx.use_client``), so what an earlier
    kernel left pending in the store is fetched too.
    """

    # --- public endpoints -----------------------------------------------------------------

    def replace_section(
        self,
        *,
        prompt: str,
        tags: str,
        title: str,
        infill_start_s: float,
        infill_end_s: float,
        full_lyrics: str | None = None,
        task_id: str | None = None,
        audio_id: str | None = None,
        upload_url: str | None = None,
        model: str | None = None,
        negative_tags: str | None = None,
        callback_url: str | None = None,
        original_duration: float | None = None,
        receiver: ReceiverLike | None = None,
        lyrics: str | None = None,
        vocal_gender: str | None = None,
        style_weight: float | None = None,
        weirdness_constraint: float | None = None,
        audio_weight: float | None = None,
        variety: int | None = None,
        persona_id: str | None = None,
        persona_model: str | None = None,
    ) -> ReplaceJob:
        """Replace ``infill_start_s``-``infill_end_s`` of a track with new music.

        Two modes, exactly one: a track the service made (``task_id`` + ``audio_id``), or
        your own audio (``upload_url`` + ``model``, one of ``client.provider.models``; a
        deprecated model warns, naming ``client.provider.default_model``).
        ``full_lyrics`` (the whole lyrics after the change) is required where the provider
        requires it (sunoapi.org does).  The section must follow
        ``client.provider.section``: on sunoapi.org at least 10 s and at most 50 % of the
        original.  The original's length is ``original_duration`` or, in mode 1, looked up
        with :meth:`get_details` (a free GET).  A broken rule raises
        :class:`SectionValidationError` naming the field and the limit, before any request.

        Optional fields, sent in the provider's spelling only when given, each checked
        against ``client.provider.fields``: ``lyrics`` (the segment's, preferred over
        ``prompt``), ``vocal_gender``, ``style_weight``, ``weirdness_constraint``,
        ``audio_weight``, ``variety``, ``persona_id``, ``persona_model``.

        ``callback_url`` defaults to the receiver's URL; that receiver also records the
        submission so ``rx.wait(job.task_id)`` and the polling fallback know the task.
        Raises an :class:`ApiError` subclass when the service refuses (per the
        replace-section code table), :class:`NetworkError` when no answer came.
        """
        p, endpoint = self.provider, "replace-section"
        given = {k: v for k, v in locals().items() if k not in ("self", "p", "endpoint")}
        args, callback_url, rx = client_checks.prepare_replace(self, lookup=True, **given)
        source = {k: args[k] for k in ("task_id", "audio_id", "upload_url", "model") if k in args}
        section_start, section_end = args["infill_start_s"], args["infill_end_s"]
        prompt, tags, title = args["prompt"], args["tags"], args["title"]
        negative_tags, full_lyrics = args["negative_tags"], args["full_lyrics"]
        body = request_body(p, endpoint, args, callback_url)
        data = self._request("POST", endpoint, body=body)
        submitted_at = self._sent_at()  # the accepted attempt's
        new_task_id = _task_id_from(data, self._endpoint_name("POST", endpoint))
        job = ReplaceJob(
            task_id=new_task_id,
            parent_task_id=source.get("task_id"),
            audio_id=source.get("audio_id"),
            infill_start_s=section_start,
            infill_end_s=section_end,
            submitted_at=submitted_at,
            callback_url=callback_url,
            upload_url=source.get("upload_url"),
            model=source.get("model"),
        )
        if rx is not None:
            sub = Submission(
                task_id=new_task_id,
                parent_task_id=job.parent_task_id,
                audio_id=job.audio_id,
                infill_start_s=section_start,
                infill_end_s=section_end,
                prompt=prompt,
                tags=tags,
                title=title,
                negative_tags=negative_tags,
                full_lyrics=full_lyrics,
                params=recorded_params(body, p),
                submitted_at=submitted_at,
            )
            self._record(rx, sub)
        log.info("submitted replace-section task %s", new_task_id)
        return job

    def get_details(
        self, task_id: str, *, timeout: float | None = None, retries: int | None = None
    ) -> RecordInfo:
        """Fetch a task's record-info (status, tracks, errors); a GET, costs no credit.

        On kie.ai's task API this reads ``recordInfo``: its ``state`` becomes the status
        (``SUCCESS``, ``GENERATE_AUDIO_FAILED`` or ``PENDING``), ``resultJson`` the tracks
        and ``failCode``/``failMsg`` the error, in the same :class:`RecordInfo`.

        Retried ``retries`` times (default: the client's ``get_retries``) on connection
        errors, timeouts, 5xx and rate limits; ``timeout`` (seconds) overrides the client's.
        Raises :class:`NotFoundError` for an unknown task, :class:`PayloadError` for a wrong
        shape.
        """
        task_id = _required("task_id", task_id, self.provider)
        data = self._request(
            "GET", "record-info", params={"taskId": task_id}, timeout=timeout, retries=retries
        )
        if self.provider.api == "task":  # kie.ai: recordInfo's state + resultJson
            return parse_task_record(data)
        return parse_record_info(data)

    def poll_fetch(self, task_id: str, timeout: float) -> RecordInfo:
        """One record-info request within ``timeout`` seconds and no retries: what the
        receiver's polling fallback calls (its next poll is the retry)."""
        return self.get_details(task_id, timeout=timeout, retries=0)

    def credits(self) -> float:
        """The account's remaining credits (a GET on the provider's credits route)."""
        data = self._request("GET", "credits")
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
            endpoint=self._endpoint_name("GET", "credits"),
        )

    def generate(
        self,
        *,
        prompt: str | None,
        style: str | None = None,
        title: str | None = None,
        custom_mode: bool = False,
        instrumental: bool = False,
        model: str | None = None,
        negative_tags: str | None = None,
        callback_url: str | None = None,
        receiver: ReceiverLike | None = None,
    ) -> GenerateJob:
        """Create an original (two tracks) to edit later; returns a :class:`GenerateJob`.

        ``prompt`` is required, except for an instrumental in custom mode; custom mode also
        requires ``style`` and ``title``.  The service requires a callback URL: it defaults
        to the receiver's (which also records the task, so ``rx.wait(job.task_id)`` follows
        it through its ``text``/``first``/``complete`` callbacks).  ``model`` defaults to the
        provider's current default (``client.provider.default_model``); a deprecated one
        warns.  Not retried.
        """
        p = self.provider
        if "generate" not in p.routes:
            raise ValueError(
                f"{p.name} has no generate route in suno_nb's contract: "
                f"{p.notes.get('generate', 'use another provider to create originals')}"
            )
        custom_mode = bool(custom_mode)
        instrumental = bool(instrumental)
        prompt = validate_text(
            "prompt",
            prompt,
            required=not (custom_mode and instrumental),
            provider=p,
            limit_key=None if custom_mode else "prompt_non_custom",
        )
        style = validate_text("style", style, required=custom_mode, provider=p)
        title = validate_text("title", title, required=custom_mode, provider=p)
        negative_tags = validate_text("negative_tags", negative_tags, required=False, provider=p)
        model = pick_model(p.default_model if model is None else model, p)
        rx = self._pick_receiver(receiver)
        callback_url = self._callback_for(
            check_url("callback_url", callback_url),
            rx,
            required=required_by(p, "generate", "callback_url"),
        )
        args = {"custom_mode": custom_mode, "instrumental": instrumental, "prompt": prompt}
        args |= {"style": style, "title": title, "model": model, "negative_tags": negative_tags}
        body = request_body(p, "generate", args, callback_url)
        data = self._request("POST", "generate", body=body)
        submitted_at = self._sent_at()  # the accepted attempt's
        task_id = _task_id_from(data, self._endpoint_name("POST", "generate"))
        if rx is not None:
            sub = Submission(
                task_id=task_id,
                parent_task_id=None,
                audio_id=None,
                infill_start_s=None,
                infill_end_s=None,
                prompt=prompt,
                tags=style,
                title=title,
                negative_tags=negative_tags,
                params=recorded_params(body, p),
                submitted_at=submitted_at,
            )
            self._record(rx, sub)
        log.info("submitted generate task %s", task_id)
        return GenerateJob(task_id, model, title, submitted_at, callback_url)

    # "Rewrite the second chorus": the bodies live in client_lyrics.py.
    timestamped_lyrics = client_lyrics.timestamped_lyrics
    replace_lines = client_lyrics.replace_lines
    # WAV conversion and Recovery Audio: the bodies live in client_media.py.
    wav = client_media.wav
    wav_details = client_media.wav_details
    recover = client_media.recover
    # A request's checks without the request (batches preview with it): client_checks.py.
    check_replace_section = client_checks.check_replace_section

    # --- lifecycle and display ------------------------------------------------------------

    def _pick_receiver(self, receiver: ReceiverLike | None) -> ReceiverLike | None:
        """The receiver passed to this call, else the client's own (``receiver=``)."""
        return receiver if receiver is not None else self.receiver

    def _callback_for(
        self, url: str | None, rx: ReceiverLike | None, *, required: bool
    ) -> str | None:
        """The callback URL to send: explicit, else the receiver's; checked for reach.  A
        receiver that cannot have a public URL here (``rx.polling_only``: Kaggle) gets
        none sent when the endpoint allows it: its poller fetches the result."""
        if url is None and rx is not None and getattr(rx, "polling_only", False):
            if required:
                raise SectionValidationError(
                    "callback_url",
                    f"{self.provider.name} requires a callback URL here, and this receiver can "
                    "have no public URL (rx.tunnel_note says why): pass a public "
                    "callback_url='https://...'",
                    limit="required",
                )
            return None
        return reachable_callback(
            url if url is not None or rx is None else rx.url,
            base_url=self.base_url,
            provider=self.provider.name,
            required=required,
        )

    def _record(self, rx: ReceiverLike, sub: Submission) -> None:
        """Hand the submission to the receiver; a failure here must not lose the job."""
        try:
            rx.record_submission(sub, self.poll_fetch)
        except Exception as exc:
            tell_user(
                f"task {sub.task_id} was submitted, but the receiver could not record it "
                f"({self._redact(f'{type(exc).__name__}: {exc}')}): rx.wait() may not know "
                "it; its callback is still stored when it arrives"
            )

    def _original_duration(self, task_id: str, audio_id: str) -> float | None:
        """The original track's duration from its parent task, or None when unknown."""
        try:
            info = self.get_details(task_id)
        except (ApiError, NetworkError, PayloadError) as exc:
            # The service checks the section again; the lookup is only an early warning.
            tell_user(
                f"could not look up the original's duration ({exc}); checking the section "
                "without it (pass original_duration=... to check the 50 % rule here)"
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


# --- helpers ------------------------------------------------------------------------------


def _required(field: str, value: object, provider: Provider) -> str:
    text = validate_text(field, value, required=True, provider=provider)
    assert text is not None  # validate_text raised otherwise
    return text


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
