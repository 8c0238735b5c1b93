"""The audio room: fetch and cache result files, decode them, compute waveform envelopes,
and archive a whole result frame to disk.

Floor 1: imports only ``requests``, ``numpy`` and :mod:`suno_nb.errors`; ``soundfile``,
``platformdirs``, ``pandas`` and ``tqdm`` are imported inside the functions that need them,
so importing this package (and ``suno_nb``) stays light.

>>> path = fetch(track_url)                      # cached under the user cache dir
>>> samples, sr = decode(path)                   # mono float32
>>> samples, sr = load(track_url)                # fetch + decode, decoded copy kept in memory
>>> mins, maxs, seconds = peaks(track_url)       # compact envelope, cached on disk
>>> times, lows, highs = waveform(samples, sr)   # 2000-point envelope for plotting
>>> download_results(rx.frame(), "takes/")       # every track's audio and cover, once
"""

from __future__ import annotations

from ..errors import AudioError, NetworkError
from .archive import DOWNLOAD_COLUMNS, download_results
from .core import (
    AUDIO_EXTENSIONS,
    CACHE_ENV,
    DECODED_CACHE_SAMPLES,
    IMAGE_EXTENSIONS,
    clear_memory_cache,
    decode,
    default_cache_dir,
    fetch,
    load,
    peaks,
    waveform,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "CACHE_ENV",
    "DECODED_CACHE_SAMPLES",
    "DOWNLOAD_COLUMNS",
    "IMAGE_EXTENSIONS",
    "AudioError",
    "NetworkError",
    "clear_memory_cache",
    "decode",
    "default_cache_dir",
    "download_results",
    "fetch",
    "load",
    "peaks",
    "waveform",
]
