"""The master as a value (audio, sections, save) and its record in the store's meta rows."""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

META_PREFIX = "master:"
FLAC_PEAK = 10 ** (-0.1 / 20)  # FLAC is integer: an over-full master is scaled to -0.1 dBFS
SECTION_COLUMNS = [
    "start_s",
    "end_s",
    "task_id",
    "track_id",
    "offset_ms",
    "gain_db",
    "crossfade_start_ms",
    "crossfade_end_ms",
    "seam_start_s",
    "seam_end_s",
    "seam_start_db",
    "seam_end_db",
]


@dataclass(repr=False)
class Master:
    """A finished song: the original with the picked takes' sections spliced in.

    ``audio``: float32, channels x samples, at ``sample_rate``.  ``sections``: one row per
    spliced section (its task and take, offset, gain, crossfade and where each seam went,
    and ``seam_start_db``/``seam_end_db``: how much more abrupt the master is at each seam
    than the original is there, measured after the crossfade; about 0 is seamless).
    """

    audio: np.ndarray
    sample_rate: int
    sections: pd.DataFrame
    master_id: str
    info: dict[str, Any] = field(default_factory=dict)
    _store: Any = field(default=None, repr=False)

    @property
    def duration(self) -> float:
        return self.audio.shape[1] / self.sample_rate

    def save(
        self, path: str | os.PathLike[str], format: str = "wav", *, subtype: str | None = None
    ) -> Path:
        """Write the master with soundfile and return the path; never clips.

        ``format="wav"``: 24-bit PCM, or 32-bit float (``"FLOAT"``) when the peak exceeds
        full scale, so every sample is kept as it is.  ``format="flac"`` (integer only):
        24-bit (``subtype="PCM_16"`` for 16-bit); a master peaking above full scale is
        scaled as a whole to -0.1 dBFS first (a plain peak normalisation, no limiter).
        ``subtype`` overrides the choice (a PCM subtype still never clips: the same
        normalisation applies).  The file's path, format and SHA-256 are recorded in the
        store; ``rx.masters()`` lists them.
        """
        import soundfile as sf  # lazy: libsndfile only when audio is written

        fmt = str(format).lower()
        if fmt not in ("wav", "flac"):
            raise ValueError(f"format must be 'wav' or 'flac', got {format!r}")
        peak = float(np.max(np.abs(self.audio), initial=0.0))
        chosen = subtype or ("FLOAT" if fmt == "wav" and peak > 1.0 else "PCM_24")
        data = self.audio
        scale = 1.0
        if chosen.upper().startswith("PCM") and peak > 1.0:
            scale = FLAC_PEAK / peak
            data = data * np.float32(scale)
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(out, data.T, self.sample_rate, format=fmt.upper(), subtype=chosen)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        self.info.update(
            path=str(out.resolve()),
            format=fmt,
            subtype=chosen,
            scaled_db=round(20 * math.log10(scale), 3),
            sha256=digest,
            saved_at=time.time(),
        )
        if self._store is not None:
            record(self._store, self.master_id, self.info)
        return out

    def __repr__(self) -> str:
        saved = self.info.get("path")
        where = f", saved as {os.path.basename(saved)!r}" if saved else ", not saved"
        return (
            f"Master({self.master_id!r}, {self.duration:.1f} s, {self.audio.shape[0]} ch, "
            f"{self.sample_rate} Hz, {len(self.sections)} section(s){where})"
        )

    def _repr_html_(self) -> str:
        """A summary, a player for the saved file, then the sections.

        The player points at the file :meth:`save` wrote (a path relative to the kernel's
        working folder, which Jupyter serves beside the notebook), so a saved notebook stays
        small: the audio is never embedded.  Before saving, or for a file outside that folder,
        a line says how to listen instead."""
        head = (
            f"<b>master {html.escape(self.master_id)}</b>: {self.duration:.1f} s, "
            f"{self.audio.shape[0]} ch, {self.sample_rate} Hz, {len(self.sections)} section(s)"
        )
        where = _served_path(self.info.get("path"))
        if where is not None:
            player = f'<audio controls preload="none" src="{html.escape(where)}"></audio>'
        else:
            player = (
                '<i>save it (<code>.save("song.wav")</code>) in this folder for a player '
                "here, or hear it against the original in "
                "<code>snb.widgets.audition(rx, master=...)</code></i>"
            )
        shown = self.sections.copy()
        numbers = shown.select_dtypes("number").columns
        shown[numbers] = shown[numbers].round(2) + 0.0  # readable, and no "-0.0"
        return f"<div>{head}<br>{player}{shown.to_html(index=False)}</div>"


def _served_path(path: str | None) -> str | None:
    """``path`` relative to the working folder (URL-quoted), or None if it is not inside."""
    if not path or not os.path.exists(path):
        return None
    try:
        rel = Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return None
    return urllib.parse.quote(rel.as_posix())


def record(store: Any, master_id: str, info: dict[str, Any]) -> None:
    store.set_meta(META_PREFIX + master_id, json.dumps(info, sort_keys=True, default=float))


MASTERS_COLUMNS = [
    "master_id",
    "created_at",
    "original_task_id",
    "original_track_id",
    "picks",
    "crossfade_ms",
    "match_loudness",
    "path",
    "format",
    "subtype",
    "sha256",
    "saved_at",
]


def masters(store: Any) -> pd.DataFrame:
    """Every master made with this store, oldest first (``picks``: the picked track ids)."""
    import pandas as pd

    rows = store.query(
        "SELECT value FROM meta WHERE key >= ? AND key < ?", (META_PREFIX, META_PREFIX[:-1] + ";")
    )
    records = []
    for r in rows:
        info = json.loads(r["value"])
        info["picks"] = [p["track_id"] for p in info.get("picks", [])]
        records.append({c: info.get(c) for c in MASTERS_COLUMNS})
    out = pd.DataFrame(records, columns=MASTERS_COLUMNS)
    for col in ("created_at", "saved_at"):
        out[col] = pd.to_datetime(out[col], unit="s", utc=True)
    return out.sort_values("created_at", kind="stable").reset_index(drop=True)
