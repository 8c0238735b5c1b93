"""Notebook widgets for the replace-section workflow (the only importer of ipywidgets).

>>> from suno_nb import widgets as snw
>>> snw.submit_form(client, rx)     # pick an original, mark the section, submit
>>> snw.tracker(rx)                 # live table of tasks, updated as callbacks land
>>> snw.audition(rx)                # original vs replacement, the section marked

Every widget updates itself from background threads by setting traits only, serialised by
one lock; none prints.  Their plain-text reprs are stable (no ids, no times), so notebooks
that display them pass nbval.
"""

from __future__ import annotations

from .audition import Audition, audition, fragment_url
from .submit import Original, SubmitForm, submit_form
from .tracker import STATES, Tracker, render_tasks, tracker

__all__ = [
    "STATES",
    "Audition",
    "Original",
    "SubmitForm",
    "Tracker",
    "audition",
    "fragment_url",
    "render_tasks",
    "submit_form",
    "tracker",
]
