"""The submit form's original: finding it (store first, then the service) and its waveform.

A mixin of :class:`~suno_nb.widgets.submit.SubmitForm` (kept apart to keep modules small).
A lookup on the service and every waveform picture run as jobs on the receiver's dispatcher
thread; their answers are shown only if the user has not picked another original meanwhile,
and a lookup no longer wanted when its turn comes is not sent at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import UPDATE_LOCK, esc, log, note, set_traits
from ._original import Original, original_html, resolve_local, resolve_remote
from ._plot import Envelope, envelope_for, waveform_png

UNKNOWN_DURATION_MAX = 480.0  # slider range when the original's length is unknown


class SubmitOriginal:
    """The original's lookup, section range and waveform for :class:`SubmitForm` (which owns
    the widgets and state: ``_client``, ``_rx``, ``_original``, ``_looking``, ``_cache``,
    ``_lookup_error``/``_lookup_fatal``, ``_wanted_section``, ``_show_waveform``, its feed
    jobs ``_jobs`` and the ``_waveform`` redraw, and the fields) and :class:`SubmitChecks`
    (which provides ``_revalidate``, ``_limits`` and ``_section_html``)."""

    _client: Any
    _rx: Any
    _original: Original | None
    _looking: tuple[str, str] | None
    _lookup_error: str | None
    _lookup_fatal: bool
    _cache: dict[tuple[str, str], Original]
    _wanted_section: tuple[float, float] | None
    _show_waveform: bool
    _jobs: Any
    _waveform: Any
    task_id: Any
    audio_id: Any
    section: Any
    section_info: Any
    original_info: Any
    waveform: Any
    # provided by SubmitChecks (annotations only: nothing here shadows them in the MRO)
    _revalidate: Callable[[], bool]
    _limits: Callable[[], tuple[float, float | None, float]]
    _section_html: Callable[[], str]

    # --- the original ---------------------------------------------------------------------

    def load_original(self) -> Original | None:
        """Find the typed/picked original: at once from this receiver's store, else on the
        service from the dispatcher thread (:meth:`wait_idle` waits for it).  Returns what
        is known now."""
        ids = (self.task_id.value.strip(), self.audio_id.value.strip())
        self._lookup_error, self._lookup_fatal = None, False
        if not ids[0] or not ids[1]:
            self._looking = None
            self._apply_original(None)
            return None
        found = self._cache.get(ids) or resolve_local(self._rx.store, *ids)
        if found is not None:
            self._cache[ids] = found
            self._looking = None
            self._apply_original(found)
            return found
        self._looking = ids
        with UPDATE_LOCK:
            self.section.disabled = True
        self._update_original_view()
        self._revalidate()
        if not self._jobs.post(lambda: self._finish_lookup(ids)):
            self._looking = None  # the receiver is stopped: no lookup, say what we know
            self._apply_original(None)
        return self._original

    def _finish_lookup(self, ids: tuple[str, str]) -> None:
        """Dispatcher thread: ask the service, then show the answer if the ids still match."""
        if self._looking != ids:
            return  # other ids were typed before this lookup's turn came: not sent
        original, problem, fatal = resolve_remote(self._client, *ids)
        if self._looking != ids:
            return  # other ids were typed meanwhile
        if problem is None:
            self._cache[ids] = original
        self._looking = None
        self._lookup_error, self._lookup_fatal = problem, fatal
        self._apply_original(original)

    def _apply_original(self, original: Original | None) -> None:
        previous, self._original = self._original, original
        if original is not None and (
            previous is None
            or (previous.task_id, previous.audio_id, previous.duration)
            != (original.task_id, original.audio_id, original.duration)
        ):
            self._reset_section(original.duration)
        if original is not None:  # a lookup disabled it; the same original keeps its range
            with UPDATE_LOCK:
                self.section.disabled = False
        self._update_original_view()
        self._revalidate()
        self._schedule_waveform()

    def _reset_section(self, duration: float | None) -> None:
        shortest, longest, fraction = self._limits()
        top = float(duration) if duration else UNKNOWN_DURATION_MAX
        length = min(15.0, longest or 15.0, top * fraction)
        length = max(length, shortest)
        start = round(max(0.0, min(top * 0.25, top - length)), 2)
        end = round(min(top, start + length), 2)
        wanted, self._wanted_section = self._wanted_section, None
        with UPDATE_LOCK, self.section.hold_trait_notifications():
            self.section.min = 0.0
            self.section.max = round(top, 2)
            self.section.value = wanted if wanted is not None else (start, end)
            self.section.disabled = False

    def _update_original_view(self) -> None:
        html = original_html(self._original, self._looking, self._lookup_error, self._lookup_fatal)
        set_traits(self.original_info, value=html)

    # --- section and waveform ---------------------------------------------------------------

    def _on_section(self, _change: dict[str, Any]) -> None:
        self._revalidate()
        self._schedule_waveform()

    def _schedule_waveform(self) -> None:
        """Redraw the waveform soon (debounced: a dragged slider is drawn a few times a
        second, with the section as it is when the drawing starts)."""
        if not self._show_waveform:
            return
        o = self._original
        if o is None or not o.audio_url:
            with UPDATE_LOCK:
                self.waveform.layout.display = "none"
            return
        self._waveform.trigger()

    def _draw_waveform(self) -> None:
        """Dispatcher thread: the original's waveform with the section shaded."""
        o = self._original
        if o is None or not o.audio_url:
            return
        url, duration, section = o.audio_url, o.duration, tuple(self.section.value)
        try:
            env = envelope_for(url, "original")
        except Exception as exc:
            # said in the form, where the user looks; the log keeps it at INFO
            log.info("waveform of the original unavailable: %s", exc)
            problem = esc(f"The original's audio cannot be fetched, so no waveform: {exc}")
            set_traits(self.section_info, value=self._section_html() + note(problem, kind="warn"))
            return
        if duration:
            env = Envelope(env.label, env.times, env.mins, env.maxs, float(duration), env.color)
        png = waveform_png([env], section=(section[0], section[1]), row_px=110)
        with UPDATE_LOCK:
            if self._original is None or self._original.audio_url != url:
                return  # a newer original was picked meanwhile
            self.waveform.value = png
            self.waveform.layout.display = ""
