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
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests

from ..errors import AudioError, NetworkError

log = logging.getLogger("suno_nb.audio")

CACHE_ENV = "SUNO_NB_CACHE_DIR"
DEFAULT_TIMEOUT = 60.0
CHUNK = 1 << 16

AUDIO_EXTENSIONS = (".mp3", ".wav", ".m4a", ".ogg", ".oga", ".flac", ".aac", ".opus", ".webm")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
_TYPE_EXT = {
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/webm": ".webm",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}
_KIND_DEFAULT_EXT = {"audio": ".mp3", "image": ".jpg"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


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


def _show_url(url: str) -> str:
    """URL without query string (signed CDN links carry tokens there) for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else "<url>"


def _ext_from_url(url: str, allowed: tuple[str, ...]) -> str | None:
    suffix = Path(urlsplit(url).path).suffix.lower()
    return suffix if suffix in allowed else None


def _ext_from_type(content_type: str | None, allowed: tuple[str, ...]) -> str | None:
    if not content_type:
        return None
    ext = _TYPE_EXT.get(content_type.split(";")[0].strip().lower())
    return ext if ext in allowed else None


def _existing(folder: Path, stem: str, allowed: tuple[str, ...]) -> Path | None:
    """A finished file ``<stem><ext>`` with ``ext`` in ``allowed``, if one exists."""
    if not folder.is_dir():
        return None
    for ext in allowed:
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file() and candidate.stat().st_size > 0:
            return candidate
    return None


@contextlib.contextmanager
def _get(url: str, session: requests.Session | None, timeout: float) -> Iterator[requests.Response]:
    sender: Any = session if session is not None else requests
    try:
        resp = sender.get(url, stream=True, timeout=timeout)
    except requests.RequestException as exc:
        raise NetworkError(f"GET {_show_url(url)}: {type(exc).__name__}") from None
    try:
        if resp.status_code != 200:
            raise AudioError(
                f"GET {_show_url(url)} answered HTTP {resp.status_code}",
                url=url,
                status=resp.status_code,
            )
        yield resp
    finally:
        resp.close()


def _write_atomic(resp: requests.Response, target: Path) -> int:
    """Stream ``resp`` into a temporary file beside ``target``, then rename it in place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in resp.iter_content(CHUNK):
                out.write(chunk)
                size += len(chunk)
        if size == 0:
            raise AudioError(f"GET {_show_url(resp.url)} returned an empty body", url=resp.url)
        os.replace(tmp, target)
    except requests.RequestException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise NetworkError(f"GET {_show_url(resp.url)}: {type(exc).__name__}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return size


# --- fetch / decode / waveform -----------------------------------------------------------------


def fetch(
    url: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Download ``url`` once into the local cache and return the cached file's path.

    The cache is keyed by a hash of the URL (``$SUNO_NB_CACHE_DIR`` or
    ``~/.cache/suno_nb/audio`` unless ``cache_dir`` is given); a cached URL is returned without
    any request.  Files are written to a temporary name and renamed, so a crash never leaves
    a half file under the final name.  Raises :class:`AudioError` on an HTTP error status and
    :class:`~suno_nb.errors.NetworkError` when no answer came.
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = _url_key(url)
    allowed = AUDIO_EXTENSIONS + IMAGE_EXTENSIONS + (".bin",)
    hit = _existing(folder, key, allowed)
    if hit is not None:
        log.debug("cache hit %s -> %s", _show_url(url), hit.name)
        return hit
    with _get(url, session, timeout) as resp:
        ext = (
            _ext_from_url(url, allowed)
            or _ext_from_type(resp.headers.get("Content-Type"), allowed)
            or ".bin"
        )
        target = folder / f"{key}{ext}"
        size = _write_atomic(resp, target)
    log.info("fetched %s (%d bytes) -> %s", _show_url(url), size, target)
    return target


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


def load(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    session: requests.Session | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[np.ndarray, int]:
    """:func:`fetch` (for a URL) and :func:`decode`, keeping decoded samples in memory.

    ``source`` is an ``http(s)`` URL or a local path.  The decoded array is read-only and
    shared between callers; the memory cache holds at most :data:`DECODED_CACHE_SAMPLES`
    samples (least recently used dropped first) and is keyed by file, size and mtime.
    """
    text = os.fspath(source)
    if text.startswith(("http://", "https://")):
        path = fetch(text, cache_dir=cache_dir, session=session, timeout=timeout)
    else:
        path = Path(text).expanduser()
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
) -> tuple[np.ndarray, np.ndarray, float]:
    """Compact waveform of a URL or file: ``(mins, maxs, duration_s)``, ``points`` bins.

    ``mins``/``maxs`` are float32 in [-1, 1] (what a player draws); the result is cached on
    disk beside the cached audio (``<file>.peaks<points>.npy``, a few kB), so a widget
    opened again does not decode the track again.
    """
    text = os.fspath(source)
    is_url = text.startswith(("http://", "https://"))
    path = fetch(text, cache_dir=cache_dir, session=session) if is_url else Path(text)
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
