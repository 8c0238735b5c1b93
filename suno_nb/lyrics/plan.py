"""Planning a replace section from lines of a song: which lines, which seconds, which lyrics.

Floors: inside the ``lyrics`` room; reads the contract's rules, raises
``SectionValidationError`` like :mod:`suno_nb.rules`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..contract import Provider, SectionRules, get_provider
from ..errors import SectionValidationError
from .frames import _TAG, _float, _match_lines, _tag_base, lines_frame, lyric_lines

if TYPE_CHECKING:
    import pandas as pd

EDGE_PAD_S = 1.0  # how far an edge goes into a silence at most (a breath, not a solo)


@dataclass(frozen=True)
class LinePlan:
    """A replace section planned from lines of a song (see :func:`plan_lines`).

    ``start_s``/``end_s`` are what to submit (rounded to the provider's decimals);
    ``span_start_s``/``span_end_s`` the chosen lines' own span; ``widened`` says why and how
    the section differs from the span (None: unchanged).  ``full_lyrics`` is the song's
    lyrics with the chosen lines replaced by ``lyrics`` (the new lines), when both are known.
    """

    lines: tuple[int, ...]
    start_s: float
    end_s: float
    span_start_s: float
    span_end_s: float
    widened: str | None
    full_lyrics: str | None
    lyrics: str | None
    replaced_text: str

    @property
    def length_s(self) -> float:
        """Length of the section to submit, in seconds."""
        return round(self.end_s - self.start_s, 6)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _choose(lines_df: pd.DataFrame, lines: object) -> tuple[int, ...]:
    """The line numbers ``lines`` names (see :func:`plan_lines`), consecutive and known."""
    known = [int(n) for n in lines_df["line"]]
    if isinstance(lines, str):
        chosen = _choose_text(lines_df, lines)
    elif _is_int(lines):
        chosen = (int(lines),)  # type: ignore[call-overload]
    elif isinstance(lines, Iterable) and not isinstance(lines, (bytes, dict)):
        items = list(lines)
        if not items or not all(_is_int(n) for n in items):
            raise SectionValidationError(
                "lines",
                f"must be line numbers (ints), a section name or a text fragment, got {lines!r}",
                value=lines,
            )
        chosen = tuple(sorted({int(n) for n in items}))
    else:
        raise SectionValidationError(
            "lines",
            "must be a section name ('Chorus 2'), a line number, a range or list of line "
            f"numbers, or a fragment of one line's text; got {lines!r}",
            value=lines,
        )
    unknown = [n for n in chosen if n not in known]
    if unknown:
        top = f"0-{max(known)}" if known else "none"
        raise SectionValidationError(
            "lines", f"no line {unknown[0]} in these lyrics (lines: {top})", limit=top, value=lines
        )
    at = [known.index(n) for n in chosen]
    if at != list(range(at[0], at[0] + len(at))):
        raise SectionValidationError(
            "lines",
            f"must be consecutive lines (one section is replaced), got {list(chosen)}",
            limit="consecutive",
            value=lines,
        )
    return chosen


def _choose_text(lines_df: pd.DataFrame, text: str) -> tuple[int, ...]:
    wanted = " ".join(text.split()).lower()
    if not wanted:
        raise SectionValidationError("lines", "is an empty string", limit="non-empty", value=text)
    sections = [s for s in dict.fromkeys(lines_df["section"]) if isinstance(s, str)]
    named = [s for s in sections if s.lower() == wanted]
    if not named:  # "chorus" names the one chorus, if there is exactly one
        named = [s for s in sections if _tag_base(s).lower() == wanted]
        if len(named) > 1:
            raise SectionValidationError(
                "lines",
                f"{text!r} names {len(named)} sections ({', '.join(named)}); say which",
                limit="one section",
                value=text,
            )
    if named:
        return tuple(int(n) for n in lines_df.loc[lines_df["section"] == named[0], "line"])
    hits = lines_df[lines_df["text"].map(lambda t: wanted in " ".join(str(t).split()).lower())]
    if len(hits) == 1:
        return (int(hits["line"].iloc[0]),)
    if len(hits) > 1:
        found = "; ".join(f"line {int(r.line)}: {r.text!r}" for r in hits.itertuples())
        raise SectionValidationError(
            "lines",
            f"{text!r} matches {len(hits)} lines ({found}); give a longer fragment or the "
            "line numbers",
            limit="exactly one line",
            value=text,
        )
    known = ", ".join(sections) or "none"
    raise SectionValidationError(
        "lines",
        f"{text!r} is neither a section ({known}) nor a fragment of any line",
        limit="exactly one line",
        value=text,
    )


def _gaps(starts: list[float], ends: list[float], duration: float) -> list[tuple[float, float]]:
    """The stretches of [0, duration] inside no word: where an edge cuts nothing."""
    gaps, reach = [], 0.0
    for s, e in sorted(zip(starts, ends, strict=True)):
        if s > reach:
            gaps.append((reach, s))
        elif s == reach and not gaps:
            gaps.append((reach, reach))
        reach = max(reach, e)
    if reach <= duration:
        gaps.append((reach, duration))
    return gaps


def _inside(x: float, starts: list[float], ends: list[float]) -> tuple[float, float] | None:
    """The stretch of words that ``x`` cuts (strictly inside), or None."""
    hit = [(s, e) for s, e in zip(starts, ends, strict=True) if s < x < e]
    if not hit:
        return None
    return min(s for s, _ in hit), max(e for _, e in hit)


def _start_in(gap: tuple[float, float]) -> float:
    """Where a start edge goes in a silence: its middle, at most EDGE_PAD_S before the word
    after it (a breath before the first new word, not a long instrumental)."""
    return max((gap[0] + gap[1]) / 2, gap[1] - EDGE_PAD_S)


def _end_in(gap: tuple[float, float]) -> float:
    """Where an end edge goes in a silence: its middle, at most EDGE_PAD_S after the word."""
    return min((gap[0] + gap[1]) / 2, gap[0] + EDGE_PAD_S)


def _word_at(words: pd.DataFrame, lo: float, hi: float) -> str:
    near = words[(words["start_s"] < hi) & (words["end_s"] > lo)]
    return repr(str(near["word"].iloc[0])) if len(near) else "a word"


def plan_lines(
    words: pd.DataFrame,
    lines: object,
    *,
    duration: float,
    provider: Provider | str | None = None,
    new_lyrics: str | None = None,
    full_lyrics: str | None = None,
) -> LinePlan:
    """Plan the replace section for some lines of a song (a :func:`words_frame`).

    ``lines`` is a section name (``"Chorus 2"``, case-insensitive; ``"chorus"`` when there
    is one chorus), a line number, a range or list of consecutive line numbers, or a
    fragment of text found in exactly one line (two matches: an error naming both lines).
    ``duration`` is the original's length in seconds; ``provider`` gives the rules
    (:class:`~suno_nb.contract.SectionRules`: ``min_s``, ``max_s``, ``max_fraction``,
    ``decimals``).

    How the seconds are chosen, so that no neighbouring word is cut where that can be avoided:

    1. The span runs from the chosen lines' first word's start to their last word's end.
       A span longer than the maximum (``max_s``, ``max_fraction`` of ``duration``) is
       refused with a :class:`SectionValidationError` naming the limit.
    2. Each edge moves out into the silence next to it (between the last chosen word and the
       next word, or the song's start/end): to its middle, but at most :data:`EDGE_PAD_S`
       (1 s) from the chosen words; an edge with no silence there (a neighbour's timing
       overlaps) stays on the span.  If that makes the section too long,
       both edges come back towards the span by the same share.
    3. Shorter than ``min_s``: widened to ``min_s`` around its centre, shifted to stay
       within ``[0, duration]``.  A widened edge that lands inside a word moves outward to the
       silence before (start) or after (end) that word, placed as in step 2 where the maximum
       allows; failing that, inward to the silence on the other side if the section stays at
       least ``min_s``; failing both, it stays and ``widened`` says which word it cuts.
    4. The start is rounded down and the end up to the provider's decimals (so the span stays
       covered), the end kept within ``duration``.

    ``widened`` says, in words, how and why the section differs from the span.  With
    ``new_lyrics``, ``full_lyrics`` (default: the lyrics given to :func:`words_frame`) comes
    back with the chosen lines replaced by ``new_lyrics`` — from the first chosen line to the
    last, including tag or blank lines between them — and every other line unchanged.
    """
    rules = get_provider(provider).section
    d = _float(duration)
    if not d > 0 or not math.isfinite(d):
        raise SectionValidationError(
            "duration", f"must be a positive number of seconds, got {duration!r}", value=duration
        )
    if new_lyrics is not None and (not isinstance(new_lyrics, str) or not new_lyrics.strip()):
        raise SectionValidationError(
            "new_lyrics", "must be a non-empty string", limit="non-empty", value=new_lyrics
        )
    lines_df = lines_frame(words)
    chosen = _choose(lines_df, lines)
    mine = words[words["line"].isin(chosen)]
    timed = mine[mine["start_s"].notna() & mine["end_s"].notna()]
    if timed.empty:
        raise SectionValidationError(
            "lines", f"lines {list(chosen)} have no word timings", limit="timed words"
        )
    a = min(max(float(timed["start_s"].min()), 0.0), d)
    b = min(max(float(timed["end_s"].max()), a), d)
    start, end, notes = _place(words, rules, d, a, b)
    s, e = _rounded(rules, d, start, end, a, b)
    nd = rules.decimals
    if (s, e) != (round(a, nd), round(b, nd)):
        notes.append(f"submitting {s:.{nd}f}-{e:.{nd}f} s ({e - s:.{nd}f} s)")
    replaced = "\n".join(str(t) for t in lines_df.loc[lines_df["line"].isin(chosen), "text"])
    text = full_lyrics if full_lyrics is not None else words.attrs.get("lyrics")
    full = None
    if new_lyrics is not None and text:
        full = replace_in_lyrics(text, lines_df, chosen, new_lyrics)
    return LinePlan(
        lines=chosen,
        start_s=s,
        end_s=e,
        span_start_s=a,
        span_end_s=b,
        widened="; ".join(notes) if notes else None,
        full_lyrics=full,
        lyrics=new_lyrics,
        replaced_text=replaced,
    )


def _max_len(rules: SectionRules, d: float) -> float:
    by_share = round(d * rules.max_fraction, rules.decimals)
    return min(by_share, rules.max_s) if rules.max_s is not None else by_share


def _place(
    words: pd.DataFrame, rules: SectionRules, d: float, a: float, b: float
) -> tuple[float, float, list[str]]:
    """Steps 1-3 of :func:`plan_lines`: the unrounded edges and what was done, in words."""
    step = 1 / 10**rules.decimals
    max_len = _max_len(rules, d)
    if rules.min_s > max_len:
        raise SectionValidationError(
            "duration",
            f"the original is {d:g} s long: a section may cover at most {max_len:g} s of it, "
            f"less than the minimum {rules.min_s:g} s ({rules.source})",
            limit=rules.min_s,
            value=d,
        )
    span = math.ceil(b / step - 1e-6) * step - math.floor(a / step + 1e-6) * step
    if span > max_len + 1e-9:
        raise SectionValidationError(
            "lines",
            f"the chosen lines span {span:.{rules.decimals}f} s ({a:g}-{b:g} s); a section "
            f"may be at most {max_len:g} s (max_s {rules.max_s}, {rules.max_fraction:.0%} of "
            f"the original's {d:g} s; {rules.source})",
            limit=max_len,
            value=round(span, rules.decimals),
        )
    timed = words[words["start_s"].notna() & words["end_s"].notna()]
    starts = [float(x) for x in timed["start_s"]]
    ends = [max(float(x), s) for x, s in zip(timed["end_s"], starts, strict=True)]
    gaps = _gaps(starts, ends, d)
    room = max_len - 2 * step  # what rounding outward may add
    notes: list[str] = []
    before = [g for g in gaps if abs(g[1] - a) < 1e-9]
    after = [g for g in gaps if abs(g[0] - b) < 1e-9]
    start = _start_in(before[0]) if before else a
    end = _end_in(after[0]) if after else b
    if end - start > room:  # the silences are too long to take in whole: take a share
        pads = (a - start) + (end - b)
        share = max(0.0, (room - (b - a)) / pads) if pads > 0 else 0.0
        start, end = a - (a - start) * share, b + (end - b) * share
    if (start, end) != (a, b):
        notes.append(f"edges moved into the silence around the lines ({start:.2f}-{end:.2f} s)")
    if end - start >= rules.min_s:
        return start, end, notes
    need = rules.min_s - (end - start)
    notes.clear()  # the widening below says it all
    start, end = start - need / 2, end + need / 2
    if start < 0:
        start, end = 0.0, end - start
    if end > d:
        start, end = max(0.0, start - (end - d)), d
    notes.append(
        f"the lines span {b - a:.2f} s; widened to the minimum {rules.min_s:g} s around them "
        f"({rules.source})"
    )
    start = _snap(words, gaps, starts, ends, start, end, a, rules, room, "start", notes)
    end = _snap(words, gaps, starts, ends, start, end, b, rules, room, "end", notes)
    return start, end, notes


def _snap(
    words: pd.DataFrame,
    gaps: list[tuple[float, float]],
    starts: list[float],
    ends: list[float],
    start: float,
    end: float,
    edge_of_span: float,
    rules: SectionRules,
    room: float,
    which: str,
    notes: list[str],
) -> float:
    """Move one widened edge out of the word it cuts (step 3 of :func:`plan_lines`)."""
    x = start if which == "start" else end
    cut = _inside(x, starts, ends)
    if cut is None:
        return x
    other = end if which == "start" else start
    if which == "start":
        out = [g for g in gaps if g[1] <= cut[0]]
        inward = [g for g in gaps if g[0] >= cut[1] and g[1] <= edge_of_span]
        # outward: as near the middle as the maximum allows; inward: keep >= min_s
        options = [(out[-1], max(_start_in(out[-1]), other - room))] if out else []
        options += [(inward[0], min(_start_in(inward[0]), other - rules.min_s))] if inward else []
    else:
        out = [g for g in gaps if g[0] >= cut[1]]
        inward = [g for g in gaps if g[1] <= cut[0] and g[0] >= edge_of_span]
        options = [(out[0], min(_end_in(out[0]), other + room))] if out else []
        options += [(inward[-1], max(_end_in(inward[-1]), other + rules.min_s))] if inward else []
    for gap, y in options:
        if gap[0] <= y <= gap[1] and rules.min_s <= abs(other - y) <= room + 1e-9:
            side = "before" if (y < x) == (which == "start") else "after"
            notes.append(
                f"{which} moved to {y:.2f} s, the silence {side} {_word_at(words, *cut)} "
                "instead of cutting it"
            )
            return y
    notes.append(f"the {which} at {x:.2f} s cuts {_word_at(words, *cut)} (no silence fits)")
    return x


def _rounded(
    rules: SectionRules, d: float, start: float, end: float, a: float, b: float
) -> tuple[float, float]:
    """Step 4: start rounded down, end up, the end within the original, length <= maximum."""
    nd = rules.decimals
    step = 1 / 10**nd
    s = max(0.0, round(math.floor(start / step + 1e-6) * step, nd))
    e = min(round(math.ceil(end / step - 1e-6) * step, nd), round(d, nd))
    max_len = _max_len(rules, d)
    if e - s > max_len + 1e-9:
        e = round(s + max_len, nd)
    if e - s < rules.min_s - 1e-9:  # the end was held at the original's end: start earlier
        s = max(0.0, round(e - rules.min_s, nd))
    return s, e


def replace_in_lyrics(
    lyrics: str, lines: pd.DataFrame, chosen: Sequence[int], new_lyrics: str
) -> str:
    """``lyrics`` with the sung lines ``chosen`` (line numbers of ``lines``, a
    :func:`lines_frame`) replaced by ``new_lyrics``; every other line as it was, in order."""
    sung = lyric_lines(lyrics)
    numbers_ = [int(n) for n in lines["line"]]
    pairs = _match_lines([t for _, t, _ in sung], [str(t) for t in lines["text"]])
    where = []
    for n in chosen:
        pos = numbers_.index(n)
        if pos not in pairs:
            raise SectionValidationError(
                "full_lyrics",
                f"line {n} ({lines['text'].iloc[pos]!r}) is not in the song's lyrics",
                value=n,
            )
        where.append(sung[pairs[pos]][0])
    raw = lyrics.splitlines()
    new = new_lyrics.strip("\n").splitlines()
    tag = _TAG.match(raw[min(where)])  # "[Chorus] old line": the tag stays, on its own line
    keep = [f"[{tag.group(1)}]"] if tag else []
    out = raw[: min(where)] + keep + new + raw[max(where) + 1 :]
    return "\n".join(out) + ("\n" if lyrics.endswith("\n") else "")
