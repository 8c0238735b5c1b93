"""Timestamped lyrics as tables, and a replace section planned from lines of the song.

A songwriter thinks "rewrite the second chorus", not "replace 61.40-74.95 s".  The service's
``get-timestamped-lyrics`` answer (``alignedWords``: ``word``, ``success``, ``startS``,
``endS``, ``palign``; a word ending in a newline ends a line) becomes a DataFrame of words
(:func:`words_frame`) and of lines (:func:`lines_frame`); :func:`plan_lines` turns a choice
of lines ("Chorus 2", a line number, a range, a fragment of text) into the seconds to submit,
within the provider's rules, and the full lyrics with those lines replaced.

Pure: no network, no package state.  pandas is imported on first use, so importing this
module (and ``suno_nb``) stays light.

Floors: beside ``rules`` (it reads the contract's rules and raises ``SectionValidationError``).
"""

from __future__ import annotations

from .frames import LINE_COLUMNS, WORD_COLUMNS, lines_frame, lyric_lines, words_frame
from .plan import LinePlan, plan_lines, replace_in_lyrics

__all__ = [
    "LINE_COLUMNS",
    "WORD_COLUMNS",
    "LinePlan",
    "lines_frame",
    "lyric_lines",
    "plan_lines",
    "replace_in_lyrics",
    "words_frame",
]
