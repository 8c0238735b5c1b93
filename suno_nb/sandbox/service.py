"""The emulated service behind the sandbox's routes: tasks, validation, credits, bodies.

Transport-free: each operation takes decoded JSON and returns ``(http_status, body)``, so
the HTTP layer (``server.py``) only routes, authenticates and serves bytes.  Timed work
(results after the delay, callbacks) goes through a :class:`~.delivery.Scheduler`.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..contract import Provider
from ..errors import SectionValidationError
from ..payloads import PENDING_STATUSES, SUCCESS_STATUS
from ..rules import validate_section
from . import synth
from .delivery import CallbackSender, Scheduler, public_url
from .faults import Faults
from .records import AudioCache, Recipe, Song, SongTrack, TaskRecord, TrackRecord
from .validate import (
    GENERATE,
    REPLACE,
    Rejected,
    Reply,
    code_of,
    fail,
    invalid,
    ok,
    parse_generate,
    parse_replace,
)

LEGACY_MODELS = ("V3_5",)  # create_song() still accepts it; requests follow the contract
SUCCESS_MSG = "All generated successfully."
# Stage callbacks of /generate (generate-music-callbacks): text, then first, then complete.
STAGE_MSG = {
    "text": "Text generation completed successfully.",
    "first": "First track generation completed successfully.",
}
MAX_SONG_S = 480.0
STANDIN_S = 150.0  # length of the stand-in for an uploadUrl the sandbox does not serve
_OWN_FILE = re.compile(r"^/(?:files|stream)/([0-9a-fA-F-]{8,64})(?:\.mp3)?$")


# --- the service --------------------------------------------------------------------------


class Service:
    """Tasks, credits and faults of one sandbox; thread-safe."""

    def __init__(
        self,
        *,
        credits: float,
        delay: float,
        tracks_per_task: int,
        seed: int,
        sample_rate: int,
        cost_generate: float,
        cost_replace: float,
        faults: Faults | None,
        provider: Provider,
    ) -> None:
        self.provider = provider
        self.lock = threading.RLock()
        self.base_url = ""
        self.scheduler: Scheduler | None = None
        self.sender: CallbackSender | None = None
        self.credits = float(credits)
        self.delay = float(delay)
        self.tracks_per_task = tracks_per_task
        self.seed = seed
        self.cost_generate = float(cost_generate)
        self.cost_replace = float(cost_replace)
        self.default_faults = faults
        self.audio = AudioCache(sample_rate)
        self._rng = random.Random(seed)
        self._counter = itertools.count()
        self._tasks: dict[str, TaskRecord] = {}
        self._tracks: dict[str, TrackRecord] = {}
        self._injected: deque[list[Any]] = deque()  # [Faults, remaining count]

    # -- faults ------------------------------------------------------------------------

    def inject(self, faults: Faults, count: int) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self.lock:
            self._injected.append([faults, count])

    def _next_faults(self) -> Faults:
        with self.lock:
            if self._injected:
                entry = self._injected[0]
                entry[1] -= 1
                if entry[1] <= 0:
                    self._injected.popleft()
                return entry[0]
            return self.default_faults or Faults()

    def set_task_faults(self, task_id: str, faults: Faults) -> None:
        if not isinstance(faults, Faults):
            raise TypeError(f"faults must be a Faults, got {type(faults).__name__}")
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise KeyError(f"no sandbox task {task_id!r}")
            if task.state != "pending":
                raise ValueError(
                    f"task {task_id!r} already has its result ({task.state}); set faults "
                    "before the delay runs out (or use inject() before submitting)"
                )
            task.faults = faults
            task.ready_at = task.created + self.delay + faults.extra_delay
            left = task.ready_at - time.monotonic()
        self._schedule_completion(task_id, left)

    # -- urls and bodies ---------------------------------------------------------------

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
        self, task: TaskRecord, *, error_form: str = "error", stage: str = "complete"
    ) -> dict[str, Any]:
        """The seeds' success body (or a ``text``/``first`` stage of a staged task), or a
        failure body in ``error_form``."""
        if stage in STAGE_MSG:
            tracks = task.tracks[:1] if stage == "first" else []
            data = {
                "callbackType": stage,
                "task_id": task.task_id,
                "data": self._items(task, tracks),
            }
            return {"code": 200, "msg": STAGE_MSG[stage], "data": data}
        if task.failure is None:
            items = self._items(task, task.tracks)
            return {
                "code": 200,
                "msg": SUCCESS_MSG,
                "data": {"callbackType": "complete", "task_id": task.task_id, "data": items},
            }
        f = task.failure
        data: dict[str, Any] = {"callbackType": "error", "task_id": task.task_id}
        if error_form == "null":
            data["data"] = None
        else:
            data["error"] = f.error
        return {"code": f.code, "msg": f.msg, "data": data}

    def _send_stage(self, task_id: str, stage: str) -> None:
        """An intermediate callback of a /generate task that is on its way to success."""
        with self.lock:
            task = self._tasks[task_id]
            faults = task.faults
            if task.state != "pending" or faults.fails or faults.drop:
                return
            body = self.callback_body(task, stage=stage)
            url = task.callback_url
        if url and self.sender is not None:
            self.sender.send(url, body, wrong_signature=faults.wrong_signature)

    def record_data(self, task_id: str) -> dict[str, Any] | None:
        """The ``data`` object of record-info for ``task_id``, or None if unknown."""
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
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

    def record_info(self, task_id: str) -> Reply:
        """``GET /api/v1/generate/record-info?taskId=``."""
        task_id = task_id.strip()
        if not task_id:
            return fail(400, "taskId: is required")
        data = self.record_data(task_id)
        if data is None:
            return fail(404, f"taskId: no task {task_id!r} was found for this account")
        return ok(data)

    def credit(self) -> Reply:
        """``GET /api/v1/generate/credit``: the remaining credits as ``data``."""
        return ok(self.credit_value())

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

    # -- task creation -----------------------------------------------------------------

    def _new_task(
        self,
        *,
        kind: str,
        param: dict[str, Any],
        parent_music_id: str,
        callback_url: str | None,
        cost: float,
        faults: Faults,
        tracks: Callable[[str, str], list[TrackRecord]],
        finished: bool = False,
    ) -> TaskRecord:
        now = time.monotonic()
        task_id = uuid.uuid4().hex  # unique across sandboxes in one process
        created = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        task = TaskRecord(
            task_id=task_id,
            kind=kind,
            param=param,
            parent_music_id=parent_music_id,
            callback_url=callback_url,
            cost=cost,
            created=now,
            ready_at=now + (0.0 if finished else self.delay + faults.extra_delay),
            faults=faults,
            state="success" if finished else "pending",
        )
        task.tracks = tracks(task_id, created)
        self._tasks[task_id] = task
        for t in task.tracks:
            self._tracks[t.id] = t
        return task

    def _charge(self, cost: float, endpoint: str) -> Reply | None:
        if self.credits + 1e-9 < cost:
            # 402 on replace-section, 429 on the other endpoints: the endpoint's table says.
            return fail(
                code_of(self.provider, endpoint, "credits", 429),
                f"Insufficient credits: {self.credits:g} left and this task costs {cost:g}. "
                "Please top up to continue.",
            )
        self.credits = round(self.credits - cost, 6)
        return None

    def credit_value(self) -> float | int:
        with self.lock:
            c = round(self.credits, 2)
        return int(c) if float(c).is_integer() else c

    def _new_tracks(
        self,
        *,
        n: int,
        prompt: str,
        title: str,
        tags: str,
        model_name: str,
        durations: list[float],
        salt: Any,
    ) -> Callable[[str, str], list[TrackRecord]]:
        def tracks(task_id: str, created: str) -> list[TrackRecord]:
            return [
                TrackRecord(
                    id=str(uuid.uuid4()),
                    task_id=task_id,
                    index=i,
                    prompt=prompt,
                    model_name=model_name,
                    title=title,
                    tags=tags,
                    create_time=created,
                    duration=d,
                    recipe=Recipe(synth.stable_seed(self.seed, title, *salt, n, i), d),
                )
                for i, d in enumerate(durations)
            ]

        return tracks

    def create_song(
        self, *, duration: float, title: str, tags: str, prompt: str, model: str
    ) -> Song:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)):
            raise TypeError(f"duration must be a number of seconds, got {duration!r}")
        rules = self.provider.section
        shortest = rules.min_s / rules.max_fraction  # the smallest original with a valid section
        if not shortest <= duration <= MAX_SONG_S:
            raise ValueError(
                f"duration must be between {shortest:g} and {MAX_SONG_S:g} s (a "
                f"{rules.min_s:g} s section may cover at most {rules.max_fraction:.0%}), "
                f"got {duration}"
            )
        models = LEGACY_MODELS + self.provider.models
        if model not in models:
            raise ValueError(f"model must be one of {', '.join(models)}, got {model!r}")
        duration = round(float(duration), 2)
        param = {
            "prompt": prompt,
            "style": tags,
            "title": title,
            "customMode": True,
            "instrumental": False,
            "model": model,
        }
        with self.lock:
            n = next(self._counter)
            task = self._new_task(
                kind="GENERATE",
                param=param,
                parent_music_id="",
                callback_url=None,
                cost=0.0,
                faults=Faults(),
                tracks=self._new_tracks(
                    n=n,
                    prompt=prompt,
                    title=title,
                    tags=tags,
                    model_name=_model_name(model),
                    durations=[duration] * self.tracks_per_task,
                    salt=(),
                ),
                finished=True,
            )
            return Song(task.task_id, [self._song_track(t) for t in task.tracks])

    def generate(self, body: Any) -> Reply:
        """``POST /api/v1/generate``: staged callbacks text -> first -> complete."""
        try:
            req = parse_generate(self.provider, body)
        except Rejected as rej:
            return rej.reply
        with self.lock:
            refused = self._charge(self.cost_generate, GENERATE)
            if refused:
                return refused
            faults = self._next_faults()
            if faults.reply_code is not None:
                self.credits += self.cost_generate
                return self._fault_reply(faults, GENERATE)
            n = next(self._counter)
            durations = [
                round(self._rng.uniform(100.0, 160.0), 2) for _ in range(self.tracks_per_task)
            ]
            task = self._new_task(
                kind="GENERATE",
                param=dict(body),
                parent_music_id="",
                callback_url=req.callback_url,
                cost=self.cost_generate,
                faults=faults,
                tracks=self._new_tracks(
                    n=n,
                    prompt=req.prompt,
                    title=req.title,
                    tags=req.style,
                    model_name=_model_name(req.model),
                    durations=durations,
                    salt=(req.prompt,),
                ),
            )
            task.staged = True
        span = task.ready_at - time.monotonic()
        # The stages land where record-info moves to TEXT_SUCCESS and FIRST_SUCCESS.
        for stage, at in (("text", 1 / 3), ("first", 2 / 3)):
            if self.scheduler is not None:
                self.scheduler.call_later(
                    max(0.0, span * at), lambda st=stage: self._send_stage(task.task_id, st)
                )
        self._schedule_completion(task.task_id, span)
        return ok({"taskId": task.task_id})

    def _fault_reply(self, faults: Faults, endpoint: str) -> Reply:
        code = faults.reply_code
        assert code is not None
        info = self.provider.code(endpoint, code) or self.provider.code("record-info", code)
        return fail(code, faults.error_message or (info.meaning if info else f"error {code}"))

    def replace_section(self, body: Any) -> Reply:
        """``POST /api/v1/generate/replace-section``: the service's own validation first."""
        try:
            req = parse_replace(self.provider, body)
        except Rejected as rej:
            return rej.reply
        with self.lock:
            if req.task_id is not None:
                source = self._parent_track(req.task_id, req.audio_id or "")
            else:
                source = self._uploaded(req.upload_url or "", req.model or "")
            if isinstance(source, tuple):
                return source
            try:
                section = validate_section(
                    req.start, req.end, source.duration, section=self.provider.section
                )
            except SectionValidationError as exc:
                return invalid(self.provider, REPLACE, exc).reply
            refused = self._charge(self.cost_replace, REPLACE)
            if refused:
                return refused
            faults = self._next_faults()
            if faults.reply_code is not None:
                self.credits += self.cost_replace
                return self._fault_reply(faults, REPLACE)
            n = next(self._counter)
            # The audition's audio faults (Faults fields appended on branch i11).
            audio_fx = tuple(
                (name, getattr(faults, name, None))
                for name in ("outside_gain_db", "shift_ms", "hard_seams")
                if getattr(faults, name, None)
            )

            def tracks(task_id: str, created: str) -> list[TrackRecord]:
                out = []
                for i in range(self.tracks_per_task):
                    # Each result track is its own variant, derived from the request.
                    seed = synth.stable_seed(
                        self.seed,
                        source.recipe,
                        req.prompt,
                        req.tags,
                        section.start,
                        section.end,
                        n,
                        i,
                    )
                    recipe = Recipe(
                        source.recipe.base_seed,
                        source.duration,
                        (*source.recipe.ops, (section.start, section.end, seed, *audio_fx)),
                    )
                    out.append(
                        TrackRecord(
                            id=str(uuid.uuid4()),
                            task_id=task_id,
                            index=i,
                            prompt=req.prompt,
                            model_name=source.model_name,
                            title=req.title,
                            tags=req.tags,
                            create_time=created,
                            duration=source.duration,
                            recipe=recipe,
                        )
                    )
                return out

            task = self._new_task(
                kind="REPLACE_SECTION",
                param=dict(body),
                parent_music_id=source.id,
                callback_url=req.callback_url,
                cost=self.cost_replace,
                faults=faults,
                tracks=tracks,
            )
        self._schedule_completion(task.task_id, task.ready_at - time.monotonic())
        return ok({"taskId": task.task_id})

    def _parent_track(self, parent_id: str, audio_id: str) -> TrackRecord | Reply:
        """Mode 1: the track ``audio_id`` of the finished task ``parent_id``."""
        validation = code_of(self.provider, REPLACE, "validation", 400)
        parent = self._tasks.get(parent_id)
        if parent is None:
            return fail(404, f"taskId: no task {parent_id!r} was found for this account")
        status = self._status(parent, time.monotonic())
        if status != SUCCESS_STATUS:
            return fail(
                validation,
                f"taskId: task {parent_id!r} has status {status}; only a "
                "task with status SUCCESS can have a section replaced",
            )
        source = next((t for t in parent.tracks if t.id == audio_id), None)
        if source is None:
            ids = ", ".join(t.id for t in parent.tracks)
            return fail(
                validation,
                f"audioId: {audio_id!r} is not a track of task {parent_id!r} (its tracks: {ids})",
            )
        return source

    def _uploaded(self, url: str, model: str) -> TrackRecord:
        """Mode 2: the audio at ``url``.  Nothing is fetched: a URL this sandbox serves is
        its own track; any other URL gets a deterministic synthesized stand-in."""
        m = _OWN_FILE.match(url[len(self.base_url) :]) if url.startswith(self.base_url) else None
        own = self._tracks.get(m.group(1)) if m else None
        if own is not None:
            return own
        seed = synth.stable_seed(self.seed, "upload", url)
        return TrackRecord(
            id=f"upload-{seed:x}",
            task_id="",
            index=0,
            prompt="",
            model_name=_model_name(model),
            title="Uploaded audio",
            tags="",
            create_time="",
            duration=STANDIN_S,
            recipe=Recipe(seed, STANDIN_S),
        )

    # -- results -----------------------------------------------------------------------

    def _schedule_completion(self, task_id: str, delay: float) -> None:
        if self.scheduler is not None:
            self.scheduler.call_later(max(0.0, delay), lambda: self._complete(task_id))

    def _complete(self, task_id: str) -> None:
        """Produce a task's result (success or its fault's failure) and send the callback."""
        with self.lock:
            task = self._tasks[task_id]
            if task.state != "pending":
                return  # already produced (set_task_faults schedules a second check)
            left = task.ready_at - time.monotonic()
            if left > 0.001:
                self._schedule_completion(task_id, left)  # extra_delay was added later
                return
            faults = task.faults
            task.failure = faults.failure()
            if task.failure is None:
                task.state = "success"
            else:
                task.state = "failed"
                if task.failure.refund:
                    self.credits += task.cost
            body = self.callback_body(task, error_form=faults.error_form)
            url = task.callback_url
        if url and not faults.drop and self.sender is not None:
            self.sender.send(
                url,
                body,
                copies=1 + faults.duplicates,
                delay=faults.callback_delay,
                wrong_signature=faults.wrong_signature,
            )

    # -- files -------------------------------------------------------------------------

    def _published(self, audio_id: str) -> TrackRecord | None:
        with self.lock:
            track = self._tracks.get(audio_id)
            if track is None:
                return None
            task = self._tasks[track.task_id]
            status = self._status(task, time.monotonic())
            visible = self._visible_tracks(task, status)
            return track if any(t is track for t in visible) else None

    def audio_bytes(self, audio_id: str) -> bytes | None:
        """MP3 of a track whose result is out, or None."""
        track = self._published(audio_id)
        return None if track is None else self.audio.mp3(track.recipe)

    def cover_bytes(self, audio_id: str) -> bytes | None:
        """PNG cover of a track whose result is out, or None."""
        track = self._published(audio_id)
        return None if track is None else self.audio.cover(track.recipe.base_seed)

    def samples(self, audio_id: str) -> np.ndarray:
        """Float samples of any known track (before MP3 encoding)."""
        with self.lock:
            track = self._tracks.get(audio_id)
        if track is None:
            raise KeyError(f"no sandbox track {audio_id!r}")
        return self.audio.samples(track.recipe)


def _model_name(model: str) -> str:
    """API model id -> the ``model_name`` tracks report: V3_5 -> chirp-v3-5."""
    return "chirp-" + model.lower().replace("_", "-")
