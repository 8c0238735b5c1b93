"""Measure replace-section takes against their original: did only the section change?

Floor 3, the only importer of ``pyloudnorm``.  :func:`measure` is a pure function of two
sample arrays; :func:`compare_takes` finds a task's original and takes through a receiver,
fetches and decodes them (cached by :mod:`suno_nb.audio`, downloaded in parallel) and
measures every take.

The metrics, one sentence each for a musician:

- ``offset_ms``: how much later (positive) or earlier the take starts than the original,
  found by lining up the music outside the section; every other measure is taken after
  undoing this shift.
- ``outside_gain_db``: how much louder (positive) or quieter the rest of the song came back;
  0 means the same level.
- ``outside_diff_db``: how loud the difference between take and original is outside the
  section, relative to the original; below about -40 dB the rest of the song is untouched,
  near 0 dB it is a different recording.
- ``seam_start_db`` / ``seam_end_db``: how much more suddenly the sound changes at the
  entry into / exit from the section than at the same moment in the original: the average
  jump, in dB over 16 frequency bands, between the 12 ms just before and just after the
  boundary, minus the same on the original; about 0 dB is as smooth as the original, a few
  dB or more is an abrupt cut (notes chopped off, new ones starting mid-note).
- ``section_lufs`` / ``original_section_lufs``: how loud the new section and the part it
  replaced feel (integrated loudness, ITU-R BS.1770, as streaming services measure it).
- ``duration_delta_s``: how much longer (positive) or shorter the take is than the original.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import audio
from .errors import SunoNbError
from .extras import need
from .progress import bar

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METRICS", "compare_takes", "loudness", "measure", "track_source"]

METRICS = (
    "offset_ms",
    "outside_gain_db",
    "outside_diff_db",
    "seam_start_db",
    "seam_end_db",
    "section_lufs",
    "original_section_lufs",
    "duration_delta_s",
)
COLUMNS = [
    "task_id",
    "take_no",
    "track_id",
    "original_track_id",
    "start_s",
    "end_s",
    *METRICS,
    "error",
]

MAX_SHIFT_S = 0.5  # offsets searched: +/- this much
ALIGN_WINDOW_S = 10.0  # audio used to find the offset (the longest stretch outside)
EDGE_MARGIN_S = 0.1  # outside measures skip this much around each boundary (crossfades)
SEAM_FRAME_S = 0.0116  # seams: compare the ~12 ms before and after the boundary ...
SEAM_BANDS = 16  # ... in this many bands (a 50 ms crossfade has barely begun by then)
FLOOR = 1e-12


def _db(ratio: float) -> float:
    return 10.0 * math.log10(max(ratio, FLOOR))


def _energy(x: np.ndarray) -> float:
    """Sum of squares, in float64 (a BLAS dot product on float32 chunks: fast, exact enough)."""
    total = 0.0
    for k in range(0, x.size, 1 << 16):  # short chunks keep float32 accumulation accurate
        c = x[k : k + (1 << 16)]
        total += float(np.dot(c, c))
    return total


# --- pieces ---------------------------------------------------------------------------------


def _offset(original: np.ndarray, take: np.ndarray, sr: int, start: float, end: float) -> float:
    """Lag in samples (fractional) of ``take`` behind ``original``, from the longest
    stretch outside ``[start, end)``; positive means the take is late."""
    n = min(original.size, take.size)
    max_lag = int(MAX_SHIFT_S * sr)
    stretches = [(0, int(start * sr) - max_lag), (int(end * sr) + max_lag, n - max_lag)]
    a, b = max(stretches, key=lambda s: s[1] - s[0])
    a = max(a, max_lag)
    b = min(b, a + int(ALIGN_WINDOW_S * sr))
    if b - a < sr // 4:
        return 0.0  # too little untouched audio to line up: assume aligned
    ref = original[a:b].astype(np.float64)
    seg = take[a - max_lag : b + max_lag].astype(np.float64)
    size = 1 << math.ceil(math.log2(ref.size + seg.size))
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(ref, size)), size)
    corr = corr[: 2 * max_lag + 1]  # corr[k] pairs ref[i] with take[a - max_lag + k + i]
    k = int(np.argmax(corr))
    frac = 0.0
    if 0 < k < corr.size - 1:  # parabolic interpolation between samples
        y0, y1, y2 = corr[k - 1], corr[k], corr[k + 1]
        denom = y0 - 2 * y1 + y2
        frac = 0.5 * (y0 - y2) / denom if denom else 0.0
    return k - max_lag + frac


def align_take(take: np.ndarray, lag: int, n: int) -> np.ndarray:
    """``take`` moved ``lag`` samples earlier (undoing a delay), cut/padded to ``n``."""
    out = np.zeros(n, dtype=np.float32)
    src = take[max(lag, 0) :]
    dst = max(-lag, 0)
    m = max(0, min(n - dst, src.size))
    out[dst : dst + m] = src[:m]
    return out


def _bands(seg: np.ndarray, sr: int) -> np.ndarray:
    """Energy of a Hann-windowed frame in SEAM_BANDS log-spaced bands, 100 Hz - 10 kHz."""
    spec = np.abs(np.fft.rfft(seg.astype(np.float64) * np.hanning(seg.size))) ** 2
    freqs = np.fft.rfftfreq(seg.size, 1.0 / sr)
    edges = np.geomspace(100.0, min(10_000.0, sr / 2), SEAM_BANDS + 1)
    which = np.searchsorted(edges, freqs, side="right") - 1
    keep = (which >= 0) & (which < SEAM_BANDS)
    return np.bincount(which[keep], weights=spec[keep], minlength=SEAM_BANDS)


def change_db(x: np.ndarray, at: int, sr: int) -> float:
    """Mean absolute dB difference between the band energies just before and just after
    sample ``at`` (frames of ~12 ms): how suddenly the sound changes there."""
    n = 1 << round(math.log2(SEAM_FRAME_S * sr))
    if at - n < 0 or at + n > x.size:
        return float("nan")
    before, after = _bands(x[at - n : at], sr), _bands(x[at : at + n], sr)
    floor = max(before.sum(), after.sum(), FLOOR) * 1e-4  # ignore bands 40 dB below the frame
    return float(np.mean(np.abs(10 * np.log10((before + floor) / (after + floor)))))


def _seam_db(original: np.ndarray, take: np.ndarray, at: int, sr: int) -> float:
    """How much more abrupt the take is at ``at`` than the original (NaN at the very
    start or end of the song, where there is no seam)."""
    return change_db(take, at, sr) - change_db(original, at, sr)


def loudness(samples: np.ndarray, sr: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4, pyloudnorm); -inf for silence."""
    pyloudnorm = need(  # lazy: imports scipy
        "pyloudnorm", extra="analysis", feature="Loudness (compare_takes, masters, blind tests)"
    )

    x = np.asarray(samples, dtype=np.float64)
    if x.size < int(0.4 * sr):  # shorter than one gating block
        return float("nan")
    return float(pyloudnorm.Meter(sr).integrated_loudness(x))


# --- the measure ----------------------------------------------------------------------------


def measure(
    original: np.ndarray, take: np.ndarray, sr: int, start: float, end: float
) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one take (mono float arrays at one rate ``sr``).

    ``[start, end)`` is the replaced section in seconds.  See the module docstring for what
    each number means.
    """
    if sr <= 0:
        raise ValueError(f"sr must be > 0, got {sr}")
    if not 0 <= start < end:
        raise ValueError(f"section [{start}, {end}) is empty or negative")
    original = np.asarray(original, dtype=np.float32)
    take = np.asarray(take, dtype=np.float32)
    lag_f = _offset(original, take, sr, start, end)
    lag = round(lag_f)
    n = original.size
    aligned = align_take(take, lag, n)
    lo, hi = max(0, -lag), max(0, min(n, take.size - lag))  # where aligned has take audio
    i0, i1 = round(start * sr), min(round(end * sr), n)
    m = round(EDGE_MARGIN_S * sr)
    parts = [(lo, min(hi, i0 - m)), (max(lo, i1 + m), hi)]  # outside, minus the edges
    parts = [(a, b) for a, b in parts if b > a]
    count = sum(b - a for a, b in parts)
    o2 = sum(_energy(original[a:b]) for a, b in parts) / max(count, 1)
    a2 = sum(_energy(aligned[a:b]) for a, b in parts) / max(count, 1)
    d2 = sum(_energy(aligned[a:b] - original[a:b]) for a, b in parts) / max(count, 1)
    return {
        "offset_ms": float(1000.0 * lag_f / sr),
        "outside_gain_db": _db(a2 / o2) if o2 > 0 else float("nan"),
        "outside_diff_db": _db(d2 / o2) if o2 > 0 else float("nan"),
        "seam_start_db": _seam_db(original, aligned, i0, sr),
        "seam_end_db": _seam_db(original, aligned, i1, sr),
        "section_lufs": loudness(aligned[i0:i1], sr),
        "original_section_lufs": loudness(original[i0:i1], sr),
        "duration_delta_s": (take.size - original.size) / sr,
    }


# --- through a receiver ---------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _latest_task(tasks: pd.DataFrame) -> str:
    done = tasks[
        (tasks["state"] == "succeeded")
        & (tasks["tracks"] > 0)
        & tasks["parent_task_id"].notna()
        & (tasks["parent_task_id"] != "")
    ]
    if not len(done):
        raise ValueError("task_id: no replace-section task with results in this receiver yet")
    return str(done.iloc[-1]["task_id"])


def original_track(rx: Any, task: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any] | None:
    """The parent track of a replace task (``parent_task_id`` + ``audio_id``): from the
    receiver's frame when it received the parent, else as kept by an earlier lookup (the
    store's copy of its identity: it outlives the service's, and a stopped sandbox), else
    from the service (``rx.lookup``, which keeps it and archives its audio)."""
    parent, audio_id = _text(task.get("parent_task_id")), _text(task.get("audio_id"))
    if not parent or not audio_id:
        return None
    rows = frame[(frame["task_id"] == parent) & (frame["track_id"] == audio_id)]
    if len(rows):
        return dict(rows.iloc[0])
    archiver = getattr(rx, "archiver", None)
    kept = archiver.kept_original(parent, audio_id) if archiver is not None else None
    if kept is not None:
        return kept
    info = rx.lookup(parent)
    if info is None:
        return None
    for t in info.tracks:
        if t.id == audio_id:
            return {
                "task_id": parent,
                "track_id": t.id,
                "title": t.title,
                "duration": t.duration,
                "audio_url": t.audio_url,
                "stream_audio_url": t.stream_audio_url,
            }
    return None


def track_source(rx: Any, track: Mapping[str, Any] | None) -> str | Path:
    """Where a track's audio is read: the receiver's archive when it has the file (see
    :func:`suno_nb.audio.audio_source`), else its URL (``""``: none).  Every reader of a
    take's or an original's audio (this module, the master, the audition) goes through it."""
    if track is None:
        return ""
    archiver = getattr(rx, "archiver", None)
    return audio.audio_source(track, archiver.folder if archiver is not None else None)


def _plan(rx: Any, task_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One job per take: the task's section, the take's and the original's URL."""
    tasks = rx.tasks().set_index("task_id", drop=False)
    frame = rx.frame()
    jobs: list[dict[str, Any]] = []
    for task_id in task_ids:
        if task_id not in tasks.index:
            raise KeyError(f"task_id: {task_id!r} is not a task of this receiver")
        task = dict(tasks.loc[task_id])
        start, end = task.get("infill_start_s"), task.get("infill_end_s")
        if start is None or end is None or start != start or end != end:
            raise ValueError(f"task_id: {task_id!r} is not a replace-section task")
        try:
            original = original_track(rx, task, frame)
            missing = None if original else "the original track is unknown to this receiver"
        except SunoNbError as exc:
            original, missing = None, f"could not look up the original: {exc}"
        takes = frame[frame["task_id"] == task_id]
        for i, (_, take) in enumerate(takes.iterrows(), start=1):
            jobs.append(
                {
                    "task_id": task_id,
                    "take_no": i,
                    "track_id": str(take["track_id"]),
                    "original_track_id": _text(task.get("audio_id")),
                    "original_task_id": _text(task.get("parent_task_id")),
                    "start_s": float(start),
                    "end_s": float(end),
                    "take_src": track_source(rx, dict(take)),
                    "original_src": track_source(rx, original),
                    "error": missing,
                }
            )
    return jobs


def _fetch_all(
    urls: Iterable[str], progress: bool, workers: int, connect: float, total: float
) -> dict[str, SunoNbError | None]:
    """Fetch every URL into the cache in parallel: URL -> None or the error it failed with.

    The progress bar is updated from the calling thread only (notebook-safe)."""
    todo = sorted({u for u in urls if u})
    fetching = bar(total=len(todo), desc="fetching audio", unit="file", disable=not progress)
    try:
        done = audio.fetch_many(
            todo,
            workers=workers,
            connect_timeout=connect,
            deadline=total,
            on_done=lambda _url: fetching.update(1),
        )
    finally:
        fetching.close()
    return {u: r if isinstance(r, SunoNbError) else None for u, r in done.items()}


def note_gone(rx: Any, owners: Mapping[str, tuple[str, str]], errors: Mapping[str, Any]) -> None:
    """Tell the receiver which tracks' URLs answered 404/410 (``owners``: URL -> (task_id,
    track_id)), so ``rx.frame()`` shows them ``expired``."""
    archiver = getattr(rx, "archiver", None)
    if archiver is None:
        return
    for url, exc in errors.items():
        status = getattr(exc, "status", None)
        if url in owners and status in (404, 410):
            archiver.note_gone(*owners[url], url, status, str(exc))


def compare_takes(
    rx: Any,
    task_id: str | Sequence[str] | None = None,
    *,
    progress: bool = True,
    workers: int = 4,
    connect_timeout: float | None = None,
    deadline: float | None = None,
    known_failures: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Measure every take of replace-section task(s) against the original: one row per take.

    ``task_id``: one task id, a list of them, or None for the receiver's latest succeeded
    replace task.  The original is the parent track (the task's ``parent_task_id`` and
    ``audio_id``), from the receiver's results or else the service's (``rx.lookup``).  Audio is
    fetched in parallel into the cache (:func:`suno_nb.audio.fetch_many`; a tqdm bar with
    ``progress``) and decoded once per process.  Only ``http(s)`` URLs are fetched; each
    file has ``connect_timeout`` (default 10 s) to connect and ``deadline`` (default 60 s)
    for its whole download (defaults also settable with ``$SUNO_NB_AUDIO_CONNECT_TIMEOUT`` /
    ``$SUNO_NB_AUDIO_DEADLINE``).  A take whose audio cannot be had gets NaN metrics and the
    reason in ``error``; nothing about a failure is kept, so a later call tries again.

    ``known_failures`` (URL -> reason) is for callers that already tried some URLs in the
    same operation (the audition fetches its lanes first): those are not fetched again.

    Columns: ``task_id, take_no (1, 2, ...), track_id, original_track_id, start_s, end_s``, then
    ``offset_ms, outside_gain_db, outside_diff_db, seam_start_db, seam_end_db, section_lufs,
    original_section_lufs, duration_delta_s`` (see :mod:`suno_nb.analysis` for what each
    means), then ``error``.
    """
    import pandas as pd

    if task_id is None:
        ids = [_latest_task(rx.tasks())]
    elif isinstance(task_id, str):
        ids = [task_id]
    else:
        ids = [str(t) for t in task_id]
    connect, total = audio.timeouts(connect_timeout, deadline)
    jobs = _plan(rx, ids)
    failed = dict(known_failures or {})
    fetched: dict[str, str | None] = dict(failed)
    # archived files are read as they are; only URLs are fetched
    srcs = [s for j in jobs if not j["error"] for s in (j["take_src"], j["original_src"])]
    urls = [u for u in srcs if isinstance(u, str) and u not in failed]
    errors = _fetch_all(urls, progress, workers, connect, total)
    owners = {j["take_src"]: (j["task_id"], j["track_id"]) for j in jobs}
    owners.update(
        {j["original_src"]: (j["original_task_id"], j["original_track_id"]) for j in jobs}
    )
    note_gone(rx, {u: o for u, o in owners.items() if isinstance(u, str)}, errors)
    fetched.update({u: None if e is None else str(e) for u, e in errors.items()})
    rows = []
    measuring = bar(total=len(jobs), desc="measuring takes", unit="take", disable=not progress)
    try:
        for job in jobs:
            rows.append(_measure_job(job, fetched, connect, total))
            measuring.update(1)
    finally:
        measuring.close()
    out = pd.DataFrame(rows, columns=COLUMNS)
    out["take_no"] = out["take_no"].astype("int64")
    return out


def _measure_job(
    job: dict[str, Any], fetched: Mapping[str, str | None], connect: float, total: float
) -> dict[str, Any]:
    """One take's row: its metrics, or NaN metrics and the reason in ``error``."""
    row = {k: job[k] for k in COLUMNS if k in job}
    row.update(dict.fromkeys(METRICS, float("nan")))
    if job["error"]:
        return row
    problem = next(
        (
            f"{what} audio: {(isinstance(src, str) and fetched.get(src)) or 'no URL'}"
            for what, src in (("original", job["original_src"]), ("take", job["take_src"]))
            if not src or (isinstance(src, str) and fetched.get(src))
        ),
        None,
    )
    if problem:
        row["error"] = problem
        return row
    try:
        original, sr = audio.load(job["original_src"], connect_timeout=connect, deadline=total)
        take, sr_take = audio.load(job["take_src"], connect_timeout=connect, deadline=total)
    except SunoNbError as exc:
        row["error"] = str(exc)
        return row
    if sr_take != sr:
        row["error"] = f"sample rates differ: original {sr} Hz, take {sr_take} Hz"
        return row
    row.update(measure(original, take, sr, job["start_s"], job["end_s"]))
    return row
