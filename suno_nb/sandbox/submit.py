"""The sandbox's submit endpoints: ``/generate`` and ``/generate/replace-section``, and the
originals ``Sandbox.create_song`` makes for free.

A layer of :class:`~.service.Service`: requests are checked by :mod:`.validate` from the
provider's contract, then become tasks through the state's ``_new_task``, ``_charge`` and
``_next_faults``.  Nothing here is timed: the service schedules what a new task needs.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import SectionValidationError
from ..payloads import SUCCESS_STATUS
from ..rules import validate_section
from . import lyrics, synth
from .bodies import Bodies
from .faults import Faults
from .records import Recipe, Song, TaskRecord, TrackRecord
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

MAX_SONG_S = 480.0
STANDIN_S = 150.0  # length of the stand-in for an uploadUrl the sandbox does not serve
_OWN_FILE = re.compile(r"^/(?:files|stream)/([0-9a-fA-F-]{8,64})(?:\.mp3)?$")


def model_name(model: str) -> str:
    """API model id -> the ``model_name`` tracks report: V3_5 -> chirp-v3-5."""
    return "chirp-" + model.lower().replace("_", "-")


Submitted = tuple[Reply, TaskRecord | None]  # the answer, and the task if one was made


class Submissions(Bodies):
    """Turn valid submit requests into tasks (see :class:`~.service.Service`)."""

    def _new_tracks(
        self,
        *,
        n: int,
        prompt: str | None,
        title: str,
        tags: str,
        model_name: str,
        durations: list[float],
        salt: Any,
    ) -> Callable[[str, str], list[TrackRecord]]:
        """Track records; ``prompt=None``: each track sings lyrics invented for it."""

        def tracks(task_id: str, created: str) -> list[TrackRecord]:
            out = []
            for i, d in enumerate(durations):
                recipe = Recipe(synth.stable_seed(self.seed, title, *salt, n, i), d)
                sung = prompt
                if sung is None:
                    sung = lyrics.invent(synth.plan_song(d, recipe.base_seed), recipe.base_seed)
                out.append(
                    TrackRecord(
                        id=str(uuid.uuid4()),
                        task_id=task_id,
                        index=i,
                        prompt=sung,
                        model_name=model_name,
                        title=title,
                        tags=tags,
                        create_time=created,
                        duration=d,
                        recipe=recipe,
                    )
                )
            return out

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
        models = self.provider.models
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
                    model_name=model_name(model),
                    durations=[duration] * self.tracks_per_task,
                    salt=(),
                ),
                finished=True,
            )
            return Song(task.task_id, [self._song_track(t) for t in task.tracks])

    def _submit_generate(self, body: Any) -> Submitted:
        """``POST /api/v1/generate``: a staged task (text -> first -> complete)."""
        try:
            req = parse_generate(self.provider, body)
        except Rejected as rej:
            return rej.reply, None
        with self.lock:
            refused = self._charge(self.cost_generate, GENERATE)
            if refused:
                return refused, None
            faults = self._next_faults()
            if faults.reply_code is not None:
                self.credits += self.cost_generate
                return self._fault_reply(faults, GENERATE), None
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
                    # A description prompt: the service writes the lyrics (the tracks' prompt).
                    prompt=req.prompt if req.custom or req.instrumental else None,
                    title=req.title,
                    tags=req.style,
                    model_name=model_name(req.model),
                    durations=durations,
                    salt=(req.prompt,),
                ),
            )
            task.staged = True
        return ok({"taskId": task.task_id}), task

    def _fault_reply(self, faults: Faults, endpoint: str) -> Reply:
        code = faults.reply_code
        assert code is not None
        info = self.provider.code(endpoint, code) or self.provider.code("record-info", code)
        return fail(code, faults.error_message or (info.meaning if info else f"error {code}"))

    def _submit_replace(self, body: Any) -> Submitted:
        """``POST /api/v1/generate/replace-section``: the service's own validation first."""
        try:
            req = parse_replace(self.provider, body)
        except Rejected as rej:
            return rej.reply, None
        with self.lock:
            source: TrackRecord | Reply
            if req.task_id is not None:
                source = self._parent_track(req.task_id, req.audio_id or "")
            else:
                source = self._uploaded(req.upload_url or "", req.model or "")
            if isinstance(source, tuple):
                return source, None
            try:
                section = validate_section(
                    req.start, req.end, source.duration, section=self.provider.section
                )
            except SectionValidationError as exc:
                return invalid(self.provider, REPLACE, exc).reply, None
            refused = self._charge(self.cost_replace, REPLACE)
            if refused:
                return refused, None
            faults = self._next_faults()
            if faults.reply_code is not None:
                self.credits += self.cost_replace
                return self._fault_reply(faults, REPLACE), None
            n = next(self._counter)
            # The audition's audio faults, passed to takes.replace_section when set.
            audio_fx = tuple(
                (name, getattr(faults, name))
                for name in ("outside_gain_db", "shift_ms", "hard_seams")
                if getattr(faults, name)
            )

            parent: TrackRecord = source

            def tracks(task_id: str, created: str) -> list[TrackRecord]:
                out = []
                for i in range(self.tracks_per_task):
                    # Each result track is its own variant, derived from the request.
                    seed = synth.stable_seed(
                        self.seed,
                        parent.recipe,
                        req.prompt,
                        req.tags,
                        section.start,
                        section.end,
                        n,
                        i,
                    )
                    recipe = Recipe(
                        parent.recipe.base_seed,
                        parent.duration,
                        (*parent.recipe.ops, (section.start, section.end, seed, *audio_fx)),
                    )
                    out.append(
                        TrackRecord(
                            id=str(uuid.uuid4()),
                            task_id=task_id,
                            index=i,
                            prompt=req.prompt,
                            model_name=parent.model_name,
                            title=req.title,
                            tags=req.tags,
                            create_time=created,
                            duration=parent.duration,
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
        return ok({"taskId": task.task_id}), task

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
            model_name=model_name(model),
            title="Uploaded audio",
            tags="",
            create_time="",
            duration=STANDIN_S,
            recipe=Recipe(seed, STANDIN_S),
        )
