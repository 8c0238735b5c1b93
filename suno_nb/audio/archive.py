"""Archive a whole result frame's audio and covers to disk (:func:`download_results`)."""

from __future__ import annotations

import contextlib
import logging
import os
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

    Returns one row per file: ``task_id, track_id, kind ("audio"/"image"), url, path,
    status ("downloaded"/"skipped"/"failed"/"no url"), bytes, error``.  Remember the service
    keeps generated files for 14 days only.
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
            if not url:
                continue
            hit = _existing(folder, stem, allowed)
            if hit is not None and (audio_ext if kind == "audio" else image_ext)(hit):
                row.update(path=str(hit), status="skipped", bytes=hit.stat().st_size)
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
