"""A button that says when its click is queued behind a running cell.

Jupyter handles widget messages only between cells: a click while the kernel runs another
cell waits, then fires when that cell ends (ipywidgets#3468).  For a button that spends
credits that silence is a surprise, so this one acknowledges every click from the kernel
(``acked``): when no acknowledgement came after ``queued_after_ms``, the page itself shows
``queued_text`` next to the button, and the button stays disabled until the kernel has
handled the click, so a queued click cannot be doubled by an impatient second one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
import traitlets

from ._common import UPDATE_LOCK

QUEUED_TEXT = "queued — runs when the current cell finishes"

_ESM = """
function render({ model, el }) {
  const button = document.createElement("button");
  button.className = "jupyter-button widget-button mod-primary suno-nb-submit";
  const queued = document.createElement("span");
  queued.className = "suno-nb-queued";
  queued.style.cssText =
    "margin-left: 8px; color: var(--jp-warn-color1, #f57c00); font-size: 13px;";
  let timer = null;
  const waiting = () => model.get("clicks") > model.get("acked");
  const draw = () => {
    button.textContent = model.get("description");
    button.title = model.get("tooltip");
    button.disabled = model.get("disabled") || waiting();
    button.setAttribute("aria-disabled", button.disabled ? "true" : "false");
    if (!waiting()) {
      clearTimeout(timer);
      timer = null;
      queued.textContent = "";
    }
  };
  button.addEventListener("click", () => {
    if (button.disabled) return;
    model.set("clicks", model.get("clicks") + 1);
    model.save_changes();
    draw();
    clearTimeout(timer);
    timer = setTimeout(() => {
      if (waiting()) queued.textContent = model.get("queued_text");
    }, model.get("queued_after_ms"));
  });
  model.on("change:description change:disabled change:acked change:clicks change:tooltip", draw);
  draw();
  el.append(button, queued);
  return () => clearTimeout(timer);
}
export default { render };
"""


# A disabled button must look disabled (faded, no pointer), whatever the theme's button rules.
_CSS = """
.suno-nb-submit { cursor: pointer; }
.suno-nb-submit:disabled {
  opacity: 0.4; cursor: not-allowed; filter: saturate(0.15); box-shadow: none;
}
"""


class QueuedButton(anywidget.AnyWidget):
    """A button whose clicks are acknowledged by the kernel (see the module docstring).

    ``on_click(fn)`` registers ``fn(button)``; :meth:`click` clicks it from Python, as the
    page does.  ``disabled``, ``description`` and ``tooltip`` work as on ipywidgets' Button.
    """

    _esm = _ESM
    _css = _CSS
    description = traitlets.Unicode("Submit").tag(sync=True)
    tooltip = traitlets.Unicode("").tag(sync=True)
    disabled = traitlets.Bool(False).tag(sync=True)
    clicks = traitlets.Int(0).tag(sync=True)
    acked = traitlets.Int(0).tag(sync=True)
    queued_text = traitlets.Unicode(QUEUED_TEXT).tag(sync=True)
    queued_after_ms = traitlets.Int(400).tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handlers: list[Callable[[QueuedButton], object]] = []
        self.observe(self._on_clicks, names="clicks")

    def on_click(self, fn: Callable[[QueuedButton], object], remove: bool = False) -> None:
        if remove:
            self._handlers = [h for h in self._handlers if h != fn]
        elif fn not in self._handlers:
            self._handlers.append(fn)

    def click(self) -> None:
        """Click from Python (tests, scripts): runs the handlers as a page click does."""
        self.clicks += 1

    def _on_clicks(self, change: dict[str, Any]) -> None:
        # The kernel handles the click now: acknowledge first, so the page clears "queued".
        with UPDATE_LOCK:
            self.acked = change["new"]
        for fn in list(self._handlers):
            fn(self)

    def __repr__(self) -> str:
        return f"QueuedButton(description={self.description!r})"
