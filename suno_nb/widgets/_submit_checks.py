"""The submit form's checks and its submit: live validation and sending, never twice.

A mixin of :class:`~suno_nb.widgets.submit.SubmitForm` (kept apart to keep modules small).
Every section check goes through :meth:`SubmitChecks.check_section`, which applies the
client's provider rules (``client.provider.section``; text limits from the same provider).
The submit request runs as a job on the receiver's dispatcher thread; a click while one is
under way, or a second click with exactly the settings already submitted, sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ApiError, NetworkError, SectionValidationError
from ..rules import check_options, validate_section, validate_text
from ._common import UPDATE_LOCK, esc, fmt_clock, log, note, set_traits

NOT_RUNNING = (
    "Not sent — the receiver is stopped, so no callback could land. Start it again "
    "(<code>snb.start_receiver()</code>) and re-run this cell."
)


def _reason(exc: SectionValidationError) -> str:
    """``field: message (limit: x)`` — what the user must change and to what."""
    limit = exc.limit
    if limit is None or isinstance(limit, (list, tuple)):
        return str(exc)
    shown = f"{limit:g} s" if isinstance(limit, float) else str(limit)
    return f"{exc} (limit: {shown})"


#: the "more" settings, by ``replace_section`` keyword (sent only when set).  No ``model``:
#: the form names the original by task_id + audio_id, where the contract refuses a model
#: (it goes with upload_url only: ``rules.replace_mode``).
OPTIONAL = (
    "vocal_gender",
    "style_weight",
    "weirdness_constraint",
    "audio_weight",
    "variety",
)
WEIGHTS = ("style_weight", "weirdness_constraint", "audio_weight")  # typed as text


class SubmitChecks:
    """Validation and submit for :class:`SubmitForm` (which owns the widgets and state:
    ``_client``, ``_rx``, ``_original``, ``_looking``, ``_lookup_error``/``_lookup_fatal``,
    ``_busy``, ``_last_fp``, ``_jobs``, ``reason``, ``last_job``, and the fields) and
    :class:`SubmitLines` (``_line_plan``, ``_chosen_lines``)."""

    _client: Any
    _rx: Any
    _original: Any
    _looking: tuple[str, str] | None
    _lookup_error: str | None
    _lookup_fatal: bool
    _busy: bool
    _last_fp: tuple[Any, ...] | None
    _jobs: Any
    reason: str
    last_job: Any
    task_id: Any
    audio_id: Any
    section: Any
    prompt: Any
    tags: Any
    title: Any
    negative_tags: Any
    full_lyrics: Any
    options: dict[str, Any]
    validation: Any
    submit: Any
    status: Any
    _given_words: Any
    _line_plan: Callable[[], Any]
    _chosen_lines: Callable[[], list[int]]
    _song_lyrics_known: Callable[[], bool]

    def _limits(self) -> tuple[float, float | None, float]:
        """(shortest, longest or None, largest fraction of the original) of the section."""
        rules = self._section_rules()
        return rules.min_s, rules.max_s, rules.max_fraction

    def _section_text(self) -> str:
        """The section in one line: times, length, share of the original, the rules."""
        if self._original is None:
            return ""
        start, end = self.section.value
        dur = self._original.duration
        shortest, longest, fraction = self._limits()
        share = f" · {100 * (end - start) / dur:.0f} % of the original" if dur else ""
        span = f"{shortest:g}–{longest:g} s" if longest else f"at least {shortest:g} s"
        return (
            f"Section {fmt_clock(start)} → {fmt_clock(end)} · {end - start:.2f} s{share} "
            f"(rules: {span}, at most {100 * fraction:g} % of the original)"
        )

    # --- validation ---------------------------------------------------------------------------

    def _section_rules(self) -> Any:
        """The client's provider's section rules (a :class:`~suno_nb.contract.SectionRules`)."""
        return self._client.provider.section

    def check_section(self, start: float, end: float, duration: float | None) -> None:
        """Check a section: the ONE place the form applies section rules (raises
        :class:`~suno_nb.errors.SectionValidationError` naming the field and limit)."""
        validate_section(start, end, duration, section=self._section_rules())

    def _validate_text(self, field: str, value: str, *, required: bool) -> None:
        validate_text(field, value, required=required, provider=self._client.provider)

    def _options(self) -> dict[str, Any]:
        """The optional settings the user set ("more"), as ``replace_section`` keywords,
        checked against the provider's field specs (``rules.check_options``: the error names
        the field and its limit); only those set, so the service's defaults apply to the
        rest."""
        provider = self._client.provider
        values: dict[str, Any] = {}
        for field, widget in self.options.items():
            value = widget.value
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if field in WEIGHTS:
                try:
                    value = float(value)
                except ValueError:
                    value = value.strip()  # refused below, naming the field and the limit
            values[field] = value
        return check_options(provider, **values)

    def _check(self) -> tuple[str, str]:
        """``(reason, section_reason)``: the first broken rule as ``field: message (limit)``
        ("" when all pass), and the one of the section alone (shown on the waveform)."""
        section_reason = ""
        try:
            self._validate_text("task_id", self.task_id.value, required=True)
            self._validate_text("audio_id", self.audio_id.value, required=True)
            if self._looking is not None:
                return "task_id: looking up the original on the service… (limit: its answer)", ""
            if self._lookup_fatal and self._lookup_error:
                return self._lookup_error, ""
            if self._original is None:
                return "task_id: load the original first (limit: a known track)", ""
            lines = self._chosen_lines()
            try:
                if lines:
                    self._line_plan()  # the chosen lines, widened to the rules
                    validate_text(  # their replacement (sent as the prompt by default)
                        "new_lyrics",
                        self.section.new_lyrics,
                        required=True,
                        provider=self._client.provider,
                        limit_key="prompt",
                    )
                else:
                    start, end = self.section.value
                    self.check_section(start, end, self._original.duration)
            except SectionValidationError as exc:
                section_reason = _reason(exc)
                raise
            # with lines chosen the prompt and full lyrics come from them (and may be given)
            self._validate_text("prompt", self.prompt.value, required=not lines)
            self._validate_text("tags", self.tags.value, required=True)
            self._validate_text("title", self.title.value, required=True)
            self._validate_text("negative_tags", self.negative_tags.value, required=False)
            self._validate_text("full_lyrics", self.full_lyrics.value, required=not lines)
            self._options()
        except SectionValidationError as exc:
            return _reason(exc), section_reason
        return "", ""

    def _revalidate(self) -> bool:
        reason, section_reason = self._check()
        self.reason = reason
        if reason:
            html = note("⚠ Not ready — " + esc(reason), kind="warn")
        else:
            html = note("✓ Ready to submit.", kind="ok")
        with UPDATE_LOCK:
            self.validation.value = html
            set_traits(
                self.section, info=self._section_text(), checks=section_reason, ready=not reason
            )
            self.submit.disabled = bool(reason) or self._busy
        return not reason

    # --- submit -------------------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        """The request's arguments: ``replace_lines`` ones when lines are chosen (marked by
        ``lines``), else ``replace_section`` ones; the "more" options only when set."""
        assert self._original is not None
        ids = {"task_id": self.task_id.value.strip(), "audio_id": self.audio_id.value.strip()}
        common = {
            **ids,
            "tags": self.tags.value,
            "title": self.title.value,
            **self._options(),
        }
        if self.negative_tags.value.strip():
            common["negative_tags"] = self.negative_tags.value.strip()
        lines = self._chosen_lines()
        if lines:
            plan = self._line_plan()
            return {
                **common,
                # the song's lyrics, in which the lines are replaced: typed only where the
                # timed words did not bring them
                "full_lyrics": None if self._song_lyrics_known() else self.full_lyrics.value,
                "lines": tuple(int(n) for n in plan.lines),
                "new_lyrics": self.section.new_lyrics,
                "prompt": self.prompt.value.strip() or None,
            }
        start, end = self.section.value
        nd = self._section_rules().decimals
        return {
            **common,
            "prompt": self.prompt.value,
            "infill_start_s": round(float(start), nd),
            "infill_end_s": round(float(end), nd),
            "full_lyrics": self.full_lyrics.value,
        }

    def _on_submit(self, _button: Any = None) -> None:
        """Kernel thread (a click): check, then send from the dispatcher thread; never
        twice."""
        if self._busy:
            return  # a click while the previous one is being sent
        if not self._revalidate():
            set_traits(self.status, value=note("Not sent — " + esc(self.reason), kind="error"))
            return
        params = self._params()
        fingerprint = tuple(sorted(params.items()))
        if fingerprint == self._last_fp and self.last_job is not None:
            log.info("ignored a second click on Submit with identical settings")
            set_traits(
                self.status,
                value=note(
                    f"Not sent again: these exact settings were already submitted as task "
                    f"<code>{esc(self.last_job.task_id)}</code>. Change something to submit "
                    "another (each submit spends credits).",
                    kind="warn",
                ),
            )
            return
        self._busy = True
        set_traits(self.submit, disabled=True, description="Submitting…")
        set_traits(self.status, value=note("Submitting…", kind="info"))
        duration = self._original.duration if self._original else None
        if not self._jobs.post(lambda: self._send(params, fingerprint, duration)):
            self._busy = False
            set_traits(self.submit, description="Submit")
            set_traits(self.status, value=note(NOT_RUNNING, kind="error"))
            self._revalidate()

    def _send_lines(self, sent: dict[str, Any], duration: Any) -> Any:
        """The chosen lines: ``client.replace_lines`` (which plans them again from the
        service's timed words: the same plan as shown); with words given to the form, the
        request made here from the plan shown (its seconds, the full lyrics with the lines
        replaced, the new lines as the prompt when none is given)."""
        if self._given_words is None:
            return self._client.replace_lines(**sent, original_duration=duration)
        plan = self._line_plan()
        rest = {k: v for k, v in sent.items() if k not in ("lines", "new_lyrics", "full_lyrics")}
        return self._client.replace_section(
            **{**rest, "prompt": sent.get("prompt") or sent["new_lyrics"]},
            infill_start_s=plan.start_s,
            infill_end_s=plan.end_s,
            full_lyrics=plan.full_lyrics,
            original_duration=duration,
        )

    def _send(self, params: dict[str, Any], fingerprint: tuple[Any, ...], duration: Any) -> None:
        """Dispatcher thread: the request itself, then its outcome in the form."""
        try:
            sent = {**params, "callback_url": self._rx.url, "receiver": self._rx}
            if "lines" in params:
                job = self._send_lines(sent, duration)
            else:
                job = self._client.replace_section(**sent, original_duration=duration)
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
        set_traits(self.status, value=html)
        set_traits(self.submit, description="Submit")
        self._revalidate()
