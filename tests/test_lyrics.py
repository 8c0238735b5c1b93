"""Timestamped lyrics as frames, and planning a replace section from lines (suno_nb.lyrics)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suno_nb import SectionValidationError, validate_section
from suno_nb.contract import get_provider
from suno_nb.lyrics import (
    LINE_COLUMNS,
    WORD_COLUMNS,
    LinePlan,
    lines_frame,
    lyric_lines,
    plan_lines,
    words_frame,
)

LYRICS = """[Verse]
walking down the road
sun is in my eyes

[Chorus]
oh we sing along
all night long

[Verse]
city lights are low
shadows start to rise

[Chorus]
oh we sing along
all night long
"""


def _aligned(
    lyrics: str, *, start: float = 2.0, word: float = 0.4, gap: float = 0.1, line_gap: float = 1.5
) -> list[dict]:
    """alignedWords as the service sends them: one entry per word, a line's last word ends
    in a newline."""
    out, t = [], start
    for _, text, _ in lyric_lines(lyrics):
        ws = text.split()
        for i, w in enumerate(ws):
            tail = "\n" if i == len(ws) - 1 else " "
            out.append(
                {
                    "word": w + tail,
                    "success": True,
                    "startS": round(t, 3),
                    "endS": round(t + word, 3),
                    "palign": 0.9,
                }
            )
            t += word + gap
        t += line_gap - gap
    return out


def _song(**kw) -> tuple:
    aligned = _aligned(LYRICS, **kw)
    return words_frame(aligned, LYRICS), aligned[-1]["endS"]


# --- frames -----------------------------------------------------------------------------------


def test_words_frame_columns_lines_and_sections_from_the_lyrics():
    words, _ = _song()
    assert tuple(words.columns) == WORD_COLUMNS
    assert str(words["start_s"].dtype) == "float64" and str(words["line"].dtype) == "int64"
    assert words["word"].iloc[0] == "walking"  # stripped
    lines = lines_frame(words)
    assert tuple(lines.columns) == LINE_COLUMNS
    assert (
        list(lines["section"])
        == ["Verse 1"] * 2 + ["Chorus 1"] * 2 + ["Verse 2"] * 2 + ["Chorus 2"] * 2
    )
    assert lines["text"].iloc[2] == "oh we sing along"
    first = words[words["line"] == 2]
    assert lines["start_s"].iloc[2] == first["start_s"].min()
    assert lines["end_s"].iloc[2] == first["end_s"].max()


def test_words_frame_reads_tags_inside_the_aligned_words_and_keeps_unaligned_words():
    aligned = [
        {"word": "[Verse 1]\nHello ", "success": True, "startS": 1.0, "endS": 1.4, "palign": 0.5},
        {"word": "world\n\n", "success": True, "startS": 1.5, "endS": 2.0, "palign": 1},
        {"word": "[Chorus]\n", "success": True, "startS": 2.0, "endS": 2.0, "palign": 0},
        {"word": "la ", "success": False, "startS": 3.0, "endS": 3.2, "palign": 0.7},
        {"word": "la", "success": True, "startS": 3.3, "endS": 3.6},
    ]
    words = words_frame(aligned)
    assert list(words["word"]) == ["Hello", "world", "la", "la"]
    assert list(words["line"]) == [0, 0, 1, 1]
    assert list(words["section"]) == ["Verse 1", "Verse 1", "Chorus 1", "Chorus 1"]
    conf = list(words["confidence"])
    assert conf[:2] == [0.5, 1.0] and math.isnan(conf[2]) and math.isnan(conf[3])
    assert words["start_s"].iloc[2] == 3.0  # an unaligned word keeps its row and times


def test_sections_unknown_without_lyrics_and_matched_by_text_when_counts_differ():
    aligned = _aligned(LYRICS)
    assert words_frame(aligned)["section"].isna().all()
    # The service heard one line fewer (the first chorus's second line): text decides.
    dropped = aligned[:13] + aligned[16:]
    assert [w["word"] for w in aligned[13:16]] == ["all ", "night ", "long\n"]
    lines = lines_frame(words_frame(dropped, LYRICS))
    assert list(lines["text"])[3] == "city lights are low"
    assert list(lines["section"])[3] == "Verse 2" and list(lines["section"])[6] == "Chorus 2"


def test_empty_alignment_gives_empty_frames_with_the_columns():
    words = words_frame([])
    assert tuple(words.columns) == WORD_COLUMNS and words.empty
    assert tuple(lines_frame(words).columns) == LINE_COLUMNS


# --- choosing lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("Chorus 2", (6, 7)),
        ("chorus 2", (6, 7)),
        ("VERSE 1", (0, 1)),
        (4, (4,)),
        (range(4, 6), (4, 5)),
        ([5, 4], (4, 5)),
        ("shadows start", (5,)),
    ],
)
def test_lines_chosen_by_section_number_range_list_or_fragment(lines, expected):
    words, end = _song()
    plan = plan_lines(words, lines, duration=end + 5)
    assert plan.lines == expected


def test_a_fragment_in_two_lines_is_refused_naming_both():
    words, end = _song()
    with pytest.raises(SectionValidationError) as err:
        plan_lines(words, "sing along", duration=end + 5)
    assert err.value.field == "lines"
    assert "line 2" in str(err.value) and "line 6" in str(err.value)


@pytest.mark.parametrize(
    ("lines", "needle"),
    [
        ("no such words", "neither a section"),
        ("chorus", "Chorus 1, Chorus 2"),
        (99, "no line 99"),
        ([1, 3], "consecutive"),
        ([], "line numbers"),
        (True, "section name"),
        (2.5, "section name"),
        ("  ", "empty"),
    ],
)
def test_bad_choices_are_refused_naming_the_field(lines, needle):
    words, end = _song()
    with pytest.raises(SectionValidationError, match=needle) as err:
        plan_lines(words, lines, duration=end + 5)
    assert err.value.field == "lines"


def test_bad_duration_and_new_lyrics_are_refused():
    words, end = _song()
    with pytest.raises(SectionValidationError) as err:
        plan_lines(words, 1, duration=float("nan"))
    assert err.value.field == "duration"
    with pytest.raises(SectionValidationError) as err:
        plan_lines(words, 1, duration=end, new_lyrics="  ")
    assert err.value.field == "new_lyrics"


# --- the seconds ------------------------------------------------------------------------------


def test_a_short_span_is_widened_to_the_minimum_around_it_without_cutting_words():
    words, end = _song()
    plan = plan_lines(words, "Chorus 2", duration=end + 5)
    assert isinstance(plan, LinePlan)
    lines = lines_frame(words)
    a, b = lines["start_s"].iloc[6], lines["end_s"].iloc[7]
    assert (plan.span_start_s, plan.span_end_s) == (a, b)
    assert plan.start_s <= a and plan.end_s >= b
    # 10 s, plus what moving an edge out of a neighbouring word into a silence added.
    assert 10.0 <= round(plan.end_s - plan.start_s, 2) <= 11.0
    assert "minimum 10 s" in plan.widened
    validate_section(plan.start_s, plan.end_s, end + 5)
    assert not _cut(words, plan)


def test_a_long_enough_span_keeps_its_length_and_its_edges_sit_in_the_silences():
    words, _end = _song()
    plan = plan_lines(words, range(2, 6), duration=100.0)
    lines = lines_frame(words)
    # Each edge sits in the middle of the silence next to the lines.
    before = (lines["end_s"].iloc[1] + lines["start_s"].iloc[2]) / 2
    after = (lines["end_s"].iloc[5] + lines["start_s"].iloc[6]) / 2
    assert plan.start_s == pytest.approx(before, abs=0.01)
    assert plan.end_s == pytest.approx(after, abs=0.01)
    assert "silence" in plan.widened and not _cut(words, plan)


def test_the_kie_rules_widen_to_six_seconds():
    words, end = _song()
    plan = plan_lines(words, 3, duration=end + 5, provider="kie.ai")
    assert 6.0 <= round(plan.end_s - plan.start_s, 2) <= 7.0
    assert "minimum 6 s" in plan.widened


def test_a_span_over_the_maximum_is_refused_naming_the_limit():
    words, _end = _song()
    with pytest.raises(SectionValidationError) as err:
        plan_lines(words, range(0, 8), duration=40.0)  # 25+ s of lines, at most 20 s
    assert err.value.field == "lines" and err.value.limit == 20.0
    assert "at most 20 s" in str(err.value)
    with pytest.raises(SectionValidationError) as err:
        plan_lines(words, 0, duration=15.0)  # 50 % of 15 s < the 10 s minimum
    assert err.value.field == "duration" and err.value.limit == 10.0


def test_widening_stays_within_the_song():
    words, end = _song()
    first = plan_lines(words, 0, duration=end + 1)
    assert first.start_s == 0.0 and 10.0 <= first.end_s <= 11.0
    last = plan_lines(words, 7, duration=end + 0.5)
    assert last.end_s == round(end + 0.5, 2)
    assert 10.0 <= round(last.end_s - last.start_s, 2) <= 11.0
    assert not _cut(words, first) and not _cut(words, last)


# --- the lyrics -------------------------------------------------------------------------------


def test_full_lyrics_replaces_only_the_chosen_lines():
    words, end = _song()
    new = "a brand new line\nand another one"
    plan = plan_lines(words, "Chorus 2", duration=end + 5, new_lyrics=new)
    assert plan.lyrics == new
    assert plan.replaced_text == "oh we sing along\nall night long"
    before = LYRICS.splitlines()
    after = plan.full_lyrics.splitlines()
    assert after[: len(before) - 2] == before[:-2]  # everything else, in order
    assert after[-2:] == new.splitlines()
    # No lyrics known, or no new lyrics: no full lyrics.
    assert (
        plan_lines(words_frame(_aligned(LYRICS)), 6, duration=end, new_lyrics=new).full_lyrics
        is None
    )
    assert plan_lines(words, 6, duration=end + 5).full_lyrics is None
    # full_lyrics= overrides the frame's lyrics.
    other = plan_lines(words, 0, duration=end, new_lyrics="x", full_lyrics=LYRICS.upper())
    assert other.full_lyrics.splitlines()[:2] == ["[VERSE]", "x"]


def test_first_chorus_by_fragment_leaves_the_second_alone():
    words, end = _song()
    plan = plan_lines(words, "Chorus 1", duration=end + 5, new_lyrics="[Chorus]\nla la")
    lines = plan.full_lyrics.splitlines()
    assert lines[4:7] == ["[Chorus]", "[Chorus]", "la la"]
    assert lines[-2:] == ["oh we sing along", "all night long"]


# --- properties -------------------------------------------------------------------------------


def _cut(words, plan: LinePlan, tol: float = 0.0) -> list[str]:
    """Neighbouring words an edge of the plan falls strictly inside."""
    others = words[~words["line"].isin(plan.lines)]
    found = []
    for w in others.itertuples():
        for x in (plan.start_s, plan.end_s):
            if w.start_s + tol < x < w.end_s - tol:
                found.append(w.word)
    return found


@st.composite
def songs(draw):
    t = draw(st.floats(0, 12))
    aligned = []
    n_lines = draw(st.integers(1, 12))
    for i in range(n_lines):
        n = draw(st.integers(1, 6))
        for k in range(n):
            length = draw(st.floats(0.05, 0.8))
            aligned.append(
                {
                    "word": f"w{i}_{k}" + ("\n" if k == n - 1 else " "),
                    "success": True,
                    "startS": t,
                    "endS": t + length,
                    "palign": 1.0,
                }
            )
            t += length + draw(st.sampled_from([0.0, 0.001, 0.05, 0.2]))
        t += draw(st.floats(0.2, 4.0))
    duration = t + draw(st.floats(0, 40))
    first = draw(st.integers(0, n_lines - 1))
    last = draw(st.integers(first, n_lines - 1))
    return aligned, duration, range(first, last + 1)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(songs(), st.sampled_from(["sunoapi.org", "kie.ai"]))
def test_plan_lines_properties(song, provider):
    aligned, duration, lines = song
    rules = get_provider(provider).section
    words = words_frame(aligned)
    chosen = words[words["line"].isin(lines)]
    max_len = round(duration * rules.max_fraction, 2)
    if rules.max_s is not None:
        max_len = min(max_len, rules.max_s)
    try:
        plan = plan_lines(words, lines, duration=duration, provider=provider)
    except SectionValidationError as err:
        # Refused only when the rules cannot be met: the span or the minimum over the maximum.
        span = chosen["end_s"].max() - chosen["start_s"].min()
        assert span > max_len - 0.02 or rules.min_s > max_len, err
        assert err.limit in (max_len, rules.min_s)
        return
    step = 0.01
    assert plan.start_s <= chosen["start_s"].min() + 1e-9
    assert plan.end_s >= chosen["end_s"].max() - 1e-9
    assert 0 <= plan.start_s < plan.end_s <= round(duration, 2)
    assert rules.min_s - 1e-9 <= round(plan.end_s - plan.start_s, 2) <= max_len + 1e-9
    assert plan.start_s == round(plan.start_s, 2) and plan.end_s == round(plan.end_s, 2)
    validate_section(plan.start_s, plan.end_s, duration, section=rules)
    # No neighbouring word is cut unless the plan says so (rounding aside) ...
    if not (plan.widened and "cuts" in plan.widened):
        assert not _cut(words, plan, tol=step), plan
    # ... and with room to spare, a silence is always found.
    if max_len - 2 * step >= rules.min_s + 15:
        assert not _cut(words, plan, tol=step), plan


@st.composite
def messy(draw):
    """Alignments as a forced aligner may return them: overlaps, unaligned words, disorder."""
    n = draw(st.integers(1, 40))
    aligned = []
    for i in range(n):
        start = draw(st.floats(0, 200))
        length = draw(st.floats(0, 3))
        ok = draw(st.booleans()) or i % 3 == 0
        aligned.append(
            {
                "word": f"w{i}" + draw(st.sampled_from(["", " ", "\n", "\n\n", " [Chorus]\n"])),
                "success": ok,
                "startS": start if ok or draw(st.booleans()) else None,
                "endS": start + length,
                "palign": draw(st.floats(0, 1)),
            }
        )
    return aligned, draw(st.floats(20, 400)), draw(st.integers(0, 8))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy(), st.sampled_from(["sunoapi.org", "kie.ai-legacy"]))
def test_plan_lines_on_messy_alignments_plans_within_the_rules_or_refuses(song, provider):
    aligned, duration, line = song
    words = words_frame(aligned)
    try:
        plan = plan_lines(words, line, duration=duration, provider=provider)
    except SectionValidationError:
        return
    validate_section(plan.start_s, plan.end_s, duration, section=get_provider(provider).section)
    chosen = words[words["line"] == line]
    timed = chosen.dropna(subset=["start_s", "end_s"])
    # The chosen words are covered (times past the song's end count as its end).
    assert plan.start_s <= min(timed["start_s"].min(), duration) + 1e-9
    assert plan.end_s >= min(timed["end_s"].max(), round(duration, 2)) - 1e-9


def test_a_span_of_exactly_the_maximum_between_touching_words_is_kept():
    aligned = [
        {"word": "a\n", "success": True, "startS": 0.0, "endS": 5.0},
        {"word": "b\n", "success": True, "startS": 5.0, "endS": 15.0},
        {"word": "c\n", "success": True, "startS": 15.0, "endS": 20.0},
    ]
    plan = plan_lines(words_frame(aligned), 1, duration=20.0)  # at most 10 s: the span
    assert (plan.start_s, plan.end_s, plan.widened) == (5.0, 15.0, None)
