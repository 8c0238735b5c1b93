"""Parse and validate callback and record-info bodies; the status-code tables as data.

Callbacks use snake_case track fields (``audio_url``), record-info uses camelCase
(``audioUrl``).  Both normalise to :class:`Track`, so a stored row does not care how it
arrived.  Unknown fields are kept in ``extra``, never rejected: the service adds fields.
"""

import json
from dataclasses import dataclass
from typing import Any

from ..errors import PayloadError
from ..rows import Track
from .codes import (
    CALLBACK_CODES,
    CALLBACK_TYPES,
    FAILED_STATUSES,
    FINAL_STAGES,
    INTERIM_STAGES,
    MAX_STAGE,
    PENDING_STATUSES,
    RECORD_STATUSES,
    STAGE_OF_STATUS,
    SUCCESS_STATUS,
    CodeInfo,
    code_table,
)
from .strict_json import INT_MAX, INT_MIN, MAX_DEPTH, decode_json
from .tasks import is_task_body, task_fields
from .wire import checked_task_id as _task_id
from .wire import error_fields
from .wire import track_from as _track

__all__ = [
    "CALLBACK_CODES",
    "CALLBACK_TYPES",
    "FAILED_STATUSES",
    "FINAL_STAGES",
    "INTERIM_STAGES",
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "MAX_STAGE",
    "PENDING_STATUSES",
    "RECORD_STATUSES",
    "STAGE_OF_STATUS",
    "SUCCESS_STATUS",
    "Callback",
    "CodeInfo",
    "PayloadError",
    "RecordInfo",
    "Track",
    "callback_from_record",
    "code_table",
    "decode_json",
    "parse_callback",
    "parse_record_info",
    "parse_task_record",
]


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


# --- callbacks ----------------------------------------------------------------------------


def parse_callback(body: bytes | dict[str, Any]) -> Callback:
    """Validate a callback body (bytes or decoded JSON) and return a :class:`Callback`.

    Accepts the seeds' success body and both failure forms (``data.error`` string, or
    ``data.data: null``), and kie.ai's task-API callback (``data.state``/``resultJson``).
    Raises :class:`PayloadError` naming the first problem.
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
    if is_task_body(data):  # kie.ai's task API: {taskId, state, resultJson, failCode, ...}
        return _task_callback(doc, data, code, msg)
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
    error_code, error_message = error_fields(data)
    return RecordInfo(
        task_id=task_id,
        status=status,
        tracks=tracks,
        error_code=error_code,
        error_message=error_message,
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


# --- kie.ai's task API --------------------------------------------------------------------


def parse_task_record(data: Any) -> RecordInfo:
    """Normalise the ``data`` of kie.ai's ``GET /api/v1/jobs/recordInfo`` into the
    :class:`RecordInfo` shape (``state`` -> status, ``resultJson`` -> tracks, ``failCode``
    / ``failMsg`` -> error), so the poller and ``rx.wait`` work unchanged."""
    f = task_fields(data)
    return RecordInfo(
        task_id=f["task_id"],
        status=f["status"],
        tracks=f["tracks"],
        error_code=f["fail_code"],
        error_message=f["fail_msg"],
        param=f["param"],
        raw=data,
    )


def _task_callback(doc: dict[str, Any], data: dict[str, Any], code: int, msg: str) -> Callback:
    """A task-API callback (``callbackType: "task_completed"``) as the family's stage:
    ``complete`` for state success, ``error`` for fail, else the state itself (not final)."""
    f = task_fields(data)
    if f["state"] == "success":
        stage, error = "complete", None
    elif f["state"] == "fail":
        stage = "error"
        error = f"{f['fail_code'] or ''} {f['fail_msg'] or 'the task failed'}".strip()
        if code == 200:  # the envelope says delivered; the task says failed
            code = f["fail_code"] if f["fail_code"] in CALLBACK_CODES else 501
    else:
        stage, error = f["state"][:MAX_STAGE] or "unknown", None
    return Callback(
        code=code,
        msg=msg,
        callback_type=stage,
        task_id=f["task_id"],
        tracks=f["tracks"],
        error=error,
        raw=doc,
    )
