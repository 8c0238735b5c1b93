"""Timestamped lyrics as DataFrames: one row per word, one row per line, sections named.

Floors: inside the ``lyrics`` room; pandas is imported on first use.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

WORD_COLUMNS = ("line", "section", "word", "start_s", "end_s", "confidence")
LINE_COLUMNS = ("line", "section", "text", "start_s", "end_s")

_TAG = re.compile(r"^\s*\[([^\]]*)\](.*)$")
_TAG_ANYWHERE = re.compile(r"\[([^\]]*)\]")


# --- sections and lyrics text ---------------------------------------------------------------


def _tag_base(tag: str) -> str:
    """``"Verse 2"`` -> ``"Verse"``, ``"chorus"`` -> ``"Chorus"``: the name a tag counts under."""
    name = re.sub(r"\s+\d+\s*$", "", tag.split(":")[0]).strip()
    return name[:1].upper() + name[1:] if name else "Section"


class _Sections:
    """Numbers sections as they come: the second ``[Chorus]`` is "Chorus 2"."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}

    def label(self, tag: str) -> str:
        base = _tag_base(tag)
        key = base.lower()
        self.seen[key] = self.seen.get(key, 0) + 1
        return f"{base} {self.seen[key]}"


def lyric_lines(lyrics: str) -> list[tuple[int, str, str | None]]:
    """The sung lines of ``lyrics``: ``(index in lyrics.splitlines(), text, section)``.

    Tags (``[Chorus]``, alone or before a line's text) and blank lines are not sung; a
    section is named by its tag and its count so far ("Chorus 2" is the second
    ``[Chorus]``), None before the first tag.
    """
    sections = _Sections()
    current: str | None = None
    out = []
    for i, raw in enumerate(lyrics.splitlines()):
        tag = _TAG.match(raw)
        if tag:
            current = sections.label(tag.group(1))
            raw = tag.group(2)  # "[Verse] First line": the tag, then a sung line
        if raw.strip():
            out.append((i, raw.strip(), current))
    return out


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w']+", " ", text.lower()).split())


def _match_lines(lyric_texts: Sequence[str], sung_texts: Sequence[str]) -> dict[int, int]:
    """sung line -> lyrics line, by order where the counts agree, else by matching text."""
    if len(lyric_texts) == len(sung_texts):
        return {i: i for i in range(len(sung_texts))}
    matcher = difflib.SequenceMatcher(
        None, [_norm(t) for t in sung_texts], [_norm(t) for t in lyric_texts], autojunk=False
    )
    pairs: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            pairs[block.a + k] = block.b + k
    return pairs


# --- frames ---------------------------------------------------------------------------------


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return math.nan
    try:
        return float(value)
    except ValueError:
        return math.nan


def words_frame(aligned_words: list[dict], lyrics: str | None = None) -> pd.DataFrame:
    """One row per sung word of a ``get-timestamped-lyrics`` answer (``data.alignedWords``).

    Columns :data:`WORD_COLUMNS`: ``line`` counts from 0 (a word ending in a newline ends
    its line); ``word`` is stripped; ``start_s``/``end_s`` are floats (NaN when missing);
    ``confidence`` is the word's ``palign`` as a float.  A word the service could not align
    (``success`` false) keeps its row, with its times as given and ``confidence`` NaN.
    Section tags are not words: ``[Chorus]`` inside the aligned words, or else in ``lyrics``
    (the song's lyrics, matched line by line), name the ``section`` of the lines after it —
    "Chorus 2" is the second ``[Chorus]``; None where unknown.  ``lyrics`` is kept in
    ``frame.attrs["lyrics"]`` for :func:`plan_lines`.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    sections = _Sections()
    current: str | None = None
    tagged = False
    line = 0
    line_has_words = False
    for item in aligned_words:
        raw = str(item.get("word", ""))
        parts = raw.split("\n")
        for k, part in enumerate(parts):
            # A tag inside the aligned text names the section of what follows.
            for tag in _TAG_ANYWHERE.findall(part):
                current = sections.label(tag)
                tagged = True
            text = _TAG_ANYWHERE.sub(" ", part).strip()
            if text:
                ok = item.get("success", True) is not False
                rows.append(
                    {
                        "line": line,
                        "section": current,
                        "word": text,
                        "start_s": _float(item.get("startS")),
                        "end_s": _float(item.get("endS")),
                        "confidence": _float(item.get("palign")) if ok else math.nan,
                    }
                )
                line_has_words = True
            if k < len(parts) - 1 and line_has_words:  # a newline after words ends the line
                line += 1
                line_has_words = False
    frame = pd.DataFrame(rows, columns=list(WORD_COLUMNS))
    frame = frame.astype(
        {"line": "int64", "start_s": "float64", "end_s": "float64", "confidence": "float64"}
    )
    frame["section"] = frame["section"].astype(object)
    if lyrics and not tagged and len(frame):
        _sections_from_lyrics(frame, lyrics)
    frame.attrs["lyrics"] = lyrics
    return frame


def _sections_from_lyrics(frame: pd.DataFrame, lyrics: str) -> None:
    sung = lyric_lines(lyrics)
    texts = frame.groupby("line", sort=True)["word"].agg(" ".join)
    pairs = _match_lines([t for _, t, _ in sung], list(texts))
    by_line: dict[int, str | None] = {}
    numbers_ = list(texts.index)
    for pos, number in enumerate(numbers_):
        if pos in pairs:
            by_line[number] = sung[pairs[pos]][2]
    # An unmatched line between two matched lines of one section belongs to it.
    for pos, number in enumerate(numbers_):
        if number in by_line:
            continue
        before = next((by_line[n] for n in reversed(numbers_[:pos]) if n in by_line), None)
        after = next((by_line[n] for n in numbers_[pos + 1 :] if n in by_line), None)
        by_line[number] = before if before == after else None
    frame["section"] = frame["line"].map(by_line).astype(object)
    frame["section"] = frame["section"].where(frame["section"].notna(), None)


def lines_frame(words: pd.DataFrame) -> pd.DataFrame:
    """One row per line of a :func:`words_frame`: ``line``, ``section``, ``text`` (its words
    joined by spaces), ``start_s`` (its first word's start) and ``end_s`` (its last word's
    end); times ignore words without them."""
    import pandas as pd

    rows = []
    for number, group in words.groupby("line", sort=True):
        rows.append(
            {
                "line": int(number),
                "section": group["section"].iloc[0],
                "text": " ".join(group["word"]),
                "start_s": group["start_s"].min(),
                "end_s": group["end_s"].max(),
            }
        )
    frame = pd.DataFrame(rows, columns=list(LINE_COLUMNS))
    frame = frame.astype({"line": "int64", "start_s": "float64", "end_s": "float64"})
    frame["section"] = frame["section"].astype(object)
    frame.attrs["lyrics"] = words.attrs.get("lyrics")
    return frame
