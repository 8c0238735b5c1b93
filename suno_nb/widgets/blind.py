"""Blind listening: ABX trials and blind ratings of takes (an ``anywidget``).

``audition(rx, blind=True)`` makes one; the candidates are the chosen task(s)' takes and
the original.  **ABX** (``mode="abx"``): the listener picks a pair; each trial plays A, B
and X (secretly A or B), drawn per trial from a seedable ``random.Random``, and asks "X is
A" or "X is B".  **Blind rating** (``mode="rating"``): the takes, as "Take ?" in an order
shuffled per trial, get 1-5 stars each, written to the ledger marked blind.

During a trial nothing that tells the candidates apart reaches the page (no label, track
id, URL or waveform): it asks for a slot's audio and gets bytes (:mod:`._blind_audio`).
Every answered trial is stored with its hidden mapping (``rx.listening_tests()``); a
result is shown when asked, all of them at the end of the session.  With the receiver
stopped the controls are disabled, with the line that brings it back; nothing is ever
said to be saved that was not.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import SunoNbError
from ..frame import verdict
from ..rows import Trial
from . import _blind_audio as clips
from . import _blind_plan as plan
from ._common import (
    UPDATE_LOCK,
    close_player,
    current_cell_id,
    esm,
    log,
    take_slot,
)
from ._feed import FeedJobs
from ._lanes import plain_error

if TYPE_CHECKING:
    from ..events import Change
    from ..session import Receiver

__all__ = ["BlindTest"]

STATIC = Path(__file__).parent / "static"
MODES = ("abx", "rating")
MAX_TRIALS = 100


class BlindTest(anywidget.AnyWidget):
    """A blind test of the takes of ``task_id`` (or ``task_ids``) and their original.

    Synced state (what the page sees): ``mode``, ``phase`` (``setup`` → ``trial`` →
    ``answered`` → ... → ``done``), ``candidates`` (labels, only outside a session), ``pair``
    (two candidate keys, ABX), ``trials`` (per session), ``trial`` (the current one),
    ``slots``, ``section``, ``preroll``, ``stars`` (this rating trial's), ``answer``,
    ``result`` (a trial revealed on request), ``results`` and ``score`` (at the end),
    ``disabled`` (why nothing can be saved, with the line that fixes it).
    """

    _esm = esm("blind.js")  # with the shared DOM helpers (static/dom.js)
    _css = STATIC / "blind.css"

    mode = traitlets.Unicode("abx").tag(sync=True)
    phase = traitlets.Unicode("setup").tag(sync=True)
    candidates: traitlets.List[dict[str, str]] = traitlets.List().tag(sync=True)
    pair: traitlets.List[str] = traitlets.List().tag(sync=True)
    trials = traitlets.Int(10).tag(sync=True)
    trial = traitlets.Int(0).tag(sync=True)
    slots: traitlets.List[str] = traitlets.List().tag(sync=True)
    section: traitlets.List[float] = traitlets.List().tag(sync=True)
    preroll = traitlets.Float(3.0).tag(sync=True)
    span: traitlets.List[float] = traitlets.List().tag(sync=True)
    level_match = traitlets.Bool(True).tag(sync=True)
    stars = traitlets.Dict().tag(sync=True)
    answer = traitlets.Unicode("").tag(sync=True)
    result = traitlets.Dict().tag(sync=True)
    results: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    score = traitlets.Unicode("").tag(sync=True)
    heading = traitlets.Unicode("").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    feedback = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        rx: Receiver,
        task_id: str | None = None,
        *,
        task_ids: list[str] | None = None,
        context: float = 3.0,
        mode: str = "abx",
        trials: int = 10,
        pair: tuple[str, str] | list[str] | None = None,
        seed: int | None = None,
        level_match: bool = True,
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0 s, got {context!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be 'abx' or 'rating', got {mode!r}")
        if isinstance(trials, bool) or not isinstance(trials, int):
            raise TypeError(f"trials must be an int, got {type(trials).__name__}")
        if not 1 <= trials <= MAX_TRIALS:
            raise ValueError(f"trials must be from 1 to {MAX_TRIALS}, got {trials}")
        try:
            found = plan.candidates(rx, task_id, task_ids)
        except SunoNbError as exc:  # e.g. a stopped receiver's closed store
            found = {"tracks": {}, "section": [], "title": "", "task_id": None}
            found["message"] = f"The takes cannot be read: {exc}."
        self._tracks: dict[str, dict[str, Any]] = found["tracks"]
        default_pair = self._default_pair()
        if pair is not None:
            pair = list(pair)
            unknown = [k for k in pair if k not in self._tracks]
            if len(pair) != 2 or pair[0] == pair[1] or unknown:
                raise ValueError(
                    f"pair must be two different candidates of {sorted(self._tracks)}, got {pair!r}"
                )
        super().__init__(
            mode=mode,
            trials=trials,
            preroll=float(context),
            section=found["section"],
            pair=list(pair) if pair is not None else default_pair,
            heading=found["title"],
            message=found["message"],
            level_match=bool(level_match),
        )
        start, end = clips.window(found["section"], float(context))
        self.span = [start] if end is None else [start, end]
        self._rx = rx
        self._task_id = found["task_id"]
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._session = ""
        self._deal: dict[str, str] = {}  # slot -> candidate key, this trial's (hidden)
        self._shown_at = 0.0
        self._log: list[dict[str, Any]] = []  # this session's answered trials, revealed at the end
        self._wavs: dict[str, bytes] = {}  # key -> the window as WAV, made once per set
        self._wav_set: tuple[str, ...] = ()  # the keys those were level-matched together
        self._jobs = FeedJobs(rx.feed, "blind")
        self.on_msg(self._on_msg)
        self._show_candidates()
        cell = current_cell_id()
        self._slot = f"blind:{cell}" if cell else None
        if self._slot is not None:
            take_slot(self._slot, rx, self, cell)
        rx.subscribe(self._on_changes)
        if not getattr(rx, "running", True):
            self._stopped()

    def __repr__(self) -> str:
        return f"BlindTest(mode={self.mode!r}, trials={self.trials})"  # stable, for nbval

    # --- sessions ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start a session of ``trials`` trials in ``mode`` (ABX: of ``pair``)."""
        with self._lock:
            if self.disabled:
                raise RuntimeError(self.disabled)
            if self.mode not in MODES:  # the traits may come from the page
                raise ValueError(f"mode must be 'abx' or 'rating', got {self.mode!r}")
            if not 1 <= self.trials <= MAX_TRIALS:
                raise ValueError(f"trials must be from 1 to {MAX_TRIALS}, got {self.trials}")
            if self.mode == "abx":
                if len(self.pair) != 2 or any(k not in self._tracks for k in self.pair):
                    raise ValueError("choose two candidates to compare (pair)")
                if self.pair[0] == self.pair[1]:
                    raise ValueError("the pair must be two different candidates")
            elif not self._takes():
                raise ValueError("there is no take to rate")
            self._session = uuid.uuid4().hex[:16]
            self._log = []
            self._set(results=[], score="", result={})
            self._next_trial(1)

    def _next_trial(self, number: int) -> None:
        if self.mode == "abx":
            self._deal = plan.deal_abx(self._rng, list(self.pair))
        else:
            self._deal = plan.deal_rating(self._rng, self._takes())
        self._shown_at = time.time()
        # the labels go before the trial starts: the page never holds them during one
        self._set(
            candidates=[],
            trial=number,
            slots=list(self._deal) if self.mode == "abx" else sorted(self._deal, key=int),
            stars={},
            answer="",
            result={},
            phase="trial",
            feedback="",
        )

    def answer_abx(self, x_is: str) -> None:
        """Answer this ABX trial: ``x_is`` is "A" or "B".  Stored at once."""
        with self._lock:
            if self.phase != "trial" or self.mode != "abx":
                raise RuntimeError("no ABX trial is waiting for an answer")
            if x_is not in ("A", "B"):
                raise ValueError(f"x_is must be 'A' or 'B', got {x_is!r}")
            ids = {slot: self._tracks[key]["track_id"] for slot, key in self._deal.items()}
            correct = self._deal[x_is] == self._deal["X"]
            first, second = (self._tracks[k]["track_id"] for k in self.pair)
            trial = Trial(
                self._session, self.trial, "abx", ids, x_is, task_id=self._task_id,
                track_1=first, track_2=second, correct=correct, started_at=self._shown_at,
            )  # fmt: skip
            if not self._store(trial):
                return
            a, b = (self._tracks[self._deal[s]]["label"] for s in "AB")
            x = "A" if self._deal["X"] == self._deal["A"] else "B"
            self._log.append(
                {"trial": self.trial, "A": a, "B": b, "x": x, "answer": x_is, "correct": correct}
            )
            self._answered(f"Answer saved: trial {self.trial} of {self.trials}.")

    def rate_blind(self, slot: str, stars: int) -> None:
        """Give the take in ``slot`` ("1".."n") of this rating trial 1-5 stars (written to
        the ledger marked blind); the trial is stored when every take has stars."""
        with self._lock:
            if self.phase != "trial" or self.mode != "rating":
                raise RuntimeError("no blind-rating trial is open")
            if slot not in self._deal:
                raise ValueError(f"slot must be one of {sorted(self._deal, key=int)}, got {slot!r}")
            take = self._tracks[self._deal[slot]]
            try:
                self._rx.store.rate(take["track_id"], stars, task_id=take["task_id"], blind=True)
            except SunoNbError as exc:
                self._not_saved(exc)
                return
            given = {**self.stars, slot: int(stars)}
            self._set(stars=given, feedback=f"Saved: Take ? {slot}: {int(stars)} ★ (blind).")
            if set(given) != set(self._deal):
                return
            ids = {s: self._tracks[k]["track_id"] for s, k in self._deal.items()}
            answer = {ids[s]: n for s, n in given.items()}
            trial = Trial(
                self._session, self.trial, "rating", ids, answer, task_id=self._task_id,
                started_at=self._shown_at,
            )  # fmt: skip
            if not self._store(trial):
                return
            order = [self._tracks[self._deal[s]]["label"] for s in sorted(self._deal, key=int)]
            stars_by = {self._tracks[self._deal[s]]["label"]: n for s, n in given.items()}
            self._log.append({"trial": self.trial, "order": order, "stars": stars_by})
            self._answered(f"Ratings saved: trial {self.trial} of {self.trials}.")

    def reveal(self) -> None:
        """Show the result of the trial just answered (only when the listener asks)."""
        with self._lock:
            if self.phase in ("answered", "done") and self._log:
                self._set(result=dict(self._log[-1]))

    def next(self) -> None:
        """Go on to the next trial of the session."""
        with self._lock:
            if self.phase == "answered":
                self._next_trial(self.trial + 1)

    def new_session(self) -> None:
        """Leave the session (its answered trials stay stored) and choose again."""
        with self._lock:
            self._deal = {}
            self._set(phase="setup", trial=0, slots=[], stars={}, answer="", result={})
            self._show_candidates()

    def _answered(self, feedback: str) -> None:
        if self.trial < self.trials:
            self._set(phase="answered", feedback=feedback)
            return
        self._deal = {}
        self._set(
            phase="done", slots=[], results=list(self._log), score=self._score(),
            feedback=feedback + " Session complete: the results are below.",
        )  # fmt: skip
        self._show_candidates()

    def _score(self) -> str:
        if self.mode != "abx":
            return f"{len(self._log)} blind rating trial(s) saved."
        right = sum(1 for t in self._log if t["correct"])
        return f"{right} of {len(self._log)} right: {verdict(right, len(self._log))}."

    # --- saving, and a stopped receiver ---------------------------------------------------------

    def _store(self, trial: Trial) -> bool:
        try:
            self._rx.store.record_trial(trial)
        except SunoNbError as exc:
            self._not_saved(exc)
            return False
        if self.mode == "abx":
            self._set(answer=str(trial.answer))
        return True

    def _not_saved(self, exc: Exception) -> None:
        log.warning("blind test: not saved: %s", exc)
        if not getattr(self._rx, "running", True) or getattr(self._rx.store, "closed", False):
            self._stopped()
        self._set(feedback=f"Not saved: {exc}.")

    def _stopped(self) -> None:
        path = getattr(getattr(self._rx, "store", None), "path", None)
        where = repr(str(path)) if path and str(path) != ":memory:" else ""
        self._set(
            disabled=(
                "The receiver is stopped: answers and stars cannot be saved. Start it again "
                f"(rx = snb.start_receiver({where})) and re-run this cell."
            )
        )

    def _on_changes(self, changes: list[Change]) -> None:
        if any(c.kind == "stopped" for c in changes):
            self._stopped()

    # --- the page -------------------------------------------------------------------------------

    def _show_candidates(self) -> None:
        self._set(candidates=[{"key": k, "label": t["label"]} for k, t in self._tracks.items()])

    def _takes(self) -> list[str]:
        return [k for k, t in self._tracks.items() if t["kind"] == "take"]

    def _default_pair(self) -> list[str]:
        takes = self._takes()
        other = [k for k in self._tracks if k.startswith("original")] + takes[1:]
        return [takes[0], other[0]] if takes and other else []

    def _set(self, **values: Any) -> None:
        with UPDATE_LOCK, self.hold_sync():
            for name, value in values.items():
                setattr(self, name, value)

    def _on_msg(self, _widget: Any, content: dict[str, Any], buffers: list[Any]) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "audio":
                slot, trial = str(content.get("slot")), int(content.get("trial", -1))
                self._jobs.post(lambda: self._send_audio(slot, trial))
            elif kind in ("answer", "rate") and int(content.get("trial", self.trial)) != self.trial:
                self._set(feedback="That was for a trial that is over: not saved.")
            elif kind == "start":
                self.start()
            elif kind == "answer":
                self.answer_abx(str(content.get("x")))
            elif kind == "rate":
                self.rate_blind(str(content.get("slot")), int(content.get("stars", 0)))
            elif kind in ("reveal", "next", "new_session"):
                getattr(self, kind)()
        except Exception as exc:  # a message from the page must never kill the widget
            log.warning("blind test: %s message failed: %s", kind, exc)
            with UPDATE_LOCK:
                self.feedback = f"Could not do that: {exc}"

    def _send_audio(self, slot: str, trial: int) -> None:
        with self._lock:
            key = self._deal.get(slot) if trial == self.trial else None
            keys = list(self.pair) if self.mode == "abx" else self._takes()
        if key is None:
            return  # a page asking for a trial that is over: nothing to send
        reply = {"type": "audio", "slot": slot, "trial": trial}
        try:
            self._prepare(keys)
        except (SunoNbError, RuntimeError, OSError) as exc:  # soundfile's errors: RuntimeError
            what = slot if self.mode == "abx" else "the takes"  # never a name
            message = plain_error(what, exc)
            self.send({**reply, "type": "audio_error", "message": message})
            return
        self.send({**reply, "mime": "audio/wav"}, buffers=[self._wavs[key]])

    def _prepare(self, keys: list[str]) -> None:
        """The WAV of each key's window (dispatcher thread), level-matched together."""
        if self._wav_set != tuple(sorted(keys)):
            span = (self.span[0], self.span[1] if len(self.span) == 2 else None)
            urls = {key: self._tracks[key]["url"] for key in keys}
            originals = [t["url"] for t in self._tracks.values() if t["kind"] == "original"]
            original = originals[0] if len(originals) == 1 else None  # one song: aligned
            self._wavs = clips.render(urls, span, list(self.section), self.level_match, original)
            self._wav_set = tuple(sorted(keys))

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until audio asked for so far has been sent; not from a feed handler."""
        return self._jobs.wait_idle(timeout)

    def close(self) -> None:
        """Stop listening to the receiver and close the widget."""
        close_player(self)
