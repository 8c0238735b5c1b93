"""Fetch into the cache, decode, reduce: the audio room's core (see :mod:`suno_nb.audio`)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import requests

from ..errors import AudioError, SunoNbError
from .transfer import (
    AUDIO_EXTENSIONS,
    IMAGE_EXTENSIONS,
    audio_ext,
    check_url,
    download,
    timeouts,
    url_origin,
)

log = logging.getLogger("suno_nb.audio")

CACHE_ENV = "SUNO_NB_CACHE_DIR"
CACHE_MAX_ENV = "SUNO_NB_CACHE_MAX_MB"
CACHE_MAX_MB = 1024.0  # the download cache's size cap; least recently used files go first
# what this module writes there: <32 hex>.<ext>, and <that>.peaks<N>.npy beside it
_ENTRY = re.compile(r"^[0-9a-f]{32}\.[A-Za-z0-9]+(\.peaks\d+\.npy)?$")

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# what a cache entry may be called: audio extensions, plus names older versions used
_CACHED = (*AUDIO_EXTENSIONS, *IMAGE_EXTENSIONS, ".bin")


# --- helpers ---------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """The audio cache directory: ``$SUNO_NB_CACHE_DIR``, else the user cache folder's
    ``audio`` (``~/.cache/suno_nb/audio`` on Linux; see :func:`suno_nb.paths.user_dir`)."""
    from ..paths import user_dir

    return user_dir("cache", CACHE_ENV, "audio")


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def _safe_name(text: str) -> str:
    """A file-system-safe name: no separators, no leading dots, never empty."""
    name = _SAFE.sub("_", str(text)).lstrip(".")
    return name[:120] or "_"


def _existing(folder: Path, stem: str, allowed: tuple[str, ...]) -> Path | None:
    """A finished file ``<stem><ext>`` with ``ext`` in ``allowed``, if one exists."""
    if not folder.is_dir():
        return None
    for ext in allowed:
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


def cached_audio(folder: Path, stem: str) -> Path | None:
    """The cached audio file ``<stem>.*`` in ``folder``, if there is one that decodes.

    A file there that is not audio (cached by an older version from a host that answered
    200 with an error page) is deleted, so that the next fetch downloads it again.
    """
    while (hit := _existing(folder, stem, _CACHED)) is not None:
        if audio_ext(hit) is not None:
            return hit
        log.warning("cached file %s is not audio: deleted, it will be fetched again", hit.name)
        try:
            hit.unlink()
        except OSError:
            return None
    return None


def _entries(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """This cache's own files in ``folder`` (never anything else that may be there)."""
    out = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            if _ENTRY.match(path.name):
                with contextlib.suppress(OSError):
                    out.append((path, path.stat()))
    return out


def cache_limit_bytes() -> int:
    """The cache's size cap: ``$SUNO_NB_CACHE_MAX_MB`` (megabytes), else :data:`CACHE_MAX_MB`."""
    raw = os.environ.get(CACHE_MAX_ENV, "").strip()
    try:
        mb = float(raw) if raw else CACHE_MAX_MB
    except ValueError:
        mb = CACHE_MAX_MB
    return int(max(mb, 0.0) * 1024 * 1024)


def prune_cache(
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    max_bytes: int | None = None,
    keep: Path | None = None,
) -> int:
    """Delete the least recently used cached files until the cache holds at most
    ``max_bytes`` (default :func:`cache_limit_bytes`); return the bytes freed.  A cached
    file counts as used when :func:`fetch` returns it (its access time).  Only this
    cache's own files (hashed names) are ever deleted; a result you keep belongs in the
    receiver's archive or ``rx.download(dir)``, not here.  ``keep``: a file never deleted
    (the one just fetched)."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    limit = cache_limit_bytes() if max_bytes is None else int(max_bytes)
    entries = sorted(_entries(folder), key=lambda e: max(e[1].st_atime, e[1].st_mtime))
    total = sum(st.st_size for _, st in entries)
    freed = 0
    for path, st in entries:
        if total <= limit:
            break
        if keep is not None and path == keep:
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            total -= st.st_size
            freed += st.st_size
    if freed:
        log.info("audio cache pruned: %d bytes freed (cap %d)", freed, limit)
    return freed


def clear_cache(cache_dir: str | os.PathLike[str] | None = None) -> int:
    """Delete every file of the audio download cache (and the decoded copies in memory);
    return how many files went.  Archived takes (beside the store) are not touched."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    gone = 0
    for path, _st in _entries(folder):
        with contextlib.suppress(OSError):
            path.unlink()
            gone += 1
    clear_memory_cache()
    return gone


# --- fetch / decode / waveform -----------------------------------------------------------------


def fetch(
    url: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    connect_timeout: float | None = None,
    deadline: float | None = None,
) -> Path:
    """Download the audio at ``url`` once into the local cache and return the file's path.

    ``url`` must be an ``http://`` or ``https://`` URL: a path, ``file:`` or any other scheme
    is refused before any I/O.  The cache is keyed by a hash of the URL
    (``$SUNO_NB_CACHE_DIR`` or the user cache folder's ``audio`` unless ``cache_dir`` is
    given); a cached URL is returned without any request.

    ``connect_timeout`` (default 10 s) bounds the connect, ``deadline`` (default 60 s,
    plenty for a 3-minute MP3) the whole download; the defaults can also be set with
    ``$SUNO_NB_AUDIO_CONNECT_TIMEOUT`` / ``$SUNO_NB_AUDIO_DEADLINE`` (see
    :mod:`suno_nb.audio.transfer`).  Only a complete body that decodes as audio is cached;
    a failure leaves nothing behind, so the next call tries again.

    Raises :class:`AudioError` for a refused URL, an HTTP error status, a timeout, a
    truncated body or one that is not audio, and :class:`~suno_nb.errors.NetworkError` when
    the connection failed.
    """
    check_url(url)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = _url_key(url)
    hit = cached_audio(folder, key)
    if hit is not None:
        log.debug("cache hit %s/… -> %s", url_origin(url), hit.name)
        with contextlib.suppress(OSError):  # used now (atime), content unchanged (mtime:
            # the decoded-samples cache keys on it)
            os.utime(hit, ns=(time.time_ns(), hit.stat().st_mtime_ns))
        return hit
    path, _size = download(
        url,
        folder,
        key,
        kind="audio",
        session=session,
        connect_timeout=connect_timeout,
        deadline=deadline,
    )
    prune_cache(folder, keep=path)
    return path


def fetch_many(
    urls: Iterable[str],
    *,
    workers: int = 4,
    cache_dir: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    connect_timeout: float | None = None,
    deadline: float | None = None,
    on_done: Callable[[str], object] | None = None,
) -> dict[str, Path | SunoNbError]:
    """:func:`fetch` every URL (duplicates and empty ones dropped), ``workers`` at a time.

    Returns URL -> cached path, or the error that URL failed with (failures are returned,
    not raised, and not remembered).  Each download has ``connect_timeout`` / ``deadline``
    as in :func:`fetch`, so the call takes at most about one ``deadline`` per ``workers``
    URLs.  ``on_done(url)`` is called on the calling thread as each URL finishes (e.g. to
    move a progress bar).
    """
    connect, total = timeouts(connect_timeout, deadline)  # bad values fail before any I/O
    todo = list(dict.fromkeys(u for u in urls if u))
    out: dict[str, Path | SunoNbError] = {}
    if not todo:
        return out
    with ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="suno_nb-fetch"
    ) as pool:
        futures = {
            pool.submit(
                fetch,
                u,
                cache_dir=cache_dir,
                session=session,
                connect_timeout=connect,
                deadline=total,
            ): u
            for u in todo
        }
        for fut in as_completed(futures):
            url = futures[fut]
            try:
                out[url] = fut.result()
            except SunoNbError as exc:
                out[url] = exc
            if on_done is not None:
                on_done(url)
    return out


def decode(source: str | os.PathLike[str] | bytes) -> tuple[np.ndarray, int]:
    """Decode an audio file (path or bytes; MP3, WAV, FLAC, OGG...) with ``soundfile``.

    Returns ``(samples, sample_rate)``: ``samples`` is a 1-D float32 array, channels
    averaged to mono, in [-1, 1].  Raises :class:`AudioError` when the data cannot be decoded.
    """
    import soundfile as sf  # lazy: libsndfile is loaded only when audio is decoded

    handle: Any = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        data, sr = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        what = "bytes" if isinstance(source, (bytes, bytearray)) else str(source)
        raise AudioError(f"cannot decode audio from {what}: {exc}") from None
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def waveform(
    samples: np.ndarray, sr: int, points: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max envelope of ``samples`` in at most ``points`` bins, for drawing a waveform.

    Returns ``(times, mins, maxs)``, three float arrays of equal length: ``times`` are the
    bins' centres in seconds, ``mins``/``maxs`` the lowest and highest sample in each bin.
    Fewer bins are returned when there are fewer samples than ``points``.
    """
    if sr <= 0:
        raise ValueError(f"sample rate must be > 0, got {sr}")
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1)
    n = x.size
    if n == 0:
        empty = np.zeros(0, dtype=np.float64)
        return empty, empty.astype(np.float32), empty.astype(np.float32)
    bins = min(points, n)
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    starts = edges[:-1]
    mins = np.minimum.reduceat(x, starts)
    maxs = np.maximum.reduceat(x, starts)
    times = (starts + edges[1:]) / 2.0 / sr
    return times.astype(np.float64), mins.astype(np.float32), maxs.astype(np.float32)


# --- decoded and reduced, cached -------------------------------------------------------------

DECODED_CACHE_SAMPLES = 64 * 1024 * 1024  # ~256 MB of float32: a dozen 3-minute songs at 44.1k
_DECODED_LOCK = threading.Lock()
_DECODED: OrderedDict[tuple[str, int, int], tuple[np.ndarray, int]] = OrderedDict()


def _source_path(
    source: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None,
    session: requests.Session | None,
    connect_timeout: float | None,
    deadline: float | None,
) -> Path:
    """A str is a URL, fetched (http/https only); a path object is a file on this machine."""
    if isinstance(source, str):
        return fetch(
            source,
            cache_dir=cache_dir,
            session=session,
            connect_timeout=connect_timeout,
            deadline=deadline,
        )
    if isinstance(source, os.PathLike):
        return Path(source).expanduser()
    raise TypeError(f"source must be a URL (str) or a pathlib.Path, got {type(source).__name__}")


def load(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    connect_timeout: float | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray, int]:
    """:func:`fetch` (for a URL) and :func:`decode`, keeping decoded samples in memory.

    ``source`` is an ``http(s)`` URL (a ``str``, fetched into the cache with
    ``connect_timeout`` / ``deadline`` as in :func:`fetch`) or a file on this machine given
    as a :class:`pathlib.Path`.  A ``str`` that is not an http(s) URL is refused, so a URL
    taken from a callback never names a local file.  The decoded array is read-only and
    shared between callers; the memory cache holds at most :data:`DECODED_CACHE_SAMPLES`
    samples (least recently used dropped first) and is keyed by file, size and mtime.
    """
    path = _source_path(source, cache_dir, session, connect_timeout, deadline)
    try:
        st = path.stat()
    except OSError as exc:
        raise AudioError(f"cannot read audio file {path}: {exc.strerror}") from None
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _DECODED_LOCK:
        hit = _DECODED.get(key)
        if hit is not None:
            _DECODED.move_to_end(key)
            return hit
    samples, sr = decode(path)
    samples.setflags(write=False)
    with _DECODED_LOCK:
        _DECODED[key] = (samples, sr)
        total = sum(x.size for x, _ in _DECODED.values())
        while total > DECODED_CACHE_SAMPLES and len(_DECODED) > 1:
            _, (old, _sr) = _DECODED.popitem(last=False)
            total -= old.size
    return samples, sr


def clear_memory_cache() -> None:
    """Forget every decoded array kept by :func:`load` (the files stay on disk)."""
    with _DECODED_LOCK:
        _DECODED.clear()


def peaks(
    source: str | os.PathLike[str],
    points: int = 1200,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    connect_timeout: float | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Compact waveform of a URL or file: ``(mins, maxs, duration_s)``, ``points`` bins.

    ``source`` is as in :func:`load` (a ``str`` must be an http(s) URL; a local file is a
    :class:`pathlib.Path`).  ``mins``/``maxs`` are float32 in [-1, 1] (what a player draws);
    the result is cached on disk beside the cached audio (``<file>.peaks<points>.npy``, a
    few kB), so a widget opened again does not decode the track again.
    """
    path = _source_path(source, cache_dir, session, connect_timeout, deadline)
    store = path.with_name(f"{path.name}.peaks{int(points)}.npy")
    if store.is_file() and store.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        with contextlib.suppress(OSError, ValueError):
            data = np.load(store)
            return data[0].astype(np.float32), data[1].astype(np.float32), float(data[2, 0])
    samples, sr = load(path)
    _, mins, maxs = waveform(samples, sr, points=points)
    duration = samples.size / sr
    data = np.vstack([mins, maxs, np.full(mins.size, duration, dtype=np.float32)])
    with contextlib.suppress(OSError):  # a read-only place is fine: just not cached
        fd, tmp = tempfile.mkstemp(prefix=f".{store.name}.", suffix=".npy", dir=store.parent)
        with os.fdopen(fd, "wb") as out:
            np.save(out, data)
        os.replace(tmp, store)
    return mins, maxs, duration
