"""One download, done safely: http(s) only, a connect timeout and a total deadline, and
nothing lands under its final name unless it is whole and is what it claims to be.

Every fetch of the package (:func:`suno_nb.audio.fetch` and so ``load``/``peaks``,
:func:`suno_nb.analysis.compare_takes`, the audition, :func:`suno_nb.audio.download_results`
and ``rx.download``) goes through :func:`download`.

- Only ``http://`` and ``https://`` URLs with a host are fetched; anything else (a bare path,
  ``file:``, ``ftp:``...) is refused by :func:`check_url` before any I/O.
- ``connect_timeout`` (default :data:`CONNECT_TIMEOUT`, 10 s) bounds the TCP/TLS connect;
  ``deadline`` (default :data:`DEADLINE`, 60 s: a 3-minute MP3 needs only ~50 kB/s) bounds
  the whole transfer, from the request to the last byte.  The deadline is checked every time
  data arrives and no single wait for data is allowed past it, so a host that stalls or
  trickles one byte at a time is given up on after about ``deadline`` seconds.  Pass either
  to the function you call, or set ``$SUNO_NB_AUDIO_CONNECT_TIMEOUT`` /
  ``$SUNO_NB_AUDIO_DEADLINE`` (seconds) for the calls that take no arguments (the audition,
  ``rx.download``).
- The body goes to a temporary file beside the target; it is renamed into place only when
  it is complete (``Content-Length``) and decodes as audio (``soundfile.info``) or, for
  covers, starts like an image.  A failure leaves nothing behind and is never remembered.

Messages name the host only (``scheme://host:port``): paths and queries of result URLs may
carry tokens.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ReadTimeoutError

from ..errors import AudioError, NetworkError

log = logging.getLogger("suno_nb.audio")

CONNECT_TIMEOUT = 10.0  # seconds to establish the connection
DEADLINE = 60.0  # seconds for the whole transfer, request to last byte
CONNECT_TIMEOUT_ENV = "SUNO_NB_AUDIO_CONNECT_TIMEOUT"
DEADLINE_ENV = "SUNO_NB_AUDIO_DEADLINE"
CHUNK = 1 << 16
SCHEMES = ("http", "https")

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
_FORMAT_EXT = {"MP3": ".mp3", "WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg"}
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", ".png"), (b"\xff\xd8\xff", ".jpg"), (b"GIF8", ".gif"))


# --- settings and URLs ------------------------------------------------------------------------


def _seconds(name: str, value: float | None, env: str, default: float) -> float:
    source = name
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return default
        source = f"${env}"
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{source} must be a number of seconds, got {text!r}") from None
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{source} must be a number of seconds > 0, got {value!r}")
    return seconds


def timeouts(
    connect_timeout: float | None = None, deadline: float | None = None
) -> tuple[float, float]:
    """``(connect_timeout, deadline)`` in seconds for a fetch: the arguments when given, else
    ``$SUNO_NB_AUDIO_CONNECT_TIMEOUT`` / ``$SUNO_NB_AUDIO_DEADLINE``, else 10 s / 60 s.

    Raises ``ValueError`` for a value that is not a positive number of seconds.
    """
    return (
        _seconds("connect_timeout", connect_timeout, CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT),
        _seconds("deadline", deadline, DEADLINE_ENV, DEADLINE),
    )


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: no credentials, path or query (for messages)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if not host:
        return "<URL without a host>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def check_url(url: str) -> None:
    """Refuse anything but an ``http://`` or ``https://`` URL with a host, before any I/O.

    Raises :class:`~suno_nb.errors.AudioError` naming what was given instead (a bare path,
    a ``file:`` URL, another scheme).
    """
    text = url if isinstance(url, str) else ""
    try:
        parts = urlsplit(text.strip())
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is not None and parts.scheme.lower() in SCHEMES and parts.hostname:
        return
    if not isinstance(url, str):
        what = f"a {type(url).__name__}, not a URL"
    elif parts is None:
        what = "a malformed URL"
    elif not parts.scheme or len(parts.scheme) == 1:  # "/etc/x", "song.mp3", "C:\\x.mp3"
        what = "a file path (no URL scheme)"
    elif parts.scheme.lower() in SCHEMES:
        what = f"an {parts.scheme}: URL without a host"
    else:
        what = f"a {parts.scheme.lower()}: URL"
    raise AudioError(
        f"refused to fetch from {what}: only http:// and https:// URLs are fetched. "
        "A result's audio_url must be a web address; to read a file on this machine, pass "
        "a pathlib.Path to suno_nb.audio.load() or decode()."
    )


def ext_from_url(url: str, allowed: tuple[str, ...]) -> str | None:
    """The URL path's extension when it is one of ``allowed``."""
    suffix = Path(urlsplit(url).path).suffix.lower()
    return suffix if suffix in allowed else None


def ext_from_type(content_type: str | None, allowed: tuple[str, ...]) -> str | None:
    """The extension for a ``Content-Type`` when it is one of ``allowed``."""
    if not content_type:
        return None
    ext = _TYPE_EXT.get(content_type.split(";")[0].strip().lower())
    return ext if ext in allowed else None


# --- what a file is ---------------------------------------------------------------------------


def audio_ext(path: str | os.PathLike[str]) -> str | None:
    """The extension for the audio in ``path`` (``".mp3"``...) if soundfile can read it,
    else None.  Reads the header only (about a millisecond for an MP3)."""
    import soundfile as sf  # lazy: libsndfile is loaded only when audio is handled

    try:
        info = sf.info(os.fspath(path))
    except (sf.SoundFileError, RuntimeError, TypeError, OSError):
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return _FORMAT_EXT.get(str(info.format), ".bin")


def image_ext(path: str | os.PathLike[str]) -> str | None:
    """The extension for a PNG, JPEG, GIF or WebP image in ``path``, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _IMAGE_MAGIC if head.startswith(magic)), None)


# --- the download -----------------------------------------------------------------------------


def _deadline_error(origin: str, deadline: float, got: int, what: str) -> AudioError:
    return AudioError(
        f"{origin} {what} within the {deadline:g} s deadline for the whole download "
        f"({got} bytes had arrived); the host is down, overloaded or too slow. Nothing was "
        f"kept. Try again later, or allow more time with deadline=... (or ${DEADLINE_ENV}).",
        url=origin,
    )


def _pieces(resp: requests.Response, give_up_at: float) -> Iterator[bytes]:
    """The body as it arrives, each wait for data limited to the time left."""
    raw: Any = resp.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # urllib3 < 2.2: whole chunks (the deadline is checked between them)
        yield from resp.iter_content(CHUNK)
        return
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    while True:
        left = give_up_at - time.monotonic()
        if left <= 0:
            return
        if sock is not None:  # best effort: no single wait past the deadline
            with contextlib.suppress(OSError):
                sock.settimeout(left)
        piece = read1(CHUNK, decode_content=True)
        if not piece:
            return
        yield piece


def _stream(resp: requests.Response, out: Any, start: float, deadline: float) -> int:
    """Write the body to ``out``; raise when the deadline passes before its end."""
    origin = url_origin(resp.url)
    size = 0
    try:
        for piece in _pieces(resp, start + deadline):
            out.write(piece)
            size += len(piece)
            if time.monotonic() - start > deadline:
                break
        else:
            if time.monotonic() - start <= deadline:
                return size
    except (ReadTimeoutError, requests.Timeout):
        pass  # no data before the deadline
    except (Urllib3Error, requests.RequestException) as exc:
        if not (exc.args and isinstance(exc.args[0], ReadTimeoutError)):  # iter_content wraps
            raise NetworkError(
                f"GET {origin}/…: the connection broke after {size} bytes ({type(exc).__name__})"
            ) from None
    raise _deadline_error(origin, deadline, size, "did not deliver the file")


def _get(
    url: str, session: requests.Session | None, connect: float, deadline: float
) -> requests.Response:
    origin = url_origin(url)
    sender: Any = session if session is not None else requests
    try:
        return sender.get(url, stream=True, timeout=(connect, deadline))
    except requests.ConnectTimeout:
        raise AudioError(
            f"could not connect to {origin} within the {connect:g} s connect timeout; is the "
            "host up and reachable from this kernel? Try again later, or allow more time with "
            f"connect_timeout=... (or ${CONNECT_TIMEOUT_ENV}).",
            url=origin,
        ) from None
    except requests.Timeout:
        raise _deadline_error(origin, deadline, 0, "did not answer") from None
    except requests.RequestException as exc:
        raise NetworkError(f"GET {origin}/…: {type(exc).__name__}") from None


# What a file host answers for a link that is gone: the hosted CDN's exact answer to an
# expired result link is not documented, so each of these is read as "expired or removed".
GONE_STATUSES = (403, 404, 410)


def status_message(origin: str, status: int) -> str:
    """What an HTTP error status of a file host means to the user (host only, no path)."""
    text = f"GET {origin}/… answered HTTP {status}"
    if status in GONE_STATUSES:
        text += (
            ": the link has expired or was removed (the service keeps result files for a "
            "limited time). For a Suno result, rx.recover(task_id) asks the service for new "
            "links to that task's tracks"
        )
    return text


def download(
    url: str,
    folder: Path,
    stem: str,
    *,
    kind: str = "audio",
    default_ext: str = ".bin",
    session: requests.Session | None = None,
    connect_timeout: float | None = None,
    deadline: float | None = None,
) -> tuple[Path, int]:
    """Fetch ``url`` into ``folder/<stem><ext>`` and return ``(path, bytes)``.

    ``kind`` is ``"audio"`` (the body must decode as audio) or ``"image"`` (PNG, JPEG, GIF
    or WebP).  The extension comes from the URL, else the content type, else what the body
    turned out to be, else ``default_ext``.  Raises :class:`~suno_nb.errors.AudioError` for a
    refused URL, an HTTP error status, a timeout or deadline, an incomplete or wrong body,
    and :class:`~suno_nb.errors.NetworkError` when the connection failed or broke.
    """
    check_url(url)
    connect, total = timeouts(connect_timeout, deadline)
    allowed = AUDIO_EXTENSIONS if kind == "audio" else IMAGE_EXTENSIONS
    origin = url_origin(url)
    start = time.monotonic()
    resp = _get(url, session, connect, total)
    tmp: str | None = None
    try:
        check_url(resp.url)  # where redirects ended up
        if resp.status_code != 200:
            raise AudioError(
                status_message(origin, resp.status_code), url=origin, status=resp.status_code
            )
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=folder)
        with os.fdopen(fd, "wb") as out:
            size = _stream(resp, out, start, total)
        _check_length(resp, size)
        sniffed = audio_ext(tmp) if kind == "audio" else image_ext(tmp)
        if sniffed is None:
            ctype = resp.headers.get("Content-Type") or "no content type"
            raise AudioError(
                f"GET {origin}/… answered 200 but what came back is not "
                f"{'audio' if kind == 'audio' else 'an image'} ({ctype}, {size} bytes); the "
                "host may be failing or showing an error page. Nothing was kept: try again "
                "later.",
                url=origin,
                status=resp.status_code,
            )
        ext = (
            ext_from_url(url, allowed)
            or ext_from_type(resp.headers.get("Content-Type"), allowed)
            or (sniffed if sniffed != ".bin" else default_ext)
        )
        target = folder / f"{stem}{ext}"
        os.replace(tmp, target)
        tmp = None
    finally:
        resp.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    log.info("fetched %s/… (%d bytes) -> %s", origin, size, target)
    return target, size


def _check_length(resp: requests.Response, size: int) -> None:
    """Refuse an empty body, and one shorter or longer than its ``Content-Length``."""
    origin = url_origin(resp.url)
    if size == 0:
        raise AudioError(f"GET {origin}/… returned an empty body", url=origin)
    length = resp.headers.get("Content-Length", "")
    encoded = resp.headers.get("Content-Encoding", "identity").lower() != "identity"
    if length.isdigit() and not encoded and int(length) != size:
        raise AudioError(
            f"GET {origin}/… sent {size} of {int(length)} bytes before the connection ended; "
            "nothing was kept. Try again.",
            url=origin,
        )
