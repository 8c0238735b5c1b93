"""Notebook widgets for the replace-section workflow (the only importer of ipywidgets).

>>> from suno_nb import widgets as snw
>>> snw.submit_form(client, rx)     # pick an original, mark the section, submit
>>> snw.tracker(rx)                 # live table of tasks, updated as callbacks land
>>> snw.audition(rx)                # original vs replacement, the section marked
>>> snw.audition(rx, blind=True)    # ABX trials and blind ratings, stored

The widgets start no thread: they subscribe to the receiver's change feed (``rx.subscribe``)
and run their timed and slow work (redraws, lookups, the submit, audio) as jobs on the
receiver's one dispatcher thread.  They update themselves by setting traits only, serialised
by one lock; none prints.  Re-running a widget's cell closes the previous widget with every
model it made.  Their plain-text reprs are stable (no ids, no times), so notebooks that
display them pass nbval.
"""

from __future__ import annotations

from .audition import Audition, audition, fragment_url
from .blind import BlindTest
from .submit import Original, SubmitForm, submit_form
from .tracker import STATES, Tracker, render_tasks, tracker

__all__ = [
    "STATES",
    "Audition",
    "BlindTest",
    "Original",
    "SubmitForm",
    "Tracker",
    "audition",
    "fragment_url",
    "render_tasks",
    "submit_form",
    "tracker",
]
