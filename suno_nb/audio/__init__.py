"""The audio room: fetch and cache result files, decode them, compute waveform envelopes,
and archive a whole result frame to disk.

Every fetch accepts ``http://`` and ``https://`` URLs only, has a connect timeout and a
deadline for the whole download (defaults :data:`CONNECT_TIMEOUT` 10 s and :data:`DEADLINE`
60 s; pass ``connect_timeout=`` / ``deadline=``, or set ``$SUNO_NB_AUDIO_CONNECT_TIMEOUT`` /
``$SUNO_NB_AUDIO_DEADLINE`` for calls made for you, e.g. by the audition), and caches only
a complete body that decodes as audio (see :mod:`suno_nb.audio.transfer`).

Floor 1: imports only ``requests``, ``urllib3``, ``numpy`` and :mod:`suno_nb.errors`;
``soundfile``, ``platformdirs``, ``pandas`` and ``tqdm`` are imported inside the functions
that need them, so importing this package (and ``suno_nb``) stays light.

>>> path = fetch(track_url)                      # cached under the user cache dir
>>> done = fetch_many(urls)                      # in parallel: URL -> path or error
>>> samples, sr = decode(path)                   # mono float32
>>> samples, sr = load(track_url)                # fetch + decode, decoded copy kept in memory
>>> mins, maxs, seconds = peaks(track_url)       # compact envelope, cached on disk
>>> times, lows, highs = waveform(samples, sr)   # 2000-point envelope for plotting
>>> download_results(rx.frame(), "takes/")       # every track's audio and cover, once
>>> src = audio_source(track_row, rx.archive_dir)  # the archived file, else the URL
"""

from __future__ import annotations

from ..errors import AudioError, NetworkError
from .archive import (
    DOWNLOAD_COLUMNS,
    archive_track,
    archived_file,
    audio_source,
    download_results,
    track_url,
)
from .core import (
    CACHE_ENV,
    CACHE_MAX_ENV,
    CACHE_MAX_MB,
    DECODED_CACHE_SAMPLES,
    cache_limit_bytes,
    clear_cache,
    clear_memory_cache,
    decode,
    default_cache_dir,
    fetch,
    fetch_many,
    load,
    peaks,
    prune_cache,
    waveform,
)
from .transfer import (
    AUDIO_EXTENSIONS,
    CONNECT_TIMEOUT,
    CONNECT_TIMEOUT_ENV,
    DEADLINE,
    DEADLINE_ENV,
    IMAGE_EXTENSIONS,
    check_url,
    timeouts,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "CACHE_ENV",
    "CACHE_MAX_ENV",
    "CACHE_MAX_MB",
    "CONNECT_TIMEOUT",
    "CONNECT_TIMEOUT_ENV",
    "DEADLINE",
    "DEADLINE_ENV",
    "DECODED_CACHE_SAMPLES",
    "DOWNLOAD_COLUMNS",
    "IMAGE_EXTENSIONS",
    "AudioError",
    "NetworkError",
    "archive_track",
    "archived_file",
    "audio_source",
    "cache_limit_bytes",
    "check_url",
    "clear_cache",
    "clear_memory_cache",
    "decode",
    "default_cache_dir",
    "download_results",
    "fetch",
    "fetch_many",
    "load",
    "peaks",
    "prune_cache",
    "timeouts",
    "track_url",
    "waveform",
]
