"""What the notebook front end does with an object, for headless tests.

Two directions:

- :func:`shown` is what Jupyter gets when it displays an object: the MIME bundle IPython's
  display formatter makes of it (the same public path a notebook output takes), instead of
  calling ``_repr_html_``/``_repr_mimebundle_`` by hand.
- :func:`send_from_page` is a custom message from the page to a widget, and
  :func:`sent_to_page` captures what the widget sends back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from IPython.core.formatters import DisplayFormatter

_FORMATTER = DisplayFormatter()


def shown(obj: Any) -> dict[str, Any]:
    """The MIME bundle (``{"text/plain": ..., "text/html": ..., ...}``) Jupyter displays
    for ``obj``."""
    data, _metadata = _FORMATTER.format(obj)
    return data


def send_from_page(widget: Any, content: dict[str, Any], buffers: Sequence[bytes] = ()) -> None:
    """Deliver ``content`` (and ``buffers``) to ``widget`` as a custom message from its view
    in the page (``model.send(...)`` in the widget's JavaScript).

    The one private call of the tests, on purpose: a front-end message has no public
    entry point in the kernel.  ipywidgets hands a comm message of method ``custom`` to
    ``Widget._handle_custom_msg``, which runs every callback registered with
    ``widget.on_msg``; calling it here goes through that same dispatch (so a handler that
    is not registered is not reached), without a browser and a comm.
    """
    widget._handle_custom_msg(content, list(buffers))


def sent_to_page(widget: Any) -> list[tuple[dict[str, Any], list[bytes]]]:
    """Capture what ``widget`` sends to its view from now on: a list that fills with
    ``(content, buffers)`` pairs (no page is attached in these tests)."""
    out: list[tuple[dict[str, Any], list[bytes]]] = []
    widget.send = lambda content, buffers=None: out.append((content, list(buffers or [])))
    return out
