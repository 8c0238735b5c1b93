"""Parse and validate callback and record-info bodies; the status-code tables as data.

Callbacks use snake_case track fields (``audio_url``), record-info uses camelCase
(``audioUrl``).  Both normalise to :class:`Track`, so a stored row does not care how it
arrived.  Unknown fields are kept in ``extra``, never rejected: the service adds fields.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import PayloadError

MAX_DEPTH = 32  # far deeper than any documented body; bounds the work per request
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # SQLite's integers; anything beyond is refused


@dataclass(frozen=True)
class CodeInfo:
    """One row of the callback status-code table."""

    code: int
    meaning: str
    meaning_zh: str
    success: bool
    retryable: bool


# The seeds' table, English (000) and the Chinese page's own words (002).
CALLBACK_CODES: dict[int, CodeInfo] = {
    c.code: c
    for c in (
        CodeInfo(
            200, "Success - Task completed successfully", "成功 - 请求已成功处理", True, False
        ),
        CodeInfo(
            400,
            "Validation error - Parameter validation failed",
            "验证错误 - 参数验证失败",
            False,
            False,
        ),
        CodeInfo(408, "Timeout - Request timeout", "超出限制 - 超时", False, True),
        CodeInfo(
            500,
            "Server error - Unexpected error occurred",
            "服务器错误 - 处理请求时发生意外错误",
            False,
            True,
        ),
        CodeInfo(501, "Audio generation failed", "音频生成失败", False, True),
        CodeInfo(
            531,
            "Server error - Generation failed, credits refunded",
            "服务器错误 - 抱歉,由于问题生成失败。您的积分已退还。请重试",
            False,
            True,
        ),
    )
}

# Callback stages (``data.callbackType``).  Generation callbacks come in stages: ``text``
# (lyrics ready), ``first`` (first track ready), then ``complete`` or ``error``; one provider
# names the failure stage ``failed``.  A stage nobody documented is still accepted and stored.
INTERIM_STAGES = ("text", "first")
FINAL_STAGES = ("complete", "error", "failed")
CALLBACK_TYPES = (*INTERIM_STAGES, *FINAL_STAGES)
MAX_STAGE = 32  # characters

# record-info ``status`` values.
PENDING_STATUSES = ("PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS")
SUCCESS_STATUS = "SUCCESS"
FAILED_STATUSES = (
    "CREATE_TASK_FAILED",
    "GENERATE_AUDIO_FAILED",
    "CALLBACK_EXCEPTION",
    "SENSITIVE_WORD_ERROR",
)
RECORD_STATUSES = (*PENDING_STATUSES, SUCCESS_STATUS, *FAILED_STATUSES)
STAGE_OF_STATUS = {"TEXT_SUCCESS": "text", "FIRST_SUCCESS": "first"}  # non-final stages


def code_table() -> list[dict[str, Any]]:
    """The status-code table as records (``pandas.DataFrame(code_table())`` shows it)."""
    return [
        {
            "code": c.code,
            "meaning": c.meaning,
            "meaning_zh": c.meaning_zh,
            "success": c.success,
            "retryable": c.retryable,
        }
        for c in CALLBACK_CODES.values()
    ]


# Track field name in callbacks -> in record-info.  The row shape uses the callback names
# except createTime, which becomes ``create_time``.
_TRACK_FIELDS = {
    "id": "id",
    "audio_url": "audioUrl",
    "stream_audio_url": "streamAudioUrl",
    "image_url": "imageUrl",
    "prompt": "prompt",
    "model_name": "modelName",
    "title": "title",
    "tags": "tags",
    "createTime": "createTime",
}


@dataclass(frozen=True)
class Track:
    """One result track, normalised from either body shape."""

    id: str
    audio_url: str | None = None
    stream_audio_url: str | None = None
    image_url: str | None = None
    prompt: str | None = None
    model_name: str | None = None
    title: str | None = None
    tags: str | None = None
    create_time: str | None = None
    duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Callback:
    """A parsed callback body.  ``raw`` is the whole decoded JSON object."""

    code: int
    msg: str
    callback_type: str
    task_id: str
    tracks: tuple[Track, ...]
    error: str | None
    raw: dict[str, Any]

    @property
    def stage(self) -> str:
        """The stage as sent, lower-cased (``callback_type``)."""
        return self.callback_type

    @property
    def final(self) -> bool:
        """A final stage (complete/error/failed): the task's result."""
        return self.callback_type in FINAL_STAGES

    @property
    def known(self) -> bool:
        """A documented stage (text/first/complete/error/failed)."""
        return self.callback_type in CALLBACK_TYPES

    @property
    def succeeded(self) -> bool:
        return self.code == 200 and self.callback_type == "complete"


@dataclass(frozen=True)
class RecordInfo:
    """A parsed record-info ``data`` object."""

    task_id: str
    status: str
    tracks: tuple[Track, ...]
    error_code: int | None
    error_message: str | None
    param: dict[str, Any]
    raw: dict[str, Any]

    @property
    def done(self) -> bool:
        return self.status == SUCCESS_STATUS

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    @property
    def terminal(self) -> bool:
        return self.done or self.failed


# --- helpers ------------------------------------------------------------------------------


def decode_json(body: bytes) -> Any:
    """Decode UTF-8 JSON strictly; raise :class:`PayloadError` with a reason for bad bytes.

    Beyond the JSON grammar this refuses what cannot be stored faithfully or costs too much:
    integers beyond the signed 64-bit range (SQLite's; a 5000-digit integer is refused by
    its length before any conversion), numbers that overflow a float (``1e400``), the
    non-standard ``NaN``/``Infinity`` literals, nesting deeper than :data:`MAX_DEPTH`, and
    strings holding a lone UTF-16 surrogate (``"\\ud800"``): those are rejected (400), not
    replaced with U+FFFD, because the stored raw body must mean what the parsed rows say.
    Nothing but PayloadError ever escapes.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except PayloadError:
        raise
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PayloadError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise PayloadError(f"body is not acceptable JSON: {type(exc).__name__}") from None
    _check_values(doc)
    return doc


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_int(text: str) -> int:
    # Length first: int() of thousands of digits is slow (and limited) in CPython.
    if len(text.lstrip("-")) > len(str(INT_MAX)):
        raise PayloadError(f"integer {_short(text)} is out of range (beyond +/-2**63)")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise PayloadError(f"integer {text} is out of range (beyond +/-2**63)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise PayloadError(f"number {_short(text)} is out of range (overflows a float)")
    return value


def _parse_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def _check_values(doc: Any) -> None:
    """Nesting depth and lone surrogates, in one pass over the decoded document."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "body")]
    while stack:
        obj, depth, where = stack.pop()
        if isinstance(obj, str):
            _check_text(obj, where)
            continue
        if not isinstance(obj, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise PayloadError(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(obj, dict):
            for key, value in obj.items():
                _check_text(key, f"a key of {where}")
                stack.append((value, depth + 1, f"{where}.{_short(key)}"))
        else:
            stack.extend((value, depth + 1, f"{where}[{i}]") for i, value in enumerate(obj))


def _check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PayloadError(
            f"{where} holds a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}),"
            " which is not valid Unicode"
        ) from None


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise PayloadError(f"{where}.{key} must be a string, got {type(value).__name__}")


def _number(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # Numeric strings are tolerated: some providers send "198.44".
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise PayloadError(f"{where}.{key} must be a number, got {type(value).__name__}")
    return float(value)


def _track(obj: Any, where: str, *, camel: bool) -> Track:
    if not isinstance(obj, dict):
        raise PayloadError(f"{where} must be an object, got {type(obj).__name__}")
    names = {snake: (camel_name if camel else snake) for snake, camel_name in _TRACK_FIELDS.items()}
    track_id = obj.get("id")
    if not isinstance(track_id, str) or not track_id:
        raise PayloadError(f"{where}.id must be a non-empty string")
    values = {snake: _opt_str(obj, key, where) for snake, key in names.items() if snake != "id"}
    known = set(names.values()) | {"duration"}
    return Track(
        id=track_id,
        audio_url=values["audio_url"],
        stream_audio_url=values["stream_audio_url"],
        image_url=values["image_url"],
        prompt=values["prompt"],
        model_name=values["model_name"],
        title=values["title"],
        tags=values["tags"],
        create_time=values["createTime"],
        duration=_number(obj, "duration", where),
        extra={k: v for k, v in obj.items() if k not in known},
    )


def _task_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{where} must be a non-empty string")
    if len(value) > 200:
        raise PayloadError(f"{where} is longer than 200 characters")
    return value


# --- callbacks ----------------------------------------------------------------------------


def parse_callback(body: bytes | dict[str, Any]) -> Callback:
    """Validate a callback body (bytes or decoded JSON) and return a :class:`Callback`.

    Accepts the seeds' success body and both failure forms (``data.error`` string, or
    ``data.data: null``).  Raises :class:`PayloadError` naming the first problem.
    """
    doc = decode_json(body) if isinstance(body, (bytes, bytearray)) else body
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, got {type(doc).__name__}")
    code = doc.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise PayloadError("code must be an integer")
    msg = doc.get("msg")
    if not isinstance(msg, str):
        raise PayloadError("msg must be a string")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise PayloadError("data must be an object")
    callback_type = data.get("callbackType")
    if not isinstance(callback_type, str) or not callback_type.strip():
        raise PayloadError("data.callbackType must be a non-empty string")
    if len(callback_type) > MAX_STAGE:
        raise PayloadError(f"data.callbackType is longer than {MAX_STAGE} characters")
    callback_type = callback_type.strip().lower()
    # Music callbacks name the task ``task_id``; lyrics/cover callbacks ``taskId``.
    if "task_id" in data or "taskId" not in data:
        task_id = _task_id(data.get("task_id"), "data.task_id")
    else:
        task_id = _task_id(data.get("taskId"), "data.taskId")
    items = data.get("data")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PayloadError(f"data.data must be an array or null, got {type(items).__name__}")
    tracks = tuple(_track(item, f"data.data[{i}]", camel=False) for i, item in enumerate(items))
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise PayloadError("data.error must be a string")
    return Callback(
        code=code,
        msg=msg,
        callback_type=callback_type,
        task_id=task_id,
        tracks=tracks,
        error=error,
        raw=doc,
    )


# --- record-info --------------------------------------------------------------------------


def parse_record_info(data: Any) -> RecordInfo:
    """Normalise the ``data`` object of ``GET /api/v1/generate/record-info``."""
    if not isinstance(data, dict):
        raise PayloadError("record-info data must be an object")
    task_id = _task_id(data.get("taskId"), "data.taskId")
    status = data.get("status")
    if not isinstance(status, str):
        raise PayloadError("data.status must be a string")
    response = data.get("response") or {}
    if not isinstance(response, dict):
        raise PayloadError("data.response must be an object or null")
    items = response.get("sunoData") or []
    if not isinstance(items, list):
        raise PayloadError("data.response.sunoData must be an array or null")
    tracks = tuple(
        _track(item, f"data.response.sunoData[{i}]", camel=True) for i, item in enumerate(items)
    )
    param = data.get("param")
    if isinstance(param, str) and param:
        try:
            param = json.loads(param)
        except json.JSONDecodeError:
            param = {"raw": param}
    if not isinstance(param, dict):
        param = {}
    error_code = data.get("errorCode")
    if isinstance(error_code, str) and error_code.isdigit():
        error_code = int(error_code)
    if not isinstance(error_code, int) or isinstance(error_code, bool):
        error_code = None
    error_message = data.get("errorMessage")
    return RecordInfo(
        task_id=task_id,
        status=status,
        tracks=tracks,
        error_code=error_code,
        error_message=error_message if isinstance(error_message, str) else None,
        param=param,
        raw=data,
    )


def callback_from_record(info: RecordInfo) -> Callback:
    """Express a record-info answer as the callback the service would have sent.

    The poller stores results through the same path as callbacks; this is the bridge.
    ``SUCCESS`` → ``complete``; a failed status → ``error``; ``TEXT_SUCCESS`` and
    ``FIRST_SUCCESS`` → the non-final ``text`` and ``first`` stages (with whatever tracks
    are ready).  ``PENDING`` (or an unknown status) has nothing to store: ValueError.
    """
    stage = STAGE_OF_STATUS.get(info.status)
    if stage is not None:
        return Callback(
            code=200,
            msg=f"{info.status.lower()}",
            callback_type=stage,
            task_id=info.task_id,
            tracks=info.tracks,
            error=None,
            raw=info.raw,
        )
    if info.done:
        return Callback(
            code=200,
            msg="All generated successfully.",
            callback_type="complete",
            task_id=info.task_id,
            tracks=info.tracks,
            error=None,
            raw=info.raw,
        )
    if info.failed:
        code = info.error_code if info.error_code in CALLBACK_CODES else 501
        message = info.error_message or info.status
        return Callback(
            code=code,
            msg=message,
            callback_type="error",
            task_id=info.task_id,
            tracks=(),
            error=f"{info.status}: {message}",
            raw=info.raw,
        )
    raise ValueError(f"record-info status {info.status!r} has no result to store")
