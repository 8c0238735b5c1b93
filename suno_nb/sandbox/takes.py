"""A take: an original with one section replaced by new music (the sandbox's replace-section).

Samples outside the section are the original's, bit for bit, unless a fault says otherwise
(:class:`~suno_nb.sandbox.faults.Faults`: the rest louder or quieter, the take shifted, hard
seams).  The new part is rendered only for the section, from a variant of the song's plan
(:mod:`.synth`), so a take of a long song costs little more than its section.
"""

from __future__ import annotations

import numpy as np

from .media import DEFAULT_SR
from .synth import plan_song, render, stable_seed, variant_plan

DEFAULT_CROSSFADE_S = 0.05


def replace_section(
    original: np.ndarray,
    start: float,
    end: float,
    seed: int,
    sr: int = DEFAULT_SR,
    crossfade: float = DEFAULT_CROSSFADE_S,
    *,
    base_seed: int | None = None,
    outside_gain_db: float = 0.0,
    shift_ms: float = 0.0,
    hard_seams: bool = False,
) -> np.ndarray:
    """``original`` with ``[start, end)`` seconds replaced by new music derived from ``seed``.

    Samples outside the section are returned unchanged (bit for bit).  Inside, the new part
    has another key or mode, chords, lead instrument, groove and tune; it is level-matched
    to the original section, and equal-power crossfades of ``crossfade`` seconds, inside
    the section, hide the seams.  With ``base_seed`` (the seed the original was synthesized
    from) the new part keeps the original's tempo and bar grid.

    Misbehaviour on purpose (the sandbox's :class:`~suno_nb.sandbox.faults.Faults`), all off
    by default: ``outside_gain_db`` scales everything outside the section (the rest of the
    song comes back louder or quieter); ``shift_ms`` delays the whole take (positive: later;
    the length stays the same, silence fills the gap); ``hard_seams`` cuts without crossfade.
    """
    x = np.asarray(original, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError("original must be mono (a 1-D array)")
    duration = x.size / sr
    if not 0 <= start < end <= duration + 1e-6:
        raise ValueError(f"section [{start}, {end}) is not inside the original's {duration:g} s")
    i0, i1 = round(start * sr), min(round(end * sr), x.size)
    base = plan_song(duration, stable_seed("independent", seed) if base_seed is None else base_seed)
    new = render(variant_plan(base, seed), sr, i0 / sr, i1 / sr)[: i1 - i0]
    old = x[i0:i1]
    rms_old = float(np.sqrt(np.mean(old**2))) if old.size else 0.0
    rms_new = float(np.sqrt(np.mean(new**2))) if new.size else 0.0
    if rms_old > 1e-4 and rms_new > 1e-4:
        new = new * np.float32(np.clip(rms_old / rms_new, 0.5, 2.0))
    n_xf = 0 if hard_seams else min(int(crossfade * sr), (i1 - i0) // 2)
    w = np.ones(i1 - i0, dtype=np.float32)
    if n_xf > 0:
        ramp = np.sin(np.linspace(0, np.pi / 2, n_xf, dtype=np.float32))
        w[:n_xf] = ramp
        w[-n_xf:] = ramp[::-1]
    out = x.copy()
    # Equal power: the two signals are uncorrelated, so sin/cos weights keep the loudness.
    out[i0:i1] = old * np.sqrt(np.clip(1 - w**2, 0, 1)) + new * w
    if outside_gain_db:
        gain = np.float32(10 ** (outside_gain_db / 20))
        out[:i0] *= gain
        out[i1:] *= gain
    if shift_ms:
        out = _shifted(out, round(shift_ms * sr / 1000))
    return np.clip(out, -1.0, 1.0)


def _shifted(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` delayed by ``n`` samples (advanced when negative), same length, zero-filled."""
    out = np.zeros_like(x)
    if n >= 0:
        out[n:] = x[: x.size - n] if n < x.size else x[:0]
    elif -n < x.size:
        out[: x.size + n] = x[-n:]
    return out
