"""The sandbox's lyrics: what each song sings, and when, for ``get-timestamped-lyrics``.

A song's lyrics are the request's (custom mode: the ``prompt``; a replacement: its
``fullLyrics``, else its parent's), or, for a description prompt, invented from the track's
seed: short lines under ``[Verse]``/``[Chorus]``/``[Bridge]`` tags, one lyric section per
sung part of the song's plan, the same chorus each time.  The word timings follow the
synthesized music (:class:`~.synth.SongPlan`): each lyric section is sung inside the next
planned part of the same name (a lyric section with no such part takes the next part), its
lines spread evenly over the part's bars, each line starting a beat into its share, words
on beats (half or quarter beats when a line is long), a rest before the next line.  Intro
and outro stay instrumental.  A replacement keeps its parent's plan, so its lyrics (the
``fullLyrics``) are re-timed on the same form: unchanged sections keep their timings.

Lyrics that do not fit the plan (more sections than sung parts) come back unaligned
(``success`` false, at the song's end), as a forced aligner reports words it could not place.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from . import synth
from .records import TaskRecord, TrackRecord
from .validate import Reply, fail, ok

if TYPE_CHECKING:
    from .service import Service

_TAG = re.compile(r"^\s*\[([^\]]*)\](.*)$")
_QUIET = ("intro", "outro")  # planned parts without vocals
_LEVEL = {"intro": 0.3, "verse": 0.55, "chorus": 0.85, "bridge": 0.65, "outro": 0.3}

_VERSE = (
    "walking down an empty street",
    "city lights are fading slow",
    "every window tells a story",
    "footsteps echo in the rain",
    "coffee cold beside the phone",
    "the radio plays our song",
    "shadows dancing on the wall",
    "counting cars that never stop",
    "paper boats along the gutter",
    "the last train is running late",
    "i wrote your name upon the glass",
    "morning comes without a sound",
)
_CHORUS = (
    "we sing it again tonight",
    "hold on hold on to the light",
    "oh we are never coming down",
    "all the stars are burning bright",
    "turn it up and let it go",
    "this is where the river bends",
)
_BRIDGE = (
    "and if the sky should fall",
    "i will catch it after all",
    "nothing left to lose",
    "only you and me",
)


# --- what a song sings ------------------------------------------------------------------------


def invent(plan: synth.SongPlan, seed: int) -> str:
    """Lyrics for a song made from a description: one section per sung part of ``plan``."""
    rng = np.random.default_rng(seed)
    chorus = [_CHORUS[i] for i in rng.permutation(len(_CHORUS))[:4]]
    verses = [_VERSE[i] for i in rng.permutation(len(_VERSE))]
    blocks = []
    for name, start, end in plan.sections:
        bars = round((min(end, plan.duration) - start) / plan.bar)
        if name in _QUIET or bars < 4:  # a part cut short by the song's end: instrumental
            continue
        n = min(4, bars // 2)  # a line per two bars
        if name == "chorus":
            lines = chorus[:n]
        elif name == "bridge":
            lines = [_BRIDGE[i] for i in rng.permutation(len(_BRIDGE))[: min(n, 2)]]
        else:
            lines, verses = verses[:n], verses[n:] + verses[:n]
        blocks.append(f"[{name.title()}]\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def song_lyrics(
    tasks: dict[str, TaskRecord], tracks: dict[str, TrackRecord], track: TrackRecord
) -> str | None:
    """What ``track`` sings (None: an instrumental, or an uploaded original)."""
    for _ in range(256):  # follows a chain of replacements back to its original
        task = tasks.get(track.task_id)
        if task is None or task.param.get("instrumental") is True:
            return None
        if task.kind != "REPLACE_SECTION":
            return track.prompt or None
        full = task.param.get("fullLyrics")
        if isinstance(full, str) and full.strip():
            return full
        parent = tracks.get(task.parent_music_id)
        if parent is None:
            return None
        track = parent
    return None


def _blocks(lyrics: str) -> list[tuple[str | None, list[str]]]:
    """``(tag, lines)`` per lyric section, tags as written (``"Chorus"``), in order."""
    out: list[tuple[str | None, list[str]]] = [(None, [])]
    for raw in lyrics.splitlines():
        m = _TAG.match(raw)
        if m:
            out.append((m.group(1).strip(), []))
            raw = m.group(2)
        if raw.strip():
            out[-1][1].append(" ".join(raw.split()))
    return [b for b in out if b[1]]


# --- when it is sung ---------------------------------------------------------------------------


def align(lyrics: str, plan: synth.SongPlan, seed: int = 0) -> list[dict[str, Any]]:
    """``alignedWords`` for ``lyrics`` sung over ``plan`` (see the module docstring)."""
    parts = [(n, s, min(e, plan.duration)) for n, s, e in plan.sections if n not in _QUIET]
    parts = [p for p in parts if p[2] > p[1]]
    beat = 60.0 / plan.tempo
    rng = np.random.default_rng(seed)
    words: list[dict[str, Any]] = []
    cursor = 0
    for tag, lines in _blocks(lyrics):
        base = re.sub(r"[\s\d]+$", "", (tag or "").split(":")[0]).strip().lower()
        j = next((k for k in range(cursor, len(parts)) if parts[k][0] == base), None)
        if j is None and cursor < len(parts):
            j = cursor
        timed: list[tuple[float | None, float | None]]
        if j is None:
            timed = [(None, None)] * sum(len(line.split()) for line in lines)
        else:
            timed = _place(lines, parts[j][1], parts[j][2], beat)
            cursor = j + 1
        texts = [
            w + ("\n" if k == len(line.split()) - 1 else " ")
            for line in lines
            for k, w in enumerate(line.split())
        ]
        texts[-1] += "\n"  # a blank line after the section, as the service shows it
        if tag:
            texts[0] = f"[{tag}]\n" + texts[0]
        for text, (start, end) in zip(texts, timed, strict=True):
            ok_ = start is not None
            at = round(plan.duration, 2)
            words.append(
                {
                    "word": text,
                    "success": ok_,
                    "startS": start if ok_ else at,
                    "endS": end if ok_ else at,
                    "palign": round(float(rng.uniform(0.6, 1.0)), 3) if ok_ else 0,
                }
            )
    return words


def _place(
    lines: list[str], start: float, end: float, beat: float
) -> list[tuple[float | None, float | None]]:
    """Start and end of every word of ``lines`` sung within ``[start, end)``, on the beat."""
    share = (end - start) / len(lines)
    out: list[tuple[float | None, float | None]] = []
    for i, line in enumerate(lines):
        n = len(line.split())
        t0 = start + round(i * share / beat) * beat + beat  # a beat into its share
        room = max(share - 2 * beat, share / 2)  # the last beat of the share is a rest
        # On the beat; on half or quarter beats when the line is long; else squeezed in.
        step = next((f for f in (beat, beat / 2, beat / 4) if n * f <= room), room / n)
        for k in range(n):
            s = t0 + k * step
            out.append((round(s, 2), round(s + 0.8 * step, 2)))
    return out


def waveform(plan: synth.SongPlan, points: int = 100) -> list[float]:
    """A coarse loudness envelope (0..1) from the plan's form, for ``waveformData``."""
    times = (np.arange(points) + 0.5) * plan.duration / points
    return [_LEVEL.get(plan.section_at(float(t)), 0.5) for t in times]


# --- the endpoint -----------------------------------------------------------------------------


def timestamped_lyrics(service: Service, body: Any) -> Reply:
    """``POST /api/v1/generate/get-timestamped-lyrics`` with ``{taskId, audioId}``."""
    if not isinstance(body, dict):
        return fail(400, "the body must be a JSON object with taskId and audioId")
    ids = {}
    for name in ("taskId", "audioId"):
        value = body.get(name)
        if not isinstance(value, str) or not value.strip():
            return fail(400, f"{name}: is required (a non-empty string)")
        ids[name] = value.strip()
    task_id, audio_id = ids["taskId"], ids["audioId"]
    with service.lock:
        task = service._tasks.get(task_id)
        if task is None:
            return fail(404, f"taskId: no task {task_id!r} was found for this account")
        status = service._status(task, time.monotonic())
        track = next((t for t in service._visible_tracks(task, status) if t.id == audio_id), None)
        if track is None:
            if any(t.id == audio_id for t in task.tracks):
                return fail(400, f"audioId: track {audio_id!r} is not ready (task {status})")
            return fail(404, f"audioId: {audio_id!r} is not a track of task {task_id!r}")
        lyrics = song_lyrics(service._tasks, service._tracks, track)
    plan = synth.plan_song(track.recipe.duration, track.recipe.base_seed)
    words = align(lyrics, plan, seed=track.recipe.base_seed) if lyrics else []
    return ok(
        {
            "alignedWords": words,
            "waveformData": waveform(plan),
            "hootCer": round(0.05 + 0.1 * (track.recipe.base_seed % 100) / 100, 4),
            "isStreamed": False,
        }
    )
