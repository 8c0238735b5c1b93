"""The submit form: pick an original, choose the section on its waveform, submit.

Validation is live and uses the same rules as the client (:mod:`suno_nb.rules`): while any
rule is broken the Submit button is disabled and the reason (field and limit) is shown.
Service errors are shown in the form, never as tracebacks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import ApiError, NetworkError, SectionValidationError, SunoNbError
from ..rules import MAX_SECTION_FRACTION, MAX_SECTION_S, MIN_SECTION_S, validate_section
from ..rules import validate_text as _validate_text
from ._common import (
    BOX_STYLE,
    MUTED,
    UPDATE_LOCK,
    LatestWorker,
    QuietMixin,
    esc,
    fmt_clock,
    log,
    note,
    set_traits,
    short_id,
    text,
)
from ._plot import Envelope, envelope_for, waveform_png

if TYPE_CHECKING:
    from ..client import SunoClient
    from ..events import CallbackEvent
    from ..session import Receiver

__all__ = ["SubmitForm", "submit_form"]

UNKNOWN_DURATION_MAX = 480.0  # slider range when the original's length is unknown
DOUBLE_CLICK_GUARD_S = 2.0  # identical re-submits this soon after one are ignored
PLACEHOLDER = "— type the ids below, or pick a known track —"
_DESC = {"description_width": "110px"}
_WIDE = widgets.Layout(width="98%")


@dataclass(frozen=True)
class Original:
    """The track whose section is replaced."""

    task_id: str
    audio_id: str
    duration: float | None = None
    audio_url: str | None = None
    title: str | None = None
    origin: str = "typed"  # frame | service | typed


def _reason(exc: SectionValidationError) -> str:
    """``field: message (limit: x)`` — what the user must change and to what."""
    limit = exc.limit
    if limit is None or isinstance(limit, (list, tuple)):
        return str(exc)
    shown = f"{limit:g} s" if isinstance(limit, float) else str(limit)
    return f"{exc} (limit: {shown})"


class SubmitForm(QuietMixin, widgets.VBox):
    """A form that submits a replace-section task through ``client`` with ``rx`` as receiver.

    Attributes tests and power users may drive: ``known`` (Dropdown of known tracks),
    ``task_id`` / ``audio_id`` (Text), ``section`` (FloatRangeSlider, seconds), ``prompt``,
    ``tags``, ``title``, ``negative_tags``, ``full_lyrics``, ``submit`` (Button), ``status``
    (HTML), ``waveform`` (Image).  ``reason`` is the current validation failure (or "") and
    ``last_job`` the last :class:`~suno_nb.client.ReplaceJob` submitted.
    """

    def __init__(
        self,
        client: SunoClient,
        rx: Receiver,
        *,
        task_id: str | None = None,
        audio_id: str | None = None,
        prompt: str = "",
        tags: str = "",
        title: str = "",
        section: tuple[float, float] | None = None,
        show_waveform: bool = True,
    ) -> None:
        self._client = client
        self._rx = rx
        self._original: Original | None = None
        self._lookup_error: str | None = None
        self._lookup_fatal = False
        self._cache: dict[tuple[str, str], Original] = {}
        self._busy = False
        self._last_fp: tuple[Any, ...] | None = None
        self._last_done = 0.0
        self._show_waveform = show_waveform
        self._worker = LatestWorker("suno_nb-submit-render")
        self._known_lock = threading.Lock()
        self.reason = ""
        self.last_job: Any = None

        self.header = widgets.HTML(
            f"<div style='{BOX_STYLE}'><b style='font-size: 14px'>Replace a section</b> "
            f"<span style='{MUTED}'>— choose the original, mark the section, describe the new "
            "part</span></div>"
        )
        self.known = widgets.Dropdown(
            options=[(PLACEHOLDER, "")],
            value="",
            description="Known track",
            style=_DESC,
            layout=widgets.Layout(width="80%"),
        )
        self.refresh_button = widgets.Button(
            description="",
            icon="refresh",
            tooltip="reload known tracks",
            layout=widgets.Layout(width="40px"),
        )
        self.task_id = widgets.Text(
            value=task_id or "",
            description="Task id",
            placeholder="parent task id of the original",
            continuous_update=False,
            style=_DESC,
            layout=widgets.Layout(width="49%"),
        )
        self.audio_id = widgets.Text(
            value=audio_id or "",
            description="Audio id",
            placeholder="id of the track to change",
            continuous_update=False,
            style=_DESC,
            layout=widgets.Layout(width="49%"),
        )
        self.original_info = widgets.HTML()
        self.waveform = widgets.Image(format="png", layout=widgets.Layout(display="none"))
        self.section = widgets.FloatRangeSlider(
            value=(0.0, 1.0),
            min=0.0,
            max=1.0,
            step=0.01,
            description="Section (s)",
            readout_format=".2f",
            continuous_update=True,
            disabled=True,
            style=_DESC,
            layout=_WIDE,
        )
        self.section_info = widgets.HTML()
        self.prompt = widgets.Textarea(
            value=prompt,
            description="Prompt",
            placeholder="lyrics or description of the new section",
            style=_DESC,
            layout=widgets.Layout(width="98%", height="70px"),
        )
        self.tags = widgets.Text(
            value=tags,
            description="Tags",
            placeholder="style tags, e.g. jazz, brass",
            style=_DESC,
            layout=widgets.Layout(width="49%"),
        )
        self.title = widgets.Text(
            value=title,
            description="Title",
            placeholder="title of the result",
            style=_DESC,
            layout=widgets.Layout(width="49%"),
        )
        self.negative_tags = widgets.Text(
            description="Negative tags",
            placeholder="optional: styles to avoid",
            style=_DESC,
            layout=_WIDE,
        )
        self.full_lyrics = widgets.Textarea(
            description="Full lyrics",
            placeholder="optional: the complete lyrics after the change",
            style=_DESC,
            layout=widgets.Layout(width="98%", height="60px"),
        )
        self.validation = widgets.HTML()
        self.submit = widgets.Button(
            description="Submit",
            button_style="primary",
            icon="upload",
            disabled=True,
            tooltip="send the replace-section request (spends credits)",
        )
        self.status = widgets.HTML()

        super().__init__(
            children=[
                self.header,
                widgets.HBox([self.known, self.refresh_button]),
                widgets.HBox([self.task_id, self.audio_id]),
                self.original_info,
                self.waveform,
                self.section,
                self.section_info,
                self.prompt,
                widgets.HBox([self.tags, self.title]),
                self.negative_tags,
                self.full_lyrics,
                self.validation,
                widgets.HBox([self.submit]),
                self.status,
            ],
            layout=widgets.Layout(max_width="940px"),
        )

        self.known.observe(self._on_known, names="value")
        self.refresh_button.on_click(lambda _b: self.refresh_known())
        self.task_id.observe(self._on_ids, names="value")
        self.audio_id.observe(self._on_ids, names="value")
        self.section.observe(self._on_section, names="value")
        for w in (self.prompt, self.tags, self.title, self.negative_tags, self.full_lyrics):
            w.observe(lambda _c: self._revalidate(), names="value")
        self.submit.on_click(self._on_submit)
        rx.on_callback(self._on_event)

        self.refresh_known()
        if task_id and audio_id:
            self.load_original()
        else:
            self._update_original_view()
        if section is not None and self._original is not None:
            with UPDATE_LOCK:
                self.section.value = section
        self._revalidate()

    # --- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return "SubmitForm(replace a section)"

    def close(self) -> None:
        """Stop listening to the receiver and close the widgets."""
        try:
            self._rx.on_callback(self._on_event, remove=True)
        finally:
            self._worker.stop()
            super().close()

    @property
    def original(self) -> Original | None:
        """The loaded original (ids, duration, audio URL), or None."""
        return self._original

    @property
    def valid(self) -> bool:
        return not self.reason

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until the waveform picture is drawn (for tests and scripts)."""
        return self._worker.wait_idle(timeout)

    # --- known tracks ---------------------------------------------------------------------

    def _known_options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [(PLACEHOLDER, "")]
        seen: set[tuple[str, str]] = set()
        try:
            frame = self._rx.frame()
            tasks = self._rx.tasks()
        except Exception as exc:  # a stopped receiver: keep what we have
            log.debug("known tracks unavailable: %s", exc)
            return options
        for row in frame.itertuples(index=False):
            key = (str(row.task_id), str(row.track_id))
            if key in seen:
                continue
            seen.add(key)
            label = (
                f"{text(row.title, 'untitled')} · {fmt_clock(row.duration)} · "
                f"task {short_id(row.task_id)} / audio {short_id(row.track_id)}"
            )
            options.append((label, key))
        for row in tasks.itertuples(index=False):
            if not text(row.parent_task_id) or not text(row.audio_id):
                continue
            key = (str(row.parent_task_id), str(row.audio_id))
            if key in seen:
                continue
            seen.add(key)
            label = (
                f"original of “{text(row.title, 'untitled')}” · "
                f"task {short_id(key[0])} / audio {short_id(key[1])}"
            )
            options.append((label, key))
        return options

    def refresh_known(self) -> None:
        """Reload the Known track list from the receiver (keeps the current choice)."""
        with self._known_lock:
            options = self._known_options()
            with UPDATE_LOCK:
                if tuple(options) == tuple(self.known.options):
                    return
                current = self.known.value
                with self._quietly():
                    self.known.options = options
                    values = [v for _, v in options]
                    self.known.value = current if current in values else ""

    def _on_event(self, event: CallbackEvent) -> None:
        # dispatcher thread: new tracks may have landed
        self.refresh_known()

    def _on_known(self, change: dict[str, Any]) -> None:
        if self._is_quiet() or not change["new"]:
            return
        task_id, audio_id = change["new"]
        with UPDATE_LOCK, self._quietly():
            self.task_id.value = task_id
            self.audio_id.value = audio_id
        self.load_original()

    def _on_ids(self, _change: dict[str, Any]) -> None:
        if self._is_quiet():
            return
        current = (self.task_id.value.strip(), self.audio_id.value.strip())
        if self.known.value and self.known.value != current:
            with UPDATE_LOCK, self._quietly():
                self.known.value = ""
        self.load_original()

    # --- the original ---------------------------------------------------------------------

    def _resolve(self, task_id: str, audio_id: str) -> Original:
        """Find the original's duration and URL: the receiver's frame, else the service."""
        key = (task_id, audio_id)
        if key in self._cache:
            return self._cache[key]
        self._lookup_error, self._lookup_fatal = None, False
        try:
            frame = self._rx.frame()
            hit = frame[(frame["task_id"] == task_id) & (frame["track_id"] == audio_id)]
        except Exception:
            hit = None
        if hit is not None and len(hit):
            row = hit.iloc[0]
            dur = row["duration"]
            found = Original(
                task_id,
                audio_id,
                None if dur != dur else float(dur),
                text(row["audio_url"]) or text(row["stream_audio_url"]) or None,
                text(row["title"]) or None,
                "frame",
            )
            self._cache[key] = found
            return found
        try:
            info = self._client.get_details(task_id)
        except (ApiError, NetworkError, SunoNbError) as exc:
            self._lookup_error = f"could not look up task {task_id}: {exc}"
            return Original(task_id, audio_id)
        except Exception as exc:  # never a traceback in the form
            log.exception("looking up task %s failed", task_id)
            self._lookup_error = f"could not look up task {task_id}: {type(exc).__name__}: {exc}"
            return Original(task_id, audio_id)
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
                self._cache[key] = found
                return found
        ids = ", ".join(t.id for t in info.tracks) or f"none yet (status {info.status})"
        self._lookup_error = (
            f"audio_id: {audio_id} is not a track of task {task_id} (its tracks: {ids})"
        )
        self._lookup_fatal = True
        return Original(task_id, audio_id)

    def load_original(self) -> Original | None:
        """Look up the typed/picked original and reset the section slider to its length."""
        task_id, audio_id = self.task_id.value.strip(), self.audio_id.value.strip()
        if not task_id or not audio_id:
            self._original = None
            self._lookup_error, self._lookup_fatal = None, False
            self._update_original_view()
            self._revalidate()
            return None
        previous = self._original
        self._lookup_error, self._lookup_fatal = None, False
        original = self._resolve(task_id, audio_id)
        self._original = original
        if previous is None or (previous.task_id, previous.audio_id, previous.duration) != (
            original.task_id,
            original.audio_id,
            original.duration,
        ):
            self._reset_section(original.duration)
        self._update_original_view()
        self._revalidate()
        self._schedule_waveform(delay=0.0)
        return original

    def _reset_section(self, duration: float | None) -> None:
        top = float(duration) if duration else UNKNOWN_DURATION_MAX
        length = min(15.0, MAX_SECTION_S, top * MAX_SECTION_FRACTION)
        length = max(length, MIN_SECTION_S)
        start = round(max(0.0, min(top * 0.25, top - length)), 2)
        end = round(min(top, start + length), 2)
        with UPDATE_LOCK, self.section.hold_trait_notifications():
            self.section.min = 0.0
            self.section.max = round(top, 2)
            self.section.value = (start, end)
            self.section.disabled = False

    def _update_original_view(self) -> None:
        o = self._original
        if o is None:
            html = note(
                "Pick a known track, or type the original's <b>task id</b> and <b>audio id</b>.",
                kind="info",
            )
        else:
            where = {"frame": "from this receiver", "service": "looked up", "typed": "typed"}
            dur = fmt_clock(o.duration) if o.duration else "unknown length"
            html = (
                f"<div style='{BOX_STYLE}'>Original: <b>{esc(o.title or 'untitled')}</b> · "
                f"{esc(dur)} <span style='{MUTED}'>· {where.get(o.origin, '')}</span><br>"
                f"<span style='{MUTED} font-size: 12px;'>task <code>{esc(o.task_id)}</code> · "
                f"audio <code>{esc(o.audio_id)}</code></span></div>"
            )
            if self._lookup_error:
                kind = "error" if self._lookup_fatal else "warn"
                extra = (
                    ""
                    if self._lookup_fatal
                    else " The 50 % and end-of-track rules will be checked by the service."
                )
                html += note(esc(self._lookup_error) + esc(extra), kind=kind)
        set_traits(self.original_info, value=html)

    # --- section and waveform ---------------------------------------------------------------

    def _on_section(self, _change: dict[str, Any]) -> None:
        self._revalidate()
        self._schedule_waveform(delay=0.35)

    def _schedule_waveform(self, *, delay: float) -> None:
        if not self._show_waveform:
            return
        o = self._original
        if o is None or not o.audio_url:
            with UPDATE_LOCK:
                self.waveform.layout.display = "none"
            return
        url, section = o.audio_url, tuple(self.section.value)
        duration = o.duration

        def render() -> None:
            env = envelope_for(url, "original")
            if duration:
                env = Envelope(env.label, env.times, env.mins, env.maxs, float(duration), env.color)
            png = waveform_png([env], section=(section[0], section[1]), row_px=110)
            with UPDATE_LOCK:
                if self._original is None or self._original.audio_url != url:
                    return  # a newer original was picked meanwhile
                self.waveform.value = png
                self.waveform.layout.display = ""

        self._worker.submit(self._guarded(render), delay=delay)

    def _guarded(self, fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except Exception as exc:
                log.warning("waveform of the original unavailable: %s", exc)
                set_traits(
                    self.section_info,
                    value=self._section_html()
                    + note(esc(f"waveform unavailable: {exc}"), kind="warn"),
                )

        return run

    def _section_html(self) -> str:
        if self._original is None:
            return ""
        start, end = self.section.value
        dur = self._original.duration
        share = f" · {100 * (end - start) / dur:.0f} % of the original" if dur else ""
        return (
            f"<div style='{BOX_STYLE}'>Section <b>{fmt_clock(start)} → {fmt_clock(end)}</b> · "
            f"{end - start:.2f} s{share} <span style='{MUTED}'>(rules: {MIN_SECTION_S:g}–"
            f"{MAX_SECTION_S:g} s, at most 50 % of the original)</span></div>"
        )

    # --- validation ---------------------------------------------------------------------------

    def _check(self) -> str:
        """The first broken rule as ``field: message (limit)``, or "" when all pass."""
        try:
            _validate_text("task_id", self.task_id.value, required=True)
            _validate_text("audio_id", self.audio_id.value, required=True)
            if self._lookup_fatal and self._lookup_error:
                return self._lookup_error
            if self._original is None:
                return "task_id: load the original first (limit: a known track)"
            start, end = self.section.value
            validate_section(start, end, self._original.duration)
            _validate_text("prompt", self.prompt.value, required=True)
            _validate_text("tags", self.tags.value, required=True)
            _validate_text("title", self.title.value, required=True)
            _validate_text("negative_tags", self.negative_tags.value, required=False)
            _validate_text("full_lyrics", self.full_lyrics.value, required=False)
        except SectionValidationError as exc:
            return _reason(exc)
        return ""

    def _revalidate(self) -> bool:
        reason = self._check()
        self.reason = reason
        if reason:
            html = note("⚠ Not ready — " + esc(reason), kind="warn")
        else:
            html = note("✓ Ready to submit.", kind="ok")
        with UPDATE_LOCK:
            self.validation.value = html
            self.section_info.value = self._section_html()
            self.submit.disabled = bool(reason) or self._busy
        return not reason

    # --- submit -------------------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        assert self._original is not None
        start, end = self.section.value
        optional = {
            "negative_tags": self.negative_tags.value.strip() or None,
            "full_lyrics": self.full_lyrics.value.strip() or None,
        }
        return {
            "task_id": self.task_id.value.strip(),
            "audio_id": self.audio_id.value.strip(),
            "prompt": self.prompt.value,
            "tags": self.tags.value,
            "title": self.title.value,
            "infill_start_s": round(float(start), 2),
            "infill_end_s": round(float(end), 2),
            **optional,
        }

    def _on_submit(self, _button: Any = None) -> None:
        if self._busy:
            return
        if not self._revalidate():
            set_traits(self.status, value=note("Not sent — " + esc(self.reason), kind="error"))
            return
        params = self._params()
        fingerprint = tuple(sorted(params.items()))
        if (
            fingerprint == self._last_fp
            and time.monotonic() - self._last_done < DOUBLE_CLICK_GUARD_S
        ):
            log.info("ignored a second click on Submit with identical settings")
            return
        self._busy = True
        set_traits(self.submit, disabled=True, description="Submitting…")
        set_traits(self.status, value=note("Submitting…", kind="info"))
        try:
            job = self._client.replace_section(
                **params,
                callback_url=self._rx.url,
                original_duration=self._original.duration if self._original else None,
                receiver=self._rx,
            )
        except SectionValidationError as exc:
            html = note("Not sent — " + esc(_reason(exc)), kind="error")
        except ApiError as exc:
            code = f"code {exc.code}: " if exc.code is not None else ""
            html = note(f"The service refused — {esc(code + exc.message)}", kind="error")
        except NetworkError as exc:
            html = note(f"No answer from the service — {esc(str(exc))}", kind="error")
        except Exception as exc:  # never a traceback in the form
            log.exception("submit failed")
            html = note(f"Submit failed — {esc(type(exc).__name__)}: {esc(str(exc))}", kind="error")
        else:
            self.last_job = job
            self._last_fp = fingerprint
            html = note(
                f"✓ Submitted: task <code>{esc(job.task_id)}</code> · section "
                f"{fmt_clock(job.infill_start_s)} → {fmt_clock(job.infill_end_s)}. "
                "The tracker follows it; the callback lands in this receiver.",
                kind="ok",
            )
        finally:
            self._busy = False
            self._last_done = time.monotonic()
        set_traits(self.status, value=html)
        set_traits(self.submit, description="Submit")
        self._revalidate()


def submit_form(client: SunoClient, rx: Receiver, **kwargs: Any) -> SubmitForm:
    """A form to submit replace-section tasks with ``client``, callbacks to ``rx``.

    Keyword arguments go to :class:`SubmitForm` (``task_id=``, ``audio_id=`` preload an
    original; ``prompt=``, ``tags=``, ``title=``, ``section=(start, end)`` prefill).
    """
    return SubmitForm(client, rx, **kwargs)
