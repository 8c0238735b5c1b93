"""What the sandbox's service shows: tracks as the API describes them, record-info data,
callback bodies (the seeds' forms and /generate's stages), a summary of its tasks.  On
kie.ai's task API: recordInfo's ``state``/``resultJson`` and its ``task_completed`` callback.

A layer of :class:`~.service.Service` over its :class:`~.state.State` (``lock``,
``base_url``, ``_tasks``, ``_tracks``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..contract import TASK_CALLBACK_TYPE, TASK_STATES_PENDING
from ..payloads import PENDING_STATUSES, SUCCESS_STATUS
from .delivery import public_url
from .records import SongTrack, TaskRecord, TrackRecord
from .state import State

SUCCESS_MSG = "All generated successfully."
# Stage callbacks of /generate (generate-music-callbacks): text, then first, then complete.
STAGE_MSG = {
    "text": "Text generation completed successfully.",
    "first": "First track generation completed successfully.",
}


class Bodies(State):
    """The service's answers and callback bodies, built from its records."""

    def _song_track(self, track: TrackRecord) -> SongTrack:
        base = self.base_url
        return SongTrack(
            id=track.id,
            audio_url=f"{base}/files/{track.id}.mp3",
            stream_audio_url=f"{base}/stream/{track.id}",
            image_url=f"{base}/files/{track.id}.png",
            prompt=track.prompt,
            model_name=track.model_name,
            title=track.title,
            tags=track.tags,
            create_time=track.create_time,
            duration=track.duration,
        )

    def _status(self, task: TaskRecord, now: float) -> str:
        if task.state == "success":
            return SUCCESS_STATUS
        if task.state == "failed":
            assert task.failure is not None
            return task.failure.status
        span = task.ready_at - task.created
        frac = 1.0 if span <= 0 else (now - task.created) / span
        return PENDING_STATUSES[min(2, max(0, int(frac * 3)))]

    def _visible_tracks(self, task: TaskRecord, status: str) -> list[TrackRecord]:
        if status == SUCCESS_STATUS:
            return task.tracks
        if status == "FIRST_SUCCESS":
            return task.tracks[:1]  # as the status says: the first track is done
        return []

    def _items(self, task: TaskRecord, tracks: list[TrackRecord]) -> list[dict[str, Any]]:
        items = [self._song_track(t).callback_item() for t in tracks]
        if task.staged:
            # /generate's items also name the source files (generate-music-callbacks).
            for item in items:
                for name in ("audio_url", "stream_audio_url", "image_url"):
                    item[f"source_{name}"] = item[name]
        return items

    def callback_body(
        self,
        task: TaskRecord,
        *,
        error_form: str = "error",
        stage: str = "complete",
        failure_stage: str = "error",
    ) -> dict[str, Any]:
        """The seeds' success body (or a ``text``/``first`` stage of a staged task), or a
        failure body in ``error_form`` whose ``callbackType`` is ``failure_stage``.  On
        kie.ai's task API: its ``task_completed`` body (the recordInfo object)."""
        if self.provider.api == "task":
            return self._task_callback(task)
        if stage in STAGE_MSG:
            tracks = task.tracks[:1] if stage == "first" else []
            staged = {
                "callbackType": stage,
                "task_id": task.task_id,
                "data": self._items(task, tracks),
            }
            return {"code": 200, "msg": STAGE_MSG[stage], "data": staged}
        if task.failure is None:
            items = self._items(task, task.tracks)
            return {
                "code": 200,
                "msg": SUCCESS_MSG,
                "data": {"callbackType": "complete", "task_id": task.task_id, "data": items},
            }
        f = task.failure
        data: dict[str, Any] = {"callbackType": failure_stage, "task_id": task.task_id}
        if error_form == "null":
            data["data"] = None
        else:
            data["error"] = f.error
        return {"code": f.code, "msg": f.msg, "data": data}

    def record_data(self, task_id: str) -> dict[str, Any] | None:
        """The ``data`` object of record-info for ``task_id``, or None if unknown (on
        kie.ai's task API: recordInfo's, with ``state`` and ``resultJson``)."""
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            if self.provider.api == "task":
                return self._task_data(task)
            status = self._status(task, time.monotonic())
            items = [self._song_track(t).record_item() for t in self._visible_tracks(task, status)]
            return {
                "taskId": task.task_id,
                "parentMusicId": task.parent_music_id,
                "param": json.dumps(task.param, ensure_ascii=False),
                "response": {"taskId": task.task_id, "sunoData": items},
                "status": status,
                "type": task.kind,
                "errorCode": task.failure.code if task.failure else None,
                "errorMessage": task.failure.error if task.failure else None,
            }

    # -- kie.ai's task API -------------------------------------------------------------

    def _task_data(self, task: TaskRecord) -> dict[str, Any]:
        """recordInfo's ``data`` (call with the lock held): the task's ``state``, its result
        as the JSON string ``resultJson``, ``failCode``/``failMsg`` when it failed."""
        now = time.monotonic()
        status = self._status(task, now)
        if status in PENDING_STATUSES:
            state = TASK_STATES_PENDING[PENDING_STATUSES.index(status)]
        else:
            state = "success" if status == SUCCESS_STATUS else "fail"
        result = ""
        if state == "success":
            items = [self._song_track(t).record_item() for t in task.tracks]
            result = json.dumps(
                {"resultUrls": [i["audioUrl"] for i in items], "sunoData": items},
                ensure_ascii=False,
            )
        f = task.failure
        return {
            "taskId": task.task_id,
            "model": self.provider.task_models.get("replace-section", ""),
            "state": state,
            "param": json.dumps(task.param, ensure_ascii=False),
            "resultJson": result,
            "failCode": str(f.code) if f is not None else "",
            "failMsg": f.error if f is not None else "",
            "createTime": int((time.time() - (now - task.created)) * 1000),  # Unix ms
        }

    def _task_callback(self, task: TaskRecord) -> dict[str, Any]:
        """kie.ai's task callback: the recordInfo object plus ``callbackType``."""
        data = {**self._task_data(task), "callbackType": TASK_CALLBACK_TYPE}
        if task.failure is None:
            return {"code": 200, "msg": SUCCESS_MSG, "data": data}
        return {"code": task.failure.code, "msg": task.failure.msg, "data": data}

    def tasks(self) -> list[dict[str, Any]]:
        """One summary row per task, oldest first."""
        now = time.monotonic()
        with self.lock:
            return [
                {
                    "task_id": t.task_id,
                    "type": t.kind,
                    "status": self._status(t, now),
                    "parent_music_id": t.parent_music_id,
                    "tracks": [tr.id for tr in t.tracks],
                    "cost": t.cost,
                    "callback_url": public_url(t.callback_url) if t.callback_url else None,
                }
                for t in self._tasks.values()
            ]
