"""Blind-listening trials: the checks (caller's thread) and the insert (writer thread).

A trial is stored once, when it is answered, with the hidden mapping the listener did not
see; ``(session_id, trial)`` is unique, so a trial answered twice is refused, not doubled.
"""

from __future__ import annotations

import json
import sqlite3

from ..rows import LISTENING, Trial
from .ledger import check_id, check_stars

MODES = ("abx", "rating")
MAX_TRIAL = 10_000  # trials in one session
_COLUMNS = tuple(n for n in LISTENING.names if n != "id")


def check(trial: Trial) -> Trial:
    """``trial`` if every field is what the table holds, else ValueError/TypeError naming
    the field and the limit (nothing is queued)."""
    check_id("session_id", trial.session_id)
    check_id("task_id", trial.task_id, optional=True)
    if trial.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {trial.mode!r}")
    if isinstance(trial.trial, bool) or not isinstance(trial.trial, int):
        raise TypeError(f"trial must be an int, got {type(trial.trial).__name__}")
    if not 1 <= trial.trial <= MAX_TRIAL:
        raise ValueError(f"trial must be from 1 to {MAX_TRIAL}, got {trial.trial}")
    if not isinstance(trial.mapping, dict) or not trial.mapping:
        raise ValueError("mapping must be a non-empty dict of slot -> track id")
    for slot, track in trial.mapping.items():
        check_id(f"mapping[{slot!r}]", track)
    if trial.mode == "abx":
        _check_abx(trial)
    else:
        if not isinstance(trial.answer, dict) or not trial.answer:
            raise ValueError("a rating trial's answer must be a dict of track id -> stars")
        for track, stars in trial.answer.items():
            if track not in trial.mapping.values():
                raise ValueError(f"answer rates {track!r}, which was not in the trial")
            check_stars(stars)
        if trial.correct is not None:
            raise ValueError("correct is for ABX trials only")
    return trial


def _check_abx(trial: Trial) -> None:
    if set(trial.mapping) != {"A", "B", "X"}:
        raise ValueError(f"an ABX mapping has slots A, B and X, got {sorted(trial.mapping)}")
    a, b, x = (trial.mapping[k] for k in "ABX")
    if a == b or x not in (a, b):
        raise ValueError("an ABX mapping needs two different tracks, X being one of them")
    check_id("track_1", trial.track_1)
    check_id("track_2", trial.track_2)
    if {trial.track_1, trial.track_2} != {a, b}:
        raise ValueError("track_1 and track_2 must be the pair heard as A and B")
    if trial.answer not in ("A", "B"):
        raise ValueError(f"an ABX answer is 'A' or 'B', got {trial.answer!r}")
    if trial.correct is not (trial.mapping[trial.answer] == x):
        raise ValueError("correct must say whether the answer names the track X was")


def insert(conn: sqlite3.Connection, trial: Trial) -> None:
    """Insert a checked trial (on the writer thread)."""
    done = conn.execute(
        "SELECT 1 FROM listening_trials WHERE session_id = ? AND trial = ?",
        (trial.session_id, trial.trial),
    ).fetchone()
    if done is not None:
        raise ValueError(f"trial {trial.trial} of session {trial.session_id!r} is stored already")
    values = {
        "session_id": trial.session_id,
        "trial": trial.trial,
        "mode": trial.mode,
        "task_id": trial.task_id,
        "track_1": trial.track_1,
        "track_2": trial.track_2,
        "mapping": json.dumps(dict(trial.mapping)),
        "answer": json.dumps(trial.answer),
        "correct": None if trial.correct is None else int(trial.correct),
        "started_at": trial.started_at,
        "answered_at": trial.answered_at,
    }
    conn.execute(LISTENING.insert_sql(_COLUMNS), tuple(values[c] for c in _COLUMNS))
