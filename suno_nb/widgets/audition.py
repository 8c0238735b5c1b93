"""Audition: original vs replacement, side by side, with the section marked.

Players are plain HTML5 ``<audio controls preload="none">`` elements that stream from the
service's URLs (nothing is downloaded into the notebook unless ``embed=True``).  Each track
gets a whole-track player and a "section ± N s" player whose source carries a media
fragment (``url#t=start-N,end+N``), so the browser plays just the replaced part with some
context around it.  Waveforms are drawn in the background into a small PNG.
"""

from __future__ import annotations

import base64
import mimetypes
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import SunoNbError
from ._common import (
    BOX_STYLE,
    MUTED,
    TABLE_STYLE,
    TD_STYLE,
    TH_STYLE,
    UPDATE_LOCK,
    LatestWorker,
    QuietMixin,
    badge,
    esc,
    fmt_clock,
    fmt_range,
    log,
    note,
    short_id,
    text,
)
from ._plot import ORIGINAL_COLOR, TAKE_COLORS, Envelope, envelope_for, waveform_png

if TYPE_CHECKING:
    import pandas as pd

    from ..events import CallbackEvent
    from ..session import Receiver

__all__ = ["Audition", "audition", "fragment_url"]

EMPTY_MESSAGE = (
    "Nothing to audition yet: no replace-section task has succeeded in this receiver. "
    "Submit one; it shows here when its result lands."
)


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


class Audition(QuietMixin, widgets.VBox):
    """Original vs replacement tracks of a finished replace-section task.

    ``picker`` (Dropdown) chooses among the receiver's succeeded tasks (newest first; hidden
    when there is only one); ``players`` (HTML) holds the audio players and metadata;
    ``waveform`` (Image) the waveforms with the section shaded.  :meth:`show` switches task,
    :meth:`refresh` reloads the list, :meth:`wait_idle` waits for the waveform picture.
    New results are picked up by themselves (``rx.on_callback``).
    """

    def __init__(
        self,
        rx: Receiver,
        task_id: str | None = None,
        *,
        client: Any = None,
        context: float = 3.0,
        embed: bool = False,
        show_waveform: bool = True,
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0 s, got {context!r}")
        self._rx = rx
        self._client = client
        self.context = float(context)
        self.embed = bool(embed)
        self._show_waveform = show_waveform
        self._wanted = task_id
        self._current: str | None = None
        self._parents: dict[str, dict[str, dict[str, Any]]] = {}
        self._worker = LatestWorker("suno_nb-audition-render")
        self._lock = threading.RLock()  # one refresh/show at a time, whatever the thread
        self.picker = widgets.Dropdown(
            options=[],
            description="Task",
            style={"description_width": "50px"},
            layout=widgets.Layout(width="98%", display="none"),
        )
        self.players = widgets.HTML()
        self.waveform = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        super().__init__(
            children=[self.picker, self.players, self.waveform],
            layout=widgets.Layout(max_width="1100px"),
        )
        self.picker.observe(self._on_pick, names="value")
        rx.on_callback(self._on_event)
        self.refresh()

    def __repr__(self) -> str:
        return f"Audition(context={self.context:g} s)"

    @property
    def task_id(self) -> str | None:
        """The task shown now, or None."""
        return self._current

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the waveform picture of the shown task is drawn."""
        return self._worker.wait_idle(timeout)

    def close(self) -> None:
        """Stop listening to the receiver and close the widgets."""
        try:
            self._rx.on_callback(self._on_event, remove=True)
        finally:
            self._worker.stop()
            super().close()

    # --- task list ---------------------------------------------------------------------------

    def _choices(self, tasks: pd.DataFrame) -> list[tuple[str, str]]:
        done = tasks[(tasks["state"] == "succeeded") & (tasks["tracks"] > 0)]
        replaced = done[done["parent_task_id"].notna() & (done["parent_task_id"] != "")]
        chosen = replaced if len(replaced) else done
        out = []
        for row in chosen.iloc[::-1].itertuples(index=False):
            label = (
                f"{text(row.title, 'untitled')} · "
                f"{fmt_range(row.infill_start_s, row.infill_end_s)} · task {short_id(row.task_id)}"
            )
            out.append((label, str(row.task_id)))
        return out

    def refresh(self) -> None:
        """Reload the task list; show the wanted task, else keep the current one, else the
        newest finished one."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            tasks = self._rx.tasks()
        except Exception as exc:
            log.debug("audition: tasks unavailable: %s", exc)
            return
        options = self._choices(tasks)
        values = [v for _, v in options]
        if self._wanted is not None:
            if self._wanted in values:
                target: str | None = self._wanted
                self._wanted = None
            else:
                target = None  # the wanted task is not finished: blank picker, a note below
        elif self._current in values:
            target = self._current
        else:
            target = values[0] if values else None
        with UPDATE_LOCK, self._quietly():
            if tuple(options) != tuple(self.picker.options):
                self.picker.options = options
            self.picker.value = target
            self.picker.layout.display = "" if len(options) > 1 else "none"
        wanted = self._wanted
        if wanted is not None:
            self._show_not_ready(wanted, tasks)
        elif target is None:
            self._current = None
            with UPDATE_LOCK:
                self.players.value = note(esc(EMPTY_MESSAGE), kind="info")
                self.waveform.layout.display = "none"
        elif target != self._current:
            self.show(target)

    def _on_pick(self, change: dict[str, Any]) -> None:
        if self._is_quiet() or change["new"] is None:
            return
        self.show(change["new"])

    def _on_event(self, event: CallbackEvent) -> None:
        # dispatcher thread: a result was stored
        if self._wanted == event.task_id or self._current is None or event.state == "succeeded":
            self.refresh()

    def _show_not_ready(self, task_id: str, tasks: pd.DataFrame) -> None:
        row = tasks[tasks["task_id"] == task_id]
        if not len(row):
            html = note(
                f"Task <code>{esc(task_id)}</code> is not known to this receiver.", kind="warn"
            )
        else:
            r = row.iloc[0]
            state = str(r["state"])
            if state == "failed":
                why = " · ".join(
                    p for p in (text(r["code"]), text(r["error"]) or text(r["msg"])) if p
                )
                html = note(
                    f"{badge(state)} Task <code>{esc(task_id)}</code> failed: {esc(why)}",
                    kind="error",
                )
            else:
                html = note(
                    f"{badge(state)} Task <code>{esc(task_id)}</code> is not finished yet; "
                    "it shows here as soon as its result lands.",
                    kind="info",
                )
        with UPDATE_LOCK:
            self.players.value = html
            self.waveform.layout.display = "none"

    # --- rendering -----------------------------------------------------------------------------

    def _parent_tracks(self, parent_task_id: str, frame: pd.DataFrame) -> dict[str, dict]:
        """The parent task's tracks by id: from the receiver's frame, else the service."""
        if parent_task_id in self._parents:
            return self._parents[parent_task_id]
        rows = frame[frame["task_id"] == parent_task_id]
        if len(rows):
            found = {str(r["track_id"]): dict(r) for _, r in rows.iterrows()}
            self._parents[parent_task_id] = found
            return found
        client = self._client if self._client is not None else getattr(self._rx, "client", None)
        if client is None:
            return {}
        try:
            info = client.get_details(parent_task_id)
        except SunoNbError as exc:
            log.warning("could not look up the original task %s: %s", parent_task_id, exc)
            return {}
        found = {
            t.id: {
                "track_id": t.id,
                "title": t.title,
                "tags": t.tags,
                "duration": t.duration,
                "model_name": t.model_name,
                "audio_url": t.audio_url,
                "stream_audio_url": t.stream_audio_url,
                "image_url": t.image_url,
                "task_id": parent_task_id,
            }
            for t in info.tracks
        }
        self._parents[parent_task_id] = found
        return found

    def _src(self, url: str) -> str:
        if not self.embed:
            return url
        from .. import audio

        path = audio.fetch(url)
        mime = mimetypes.guess_type(path.name)[0] or "audio/mpeg"
        return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")

    def _player_row(
        self, label: str, color: str, track: dict[str, Any], section: tuple[float, float] | None
    ) -> str:
        url = text(track.get("audio_url")) or text(track.get("stream_audio_url"))
        duration = track.get("duration")
        dur = None if duration is None or duration != duration else float(duration)
        if url:
            src = self._src(url)
            whole = (
                f"<audio controls preload='none' src='{esc(src)}' style='width: 260px;'></audio>"
            )
            if section is not None:
                frag = fragment_url(src, section[0], section[1], self.context, dur)
                part = (
                    f"<audio class='suno-nb-section' controls preload='none' src='{esc(frag)}' "
                    f"style='width: 260px;'></audio>"
                    f"<div style='{MUTED} font-size: 11px;'>{esc(frag.rsplit('#', 1)[1])} · "
                    f"<a href='{esc(frag if not self.embed else url)}' target='_blank' "
                    "rel='noopener'>open</a></div>"
                )
            else:
                part = f"<span style='{MUTED}'>—</span>"
            download = f" · <a href='{esc(url)}' target='_blank' rel='noopener' download>mp3</a>"
        else:
            whole = part = f"<span style='{MUTED}'>no audio URL</span>"
            download = ""
        meta = " · ".join(
            p
            for p in (
                fmt_clock(dur) if dur else "",
                text(track.get("model_name")),
                text(track.get("tags")),
            )
            if p
        )
        return (
            "<tr>"
            f"<td style='{TD_STYLE} border-left: 4px solid {color};'><b>{esc(label)}</b><br>"
            f"<span style='font-size: 12px;'>{esc(text(track.get('title'), 'untitled'))}"
            "</span></td>"
            f"<td style='{TD_STYLE}'>{whole}</td>"
            f"<td style='{TD_STYLE}'>{part}</td>"
            f"<td style='{TD_STYLE} font-size: 12px;'>{esc(meta)}<br><span style='{MUTED}'>"
            f"id <code title='{esc(text(track.get('track_id')))}'>"
            f"{esc(short_id(track.get('track_id'), 12))}</code>{download}</span></td>"
            "</tr>"
        )

    def show(self, task_id: str) -> None:
        """Show ``task_id``'s original and result tracks (waveform drawn in the background)."""
        with self._lock:
            self._show(task_id)

    def _show(self, task_id: str) -> None:
        try:
            tasks = self._rx.tasks()
            frame = self._rx.frame()
        except Exception as exc:
            log.debug("audition: receiver unavailable: %s", exc)
            return
        row = tasks[tasks["task_id"] == task_id]
        if not len(row) or row.iloc[0]["state"] != "succeeded":
            self._wanted = task_id
            self._show_not_ready(task_id, tasks)
            return
        self._wanted = None
        self._current = task_id
        t = row.iloc[0]
        takes = frame[frame["task_id"] == task_id]
        start, end = t["infill_start_s"], t["infill_end_s"]
        section = None if start != start or end != end else (float(start), float(end))
        parent_id, audio_id = text(t["parent_task_id"]), text(t["audio_id"])
        original = self._parent_tracks(parent_id, frame).get(audio_id) if parent_id else None

        rows_html = []
        plots: list[tuple[str, str, str, float | None]] = []  # label, color, url, duration
        if original is not None:
            rows_html.append(self._player_row("Original", ORIGINAL_COLOR, original, section))
            url = text(original.get("audio_url")) or text(original.get("stream_audio_url"))
            if url:
                plots.append(("original", ORIGINAL_COLOR, url, original.get("duration")))
        elif parent_id:
            rows_html.append(
                f"<tr><td style='{TD_STYLE}' colspan='4'>"
                + note(
                    f"Original track <code>{esc(audio_id)}</code> of task "
                    f"<code>{esc(parent_id)}</code> is unknown here; pass "
                    "<code>client=</code> to look it up.",
                    kind="warn",
                )
                + "</td></tr>"
            )
        for i, (_, take) in enumerate(takes.iterrows(), start=1):
            color = TAKE_COLORS[(i - 1) % len(TAKE_COLORS)]
            rows_html.append(self._player_row(f"Take {i}", color, dict(take), section))
            url = text(take["audio_url"]) or text(take["stream_audio_url"])
            if url:
                plots.append((f"take {i}", color, url, take["duration"]))

        heads = ["", "Whole track", f"Section ± {self.context:g} s", "Details"]
        head = "".join(f"<th style='{TH_STYLE}'>{h}</th>" for h in heads)
        prompt = text(t["prompt"])
        prompt_html = (
            f"<div style='{MUTED} font-style: italic; white-space: pre-wrap; margin: 2px 0 6px;'>"
            f"{esc(prompt[:300] + ('…' if len(prompt) > 300 else ''))}</div>"
            if prompt
            else ""
        )
        tags = text(t["tags"])
        html = (
            f"<div style='{BOX_STYLE}' class='suno-nb-audition' data-task-id='{esc(task_id)}'>"
            f"<div style='font-size: 14px;'><b>{esc(text(t['title'], 'untitled'))}</b>"
            f"{' · ' + esc(tags) if tags else ''}</div>"
            f"<div>replaced section <b>{esc(fmt_range(start, end))}</b> "
            f"<span style='{MUTED}'>· task <code>{esc(task_id)}</code>"
            f"{' · from task <code>' + esc(parent_id) + '</code>' if parent_id else ''}"
            "</span></div>"
            f"{prompt_html}"
            f"<table style='{TABLE_STYLE}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows_html)}</tbody></table></div>"
        )
        with UPDATE_LOCK:
            self.players.value = html
            if not plots:
                self.waveform.layout.display = "none"
        if plots and self._show_waveform:
            self._worker.submit(lambda: self._draw(task_id, plots, section))

    def _draw(
        self,
        task_id: str,
        plots: list[tuple[str, str, str, float | None]],
        section: tuple[float, float] | None,
    ) -> None:
        envelopes = []
        for label, color, url, duration in plots:
            try:
                env = envelope_for(url, label, color)
            except SunoNbError as exc:
                log.warning("waveform of %s unavailable: %s", label, exc)
                continue
            if duration and duration == duration:
                env = Envelope(env.label, env.times, env.mins, env.maxs, float(duration), color)
            envelopes.append(env)
        if not envelopes:
            return
        png = waveform_png(envelopes, section=section, context=self.context if section else None)
        with UPDATE_LOCK:
            if self._current != task_id:
                return  # another task was picked meanwhile
            self.waveform.value = png
            self.waveform.layout.display = ""


def audition(rx: Receiver, task_id: str | None = None, **kwargs: Any) -> Audition:
    """Listen to a finished replace-section task: original vs each result track.

    ``task_id`` defaults to the newest succeeded replace task (a picker lists the others).
    Keyword arguments go to :class:`Audition`: ``client=`` (to look up an original that the
    receiver has not seen; default ``rx.client``), ``context=3.0`` seconds around the
    section, ``embed=False`` (True puts the audio itself into the notebook).
    """
    return Audition(rx, task_id, **kwargs)
