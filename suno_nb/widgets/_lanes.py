"""What the audition shows, computed in Python: which tasks, and per track a "lane".

A lane is a small dict the browser draws: label, colour, duration, compact peaks (0..255),
the take's metrics (:func:`suno_nb.analysis.compare_takes`) and how its audio reaches the
browser: ``bytes`` (sent over the widget channel: loopback/sandbox URLs and anything already
in the cache) or ``url`` (a public URL the browser streams itself).  No audio is in a lane.
"""

from __future__ import annotations

import ipaddress
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from .. import analysis, audio
from ..errors import SunoNbError
from ._common import fmt_range, short_id, text
from ._plot import ORIGINAL_COLOR, TAKE_COLORS, Envelope, waveform_png

if TYPE_CHECKING:
    import pandas as pd

PEAK_POINTS = 800  # bars per lane: enough for a 1200 px wide waveform, ~3 kB as JSON


def fragment_url(
    url: str, start: float, end: float, context: float, duration: float | None = None
) -> str:
    """``url#t=a,b`` with ``a = start - context`` (>= 0) and ``b = end + context``
    (<= ``duration`` when known): a media fragment that plays the section with context."""
    a = max(0.0, float(start) - context)
    b = float(end) + context
    if duration and duration > 0:
        b = min(b, float(duration))
    base = url.split("#", 1)[0]
    return f"{base}#t={a:.2f},{b:.2f}"


def is_local(url: str) -> bool:
    """True for URLs a browser elsewhere could not reach: loopback, private, link-local."""
    host = urlsplit(url).hostname or ""
    if host in ("localhost", "") or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def in_cache(url: str) -> bool:
    """True when ``url`` is already in the audio cache (no request is made)."""
    from ..audio.core import _existing, _url_key  # the cache's own naming

    allowed = (*audio.AUDIO_EXTENSIONS, ".bin")
    return _existing(audio.default_cache_dir(), _url_key(url), allowed) is not None


def plain_error(what: str, exc: Exception | str) -> str:
    """An audio failure in words a musician understands (messages name hosts, not paths)."""
    detail = str(exc).rstrip(".")
    if detail.startswith("refused to fetch"):  # not an http(s) URL: say so as it is
        why = detail
    elif "Connection" in detail or "refused" in detail.lower():
        why = "the server did not answer (has the sandbox or the service stopped?)"
    elif getattr(exc, "status", None) in (404, 410) or re.search(r"\bHTTP 4(04|10)\b", detail):
        why = "the file is gone (results are kept 14 days)"
    else:
        why = detail
    return f"The audio of {what} cannot be fetched: {why}."


def what(label: str) -> str:
    """``"the original"`` / ``"take 2"``: a lane's label inside a sentence."""
    return "the original" if label == "Original" else label.lower()


def choices(rx: Any, task_ids: list[str] | None) -> list[dict[str, str]]:
    """The tasks to offer: ``task_ids`` in that order, else this session's succeeded replace
    tasks (since ``rx.started_at``; all of them when there are none), newest first."""
    tasks = rx.tasks()
    if task_ids:
        rows = tasks.set_index("task_id", drop=False)
        chosen = [rows.loc[t] for t in task_ids if t in rows.index]
        missing = [t for t in task_ids if t not in rows.index]
        out = [_choice(r) for r in chosen]
        out += [{"task_id": t, "label": f"task {short_id(t)} (unknown here)"} for t in missing]
        return out
    done = tasks[
        (tasks["state"] == "succeeded")
        & (tasks["tracks"] > 0)
        & tasks["parent_task_id"].notna()
        & (tasks["parent_task_id"] != "")
    ]
    since = getattr(rx, "started_at", None)
    if since is not None and len(done):
        import pandas as pd

        t0 = pd.Timestamp(since, unit="s", tz="UTC")
        seen = done["first_seen_at"].fillna(done["submitted_at"])
        recent = done[(seen >= t0) | (done["submitted_at"] >= t0)]
        done = recent if len(recent) else done
    return [_choice(r) for _, r in done.iloc[::-1].iterrows()]


def _choice(row: pd.Series) -> dict[str, str]:
    """A picker entry that tells tasks apart: section, prompt, when, state and takes."""
    section = fmt_range(row["infill_start_s"], row["infill_end_s"])
    prompt = " ".join(text(row.get("prompt")).split())
    prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
    import pandas as pd

    when = row.get("completed_at")
    when = row.get("submitted_at") if when is None or pd.isna(when) else when
    stamp = "" if when is None or pd.isna(when) else pd.Timestamp(when).strftime("%H:%M:%S")
    takes = int(row["tracks"]) if _finite(row.get("tracks")) is not None else 0
    state = text(row["state"])
    what = f"{takes} take{'s' * (takes != 1)}" if state == "succeeded" else state
    label = " · ".join(
        p for p in (section, prompt or text(row["title"], "untitled"), stamp, what) if p
    )
    return {
        "task_id": str(row["task_id"]),
        "label": label,
        "title": text(row["title"], "untitled"),
        "section": section,
        "prompt": prompt,
        "time": stamp,
        "state": state,
        "takes": str(takes),
    }


def _peaks(url: str | Path) -> tuple[list[int], float | None]:
    mins, maxs, duration = audio.peaks(url, PEAK_POINTS)
    level = np.maximum(np.abs(mins), np.abs(maxs))
    return np.clip(np.round(level * 255), 0, 255).astype(int).tolist(), duration


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _prefetch(srcs: list[str | Path], measuring: bool) -> dict[str, SunoNbError]:
    """Fetch the audio this view reads (all of it when the takes are measured) in parallel,
    once: URL -> why it failed.  Kept for this view's build only, never cached.  Archived
    files (paths) need no fetch."""
    wanted = []
    for url in srcs:
        if not isinstance(url, str):
            continue
        try:
            audio.check_url(url)
        except SunoNbError:
            continue  # refused before any I/O; the lane says why
        if measuring or is_local(url) or in_cache(url):
            wanted.append(url)
    done = audio.fetch_many(wanted)
    return {u: r for u, r in done.items() if isinstance(r, SunoNbError)}


def _lane(
    key: str,
    label: str,
    kind: str,
    color: str,
    track: dict[str, Any],
    metrics: dict | None,
    failed: dict[str, SunoNbError] | None = None,
    url: str | Path = "",
) -> tuple[dict[str, Any], str | Path]:
    """A lane and its audio source (kept in Python for the "audio" message): ``url``, the
    archived file or the URL :func:`suno_nb.analysis.track_source` chose.  ``failed``: URLs
    this build could not fetch (URL -> why), so they are not fetched again."""
    lane: dict[str, Any] = {
        "key": key,
        "label": label,
        "kind": kind,
        "color": color,
        "track_id": text(track.get("track_id")),
        "title": text(track.get("title")),
        "duration": _finite(track.get("duration")) or 0.0,
        "peaks": [],
        "url": "",
        "bytes": False,
        "error": None,
        "metrics": metrics,
        "offset_s": (_finite(metrics.get("offset_ms")) or 0.0) / 1000 if metrics else 0.0,
        "lufs": None,
    }
    if not url:
        lane["error"] = f"{label} has no audio URL."
        return lane, url
    if isinstance(url, Path):  # archived: read here, sent as bytes, whatever the URL does
        try:
            lane["peaks"], duration = _peaks(url)
            lane["duration"] = duration or lane["duration"]
            lane["bytes"] = True
        except SunoNbError as exc:
            lane["error"] = plain_error(what(label), exc)
        return lane, url
    try:
        audio.check_url(url)  # http(s) only: never a path or file: URL from a callback
    except SunoNbError as exc:
        lane["error"] = plain_error(what(label), exc)
        return lane, url
    local = is_local(url)
    if local or in_cache(url):
        if failed and url in failed:
            lane["error"] = plain_error(what(label), failed[url])
            return lane, url
        try:
            lane["peaks"], duration = _peaks(url)  # fetches into the cache if needed
            lane["duration"] = duration or lane["duration"]
            lane["bytes"] = True
        except SunoNbError as exc:
            lane["error"] = plain_error(what(label), exc)
    else:
        lane["url"] = url  # public: the browser streams it
    return lane, url


def build(rx: Any, task_id: str) -> dict[str, Any]:
    """Heading, section, lanes and sources (lane key -> URL) of a task, or a message."""
    tasks = rx.tasks()
    row = tasks[tasks["task_id"] == task_id]
    empty: dict[str, Any] = {"heading": {}, "section": [], "lanes": [], "sources": {}}
    if not len(row):
        return {**empty, "message": f"Task {task_id} is not known to this receiver."}
    task = dict(row.iloc[0])
    state = text(task["state"])
    if state != "succeeded":
        if state == "failed":
            why = " · ".join(
                p for p in (text(task["code"]), text(task["error"]) or text(task["msg"])) if p
            )
            return {**empty, "message": f"Task {short_id(task_id)} failed: {why}"}
        return {
            **empty,
            "message": f"Task {short_id(task_id)} is {state}; it shows here when its result lands.",
        }
    start, end = _finite(task["infill_start_s"]), _finite(task["infill_end_s"])
    frame = rx.frame()
    try:
        original = analysis.original_track(rx, task, frame)
        lookup_error = None if original else "The original track is not known to this receiver."
    except SunoNbError as exc:
        original, lookup_error = None, plain_error("the original", exc)
    takes = frame[frame["task_id"] == task_id]
    measuring = start is not None and end is not None and original is not None
    tracks = ([original] if original is not None else []) + [dict(t) for _, t in takes.iterrows()]
    srcs = {text(t.get("track_id")): analysis.track_source(rx, t) for t in tracks}
    failed = _prefetch(list(srcs.values()), measuring)  # one deadline for all
    owners = {
        u: (text(t.get("task_id")), text(t.get("track_id")))
        for t in tracks
        if isinstance(u := srcs[text(t.get("track_id"))], str)
    }
    analysis.note_gone(rx, owners, failed)  # a 404/410 shows as "expired" in rx.frame()
    metrics: dict[str, dict] = {}
    if measuring:
        known = {u: str(e) for u, e in failed.items()}
        table = analysis.compare_takes(rx, task_id, progress=False, known_failures=known)
        for r in table.to_dict("records"):
            metrics[r["track_id"]] = {k: _finite(r[k]) for k in analysis.METRICS}
    lanes, sources = [], {}
    if original is not None:
        src = srcs[text(original.get("track_id"))]
        lane, url = _lane(
            "original", "Original", "original", ORIGINAL_COLOR, original, None, failed, src
        )
        lanes.append(lane)
        sources[lane["key"]] = url
    for i, (_, take) in enumerate(takes.iterrows(), start=1):
        m = metrics.get(str(take["track_id"]))
        color = TAKE_COLORS[(i - 1) % len(TAKE_COLORS)]
        src = srcs[text(take["track_id"])]
        lane, url = _lane(f"take{i}", f"Take {i}", "take", color, dict(take), m, failed, src)
        lanes.append(lane)
        sources[lane["key"]] = url
    for lane in lanes:
        m = next((x for x in metrics.values() if x), None)
        if lane["kind"] == "original" and m:
            lane["lufs"] = m.get("original_section_lufs")
        elif lane["metrics"]:
            lane["lufs"] = lane["metrics"].get("section_lufs")
    heading = {
        "title": text(task["title"], "untitled"),
        "detail": f"replaced {fmt_range(start, end)} · task {short_id(task_id)}",
    }
    return {
        "heading": heading,
        "section": [start, end] if start is not None and end is not None else [],
        "lanes": lanes,
        "sources": sources,
        "message": lookup_error or "",
        "parent": text(task["parent_task_id"]),
    }


def fallback_png(lanes: list[dict[str, Any]], section: list[float]) -> bytes | None:
    """The lanes as one static picture (for front ends without a widget manager)."""
    rows = []
    for lane in lanes:
        if not lane["peaks"]:
            continue
        level = np.asarray(lane["peaks"], dtype=np.float32) / 255
        times = np.linspace(0, lane["duration"], level.size)
        rows.append(Envelope(lane["label"], times, -level, level, lane["duration"], lane["color"]))
    if not rows:
        return None
    sec = (section[0], section[1]) if len(section) == 2 else None
    return waveform_png(rows, section=sec, row_px=60)


# --- the master: one more lane against the original -------------------------------------------

MASTER_COLOR = "#2e7d32"


def master_source(rx: Any, master: Any, parent_task_id: str) -> tuple[Any, int, str] | None:
    """The master to show for a task whose original is ``parent_task_id``: ``master`` (a
    :class:`~suno_nb.master.Master`) when given, else the newest saved master of that
    original in ``rx.masters()``.  Returns ``(channels x samples, sample rate, id)``."""
    if master is not None:
        orig = str(master.info.get("original_task_id") or "")
        if orig and parent_task_id and orig != parent_task_id:
            return None
        return master.audio, int(master.sample_rate), str(master.master_id)
    try:
        table = rx.masters()
    except (SunoNbError, AttributeError):
        return None
    rows = table[table["original_task_id"] == parent_task_id] if len(table) else table
    for _, row in rows.iloc[::-1].iterrows():
        path = text(row.get("path"))
        if not path:
            continue
        import soundfile as sf

        try:
            data, sr = sf.read(path, dtype="float32", always_2d=True)
        except (OSError, RuntimeError):  # moved or deleted since it was saved: try older
            continue
        return data.T, int(sr), text(row["master_id"])
    return None


def encode_for_page(samples: np.ndarray, sr: int) -> tuple[bytes, str]:
    """``samples`` (channels x n) as MP3 bytes for the page (16-bit WAV if MP3 fails);
    scaled down as a whole when it peaks above full scale, never clipped."""
    import io

    import soundfile as sf

    peak = float(np.max(np.abs(samples), initial=0.0))
    data = samples / np.float32(peak) if peak > 1.0 else samples
    buf = io.BytesIO()
    try:
        sf.write(buf, data.T, sr, format="MP3")
        return buf.getvalue(), "audio/mpeg"
    except (sf.LibsndfileError, RuntimeError, TypeError):
        buf = io.BytesIO()
        sf.write(buf, data.T, sr, format="WAV", subtype="PCM_16")
        return buf.getvalue(), "audio/wav"


def master_lane(
    samples: np.ndarray, sr: int, master_id: str, sections: Any = None, task_id: str = ""
) -> dict[str, Any]:
    """The master as a lane (peaks in the kernel, audio sent as bytes; aligned with the
    original: a master keeps the original's timeline)."""
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples
    n = max(1, mono.size // PEAK_POINTS)
    usable = mono[: n * (mono.size // n)].reshape(-1, n) if mono.size >= n else mono[None, :]
    level = np.abs(usable).max(axis=1)
    metrics: dict[str, float | None] | None = None
    if sections is not None and len(sections):
        mine = sections[sections["task_id"] == task_id] if task_id else sections
        if len(mine):
            row = mine.iloc[0]
            metrics = dict.fromkeys(analysis.METRICS)
            metrics.update(
                offset_ms=0.0,
                seam_start_db=_finite(row.get("seam_start_db")),
                seam_end_db=_finite(row.get("seam_end_db")),
            )
    return {
        "key": "master",
        "label": "Master",
        "kind": "master",
        "color": MASTER_COLOR,
        "track_id": "",
        "title": f"master {master_id}",
        "duration": mono.size / sr,
        "peaks": np.clip(np.round(level * 255), 0, 255).astype(int).tolist(),
        "url": "",
        "bytes": True,
        "error": None,
        "metrics": metrics,
        "offset_s": 0.0,
        "lufs": None,
    }
