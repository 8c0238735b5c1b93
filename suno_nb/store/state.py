"""The two decisions a callback makes, as pure functions (property-tested).

:func:`decide` — the task's state and shown stage after a callback, given its state before.
:func:`merge_tracks` — the task's tracks after a callback, given the stored ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from ..payloads import Callback
from ..rows import TRACK_VALUES, Track
from .schema import FAILED, FINAL_STATES, RUNNING, SUCCEEDED


def decide(before: str | None, before_stage: str | None, cb: Callback) -> tuple[str, str | None]:
    """The task's (state, stage) after ``cb``; ``before`` is None for a task first seen.

    The first final result decides; a later success upgrades a failure (the audio exists);
    nothing downgrades a success; a real result also decides a task we gave up on.  A
    non-final stage (documented or not) makes an open or given-up task ``running``.  The
    stage shown is the latest one that still tells something: after a final result, only
    the callback that decides changes it.
    """
    if cb.succeeded:
        after = SUCCEEDED
    elif before in FINAL_STATES:
        after = before
    else:
        after = FAILED if cb.final else RUNNING
    deciding = before not in FINAL_STATES or after != before
    return after, (cb.stage if deciding else before_stage)


def merge_value(prev: Any, new: Any, overwrite: bool) -> Any:
    """A later stage fills in what is missing; only a success replaces what is there."""
    if new is None or new == "":
        return prev
    return new if overwrite or prev is None or prev == "" else prev


def merge_track(old: Track, new: Track, overwrite: bool) -> Track:
    """``old`` with ``new``'s values merged in field by field (``extra`` key by key)."""
    values = {
        name: merge_value(getattr(old, name), getattr(new, name), overwrite)
        for name in TRACK_VALUES
        if name != "extra"
    }
    extra = dict(old.extra)
    for key, value in new.extra.items():
        merged = merge_value(extra.get(key), value, overwrite)
        if merged is not None or key in extra:
            extra[key] = merged
    return dataclasses.replace(old, **values, extra=extra)


def merge_tracks(
    stored: Mapping[str, Track], incoming: Iterable[Track], *, overwrite: bool
) -> tuple[list[str], dict[str, Track]]:
    """(ids of tracks new to the task, every track to write: new or changed).

    A track sent twice in one body counts once (the first).  ``overwrite`` (a success)
    lets the incoming values replace stored ones; otherwise they only fill gaps.
    """
    fresh: list[str] = []
    changed: dict[str, Track] = {}
    seen: set[str] = set()
    for track in incoming:
        if track.id in seen:
            continue
        seen.add(track.id)
        old = stored.get(track.id)
        if old is None:
            fresh.append(track.id)
            changed[track.id] = track
            continue
        merged = merge_track(old, track, overwrite)
        if merged != old:
            changed[track.id] = merged
    return fresh, changed
