"""The sandbox's links, their expiry, Recovery Audio and WAV conversion.

A track's files are served under a *file id*: at first the track's own id
(``/files/<id>.mp3``, ``/stream/<id>``, ``/files/<id>.png``).  :meth:`MediaDesk.expire`
makes a task's current file ids answer 404 — how the hosted CDN answers an expired link is
not documented (a 403 or 410 would be as plausible); the sandbox picks 404.  A recovery
(``POST /api/v1/suno/recovery``) gives each track of the task a new file id (new file
names, working links) and sends its callback (``task_id`` at the top level, ``data`` a list
of ``{id, audio_url, title, status, error}`` in the task's track order; code 200, or 500
when every track failed: ``Faults(recovery_error=...)``).  A WAV conversion
(``POST /api/v1/wav/generate``) decodes the track's MP3 with soundfile and serves a real
16-bit WAV at ``/wav/<job>.wav``; ``GET /api/v1/wav/record-info`` follows it (PENDING ->
SUCCESS | GENERATE_WAV_FAILED).  Refusals use the endpoints' tables: 400 for a missing or
bad field, 404 for an unknown task, 400 for an audio id that is not the task's.

Results come ``delay`` seconds after the request (plus the fault's ``extra_delay``), on the
sandbox's loop; rendering runs on its worker pool; callbacks go through the same sender
(timeout, 3 attempts, backoff, optional signature) as every other callback.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from ..payloads import SUCCESS_STATUS
from .faults import Faults
from .records import TrackRecord
from .validate import Fields, Rejected, Reply, fail, ok

if TYPE_CHECKING:
    from .service import Service

WAV, RECOVERY = "wav", "recovery"
WAV_CALLBACK_CODES = (400, 451, 500, 501)  # a WAV failure's codes (the callback pages)


@dataclass
class WavJob:
    job_id: str
    track: TrackRecord
    callback_url: str
    created: str
    state: str = "PENDING"  # PENDING | SUCCESS | GENERATE_WAV_FAILED
    completed: str | None = None
    error_code: int | None = None
    error_message: str | None = None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


class MediaDesk:
    """File ids, expiry, recoveries and WAV jobs of one sandbox's service."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._track_of: dict[str, str] = {}  # file id -> track id (recovered names)
        self._file_of: dict[str, str] = {}  # track id -> its current file id
        self._expired: set[str] = set()
        self._wav_jobs: dict[str, WavJob] = {}
        self._wavs: dict[str, bytes] = {}

    # -- links -------------------------------------------------------------------------

    def resolve(self, file_id: str) -> str | None:
        """The track a file id serves, or None when the link has expired."""
        with self._lock:
            if file_id in self._expired:
                return None
            return self._track_of.get(file_id, file_id)

    def expire(self, task_id: str) -> list[str]:
        """From now on the task's current links answer 404; returns the file ids."""
        svc = self.service
        with svc.lock:
            task = svc._tasks.get(task_id)
            if task is None:
                raise KeyError(f"no sandbox task {task_id!r}")
            ids = [t.id for t in task.tracks]
        with self._lock:
            gone = [self._file_of.get(t, t) for t in ids]
            self._expired.update(gone)
        return gone

    def _urls(self, file_id: str) -> dict[str, str]:
        base = self.service.base_url
        return {
            "audio_url": f"{base}/files/{file_id}.mp3",
            "stream_audio_url": f"{base}/stream/{file_id}",
            "image_url": f"{base}/files/{file_id}.png",
        }

    # -- requests (on the loop: bookkeeping only) --------------------------------------

    def _finished_task(self, fields: Fields, name: str) -> Any:
        svc = self.service
        task_id = fields.text(name, required=True)
        task = svc._tasks.get(task_id or "")
        if task is None:
            raise Rejected(fail(404, f"{name}: no task {task_id!r} was found for this account"))
        status = svc._status(task, time.monotonic())
        if status != SUCCESS_STATUS:
            raise fields.refuse(f"{name}: task {task_id!r} has status {status}, not SUCCESS")
        return task

    def _faults(self) -> Faults | Reply:
        faults = self.service._next_faults()
        if faults.reply_code is not None:
            msg = faults.error_message or f"refused on purpose (code {faults.reply_code})"
            return fail(faults.reply_code, msg)
        return faults

    def recovery(self, body: Any) -> Reply:
        """``POST /api/v1/suno/recovery`` ``{sunoTaskId, callBackUrl}`` -> ``data.task_id``."""
        svc = self.service
        try:
            fields = Fields(svc.provider, RECOVERY, body)
            with svc.lock:
                task = self._finished_task(fields, "sunoTaskId")
                url = fields.url("callBackUrl", required=True)
                tracks = list(task.tracks)
        except Rejected as exc:
            return exc.reply
        faults = self._faults()
        if not isinstance(faults, Faults):
            return faults
        job_id = uuid.uuid4().hex
        assert url is not None
        self._later(faults, lambda: self._recover(job_id, tracks, url, faults))
        return ok({"task_id": job_id})

    def wav(self, body: Any) -> Reply:
        """``POST /api/v1/wav/generate`` ``{taskId, audioId, callBackUrl}`` -> ``data.taskId``."""
        svc = self.service
        try:
            fields = Fields(svc.provider, WAV, body)
            with svc.lock:
                task = self._finished_task(fields, "taskId")
                audio_id = fields.text("audioId", required=True)
                track = next((t for t in task.tracks if t.id == audio_id), None)
                if track is None:
                    ids = ", ".join(t.id for t in task.tracks)
                    raise fields.refuse(
                        f"audioId: {audio_id!r} is not a track of task {task.task_id!r} "
                        f"(its tracks: {ids})"
                    )
                url = fields.url("callBackUrl", required=True)
        except Rejected as exc:
            return exc.reply
        faults = self._faults()
        if not isinstance(faults, Faults):
            return faults
        assert url is not None
        job = WavJob(uuid.uuid4().hex, track, url, _now())
        with self._lock:
            self._wav_jobs[job.job_id] = job
        self._later(faults, lambda: self._spawn_wav(job, faults))
        return ok({"taskId": job.job_id})

    def wav_info(self, job_id: str) -> Reply:
        """``GET /api/v1/wav/record-info?taskId=``: the job's details."""
        job_id = job_id.strip()
        if not job_id:
            return fail(400, "taskId: is required")
        with self._lock:
            job = self._wav_jobs.get(job_id)
        if job is None:
            return fail(404, f"taskId: no WAV task {job_id!r} was found for this account")
        done = job.state == SUCCESS_STATUS
        return ok(
            {
                "taskId": job.job_id,
                "musicId": job.track.id,
                "musicIndex": job.track.index,
                "completeTime": job.completed,
                "response": {"audioWavUrl": self._wav_url(job.job_id) if done else None},
                "successFlag": job.state,
                "createTime": job.created,
                "errorCode": job.error_code,
                "errorMessage": job.error_message,
            }
        )

    def wav_bytes(self, job_id: str) -> bytes | None:
        with self._lock:
            return self._wavs.get(job_id)

    # -- timed work -------------------------------------------------------------------

    def _later(self, faults: Faults, fn: Any) -> None:
        runtime = self.service.runtime
        if runtime is not None:
            runtime.call_later(self.service.delay + faults.extra_delay, fn)

    def _send(self, url: str, body: dict[str, Any], faults: Faults, kind: str) -> None:
        sender = self.service.sender
        if sender is None or faults.drop:
            return
        sender.send(
            url,
            body,
            copies=1 + faults.duplicates,
            delay=faults.callback_delay,
            wrong_signature=faults.wrong_signature,
            kind=kind,
        )

    def _recover(self, job_id: str, tracks: list[TrackRecord], url: str, faults: Faults) -> None:
        items = []
        for track in tracks:
            item: dict[str, Any] = {"id": track.id, "title": track.title}
            if faults.recovery_error:
                item.update(audio_url="", status="failed", error=faults.recovery_error)
            else:
                fresh = uuid.uuid4().hex  # a new file name: the old link stays dead
                with self._lock:
                    self._track_of[fresh] = track.id
                    self._file_of[track.id] = fresh
                item.update(audio_url=self._urls(fresh)["audio_url"], status="success", error="")
            items.append(item)
        ok_ = any(i["status"] == "success" for i in items)
        body = {
            "code": 200 if ok_ else 500,
            "msg": "success" if ok_ else "all tracks failed to recover",
            "task_id": job_id,
            "data": items,
        }
        self._send(url, body, faults, "recovery")

    def _spawn_wav(self, job: WavJob, faults: Faults) -> None:
        runtime = self.service.runtime
        if runtime is not None:
            runtime.spawn(lambda: self._make_wav(job, faults))

    async def _make_wav(self, job: WavJob, faults: Faults) -> None:
        runtime = self.service.runtime
        assert runtime is not None
        code = faults.error_code
        if code is None:
            data = await runtime.blocking(self._render_wav, job.track)
            with self._lock:
                self._wavs[job.job_id] = data
                job.state, job.completed = SUCCESS_STATUS, _now()
            body = {
                "code": 200,
                "msg": "success",
                "data": {"audioWavUrl": self._wav_url(job.job_id), "task_id": job.job_id},
            }
        else:
            code = code if code in WAV_CALLBACK_CODES else 500
            msg = faults.error_message or "WAV conversion failed"
            with self._lock:
                job.state, job.completed = "GENERATE_WAV_FAILED", _now()
                job.error_code, job.error_message = code, msg
            body = {"code": code, "msg": msg, "data": {"audioWavUrl": None, "task_id": job.job_id}}
        self._send(job.callback_url, body, faults, "wav")

    def _render_wav(self, track: TrackRecord) -> bytes:
        """The track's MP3, decoded (soundfile), as 16-bit PCM WAV (a worker thread)."""
        import soundfile as sf

        mp3 = self.service.audio.mp3(track.recipe)
        samples, sr = sf.read(io.BytesIO(mp3), dtype="float32", always_2d=False)
        out = io.BytesIO()
        sf.write(out, np.clip(samples, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
        return out.getvalue()

    def _wav_url(self, job_id: str) -> str:
        return f"{self.service.base_url}/wav/{job_id}.wav"
