"""What a blind test hears, computed in Python: the candidates and each trial's hidden deal.

Pure but for :func:`candidates` (which reads the receiver's tables).  A *deal* maps the
slots the listener sees ("A", "B", "X" in ABX; "1".."n" in a blind rating) to candidate
keys; it is drawn from a ``random.Random`` the widget seeds, so a test that knows the seed
knows every deal (:func:`deal_abx`, :func:`deal_rating`, called in that order per trial).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .. import analysis
from ..errors import SunoNbError
from ._common import short_id, text
from ._lanes import choices

ABX_SLOTS = ("A", "B", "X")


def deal_abx(rng: random.Random, pair: Sequence[str]) -> dict[str, str]:
    """A, B and X for one ABX trial of ``pair`` (two keys): which of the pair is A is drawn
    first, then whether X is A or B; each a fair coin."""
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f"pair must be two different candidates, got {list(pair)!r}")
    a, b = (pair[0], pair[1]) if rng.random() < 0.5 else (pair[1], pair[0])
    return {"A": a, "B": b, "X": a if rng.random() < 0.5 else b}


def deal_rating(rng: random.Random, keys: Sequence[str]) -> dict[str, str]:
    """Slots "1".."n" for one blind-rating trial: ``keys`` in a shuffled order."""
    order = list(keys)
    rng.shuffle(order)
    return {str(i): key for i, key in enumerate(order, start=1)}


def candidates(rx: Any, task_id: str | None, task_ids: list[str] | None) -> dict[str, Any]:
    """The tracks a blind test can play: each chosen task's takes and its original.

    Returns ``{"tracks": {key: {label, track_id, task_id, url, kind}}, "section":
    [start, end] or [], "title": str, "task_id": str or None, "message": str}``; keys are
    ``original`` / ``original2``... and ``take1``, ``take2``... in task order.
    """
    wanted = [str(t) for t in task_ids] if task_ids else ([task_id] if task_id else [])
    if not wanted:
        listed = choices(rx, None)
        wanted = [listed[0]["task_id"]] if listed else []
    out: dict[str, Any] = {"tracks": {}, "section": [], "title": "", "message": ""}
    out["task_id"] = wanted[0] if wanted else None
    if not wanted:
        out["message"] = (
            "Nothing to test yet: no replace-section task has succeeded in this receiver."
        )
        return out
    tasks = rx.tasks().set_index("task_id", drop=False)
    frame = rx.frame()
    tracks: dict[str, dict[str, Any]] = out["tracks"]
    problems: list[str] = []
    originals: set[str] = set()
    n_take = 0
    for tid in wanted:
        if tid not in tasks.index:
            problems.append(f"task {short_id(tid)} is not known to this receiver")
            continue
        task = dict(tasks.loc[tid])
        if text(task["state"]) != "succeeded":
            problems.append(f"task {short_id(tid)} is {text(task['state'])}")
            continue
        if not out["section"] and task["infill_start_s"] == task["infill_start_s"]:
            out["section"] = [float(task["infill_start_s"]), float(task["infill_end_s"])]
            out["title"] = text(task["title"], "untitled")
        try:
            original = analysis.original_track(rx, task, frame)
        except SunoNbError as exc:
            original = None
            problems.append(f"the original of task {short_id(tid)} cannot be found: {exc}")
        if original is not None and str(original["track_id"]) not in originals:
            originals.add(str(original["track_id"]))
            key = "original" if len(originals) == 1 else f"original{len(originals)}"
            label = "Original" if len(originals) == 1 else f"Original {len(originals)}"
            tracks[key] = _track(rx, label, "original", original, text(original.get("task_id")))
        for _, take in frame[frame["task_id"] == tid].iterrows():
            n_take += 1
            label = f"Take {n_take}" + (f" (task {short_id(tid)})" if len(wanted) > 1 else "")
            tracks[f"take{n_take}"] = _track(rx, label, "take", dict(take), tid)
    if problems:
        out["message"] = "; ".join(problems).capitalize() + "."
    return out


def _track(rx: Any, label: str, kind: str, row: dict[str, Any], task_id: str) -> dict[str, Any]:
    # "url": the archived file when there is one, else the URL (kept in Python, never sent)
    url = analysis.track_source(rx, row)
    return {
        "label": label,
        "kind": kind,
        "track_id": text(row.get("track_id")),
        "task_id": task_id,
        "url": url,
    }
