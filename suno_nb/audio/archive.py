"""Archive a whole result frame's audio and covers to disk (:func:`download_results`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from ..errors import SunoNbError
from .core import (
    _KIND_DEFAULT_EXT,
    AUDIO_EXTENSIONS,
    DEFAULT_TIMEOUT,
    IMAGE_EXTENSIONS,
    _existing,
    _ext_from_type,
    _ext_from_url,
    _get,
    _safe_name,
    _write_atomic,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("suno_nb.audio")

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
            has_url = isinstance(url, str) and url.strip()
            jobs.append((task_id, track_id, kind, url.strip() if has_url else ""))
    return jobs


def download_results(
    frame: pd.DataFrame,
    dest: str | os.PathLike[str],
    *,
    session: requests.Session | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> pd.DataFrame:
    """Archive every result track's audio and cover image of ``frame`` into ``dest``.

    ``frame`` is :meth:`Receiver.frame` (needs ``task_id``, ``track_id``, ``audio_url``,
    ``image_url``).  Files go to ``dest/<task_id>/<track_id>.<ext>``, the extension taken from
    the URL or else the answer's content type.  A file already there is skipped, so a second
    call downloads nothing; writes are atomic (temporary name, then rename).  One failed file
    does not stop the others: it is reported with ``status == "failed"`` and its error.

    Returns one row per file: ``task_id, track_id, kind ("audio"/"image"), url, path,
    status ("downloaded"/"skipped"/"failed"/"no url"), bytes, error``.  Remember the service
    keeps generated files for 14 days only.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    root = Path(dest).expanduser()
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
            if hit is not None:
                row.update(path=str(hit), status="skipped", bytes=hit.stat().st_size)
                continue
            try:
                with _get(url, session, timeout) as resp:
                    ext = (
                        _ext_from_url(url, allowed)
                        or _ext_from_type(resp.headers.get("Content-Type"), allowed)
                        or _KIND_DEFAULT_EXT[kind]
                    )
                    target = folder / f"{stem}{ext}"
                    size = _write_atomic(resp, target)
            except SunoNbError as exc:
                log.warning("could not download %s of track %s: %s", kind, track_id, exc)
                row.update(status="failed", error=str(exc))
                continue
            row.update(path=str(target), status="downloaded", bytes=size)
    finally:
        bar.close()
    out = pd.DataFrame(rows, columns=DOWNLOAD_COLUMNS)
    out["bytes"] = out["bytes"].astype("int64")
    counts = out["status"].value_counts().to_dict()
    log.info("download_results into %s: %s", root, counts)
    return out
