"""The submit form's originals: which tracks it offers, and how it finds an original's length.

Everything reads the store by key (a task's rows, a task's tracks), never whole tables; the
service lookup (:func:`resolve_remote`) is a network call and runs on a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SunoNbError
from ._common import BOX_STYLE, MUTED, esc, fmt_clock, log, note, short_id, text

PLACEHOLDER = "— type the ids below, or pick a known track —"


@dataclass(frozen=True)
class Original:
    """The track whose section is replaced."""

    task_id: str
    audio_id: str
    duration: float | None = None
    audio_url: str | None = None
    title: str | None = None
    origin: str = "typed"  # frame (this receiver) | service | typed


class TrackCache:
    """A task's tracks, re-read only when the task's row changed (``updated_at``, state)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Any, list[dict[str, Any]]]] = {}

    def tracks(self, store: Any, row: dict[str, Any]) -> list[dict[str, Any]]:
        mark = (row.get("updated_at"), row.get("state"))
        hit = self._cache.get(row["task_id"])
        if hit is None or hit[0] != mark:
            hit = (mark, store.tracks_of(row["task_id"]))
            self._cache[row["task_id"]] = hit
        return hit[1]


def known_options(
    store: Any, rows: list[dict[str, Any]], cache: TrackCache
) -> list[tuple[str, Any]]:
    """Dropdown options: the result tracks of the task ``rows`` (``rx.session_tasks()``), then
    the originals those tasks replaced a section of."""
    options: list[tuple[str, Any]] = [(PLACEHOLDER, "")]
    seen: set[tuple[str, str]] = set()
    for row in rows:
        for tr in cache.tracks(store, row):
            key = (str(tr["task_id"]), str(tr["track_id"]))
            if key in seen:
                continue
            seen.add(key)
            label = (
                f"{text(tr.get('title'), 'untitled')} · {fmt_clock(tr.get('duration'))} · "
                f"task {short_id(key[0])} / audio {short_id(key[1])}"
            )
            options.append((label, key))
    for row in rows:
        if not text(row.get("parent_task_id")) or not text(row.get("audio_id")):
            continue
        key = (str(row["parent_task_id"]), str(row["audio_id"]))
        if key in seen:
            continue
        seen.add(key)
        label = (
            f"original of “{text(row.get('title'), 'untitled')}” · "
            f"task {short_id(key[0])} / audio {short_id(key[1])}"
        )
        options.append((label, key))
    return options


def resolve_local(store: Any, task_id: str, audio_id: str) -> Original | None:
    """The original from this receiver's store (one task's tracks), or None."""
    try:
        tracks = store.tracks_of(task_id)
    except Exception:  # a stopped receiver: ask the service instead
        return None
    for tr in tracks:
        if tr["track_id"] == audio_id:
            dur = tr.get("duration")
            return Original(
                task_id,
                audio_id,
                None if dur is None else float(dur),
                text(tr.get("audio_url")) or text(tr.get("stream_audio_url")) or None,
                text(tr.get("title")) or None,
                "frame",
            )
    return None


def resolve_remote(client: Any, task_id: str, audio_id: str) -> tuple[Original, str | None, bool]:
    """Look the original up on the service: ``(original, problem, fatal)``.  Network: call
    it on a worker thread.  ``fatal`` means the ids cannot be right (wrong audio id)."""
    try:
        info = client.get_details(task_id)
    except SunoNbError as exc:
        return Original(task_id, audio_id), f"could not look up task {task_id}: {exc}", False
    except Exception as exc:  # never a traceback in the form
        log.exception("looking up task %s failed", task_id)
        problem = f"could not look up task {task_id}: {type(exc).__name__}: {exc}"
        return Original(task_id, audio_id), problem, False
    for track in info.tracks:
        if track.id == audio_id:
            found = Original(
                task_id,
                audio_id,
                track.duration,
                track.audio_url or track.stream_audio_url,
                track.title,
                "service",
            )
            return found, None, False
    ids = ", ".join(t.id for t in info.tracks) or f"none yet (status {info.status})"
    problem = f"audio_id: {audio_id} is not a track of task {task_id} (its tracks: {ids})"
    return Original(task_id, audio_id), problem, True


def original_html(
    o: Original | None, looking: tuple[str, str] | None, problem: str | None, fatal: bool
) -> str:
    """What the form says about its original: being looked up, missing, or found (with
    the lookup's problem, if any)."""
    if looking is not None:
        return note(f"Looking up task <code>{esc(looking[0])}</code> on the service…")
    if o is None:
        return note(
            "Pick a known track, or type the original's <b>task id</b> and <b>audio id</b>."
        )
    where = {"frame": "from this receiver", "service": "looked up", "typed": "typed"}
    dur = fmt_clock(o.duration) if o.duration else "unknown length"
    html = (
        f"<div style='{BOX_STYLE}'>Original: <b>{esc(o.title or 'untitled')}</b> · "
        f"{esc(dur)} <span style='{MUTED}'>· {where.get(o.origin, '')}</span><br>"
        f"<span style='{MUTED} font-size: 12px;'>task <code>{esc(o.task_id)}</code> · "
        f"audio <code>{esc(o.audio_id)}</code></span></div>"
    )
    if problem:
        extra = "" if fatal else " The 50 % and end-of-track rules will be checked by the service."
        html += note(esc(problem) + esc(extra), kind="error" if fatal else "warn")
    return html
