"""The audition's difference view: a spectrogram of take minus original around the section.

The take is first moved by its measured offset (``offset_ms`` of
:func:`suno_nb.analysis.compare_takes`), so what is left is what the service changed: the new
section bright, an untouched rest dark, a seam that smears as a bright vertical stripe at the
boundary.  Computed in the kernel with numpy (a Hann-windowed STFT) and drawn with
matplotlib's object API (no pyplot) into a PNG the page shows under the lanes.  Levels are in
dB relative to the original's loudest bin in the same window, so pictures of two takes
compare directly.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..analysis import align_take
from ..extras import need
from ._plot import _MPL_LOCK, _clock_formatter

N_FFT = 2048
HOP = 512
FLOOR_DB = -80.0  # the picture's black: quieter than this is "nothing changed"


@dataclass(frozen=True)
class Difference:
    """A take-minus-original spectrogram: ``db`` (freqs x frames, dB re the original's
    loudest bin), its axes, and the window of the song it covers."""

    db: np.ndarray
    times: np.ndarray  # seconds of the song (transport time), one per frame
    freqs: np.ndarray  # Hz, one per row
    start: float
    end: float
    window: tuple[float, float]

    def level(self, a: float, b: float) -> float:
        """How loud the difference is between song times ``a`` and ``b``: its mean energy
        per frame, summed over frequency, in dB like ``db`` (``FLOOR_DB``: nothing)."""
        cols = (self.times >= a) & (self.times < b)
        if not cols.any():
            return FLOOR_DB
        part = self.db[:, cols]
        power = np.where(part > FLOOR_DB, 10 ** (part / 10), 0.0).sum(axis=0).mean()
        return max(FLOOR_DB, float(10 * np.log10(power))) if power > 0 else FLOOR_DB


def stft_db(x: np.ndarray) -> np.ndarray:
    """Magnitude STFT (rows: frequency bins, columns: frames), linear."""
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(frames)[:, None]
    spec = np.fft.rfft(x[idx] * np.hanning(N_FFT).astype(np.float32), axis=1)
    return np.abs(spec).T


def difference(
    original: np.ndarray,
    take: np.ndarray,
    sr: int,
    start: float,
    end: float,
    *,
    offset_s: float = 0.0,
    context: float = 3.0,
) -> Difference:
    """Take minus original over ``[start - context, end + context]`` (song seconds), the take
    aligned by ``offset_s`` (how much later it starts; undone here)."""
    if not end > start:
        raise ValueError(f"the section must end after it starts, got {start!r}..{end!r}")
    lag = round(offset_s * sr)
    n = min(original.size, take.size + max(0, lag))
    aligned = align_take(take, lag, original.size)[:n]
    a = max(0, int((start - context) * sr))
    b = min(n, int((end + context) * sr))
    if b - a < N_FFT:
        raise ValueError("too little audio around the section for a difference view")
    ref = stft_db(original[a:b].astype(np.float32))
    diff = stft_db(aligned[a:b] - original[a:b])
    top = float(ref.max()) or 1.0
    db = np.maximum(20 * np.log10(np.maximum(diff, 1e-12) / top), FLOOR_DB)
    times = a / sr + (np.arange(db.shape[1]) * HOP + N_FFT / 2) / sr
    freqs = np.fft.rfftfreq(N_FFT, 1 / sr)
    return Difference(db, times, freqs, start, end, (a / sr, b / sr))


def difference_png(d: Difference, *, label: str = "take", width_px: int = 900) -> bytes:
    """``d`` as a PNG: time across (song clock), frequency up (log, 60 Hz-16 kHz), the
    section's boundaries (the seams) as dashed lines."""
    need("matplotlib", extra="pictures", feature="The difference view")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    with _MPL_LOCK:
        fig = Figure(figsize=(width_px / dpi, 2.4), dpi=dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.07, 0.2, 0.86, 0.68))
        keep = (d.freqs >= 40) & (d.freqs <= 16000)
        mesh = ax.pcolormesh(
            d.times, d.freqs[keep], d.db[keep], shading="auto", cmap="magma", vmin=FLOOR_DB, vmax=0
        )
        ax.set_yscale("log")
        ax.set_ylim(60, min(16000, float(d.freqs[keep][-1])))
        for x in (d.start, d.end):
            ax.axvline(x, color="#80deea", lw=1.2, ls="--")
        ax.set_xlim(*d.window)
        ax.xaxis.set_major_formatter(_clock_formatter())
        ax.tick_params(labelsize=8)
        ax.set_ylabel("Hz", fontsize=8)
        ax.set_title(
            f"{label} minus original (aligned), dB re the original's loudest; dashed: the seams",
            fontsize=9,
        )
        cax = fig.add_axes((0.945, 0.2, 0.012, 0.68))
        fig.colorbar(mesh, cax=cax).ax.tick_params(labelsize=7)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
