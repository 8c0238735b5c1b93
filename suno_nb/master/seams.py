"""The master's audio pieces: channels from the cache, seams placed and crossfaded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import audio
from ..analysis import change_db  # the analysis's seam measure: one definition

SEARCH_MS = 50.0  # a seam may move this much either side of its section edge ...
STEP_MS = 2.0  # ... in steps of this
AUTO_XFADE_MS = (20.0, 50.0)  # "auto": shortest for a smooth cut, longest for an abrupt one
AUTO_ABRUPT_DB = 6.0  # a hard cut this much more abrupt than the original gets the longest
MAX_XFADE_MS = 500.0


def load_channels(
    src: str | Path, connect: float, total: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(channels x samples, mono, rate) of an archived file or a URL (fetched into the
    cache): mono through audio.load (shared with the analysis), every channel read from the
    same file only when there is more than one."""
    import soundfile as sf

    path = (
        src if isinstance(src, Path) else audio.fetch(src, connect_timeout=connect, deadline=total)
    )
    mono, sr = audio.load(path)
    if sf.info(str(path)).channels == 1:
        return mono[None, :], mono, sr
    data, _ = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), mono, sr


def rms(x: np.ndarray, spans: list[tuple[int, int]]) -> float:
    parts = [x[..., a:b].astype(np.float64).ravel() for a, b in spans if b > a]
    if not parts:
        return 0.0
    flat = np.concatenate(parts)
    return float(np.sqrt(np.mean(flat * flat))) if flat.size else 0.0


def weights(n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in of ``n`` samples keeping the power constant for two signals of
    correlation ``rho``: sin/cos scaled by 1/sqrt(1 + rho sin 2t).  For rho = 0 (new music
    against old) this is the plain equal-power crossfade; for rho = 1 (the same music) it
    sums to 1, so identical material does not swell by 3 dB in the middle."""
    theta = (np.arange(n, dtype=np.float64) + 0.5) / n * (np.pi / 2)
    k = 1.0 / np.sqrt(1.0 + rho * np.sin(2 * theta))
    return (np.cos(theta) * k).astype(np.float32), (np.sin(theta) * k).astype(np.float32)


def best_seam(before: np.ndarray, after: np.ndarray, edge: int, sr: int) -> tuple[int, float]:
    """The cut point within +/- SEARCH_MS of ``edge`` where a hard cut from ``before`` to
    ``after`` is least abrupt compared with ``before`` itself; and that excess in dB."""
    n = 1 << round(math.log2(0.0116 * sr))  # the analysis's seam frame
    reach, step = round(SEARCH_MS * sr / 1000), max(1, round(STEP_MS * sr / 1000))
    best, best_db = edge, math.inf
    for at in range(edge - reach, edge + reach + 1, step):
        if at - n < 0 or at + n > before.size:
            continue
        cut = np.concatenate([before[at - n : at], after[at : at + n]])
        extra = change_db(cut, n, sr) - change_db(before, at, sr)
        if extra < best_db - 1e-9 or (
            extra <= best_db + 1e-9 and abs(at - edge) < abs(best - edge)
        ):
            best, best_db = at, extra
    return best, (0.0 if best_db == math.inf else best_db)


def auto_ms(extra_db: float) -> float:
    lo, hi = AUTO_XFADE_MS
    return lo + (hi - lo) * min(max(extra_db / AUTO_ABRUPT_DB, 0.0), 1.0)


def splice(out: np.ndarray, new: np.ndarray, at: int, n: int, fade_in: bool) -> None:
    """Cross from ``out`` to ``new`` (fade_in) or back (not) over ``n`` samples centred at
    ``at``; the rest of the section is written by the caller."""
    a, b = max(0, at - n // 2), min(out.shape[1], at - n // 2 + n)
    if b <= a:
        return
    x, y = out[:, a:b].astype(np.float64).ravel(), new[:, a:b].astype(np.float64).ravel()
    den = math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y)))
    rho = min(max(float(np.dot(x, y)) / den, 0.0), 1.0) if den > 0 else 0.0
    w_out, w_in = weights(b - a, rho)
    if fade_in:
        out[:, a:b] = out[:, a:b] * w_out + new[:, a:b] * w_in
    else:
        out[:, a:b] = new[:, a:b] * w_out + out[:, a:b] * w_in
