"""The local archive of result audio, and a whole result frame copied to disk.

- :func:`archived_file` / :func:`audio_source`: where a track's audio is read from: its
  archived file when there is one (``<archive>/<track_id>.<ext>``), else its URL.  Every
  reader of a track's audio (the analysis, the master, the audition) asks this one function.
- :func:`archive_track`: download one track's audio into the archive, atomically (temporary
  file, renamed into place when whole and decodable), with the room's deadlines.
- :func:`download_results`: every track's audio and cover of a frame into a folder (copied
  from the archive when it has the file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from ..errors import SunoNbError
from .core import _existing, _safe_name
from .transfer import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, audio_ext, download, image_ext, timeouts

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("suno_nb.audio")

_KIND_DEFAULT_EXT = {"audio": ".mp3", "image": ".jpg"}
DOWNLOAD_COLUMNS = ["task_id", "track_id", "kind", "url", "path", "status", "bytes", "error"]


def archived_file(archive: str | os.PathLike[str] | None, track_id: str) -> Path | None:
    """The archived audio of ``track_id`` in the folder ``archive``, if it is there and is
    audio (None for no folder, no file, or a file that is not audio)."""
    if archive is None or not track_id:
        return None
    hit = _existing(Path(archive), _safe_name(track_id), AUDIO_EXTENSIONS)
    return hit if hit is not None and audio_ext(hit) is not None else None


def track_url(track: Mapping[str, Any]) -> str:
    """A track row's audio URL: ``audio_url``, else ``stream_audio_url``, else ``""``."""
    for key in ("audio_url", "stream_audio_url"):
        value = track.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def audio_source(
    track: Mapping[str, Any], archive: str | os.PathLike[str] | None = None
) -> str | Path:
    """Where to read a track's audio: the archived file (a :class:`~pathlib.Path`) when the
    archive has it, else its URL (a ``str``, ``""`` when it has none).  Both are what
    :func:`suno_nb.audio.load` and :func:`~suno_nb.audio.peaks` take."""
    hit = archived_file(archive, str(track.get("track_id") or track.get("id") or ""))
    return hit if hit is not None else track_url(track)


def archive_track(
    url: str,
    archive: str | os.PathLike[str],
    track_id: str,
    *,
    session: requests.Session | None = None,
    connect_timeout: float | None = None,
    deadline: float | None = None,
) -> tuple[Path, int]:
    """Download ``url`` into ``archive/<track_id>.<ext>`` and return ``(path, bytes)``.

    Written under a temporary name and renamed into place only when whole and decodable
    (:func:`~suno_nb.audio.transfer.download`), so a reader never sees half a file; an
    earlier file of the track (another URL, another extension) is replaced.  Raises
    :class:`~suno_nb.errors.AudioError` (``.status`` 404/410 when the URL is gone) or
    :class:`~suno_nb.errors.NetworkError`; a failure leaves the earlier file as it was.
    """
    folder = Path(archive)
    stem = _safe_name(track_id)
    before = _existing(folder, stem, AUDIO_EXTENSIONS)
    connect, total = timeouts(connect_timeout, deadline)
    target, size = download(
        url,
        folder,
        stem,
        kind="audio",
        default_ext=_KIND_DEFAULT_EXT["audio"],
        session=session,
        connect_timeout=connect,
        deadline=total,
    )
    if before is not None and before != target:
        with contextlib.suppress(OSError):
            before.unlink()
    return target, size


def _copy(source: Path, folder: Path, stem: str) -> tuple[Path, int]:
    """Copy an archived file to ``folder/<stem><ext>`` atomically (temporary, then rename)."""
    import shutil  # lazy, like the room's other imports beyond its floor

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}{source.suffix}"
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target, target.stat().st_size


def _jobs(frame: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(task_id, track_id, kind, url) for every track's audio and cover, deduplicated."""
    missing = {"task_id", "track_id"} - set(frame.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {sorted(missing)}; pass rx.frame()")
    jobs: list[tuple[str, str, str, str]] = []
    seen: set[tuple[str, str, str]] = set()
    for row in frame.itertuples(index=False):
        task_id, track_id = str(row.task_id), str(row.track_id)
        audio_url = getattr(row, "audio_url", None) or getattr(row, "stream_audio_url", None)
        for kind, url in (("audio", audio_url), ("image", getattr(row, "image_url", None))):
            key = (task_id, track_id, kind)
            if key in seen:
                continue
            seen.add(key)
            jobs.append((task_id, track_id, kind, url.strip() if isinstance(url, str) else ""))
    return jobs


def download_results(
    frame: pd.DataFrame,
    dest: str | os.PathLike[str],
    *,
    session: requests.Session | None = None,
    progress: bool = True,
    connect_timeout: float | None = None,
    deadline: float | None = None,
    archive: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Archive every result track's audio and cover image of ``frame`` into ``dest``.

    ``frame`` is :meth:`Receiver.frame` (needs ``task_id``, ``track_id``, ``audio_url``,
    ``image_url``).  Files go to ``dest/<task_id>/<track_id>.<ext>``, the extension taken from
    the URL or else the answer's content type.  A file already there is skipped, so a second
    call downloads nothing (one that is not audio, or not an image, is fetched again).  Only
    http(s) URLs are fetched.  Each file has ``connect_timeout`` (default 10 s) to connect
    and ``deadline`` (default 60 s) for its whole download (defaults also settable with
    ``$SUNO_NB_AUDIO_CONNECT_TIMEOUT`` / ``$SUNO_NB_AUDIO_DEADLINE``).  A file is written
    under a temporary name and renamed into place only when it is complete and is audio (or
    an image); one failed file does not stop the others: it is reported with
    ``status == "failed"`` and its error, and leaves nothing behind.

    ``archive``: the receiver's archive folder; a track's audio found there is copied
    (status ``"copied"``) instead of fetched again, even when its URL has expired.

    Returns one row per file: ``task_id, track_id, kind ("audio"/"image"), url, path,
    status ("downloaded"/"copied"/"skipped"/"failed"/"no url"), bytes, error``.  Remember
    the service keeps generated files for 14 days only.
    """
    import pandas as pd

    from ..progress import bar as tqdm

    root = Path(dest).expanduser()
    connect, total = timeouts(connect_timeout, deadline)  # a bad value fails before any I/O
    jobs = _jobs(frame)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc="downloading results", unit="file", disable=not progress)
    try:
        for task_id, track_id, kind, url in jobs:
            allowed = AUDIO_EXTENSIONS if kind == "audio" else IMAGE_EXTENSIONS
            folder = root / _safe_name(task_id)
            stem = _safe_name(track_id)
            row: dict[str, Any] = {
                "task_id": task_id,
                "track_id": track_id,
                "kind": kind,
                "url": url,
                "path": None,
                "status": "no url",
                "bytes": 0,
                "error": None,
            }
            rows.append(row)
            bar.update(1)
            kept = archived_file(archive, track_id) if kind == "audio" else None
            if not url and kept is None:
                continue
            hit = _existing(folder, stem, allowed)
            if hit is not None and (audio_ext if kind == "audio" else image_ext)(hit):
                row.update(path=str(hit), status="skipped", bytes=hit.stat().st_size)
                continue
            if kept is not None:
                try:
                    target, size = _copy(kept, folder, stem)
                except OSError as exc:
                    row.update(status="failed", error=f"cannot copy from the archive: {exc}")
                    continue
                row.update(path=str(target), status="copied", bytes=size)
                continue
            try:
                target, size = download(
                    url,
                    folder,
                    stem,
                    kind=kind,
                    default_ext=_KIND_DEFAULT_EXT[kind],
                    session=session,
                    connect_timeout=connect,
                    deadline=total,
                )
            except SunoNbError as exc:
                log.warning("could not download %s of track %s: %s", kind, track_id, exc)
                row.update(status="failed", error=str(exc))
                continue
            if hit is not None and hit != target:  # the unreadable file it replaces
                with contextlib.suppress(OSError):
                    hit.unlink()
            row.update(path=str(target), status="downloaded", bytes=size)
    finally:
        bar.close()
    out = pd.DataFrame(rows, columns=DOWNLOAD_COLUMNS)
    out["bytes"] = out["bytes"].astype("int64")
    counts = out["status"].value_counts().to_dict()
    log.info("download_results into %s: %s", root, counts)
    return out
