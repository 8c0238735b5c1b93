"""What a blind test sends the page: the same window of every candidate, level-matched.

Sending whole files would give the tracks away to anything that reads a duration (takes can
come back longer or shorter than the original), and their levels would too (louder is heard
as better).  So each slot gets the window it loops — the section with its pre-roll and
post-roll — cut from the cached file at its own sample rate, padded with silence to the
window's exact length, scaled so its section is as loud as the quietest candidate's
(ITU-R BS.1770, :func:`suno_nb.analysis.loudness`; only ever turned down, so nothing
clips), and encoded as 16-bit WAV.  The same track gives the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .. import analysis, audio
from ..errors import SunoNbError


def window(section: list[float], preroll: float) -> tuple[float, float | None]:
    """The seconds every slot plays: the section +- ``preroll`` (the whole file when the
    section is unknown)."""
    if len(section) != 2:
        return 0.0, None
    return max(0.0, section[0] - preroll), section[1] + preroll


def excerpt(path: Path, span: tuple[float, float | None]) -> tuple[np.ndarray, int]:
    """Frames x channels of ``span`` from an audio file, padded with silence to its length."""
    import soundfile as sf  # lazy, as in suno_nb.audio

    sr = int(sf.info(str(path)).samplerate)
    start = round(span[0] * sr)
    stop = None if span[1] is None else round(span[1] * sr)
    data, sr = sf.read(str(path), start=max(0, start), stop=stop, dtype="float32", always_2d=True)
    if start < 0:  # a late take's window starts before its file: silence first
        data = np.concatenate([np.zeros((-start, data.shape[1]), dtype=np.float32), data])
    if stop is not None and data.shape[0] < stop - start:
        pad = np.zeros((stop - start - data.shape[0], data.shape[1]), dtype=np.float32)
        data = np.concatenate([data, pad])
    return data, int(sr)


def section_loudness(
    data: np.ndarray, sr: int, section: list[float], span: tuple[float, float | None]
) -> float:
    """LUFS of the section inside an :func:`excerpt` (NaN when it cannot be measured)."""
    if len(section) != 2:
        i0, i1 = 0, data.shape[0]
    else:
        i0 = max(0, round((section[0] - span[0]) * sr))
        i1 = max(i0, round((section[1] - span[0]) * sr))
    return analysis.loudness(data[i0:i1], sr)


def gains(loudness: dict[str, float]) -> dict[str, float]:
    """A linear gain per key that brings each to the quietest measured one (<= 1)."""
    finite = [v for v in loudness.values() if math.isfinite(v)]
    if not finite:
        return dict.fromkeys(loudness, 1.0)
    target = min(finite)
    return {k: 10 ** ((target - v) / 20) if math.isfinite(v) else 1.0 for k, v in loudness.items()}


def wav(data: np.ndarray, sr: int, gain: float = 1.0) -> bytes:
    """16-bit PCM WAV of ``data`` times ``gain``."""
    import soundfile as sf

    out = io.BytesIO()
    sf.write(out, np.clip(data * gain, -1.0, 1.0), sr, format="WAV", subtype="PCM_16")
    return out.getvalue()


def offsets(
    urls: Mapping[str, str | Path], original: str | Path | None, section: list[float]
) -> dict[str, float]:
    """Seconds each track starts later than ``original`` (:func:`suno_nb.analysis.measure`'s
    ``offset_ms``, from the music outside the section): 0 for the original itself, and for
    every track when there is no original or section, or its sample rate differs."""
    out = dict.fromkeys(urls, 0.0)
    if not original or len(section) != 2:
        return out
    try:
        ref, sr = audio.load(original)
    except SunoNbError:  # the original is gone: play the takes as they are
        return out
    for key, url in urls.items():
        if url and url != original:
            take, take_sr = audio.load(url)
            if take_sr == sr:
                ms = analysis.measure(ref, take, sr, section[0], section[1])["offset_ms"]
                out[key] = ms / 1000 if math.isfinite(ms) else 0.0
    return out


def render(
    urls: Mapping[str, str | Path],
    span: tuple[float, float | None],
    section: list[float],
    level_match: bool = True,
    original: str | Path | None = None,
) -> dict[str, bytes]:
    """Key -> WAV of ``span`` of each URL's audio (fetched into the cache, or read from it),
    each take's window moved by its offset from ``original`` (so switching at the same
    position lands on the same beat), level-matched together on ``section`` unless
    ``level_match`` is False."""
    if any(not url for url in urls.values()):
        raise SunoNbError("no audio URL")
    late = offsets(urls, original, section)
    cut, loud = {}, {}
    for key, url in urls.items():  # all of them: the gains depend on every track heard
        shift = late[key]
        moved = (span[0] + shift, None if span[1] is None else span[1] + shift)
        path = url if isinstance(url, Path) else audio.fetch(url)  # archived files as they are
        data, sr = excerpt(path, moved)
        cut[key] = (data, sr)
        loud[key] = section_loudness(data, sr, section, span)
    gain = gains(loud) if level_match else dict.fromkeys(urls, 1.0)
    return {key: wav(*cut[key], gain[key]) for key in urls}
