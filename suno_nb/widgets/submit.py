"""The submit form: pick an original, drag the section on its waveform (or choose lines of
its lyrics), submit.

The waveform, the section (a region dragged or resized on it, start/end fields) and the
song's lines are one anywidget, :class:`~suno_nb.widgets._submit_picker.SectionPicker`
(``form.section``); the rest are ipywidgets.  Lines chosen send ``client.replace_lines``,
otherwise ``client.replace_section``.  Validation is live and uses the client's provider
rules (``client.provider.section``), all section checks through
:meth:`SubmitForm.check_section`: while any rule is broken the Submit button is disabled (and
looks it) and the reason (field and limit) is shown.  Service errors are shown in
the form, never as tracebacks.  The form starts no thread: every network call (looking an
original up, fetching its audio for the waveform, the submit itself) runs as a job on the
receiver's dispatcher thread (``rx.feed``), never on the kernel's thread, and the Known
track list follows the feed (``rx.subscribe``), debounced.  A click queued behind a running
cell says so on the page and is never sent twice.  The Known track list holds this
session's tracks; "history" adds earlier ones.  Re-running the cell closes the previous form
of the same receiver with every model it made; one made in another cell says it was
replaced.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ._button import QueuedButton
from ._common import (
    BOX_STYLE,
    MUTED,
    UPDATE_LOCK,
    QuietMixin,
    close_tree,
    current_cell_id,
    free_slot,
    history_toggle,
    log,
    note,
    take_slot,
)
from ._feed import FeedJobs
from ._original import (
    PLACEHOLDER,
    Original,
    TrackCache,
    known_options,
)
from ._submit_checks import OPTIONAL, SubmitChecks
from ._submit_lines import SubmitLines
from ._submit_original import SubmitOriginal
from ._submit_picker import SectionPicker

if TYPE_CHECKING:
    from ..client import SunoClient
    from ..events import Change
    from ..session import Receiver

__all__ = ["Original", "SubmitForm", "submit_form"]

_DESC = {"description_width": "110px"}
_WRAP = {"flex_flow": "row wrap"}  # side by side, one under the other when narrow
KNOWN_S = 0.1  # the Known track list is re-read at most this often while results land
REPLACED = (
    "This form was replaced by a newer form of the same receiver (in another cell). "
    "Re-run this cell to use it here."
)


def _field(
    kind: Any,
    description: str,
    value: str,
    placeholder: str,
    height: str | None = None,
    *,
    width: str | None = None,
    ids: bool = False,
) -> Any:
    """A labelled text field: half width, or full width with ``height`` (a text area)."""
    layout = widgets.Layout(
        width=width or ("98%" if height else "49%"), min_width="260px", height=height
    )
    extra = {"continuous_update": False} if ids else {}  # look ids up once typed, not per key
    return kind(
        value=value,
        description=description,
        placeholder=placeholder,
        style=_DESC,
        layout=layout,
        **extra,
    )


def _options(client: SunoClient) -> dict[str, Any]:
    """The "more" settings the provider documents, by ``replace_section`` keyword; each
    starts unset ("default": the service decides)."""
    default = ("default", None)

    def small() -> dict[str, Any]:
        return {"style": _DESC, "layout": widgets.Layout(width="32%", min_width="220px")}

    def weight(label: str) -> Any:
        return widgets.Text(value="", description=label, placeholder="0–1, e.g. 0.5", **small())

    makers = {
        "vocal_gender": lambda: widgets.Dropdown(
            options=[default, ("male", "m"), ("female", "f")],
            value=None,
            description="Vocal gender",
            **small(),
        ),
        "style_weight": lambda: weight("Style weight"),
        "weirdness_constraint": lambda: weight("Weirdness"),
        "audio_weight": lambda: weight("Audio weight"),
        "variety": lambda: widgets.Dropdown(
            options=[default, *((str(n), n) for n in range(5))],
            value=None,
            description="Variety",
            **small(),
        ),
    }
    documented = getattr(client.provider, "fields", {})
    return {field: makers[field]() for field in OPTIONAL if field in documented}


class SubmitForm(SubmitOriginal, SubmitLines, SubmitChecks, QuietMixin, widgets.VBox):
    """A form that submits a replace-section task through ``client`` with ``rx`` as receiver.

    Attributes tests and power users may drive: ``known`` (Dropdown of known tracks),
    ``history`` (ToggleButton: also earlier sessions' tracks), ``task_id`` / ``audio_id``
    (Text), ``section`` (the :class:`SectionPicker`: ``value`` is ``(start, end)`` in
    seconds, ``selected`` the chosen lines, ``new_lyrics`` their replacement), ``prompt``,
    ``tags``, ``title``, ``negative_tags``, ``full_lyrics`` (required unless lines are
    chosen), ``options`` (the "more" settings by keyword: ``vocal_gender``,
    ``style_weight``, ``weirdness_constraint``, ``audio_weight``, ``variety``; passed only
    when set), ``submit`` (a button with ``click()``), ``status`` (HTML).  ``reason`` is the
    current validation failure (or "") and ``last_job`` the last
    :class:`~suno_nb.client.ReplaceJob` submitted.  ``words=`` gives the song's timed words
    (:func:`suno_nb.lyrics.words_frame`) instead of asking the service.  Work done on the
    receiver's dispatcher thread (lookup, waveform peaks, lyrics, submit, the Known list)
    can be awaited with :meth:`wait_idle`.
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
        full_lyrics: str = "",
        section: tuple[float, float] | None = None,
        show_waveform: bool = True,
        history: bool = False,
        words: Any = None,
    ) -> None:
        self._client = client
        self._rx = rx
        self._original: Original | None = None
        self._looking: tuple[str, str] | None = None
        self._lookup_error: str | None = None
        self._lookup_fatal = False
        self._cache: dict[tuple[str, str], Original] = {}
        self._tracks = TrackCache()
        self._wanted_section = section
        self._busy = False
        self._last_fp: tuple[Any, ...] | None = None
        self._show_waveform = show_waveform
        self._given_words = words
        self._words: Any = None
        self._plan_cache: tuple[Any, Any] | None = None
        self._prefill = ""
        self._jobs = FeedJobs(rx.feed, "submit form")  # lookup, peaks, submit: one-off jobs
        self._lister = self._jobs.debounced(self.refresh_known, KNOWN_S)
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
            layout=widgets.Layout(width="70%"),
        )
        self.refresh_button = widgets.Button(
            description="",
            icon="refresh",
            tooltip="reload known tracks",
            layout=widgets.Layout(width="40px"),
        )
        self.history = history_toggle(history, "offer tracks")
        self.task_id = _field(
            widgets.Text, "Task id", task_id or "", "parent task id of the original", ids=True
        )
        self.audio_id = _field(
            widgets.Text, "Audio id", audio_id or "", "id of the track to change", ids=True
        )
        self.original_info = widgets.HTML()
        self.section = SectionPicker()
        self.prompt = _field(
            widgets.Textarea, "Prompt", prompt, "lyrics or description of the new section", "70px"
        )
        self.tags = _field(widgets.Text, "Tags", tags, "style tags, e.g. jazz, brass")
        self.title = _field(widgets.Text, "Title", title, "title of the result")
        self.negative_tags = _field(
            widgets.Text, "Negative tags", "", "optional: styles to avoid", width="98%"
        )
        self.full_lyrics = _field(
            widgets.Textarea,
            "Full lyrics",
            full_lyrics,
            "required: the complete lyrics of the song with the new section in place",
            "60px",
        )
        self.options = _options(client)
        self.more = widgets.Accordion(
            children=[widgets.HBox(list(self.options.values()), layout=_WRAP)],
            titles=("More: voice, weights, variety (optional; the service's defaults otherwise)",),
            selected_index=None,
        )
        self.validation = widgets.HTML()
        self.submit = QueuedButton(
            description="Submit",
            disabled=True,
            tooltip="send the replace-section request (spends credits)",
        )
        self.status = widgets.HTML()

        self._parts: list[Any] = [
            self.header,
            widgets.HBox([self.known, self.refresh_button, self.history], layout=_WRAP),
            widgets.HBox([self.task_id, self.audio_id], layout=_WRAP),
            self.original_info,
            self.section,
            self.prompt,
            widgets.HBox([self.tags, self.title], layout=_WRAP),
            self.negative_tags,
            self.full_lyrics,
            self.more,
            self.validation,
            self.submit,
            self.status,
        ]
        super().__init__(children=self._parts, layout=widgets.Layout(max_width="1100px"))

        self.known.observe(self._on_known, names="value")
        self.refresh_button.on_click(lambda _b: self.refresh_known())
        self.history.observe(lambda _c: self.refresh_known(), names="value")
        self.task_id.observe(self._on_ids, names="value")
        self.audio_id.observe(self._on_ids, names="value")
        self.section.observe(self._on_region, names=["start", "end"])
        self.section.observe(self._on_selected, names="selected")
        self.section.observe(self._on_new_lyrics, names="new_lyrics")
        for w in (self.prompt, self.tags, self.title, self.negative_tags, self.full_lyrics):
            w.observe(lambda _c: self._revalidate(), names="value")
        for w in self.options.values():
            w.observe(lambda _c: self._revalidate(), names="value")
        self.submit.on_click(self._on_submit)
        take_slot("submit_form", rx, self, current_cell_id())
        rx.subscribe(self._on_changes)

        self.refresh_known()
        if task_id and audio_id:
            self.load_original()
        else:
            self._update_original_view()
        self._revalidate()

    # --- display ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return "SubmitForm(replace a section)"

    def _stop(self) -> None:
        """Stop following the receiver; cancel what has not started (a submit under way
        finishes)."""
        self._rx.unsubscribe(self._on_changes)
        self._jobs.close()

    def close(self) -> None:
        """Stop listening to the receiver and close the form with every model it made."""
        if self.comm is None and getattr(self, "_finished", False):
            return  # closed already (ipywidgets closes again when the object is collected)
        self._finished = True
        if getattr(self, "_jobs", None) is not None:  # not when __init__ failed early
            self._stop()
            free_slot("submit_form", self._rx, self)
        close_tree(self)

    def retire(self) -> None:
        """A newer form (in another cell) replaced this one: stop, close every model but
        the status line, which says so (it stays in this cell's output)."""
        self._stop()
        with UPDATE_LOCK:
            self.status.value = note(REPLACED, kind="info")
            dropped = [c for c in self._parts if c is not self.status]
            self.children = (self.status,)
        for child in dropped:
            close_tree(child)

    @property
    def original(self) -> Original | None:
        """The loaded original (ids, duration, audio URL), or None."""
        return self._original

    @property
    def valid(self) -> bool:
        return not self.reason

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until lookups, waveform peaks, lyrics, the Known list and a submit in progress
        are done (not from a feed handler)."""
        return self._jobs.wait_idle(timeout)

    # --- known tracks (this session's, by key) -----------------------------------------------

    def refresh_known(self) -> None:
        """Reload the Known track list from the receiver (keeps the current choice)."""
        with self._known_lock:
            try:
                rows = self._rx.session_tasks(history=self.history.value)
                options = known_options(self._rx.store, rows, self._tracks)
            except Exception as exc:  # a stopped receiver: keep what we have
                log.debug("known tracks unavailable: %s", exc)
                return
            with UPDATE_LOCK:
                if tuple(options) == tuple(self.known.options):
                    return
                current = self.known.value
                with self._quietly():
                    self.known.options = options
                    values = [v for _, v in options]
                    self.known.value = current if current in values else ""

    def _on_changes(self, changes: list[Change]) -> None:
        # dispatcher thread: results and submissions change the list (re-read, debounced)
        if any(c.kind in ("callback", "submission") for c in changes):
            self._lister.trigger()

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


def submit_form(client: SunoClient, rx: Receiver, **kwargs: Any) -> SubmitForm:
    """A form to submit replace-section tasks with ``client``, callbacks to ``rx``.

    Keyword arguments go to :class:`SubmitForm` (``task_id=``, ``audio_id=`` preload an
    original; ``prompt=``, ``tags=``, ``title=``, ``full_lyrics=``, ``section=(start, end)``
    prefill; ``history=True`` offers earlier sessions' tracks).  Re-running the cell closes
    the previous form of ``rx``.
    """
    return SubmitForm(client, rx, **kwargs)
