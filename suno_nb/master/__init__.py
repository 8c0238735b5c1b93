"""From picked takes to one finished song: ``rx.master()`` and ``rx.masters()``.

The master starts from the original track and splices in, for every picked take, the
section its task replaced (``infill_start_s`` .. ``infill_end_s``), lined up by the offset
:func:`suno_nb.analysis.measure` finds.  Audio comes through :mod:`suno_nb.audio` (fetched
into the cache, decoded once); the offset and the seam measure are the analysis room's.

A package: ``seams.py`` (the audio pieces), ``result.py`` (:class:`Master`, the store
record).  Floor 4: imports :mod:`suno_nb.analysis`, :mod:`suno_nb.audio` and :mod:`suno_nb.errors`;
the receiver is used duck-typed (``frame()``, ``tasks()``, ``lookup()``, ``store``).
"""

from __future__ import annotations

import itertools
import math
import numbers
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import audio
from ..analysis import (
    align_take,
    change_db,
    measure,
    original_track,
    track_source,
)  # one offset and seam measure
from ..errors import MasterError
from .result import SECTION_COLUMNS, Master, masters, record
from .seams import MAX_XFADE_MS, SEARCH_MS, auto_ms, best_seam, load_channels, rms, splice

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Master", "make_master", "masters"]

CONTEXT_S = 5.0  # loudness is matched on this much audio either side of a section
EDGE_S = 0.1  # ... skipping this much next to each edge (the take's own transition)
MAX_GAIN_DB = 12.0


# --- what to splice ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _picked_rows(frame: pd.DataFrame, picks: Any) -> list[dict[str, Any]]:
    if picks is None:
        rows = frame[frame["picked"].fillna(False).astype(bool)]
        if not len(rows):
            raise MasterError(
                "picks: nothing is picked: rx.pick(track_id) one take of each replace task "
                "to use, or pass picks=[track_id, ...]"
            )
        return [dict(r) for _, r in rows.iterrows()]
    ids = [picks] if isinstance(picks, str) else picks
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) and i for i in ids):
        raise TypeError("picks must be None or a list of track ids (non-empty strings)")
    if not ids:
        raise MasterError("picks: the list is empty: name at least one take's track id")
    out = []
    for track_id in ids:
        rows = frame[frame["track_id"] == track_id]
        if not len(rows):
            raise KeyError(f"picks: no track {track_id!r} in this receiver's results")
        if len(rows) > 1:
            tasks = ", ".join(repr(t) for t in rows["task_id"])
            raise MasterError(f"picks: track {track_id!r} belongs to several tasks ({tasks})")
        out.append(dict(rows.iloc[0]))
    return out


def _plan(rx: Any, picks: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The original (a frame-like row) and the sections, sorted; refuses what cannot be one
    master.  Nothing is fetched before every check has passed."""
    frame = rx.frame()
    tasks = rx.tasks().set_index("task_id", drop=False)
    sections: list[dict[str, Any]] = []
    originals: dict[tuple[str, str], list[str]] = {}
    for row in _picked_rows(frame, picks):
        task_id = str(row["task_id"])
        task = dict(tasks.loc[task_id]) if task_id in tasks.index else dict(row)
        start, end = task.get("infill_start_s"), task.get("infill_end_s")
        parent, audio_id = _text(task.get("parent_task_id")), _text(task.get("audio_id"))
        if start is None or end is None or start != start or end != end or not parent:
            raise MasterError(f"picks: task {task_id!r} is not a replace-section task")
        src = track_source(rx, row)  # the archive first, else the URL
        if not src:
            raise MasterError(f"picks: take {row['track_id']!r} of task {task_id!r} has no audio")
        sections.append(
            {
                "task_id": task_id,
                "track_id": str(row["track_id"]),
                "start_s": float(start),
                "end_s": float(end),
                "src": src,
            }
        )
        originals.setdefault((parent, audio_id), []).append(task_id)
    if len(originals) > 1:
        which = "; ".join(f"track {a!r} of task {p!r}: {t}" for (p, a), t in originals.items())
        raise MasterError(f"picks: the takes are of different originals ({which})")
    sections.sort(key=lambda s: s["start_s"])
    gap = 2 * SEARCH_MS / 1000 + MAX_XFADE_MS / 1000
    for a, b in itertools.pairwise(sections):
        if b["start_s"] < a["end_s"] + gap:
            raise MasterError(
                f"picks: sections overlap: task {a['task_id']!r} replaces "
                f"{a['start_s']:g}-{a['end_s']:g} s and task {b['task_id']!r} "
                f"{b['start_s']:g}-{b['end_s']:g} s (they need {gap:g} s between them); "
                "pick from one of them only (rx.unpick(task_id))"
            )
    (parent, audio_id), first = next(iter(originals.items()))
    task = dict(tasks.loc[first[0]]) if first[0] in tasks.index else {}
    original = original_track(rx, task or {"parent_task_id": parent, "audio_id": audio_id}, frame)
    if original is None or not track_source(rx, original):
        raise MasterError(
            f"picks: the original (track {audio_id!r} of task {parent!r}) is unknown to this "
            "receiver and no client can look it up (start_receiver(client=...))"
        )
    return original, sections


# --- the master ---------------------------------------------------------------------------


def make_master(
    rx: Any,
    picks: Any = None,
    *,
    crossfade_ms: float | str = "auto",
    match_loudness: bool = True,
    connect_timeout: float | None = None,
    deadline: float | None = None,
) -> Master:
    """One song from the picks (``rx.master()``): the original with each picked take's
    section spliced in.  Returns a :class:`Master`, already recorded in ``rx.store``.

    ``picks``: track ids, else every take picked with ``rx.pick``; all of one original, with
    sections that do not overlap (nor come within 0.6 s of each other), else
    :class:`~suno_nb.errors.MasterError` naming the tasks and sections, before any audio is
    fetched.

    - **Alignment**: each take is moved by the offset :func:`suno_nb.analysis.measure`
      finds (cross-correlation outside the section, the ``offset_ms`` of
      ``compare_takes``).  The master keeps the original's length.
    - **Loudness** (``match_loudness``): the take is scaled so its RMS over the 5 s either
      side of its section (skipping 0.1 s next to each edge) equals the original's there;
      both hold the same music there, so the new section keeps the level the service gave
      it relative to the song.  At most +/-12 dB.
    - **Seams**: each seam is placed within +/-50 ms of its section edge, in 2 ms steps,
      where a hard cut is least abrupt by the analysis's seam measure (band energies of the
      ~12 ms before and after the cut, minus the original's own change there), then
      crossfaded at equal power: sin/cos weights, divided by sqrt(1 + rho sin 2t) for the
      measured correlation rho of the two sides, so new music against old (rho ~ 0) gets
      the plain equal-power fade and identical music (rho ~ 1) does not swell by 3 dB.
    - ``crossfade_ms="auto"``: 20 ms for a cut as smooth as the original, growing linearly
      to 50 ms for one 6 dB (or more) more abrupt; else a number of ms, 0..500.
    """
    import pandas as pd

    if crossfade_ms != "auto" and (
        isinstance(crossfade_ms, bool)
        or not isinstance(crossfade_ms, numbers.Real)
        or not 0 <= crossfade_ms <= MAX_XFADE_MS
    ):
        raise ValueError(
            f"crossfade_ms must be 'auto' or a number from 0 to {MAX_XFADE_MS:g}, "
            f"got {crossfade_ms!r}"
        )
    if not isinstance(match_loudness, bool):
        raise TypeError(f"match_loudness must be True or False, got {match_loudness!r}")
    connect, total = audio.timeouts(connect_timeout, deadline)
    original, sections = _plan(rx, picks)
    base, base_mono, sr = load_channels(track_source(rx, original), connect, total)
    out = base.copy()
    n = base.shape[1]
    rows = []
    for s in sections:
        take, take_mono, sr_take = load_channels(s["src"], connect, total)
        if sr_take != sr:
            raise MasterError(
                f"picks: take {s['track_id']!r} is at {sr_take} Hz, the original at {sr} Hz"
            )
        if take.shape[0] != base.shape[0]:  # mono against stereo: spread the mono one
            take = np.broadcast_to(take.mean(axis=0), base.shape[:1] + take.shape[1:])
        offset_ms = measure(base_mono, take_mono, sr, s["start_s"], s["end_s"])["offset_ms"]
        lag = round(offset_ms * sr / 1000)
        aligned = np.stack([align_take(ch, lag, n) for ch in take])
        i0, i1 = round(s["start_s"] * sr), min(round(s["end_s"] * sr), n)
        gain = 1.0
        if match_loudness:
            c, e = round(CONTEXT_S * sr), round(EDGE_S * sr)
            spans = [(max(0, i0 - c), max(0, i0 - e)), (min(n, i1 + e), min(n, i1 + c))]
            ref, got = rms(base, spans), rms(aligned, spans)
            if ref > 0 and got > 0:
                gain = min(max(ref / got, 10 ** (-MAX_GAIN_DB / 20)), 10 ** (MAX_GAIN_DB / 20))
                aligned = aligned * np.float32(gain)
        aligned_mono = aligned.mean(axis=0)
        seams = []
        for edge, before, after, fade_in in (
            (i0, base_mono, aligned_mono, True),
            (i1, aligned_mono, base_mono, False),
        ):
            at, extra = best_seam(before, after, edge, sr)
            ms = auto_ms(extra) if crossfade_ms == "auto" else float(crossfade_ms)
            seams.append((at, ms, fade_in))
        (a0, ms0, _), (a1, ms1, _) = seams
        x0, x1 = round(ms0 * sr / 1000), round(ms1 * sr / 1000)
        lo, hi = max(0, a0 - x0 // 2 + x0), min(n, a1 - x1 // 2)
        for at, ms, fade_in in seams:
            splice(out, aligned, at, round(ms * sr / 1000), fade_in)
        out[:, lo:hi] = aligned[:, lo:hi]
        rows.append(
            {
                **{k: s[k] for k in ("start_s", "end_s", "task_id", "track_id")},
                "offset_ms": offset_ms,
                "gain_db": 20 * math.log10(gain),
                "crossfade_start_ms": ms0,
                "crossfade_end_ms": ms1,
                "seam_start_s": a0 / sr,
                "seam_end_s": a1 / sr,
                "_at": (a0, a1),
            }
        )
    mono = out.mean(axis=0)
    for row in rows:
        a0, a1 = row.pop("_at")
        row["seam_start_db"] = change_db(mono, a0, sr) - change_db(base_mono, a0, sr)
        row["seam_end_db"] = change_db(mono, a1, sr) - change_db(base_mono, a1, sr)
    master_id = uuid.uuid4().hex[:12]
    info: dict[str, Any] = {
        "master_id": master_id,
        "created_at": time.time(),
        "original_task_id": _text(original.get("task_id")),
        "original_track_id": _text(original.get("track_id")),
        "picks": [{"task_id": s["task_id"], "track_id": s["track_id"]} for s in sections],
        "crossfade_ms": crossfade_ms,
        "match_loudness": match_loudness,
        "sections": rows,
        "path": None,
        "sha256": None,
    }
    store = getattr(rx, "store", None)
    if store is not None:
        record(store, master_id, info)
    frame = pd.DataFrame(rows, columns=SECTION_COLUMNS)
    return Master(out, sr, frame, master_id, info, store)
