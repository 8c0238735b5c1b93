"""Waveform pictures as PNG bytes: the audition's picture for front ends without a widget
manager (the widgets themselves draw waveforms in the page, with wavesurfer.js).

matplotlib is imported lazily, and only its object API is used (``Figure`` with an Agg
canvas, never ``pyplot``): no global figure state, no backend switching in the kernel, safe
to call from the render worker thread.  PNGs of envelopes are a few tens of kB; the audio
itself is never embedded.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

import numpy as np

from ..extras import need

_MPL_LOCK = threading.Lock()

ORIGINAL_COLOR = "#546e7a"
TAKE_COLORS = ("#ef6c00", "#6a1b9a", "#00838f", "#ad1457")
SECTION_COLOR = "#fdd835"


@dataclass(frozen=True)
class Envelope:
    """One track's waveform envelope (from :func:`suno_nb.audio.waveform`)."""

    label: str
    times: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    duration: float
    color: str = ORIGINAL_COLOR


def _draw(ax, env: Envelope, section: tuple[float, float] | None, xlim: tuple[float, float]):
    if section is not None:
        ax.axvspan(section[0], section[1], color=SECTION_COLOR, alpha=0.35, lw=0, zorder=0)
        for x in section:
            ax.axvline(x, color="#f9a825", lw=1.0, zorder=1)
    if env.times.size:
        ax.fill_between(env.times, env.mins, env.maxs, color=env.color, lw=0, zorder=2)
    ax.set_xlim(*xlim)
    peak = float(max(np.abs(env.mins).max(initial=0), np.abs(env.maxs).max(initial=0), 0.05))
    ax.set_ylim(-peak * 1.05, peak * 1.05)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="x", labelsize=8, colors="#555555", length=3)
    ax.xaxis.set_major_formatter(_clock_formatter())


def _clock_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: int) -> str:
        x = max(0.0, x)
        m = int(x // 60)
        s = x - 60 * m
        return f"{m}:{s:04.1f}" if s != int(s) else f"{m}:{int(s):02d}"

    return FuncFormatter(fmt)


def waveform_png(
    rows: list[Envelope],
    *,
    section: tuple[float, float] | None = None,
    width_px: int = 900,
    row_px: int = 90,
) -> bytes:
    """Stacked waveforms (one row per envelope) with ``section`` shaded, as PNG bytes."""
    need("matplotlib", extra="pictures", feature="Saved-notebook pictures of the waveforms")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("nothing to draw")
    dpi = 100
    height_px = row_px * len(rows) + 34
    with _MPL_LOCK:
        fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(
            len(rows),
            1,
            left=0.13,
            right=0.975,
            top=1 - 22 / height_px,
            bottom=22 / height_px,
            hspace=0.55,
        )
        longest = max(max(r.duration for r in rows), 1e-3)
        for i, env in enumerate(rows):
            ax = fig.add_subplot(grid[i, 0])
            _draw(ax, env, section, (0.0, longest))
            ax.set_ylabel(
                env.label, rotation=0, ha="right", va="center", fontsize=9, color="#333333"
            )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()
