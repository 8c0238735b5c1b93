"""Waveform pictures as PNG bytes, for ``ipywidgets.Image``.

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
    context: float | None = None,
    width_px: int = 900,
    row_px: int = 90,
) -> bytes:
    """Stacked waveforms (one row per envelope) with ``section`` shaded, as PNG bytes.

    With ``context`` a second, narrower column zooms on the section +/- ``context`` s.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError("nothing to draw")
    zoom = section is not None and context is not None
    dpi = 100
    height_px = row_px * len(rows) + 34
    with _MPL_LOCK:
        fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
        FigureCanvasAgg(fig)
        ncols = 2 if zoom else 1
        grid = fig.add_gridspec(
            len(rows),
            ncols,
            width_ratios=[3, 1.4] if zoom else [1],
            left=0.13,
            right=0.975,
            top=1 - 22 / height_px,
            bottom=22 / height_px,
            hspace=0.55,
            wspace=0.06,
        )
        longest = max(max(r.duration for r in rows), 1e-3)
        for i, env in enumerate(rows):
            ax = fig.add_subplot(grid[i, 0])
            _draw(ax, env, section, (0.0, longest))
            ax.set_ylabel(
                env.label, rotation=0, ha="right", va="center", fontsize=9, color="#333333"
            )
            if i == 0:
                title = "whole track" if zoom else None
                if title:
                    ax.set_title(title, fontsize=9, color="#555555", loc="left", pad=3)
            if zoom:
                assert section is not None and context is not None
                lo = max(0.0, section[0] - context)
                hi = min(env.duration or section[1] + context, section[1] + context)
                zax = fig.add_subplot(grid[i, 1])
                _draw(zax, env, section, (lo, max(hi, section[1])))
                if i == 0:
                    zax.set_title(
                        f"section ± {context:g} s", fontsize=9, color="#555555", loc="left", pad=3
                    )
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    return buf.getvalue()


_ENV_LOCK = threading.Lock()
_ENV_CACHE: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]] = {}
_ENV_CACHE_MAX = 64


def envelope_for(url: str, label: str, color: str = ORIGINAL_COLOR, points: int = 1500) -> Envelope:
    """Fetch (cached on disk), decode and reduce ``url`` to an :class:`Envelope`.

    Envelopes are also kept in memory per URL, so redrawing a moved section is cheap.
    Raises what :func:`suno_nb.audio.fetch` and :func:`~suno_nb.audio.decode` raise.
    """
    from .. import audio

    with _ENV_LOCK:
        hit = _ENV_CACHE.get(url)
    if hit is None:
        samples, sr = audio.decode(audio.fetch(url))
        times, mins, maxs = audio.waveform(samples, sr, points=points)
        hit = (times, mins, maxs, samples.size / sr)
        with _ENV_LOCK:
            if len(_ENV_CACHE) >= _ENV_CACHE_MAX:
                _ENV_CACHE.pop(next(iter(_ENV_CACHE)))
            _ENV_CACHE[url] = hit
    times, mins, maxs, duration = hit
    return Envelope(label, times, mins, maxs, duration, color)
