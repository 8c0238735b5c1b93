"""kie.ai's task API in the family's shapes: recordInfo answers and task callbacks.

``GET /api/v1/jobs/recordInfo`` answers ``data.state`` (waiting | queuing | generating |
success | fail), ``data.resultJson`` (a JSON *string* of the result) and ``failCode`` /
``failMsg``; its callbacks carry the same object (``callbackType: "task_completed"``).
Both become the :class:`RecordInfo` / :class:`Callback` the poller, the store and
``rx.wait`` already know, so nothing downstream cares which API the task came from.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any
from urllib.parse import urlsplit

from ..contract import (
    TASK_CALLBACK_TYPE,
    TASK_STATE_FAIL,
    TASK_STATE_SUCCESS,
)
from ..errors import PayloadError
from ..rows import Track
from .wire import checked_task_id, track_from

# Where a result's track list may sit inside resultJson (either wire spelling).
_LIST_KEYS = ("sunoData", "data", "tracks")
_FAILED = "GENERATE_AUDIO_FAILED"


def is_task_body(data: dict[str, Any]) -> bool:
    """Is ``data`` (a callback's or recordInfo's ``data``) in the task API's shape?"""
    if data.get("callbackType") == TASK_CALLBACK_TYPE:
        return True
    return "state" in data and "taskId" in data and "task_id" not in data


def status_of(state: str) -> str:
    """The family's record-info status for a task ``state``: SUCCESS, a failed status, or
    PENDING (waiting, queuing and generating have no partial result to store)."""
    if state == TASK_STATE_SUCCESS:
        return "SUCCESS"
    if state == TASK_STATE_FAIL:
        return _FAILED
    return "PENDING"  # waiting, queuing, generating (and a state nobody documented)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _decoded(value: Any, where: str) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"{where} is not valid JSON: {exc.msg}") from None
    return value


def result_tracks(result: Any, where: str = "data.resultJson") -> tuple[Track, ...]:
    """The tracks of a decoded ``resultJson``: a list of track objects (camelCase or
    snake_case) under sunoData/data/tracks, else one bare track per ``resultUrls`` entry."""
    if result is None:
        return ()
    if not isinstance(result, dict):
        raise PayloadError(f"{where} must be a JSON object, got {type(result).__name__}")
    for key in _LIST_KEYS:
        items = result.get(key)
        if isinstance(items, list) and items:
            out = []
            for i, item in enumerate(items):
                camel = isinstance(item, dict) and any(
                    k in item for k in ("audioUrl", "streamAudioUrl", "imageUrl")
                )
                out.append(track_from(item, f"{where}.{key}[{i}]", camel=camel))
            return tuple(out)
    urls = result.get("resultUrls")
    if isinstance(urls, list):
        tracks = []
        for i, url in enumerate(urls):
            if not isinstance(url, str) or not url:
                raise PayloadError(f"{where}.resultUrls[{i}] must be a non-empty string")
            stem = posixpath.splitext(posixpath.basename(urlsplit(url).path))[0]
            tracks.append(Track(id=stem or f"result-{i}", audio_url=url))
        return tuple(tracks)
    return ()


def task_fields(data: Any) -> dict[str, Any]:
    """The common reading of a task object (recordInfo's or a callback's ``data``):
    ``task_id``, ``state``, ``status``, ``tracks``, ``fail_code``, ``fail_msg``, ``param``."""
    if not isinstance(data, dict):
        raise PayloadError("task data must be an object")
    task_id = checked_task_id(data.get("taskId"), "data.taskId")
    state = data.get("state")
    if not isinstance(state, str):
        raise PayloadError("data.state must be a string")
    state = state.strip().lower()
    result = _decoded(data.get("resultJson"), "data.resultJson")
    tracks = result_tracks(result) if state == TASK_STATE_SUCCESS else ()
    param = _decoded(data.get("param"), "data.param")
    fail_msg = data.get("failMsg")
    return {
        "task_id": task_id,
        "state": state,
        "status": status_of(state),
        "tracks": tracks,
        "fail_code": _int_or_none(data.get("failCode")),
        "fail_msg": fail_msg if isinstance(fail_msg, str) and fail_msg else None,
        "param": param if isinstance(param, dict) else {},
    }
