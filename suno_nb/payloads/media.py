"""WAV-conversion and Recovery Audio bodies: their callbacks and the WAV details answer.

Two callback shapes beside the music family's (``data.callbackType``):

- WAV (``convert-to-wav-format-callbacks``): ``{"code", "msg", "data": {"audioWavUrl",
  "task_id"}}``; kie.ai's Chinese page spells the URL ``audio_wav_url`` (both accepted).
- Recovery (``recovery-audio``): ``{"code", "msg", "task_id", "data": [{"id",
  "audio_url", "title", "status", "error"}, ...]}``: the task id at the top level, ``data``
  a list, task-level 200 when at least one track came back, 500 when all failed.

Both are parsed strictly (an unknown key in ``data`` of a WAV body, a track status other
than success/failed, a wrong type: :class:`PayloadError` naming it), because a body that is
neither these nor the music family's must stay a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError
from .wire import checked_task_id, error_fields

__all__ = [
    "RECOVERY_STATUSES",
    "WAV_FAILED",
    "WAV_PENDING",
    "WAV_SUCCESS",
    "RecoveredTrack",
    "RecoveryCallback",
    "WavCallback",
    "WavRecord",
    "media_callback",
    "parse_wav_record",
]

WAV_URL_KEYS = ("audioWavUrl", "audio_wav_url")  # sunoapi.org's spelling, kie.ai's (cn)
_WAV_DATA_KEYS = frozenset({*WAV_URL_KEYS, "task_id", "taskId"})
RECOVERY_STATUSES = ("success", "failed")
_URL_KEYS = ("audio_url", "stream_audio_url", "image_url")
MAX_TEXT = 2000  # an error text longer than this is cut (it is kept raw in the delivery)

# WAV details' successFlag (get-wav-conversion-details).
WAV_PENDING = ("PENDING",)
WAV_SUCCESS = "SUCCESS"
WAV_FAILED = ("CREATE_TASK_FAILED", "GENERATE_WAV_FAILED", "CALLBACK_EXCEPTION")


@dataclass(frozen=True)
class WavCallback:
    """A WAV conversion's result: ``url`` on success (code 200), else None."""

    code: int
    msg: str
    task_id: str  # the WAV task's id (what the convert request answered)
    url: str | None
    raw: dict[str, Any]

    kind = "wav"

    @property
    def succeeded(self) -> bool:
        return self.code == 200 and bool(self.url)


@dataclass(frozen=True)
class RecoveredTrack:
    """One track of a recovery callback: ``status`` success (new URLs) or failed (``error``)."""

    id: str
    status: str
    audio_url: str | None
    stream_audio_url: str | None
    image_url: str | None
    title: str | None
    error: str | None

    @property
    def recovered(self) -> bool:
        return self.status == "success" and bool(self.audio_url)


@dataclass(frozen=True)
class RecoveryCallback:
    """A recovery task's result: one :class:`RecoveredTrack` per track of the original."""

    code: int
    msg: str
    task_id: str  # the recovery task's id (not the original's)
    tracks: tuple[RecoveredTrack, ...]
    raw: dict[str, Any]

    kind = "recovery"

    @property
    def succeeded(self) -> bool:
        return self.code == 200


@dataclass(frozen=True)
class WavRecord:
    """The WAV details answer (``GET /api/v1/wav/record-info``) in the callback's terms."""

    task_id: str
    status: str  # successFlag
    url: str | None
    error_code: int | None
    error_message: str | None
    raw: dict[str, Any]

    @property
    def terminal(self) -> bool:
        return self.status == WAV_SUCCESS or self.status in WAV_FAILED

    def as_callback(self) -> WavCallback:
        """The callback the service would have sent for this (terminal) answer."""
        if self.status == WAV_SUCCESS and self.url:
            return WavCallback(200, "success", self.task_id, self.url, self.raw)
        code = self.error_code if self.error_code in (400, 451, 500, 501) else 501
        msg = f"{self.status}: {self.error_message or 'the WAV conversion failed'}"
        return WavCallback(code or 501, msg, self.task_id, None, self.raw)


def _text(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value[:MAX_TEXT] if isinstance(value, str) else None
    raise PayloadError(f"{where}.{key} must be a string, got {type(value).__name__}")


def _wav(doc: dict[str, Any], data: dict[str, Any], code: int, msg: str) -> WavCallback:
    extra = sorted(set(data) - _WAV_DATA_KEYS)
    if extra:
        raise PayloadError(f"data of a WAV callback has unknown keys: {', '.join(extra)}")
    key = "task_id" if "task_id" in data or "taskId" not in data else "taskId"
    task_id = checked_task_id(data.get(key), f"data.{key}")
    url = None
    for name in WAV_URL_KEYS:
        url = url or _text(data, name, "data")
    if code == 200 and not url:
        raise PayloadError("data.audioWavUrl must be a non-empty string when code is 200")
    return WavCallback(code, msg, task_id, url or None, doc)


def _recovered(item: Any, where: str) -> RecoveredTrack:
    if not isinstance(item, dict):
        raise PayloadError(f"{where} must be an object, got {type(item).__name__}")
    track_id = item.get("id")
    if not isinstance(track_id, str) or not track_id.strip():
        raise PayloadError(f"{where}.id must be a non-empty string")
    status = item.get("status")
    if status not in RECOVERY_STATUSES:
        raise PayloadError(f"{where}.status must be one of {RECOVERY_STATUSES}, got {status!r}")
    urls = {k: _text(item, k, where) or None for k in _URL_KEYS}
    return RecoveredTrack(
        id=track_id,
        status=str(status),
        title=_text(item, "title", where),
        error=_text(item, "error", where) or None,
        **urls,
    )


def _wav_shaped(data: dict[str, Any]) -> bool:
    """A URL key, or (a failure) nothing but the WAV body's own keys with a task id."""
    if any(k in data for k in WAV_URL_KEYS):
        return True
    return bool(data) and set(data) <= _WAV_DATA_KEYS


def media_callback(doc: Any) -> WavCallback | RecoveryCallback | None:
    """A decoded body as a WAV or recovery callback; None when it has neither shape (the
    music family's parser decides then); :class:`PayloadError` when it has one of them
    but breaks it."""
    if not isinstance(doc, dict):
        return None
    data = doc.get("data")
    recovery = "task_id" in doc and (isinstance(data, list) or data is None)
    wav = isinstance(data, dict) and "callbackType" not in data and _wav_shaped(data)
    if not (recovery or wav):
        return None
    code = doc.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise PayloadError("code must be an integer")
    msg = doc.get("msg")
    if not isinstance(msg, str):
        raise PayloadError("msg must be a string")
    if wav:
        assert isinstance(data, dict)
        return _wav(doc, data, code, msg)
    task_id = checked_task_id(doc.get("task_id"), "task_id")
    items = data or []
    tracks = tuple(_recovered(item, f"data[{i}]") for i, item in enumerate(items))
    if code == 200 and not any(t.recovered for t in tracks):
        raise PayloadError("code 200 means at least one track was recovered; none was")
    return RecoveryCallback(code, msg, task_id, tracks, doc)


def parse_wav_record(data: Any) -> WavRecord:
    """Normalise the ``data`` of ``GET /api/v1/wav/record-info``."""
    if not isinstance(data, dict):
        raise PayloadError("wav record-info data must be an object")
    task_id = checked_task_id(data.get("taskId"), "data.taskId")
    status = data.get("successFlag")
    if not isinstance(status, str) or not status:
        raise PayloadError("data.successFlag must be a non-empty string")
    response = data.get("response") or {}
    if not isinstance(response, dict):
        raise PayloadError("data.response must be an object or null")
    url = None
    for name in WAV_URL_KEYS:
        url = url or _text(response, name, "data.response")
    code, message = error_fields(data)
    return WavRecord(
        task_id=task_id,
        status=status,
        url=url or None,
        error_code=code,
        error_message=message,
        raw=data,
    )
