"""The submit form's lyrics pane: the song's lines, chosen to set the section.

A mixin of :class:`~suno_nb.widgets.submit.SubmitForm` (kept apart to keep modules small).
The lines come from the original's timestamped lyrics (``client.timestamped_lyrics``, a
network call: a job on the receiver's dispatcher thread) or from a words frame given to the
form (``words=``), through :func:`suno_nb.lyrics.lines_frame`.  Lines chosen in the page
(``section.selected``) are planned with :func:`suno_nb.lyrics.plan_lines` (the provider's
rules widen a too-short span) and the region follows; a region dragged or typed by hand
drops the choice and only highlights the lines it covers (``section.covered``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import UPDATE_LOCK, fmt_clock, log, set_traits, text
from ._submit_picker import covered_lines

__all__ = ["SubmitLines"]


def _seconds(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if f == f else None  # NaN: unknown


class SubmitLines:
    """Lines of the song for :class:`SubmitForm` (which owns ``_client``, ``_original``,
    ``_jobs``, ``_words``, ``_given_words``, ``_plan_cache``, ``section``, ``full_lyrics``;
    ``_revalidate`` and ``_quietly`` come from its other bases)."""

    _client: Any
    _original: Any
    _jobs: Any
    _words: Any
    _given_words: Any
    _plan_cache: tuple[Any, Any] | None
    _prefill: str
    section: Any
    full_lyrics: Any
    _revalidate: Callable[[], bool]
    _quietly: Callable[[], Any]
    _is_quiet: Callable[[], bool]

    def _load_lines(self) -> None:
        """A new original: its lines (given, or fetched on the dispatcher thread)."""
        self._set_words(None)
        o = self._original
        if o is None:
            return
        if self._given_words is not None:
            self._set_words(self._given_words)
            return
        fetch = getattr(self._client, "timestamped_lyrics", None)
        if fetch is None:
            return
        ids = (o.task_id, o.audio_id)
        self._jobs.post(lambda: self._fetch_words(fetch, ids))

    def _fetch_words(self, fetch: Callable[..., Any], ids: tuple[str, str]) -> None:
        """Dispatcher thread: the original's timestamped lyrics, if it is still the one."""
        try:
            words = fetch(task_id=ids[0], audio_id=ids[1])
        except Exception as exc:  # no lines is fine: the waveform alone still works
            log.info("timed lyrics of the original unavailable: %s", exc)
            return
        o = self._original
        if o is not None and (o.task_id, o.audio_id) == ids:
            self._set_words(words)
            self._revalidate()

    def _set_words(self, words: Any) -> None:
        self._words, self._plan_cache, self._prefill = words, None, ""
        rows: list[dict[str, Any]] = []
        if words is not None and len(words):
            from .. import lyrics

            frame = lyrics.lines_frame(words)
            for r in frame.to_dict("records"):
                rows.append(
                    {
                        "line": int(r["line"]),
                        "section": text(r.get("section")),
                        "text": text(r.get("text")),
                        "start_s": _seconds(r.get("start_s")),
                        "end_s": _seconds(r.get("end_s")),
                    }
                )
        start, end = self.section.value
        with self._quietly():
            set_traits(
                self.section,
                lines=rows,
                selected=[],
                covered=covered_lines(rows, start, end),
                new_lyrics="",
                plan="",
            )

    def _song_lyrics_known(self) -> bool:
        """True when the timed words brought the song's lyrics (``attrs["lyrics"]``)."""
        return self._words is not None and bool(self._words.attrs.get("lyrics"))

    def _chosen_lines(self) -> list[int]:
        """The line numbers (``line`` of :func:`~suno_nb.lyrics.lines_frame`) chosen."""
        lines = self.section.lines
        return [lines[i]["line"] for i in self.section.selected if 0 <= i < len(lines)]

    def _line_plan(self, *, compose: bool = True) -> Any:
        """The :class:`~suno_nb.lyrics.LinePlan` of the chosen lines (cached per input);
        raises :class:`~suno_nb.errors.SectionValidationError` when no valid range exists.

        With ``compose`` it also holds the full lyrics with the chosen lines replaced: the
        song's own lyrics (from its timed words), or the form's Full lyrics where those are
        not known."""
        from .. import lyrics
        from ..errors import SectionValidationError

        duration = self._original.duration if self._original is not None else None
        chosen = self._chosen_lines()
        known = self._song_lyrics_known()
        new = (self.section.new_lyrics or None) if compose else None
        full = None if known or not compose else (self.full_lyrics.value or None)
        key = (tuple(chosen), new, full, duration)
        if self._plan_cache is not None and self._plan_cache[0] == key:
            return self._plan_cache[1]
        plan = lyrics.plan_lines(
            self._words,
            chosen,
            duration=duration or 0.0,
            provider=self._client.provider,
            new_lyrics=new,
            full_lyrics=full,
        )
        if new is not None and not plan.full_lyrics:
            raise SectionValidationError(
                "full_lyrics",
                "is required: the song's lyrics are not known from its timed words; type "
                "them (the chosen lines are replaced in them)",
                limit="non-empty",
            )
        self._plan_cache = (key, plan)
        return plan

    # --- the page's choices (kernel thread) ----------------------------------------------------

    def _on_selected(self, change: dict[str, Any]) -> None:
        if self._is_quiet():
            return
        lines = self.section.lines
        chosen = [lines[i] for i in change["new"] if 0 <= i < len(lines)]
        if chosen:
            old = self.section.new_lyrics
            prefill = "\n".join(line["text"] for line in chosen)
            if not old.strip() or old == self._prefill:  # not words the user typed
                self._prefill = prefill
                with self._quietly():
                    set_traits(self.section, new_lyrics=prefill)
            self._follow_plan()
        else:
            set_traits(self.section, plan="")
        self._revalidate()

    def _follow_plan(self) -> None:
        """Move the region to the chosen lines' planned range and say how it was found."""
        from ..errors import SectionValidationError

        try:
            plan = self._line_plan(compose=False)  # where: the lines' times alone
        except SectionValidationError as exc:
            set_traits(self.section, plan=f"These lines cannot be replaced: {exc}")
            return
        first, last = plan.lines[0], plan.lines[-1]
        which = f"Line {first}" if first == last else f"Lines {first}–{last}"
        said = (
            f"{which}: sung {fmt_clock(plan.span_start_s)} → {fmt_clock(plan.span_end_s)}; "
            f"section {fmt_clock(plan.start_s)} → {fmt_clock(plan.end_s)} "
            f"({plan.end_s - plan.start_s:.2f} s)"
        )
        if plan.widened:
            said += f" — {plan.widened}"
        with UPDATE_LOCK, self._quietly():
            set_traits(self.section, start=float(plan.start_s), end=float(plan.end_s), plan=said)
            self.section.covered = covered_lines(self.section.lines, plan.start_s, plan.end_s)

    def _on_new_lyrics(self, _change: dict[str, Any]) -> None:
        if not self._is_quiet() and self.section.selected:
            self._follow_plan()
        self._revalidate()

    def _on_region(self, _change: dict[str, Any]) -> None:
        """The region moved: by the page (a drag, typed times: the lines are no longer the
        choice) or by the form itself (a plan, a new original)."""
        start, end = self.section.value
        with UPDATE_LOCK:
            self.section.covered = covered_lines(self.section.lines, start, end)
        if not self._is_quiet() and self.section.selected:
            with self._quietly():
                set_traits(self.section, selected=[], plan="")
        self._revalidate()
