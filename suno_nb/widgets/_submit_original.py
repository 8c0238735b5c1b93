"""The submit form's original: finding it (store first, then the service) and its waveform.

A mixin of :class:`~suno_nb.widgets.submit.SubmitForm` (kept apart to keep modules small).
A lookup on the service and the waveform's peaks (fetched and decoded once per original)
run as jobs on the receiver's dispatcher thread; their answers are shown only if the user
has not picked another original meanwhile, and a lookup no longer wanted when its turn
comes is not sent at all.  The section itself is a region on that waveform, in the page
(:class:`~suno_nb.widgets._submit_picker.SectionPicker`): dragging it redraws nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import UPDATE_LOCK, log, set_traits
from ._lanes import _peaks
from ._original import Original, original_html, resolve_local, resolve_remote

UNKNOWN_DURATION_MAX = 480.0  # the waveform's span when the original's length is unknown


class SubmitOriginal:
    """The original's lookup, section range and waveform for :class:`SubmitForm` (which owns
    the widgets and state: ``_client``, ``_rx``, ``_original``, ``_looking``, ``_cache``,
    ``_lookup_error``/``_lookup_fatal``, ``_wanted_section``, ``_show_waveform``, its feed
    jobs ``_jobs``, and the fields; ``section`` is the
    :class:`~suno_nb.widgets._submit_picker.SectionPicker`), :class:`SubmitChecks` (which
    provides ``_revalidate`` and ``_limits``) and :class:`SubmitLines` (``_load_lines``)."""

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
    task_id: Any
    audio_id: Any
    section: Any
    original_info: Any
    # provided by SubmitChecks / SubmitLines (annotations only: nothing here shadows them)
    _revalidate: Callable[[], bool]
    _limits: Callable[[], tuple[float, float | None, float]]
    _load_lines: Callable[[], None]

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
        set_traits(self.section, disabled=True)
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
        changed = original is None or (
            previous is None
            or (previous.task_id, previous.audio_id, previous.duration)
            != (original.task_id, original.audio_id, original.duration)
        )
        if original is not None and changed:
            self._reset_section(original.duration)
        if changed:
            self._load_waveform()
            self._load_lines()
        set_traits(self.section, disabled=original is None)
        self._update_original_view()
        self._revalidate()

    def _reset_section(self, duration: float | None) -> None:
        shortest, longest, fraction = self._limits()
        top = float(duration) if duration else UNKNOWN_DURATION_MAX
        length = min(15.0, longest or 15.0, top * fraction)
        length = max(length, shortest)
        start = round(max(0.0, min(top * 0.25, top - length)), 2)
        end = round(min(top, start + length), 2)
        wanted, self._wanted_section = self._wanted_section, None
        a, b = wanted if wanted is not None else (start, end)
        set_traits(
            self.section,
            duration=round(top, 2),
            start=float(a),
            end=float(b),
            decimals=int(self._client.provider.section.decimals),
        )

    def _update_original_view(self) -> None:
        html = original_html(self._original, self._looking, self._lookup_error, self._lookup_fatal)
        set_traits(self.original_info, value=html)

    # --- the waveform (peaks, drawn in the page) ----------------------------------------------

    def _load_waveform(self) -> None:
        """Clear the waveform; fetch the new original's peaks on the dispatcher thread."""
        o = self._original
        if o is None or not o.audio_url or not self._show_waveform:
            gone = "" if o is None else "No waveform: this track has no audio URL."
            set_traits(self.section, peaks=[], message=gone if self._show_waveform else "")
            return
        set_traits(self.section, peaks=[], message="Loading the waveform…")
        url = o.audio_url
        self._jobs.post(lambda: self._fetch_peaks(url))

    def _fetch_peaks(self, url: str) -> None:
        """Dispatcher thread: the original's peaks (fetched into the audio cache, decoded once
        and cached beside it), shown if that original is still the one picked."""
        try:
            peaks, duration = _peaks(url)
        except Exception as exc:
            # said in the form, where the user looks; the log keeps it at INFO
            log.info("waveform of the original unavailable: %s", exc)
            message, peaks, duration = (
                f"The original's audio cannot be fetched, so no waveform: {exc}",
                [],
                None,
            )
        else:
            message = ""
        with UPDATE_LOCK:
            o = self._original
            if o is None or o.audio_url != url:
                return  # a newer original was picked meanwhile
            values: dict[str, Any] = {"peaks": peaks, "message": message}
            if not o.duration and duration:
                values["duration"] = round(float(duration), 2)  # the picture's own length
            set_traits(self.section, **values)
