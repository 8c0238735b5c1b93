"""The submit form's section picker: the original's waveform with the section as a draggable
region, start/end fields, the song's lines beside it, and the live rule checks (anywidget).

The browser code is ``static/submit.js`` (+ ``submit.css``); it draws with the audition's
vendored wavesurfer.js + regions plugin, sent by the kernel when a view asks (as the
audition does: nothing from a CDN, nothing big in the saved state).  The waveform is drawn
from peaks computed in Python (``peaks``, 0..255), so the browser never fetches the audio:
no CORS question, and it works on remote kernels.  Everything between Python and the page
is a synced trait: the page sets ``start``/``end`` (a dragged region, typed fields),
``selected`` (lines clicked) and ``new_lyrics`` (the replacement typed); the form answers
with ``covered`` (lines under the region), ``plan`` (the chosen lines' range), ``info``,
``checks`` (the broken rule: field and limit) and ``ready``.
"""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets

from ._common import log
from .audition import STATIC, _libraries, esm


class SectionPicker(anywidget.AnyWidget):
    """Waveform + draggable section + lines of the song (see the module docstring).

    ``value`` is ``(start, end)`` in seconds, as on a range slider; setting it moves the
    region in the page.
    """

    _esm = esm("submit.js")
    _css = STATIC / "submit.css"

    peaks: traitlets.List[int] = traitlets.List(traitlets.Int()).tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    start = traitlets.Float(0.0).tag(sync=True)
    end = traitlets.Float(0.0).tag(sync=True)
    decimals = traitlets.Int(2).tag(sync=True)  # the provider's rounding of section times
    disabled = traitlets.Bool(True).tag(sync=True)  # no original yet: nothing to drag
    message = traitlets.Unicode("").tag(sync=True)  # about the waveform (loading, missing)
    lines: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    selected: traitlets.List[int] = traitlets.List(traitlets.Int()).tag(sync=True)
    covered: traitlets.List[int] = traitlets.List(traitlets.Int()).tag(sync=True)
    new_lyrics = traitlets.Unicode("").tag(sync=True)
    plan = traitlets.Unicode("").tag(sync=True)  # the chosen lines' range, widened or not
    info = traitlets.Unicode("").tag(sync=True)  # the section: times, length, share, rules
    checks = traitlets.Unicode("").tag(sync=True)  # the first broken rule, or ""
    ready = traitlets.Bool(False).tag(sync=True)  # every rule of the form holds

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_msg)

    def __repr__(self) -> str:
        return "SectionPicker()"

    @property
    def value(self) -> tuple[float, float]:
        """The section ``(start, end)`` in seconds."""
        return (self.start, self.end)

    @value.setter
    def value(self, section: tuple[float, float]) -> None:
        start, end = section
        with self.hold_trait_notifications():
            self.start, self.end = float(start), float(end)

    def _on_msg(self, _widget: Any, content: Any, _buffers: list[Any]) -> None:
        # the page asks for the player code once (the audition's vendored wavesurfer.js)
        if isinstance(content, dict) and content.get("type") == "libs":
            try:
                self.send({"type": "libs"}, buffers=_libraries())
            except Exception as exc:  # a message from the page must never kill the widget
                log.warning("submit form: libs not sent: %s", exc)


def covered_lines(lines: list[dict[str, Any]], start: float, end: float) -> list[int]:
    """Indexes of ``lines`` (dicts with ``start_s``/``end_s``) that overlap ``start``-``end``."""
    out = []
    for i, line in enumerate(lines):
        a, b = line.get("start_s"), line.get("end_s")
        if a is None or b is None:
            continue
        if float(a) < end and float(b) > start:
            out.append(i)
    return out
