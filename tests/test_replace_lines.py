"""Replacing lines of a song by name ("Chorus 2") against the sandbox: timestamped lyrics,
their cache, the planned section, the full lyrics sent, and the sandbox's own lyrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from suno_nb import NotFoundError, Sandbox, SectionValidationError, SunoClient
from suno_nb.lyrics import lines_frame
from suno_nb.sandbox import lyrics as sandbox_lyrics
from suno_nb.sandbox import synth

LYRICS = """[Verse]
walking down the road tonight
sun is setting in my eyes

[Chorus]
oh we sing along
all night long

[Verse]
city lights are burning low
shadows start to rise

[Chorus]
oh we sing it louder now
all night long again
"""
NEW = "now the lights go out\nand we are home again"


class CountingSession(requests.Session):
    """A requests session that remembers every request it sent (method, path)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        self.sent.append((method, url.split("/", 3)[-1]))
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def sb():
    with Sandbox(delay=0.3, retry_backoff=0.05, callback_timeout=2.0) as sandbox:
        yield sandbox


@pytest.fixture
def song(sb):
    return sb.create_song(duration=120.0, title="Harbour", prompt=LYRICS)


def _client(sb, rx=None) -> SunoClient:
    return SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx, session=CountingSession())


def _param(sb, task_id: str) -> dict:
    return json.loads(sb.record_info(task_id)["param"])


def _sung(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("[")]


# --- replace_lines ----------------------------------------------------------------------------


def test_rewrite_the_second_chorus(sb, song, rx):
    client = _client(sb, rx)
    words = client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id)
    chorus = words[words["section"] == "Chorus 2"]
    assert list(chorus["line"].unique()) == [6, 7]

    job = client.replace_lines(
        task_id=song.task_id,
        audio_id=song.audio_id,
        lines="chorus 2",
        new_lyrics=NEW,
        tags="synth pop",
        title="Harbour (new chorus)",
    )
    sent = _param(sb, job.task_id)
    start, end = sent["infillStartS"], sent["infillEndS"]
    assert (job.infill_start_s, job.infill_end_s) == (start, end)
    # The section covers every word of the chorus, within the rules.
    assert start <= chorus["start_s"].min() and end >= chorus["end_s"].max()
    assert 10.0 <= round(end - start, 2) <= 0.5 * song.duration
    # The job says which lines, their span and how the section differs from it.
    assert job.lines == (6, 7) and "silence" in job.widened
    assert job.span_start_s == chorus["start_s"].min()
    assert "lines=6-7 (widened)" in repr(job)
    # fullLyrics: the new lines instead of the old ones, every other line as it was.
    full = sent["fullLyrics"]
    assert sent["prompt"] == NEW and sent["lyrics"] == NEW  # the segment's lyrics
    old = ["oh we sing it louder now", "all night long again"]
    assert all(line in _sung(full) for line in NEW.splitlines())
    assert not any(line in _sung(full) for line in old)
    kept = [ln for ln in _sung(full) if ln not in NEW.splitlines()]
    assert kept == [ln for ln in _sung(LYRICS) if ln not in old]
    assert full.splitlines()[:-2] == LYRICS.splitlines()[:-2]

    # The new track sings the full lyrics: the chorus is new, the rest keeps its timings.
    assert rx.wait(job.task_id, timeout=60, progress=False).ok
    take = sb.record_info(job.task_id)["response"]["sunoData"][0]["id"]
    after = lines_frame(client.timestamped_lyrics(task_id=job.task_id, audio_id=take))
    before = lines_frame(words)
    assert list(after["text"].iloc[6:]) == NEW.splitlines()
    assert list(after["section"].iloc[6:]) == ["Chorus 2", "Chorus 2"]
    same = ["text", "start_s", "end_s"]
    assert after[same].iloc[:6].equals(before[same].iloc[:6])


def test_a_short_line_is_widened_to_ten_seconds_around_it(sb, song, rx):
    client = _client(sb, rx)
    lines = lines_frame(client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id))
    line = lines.iloc[4]
    assert line["end_s"] - line["start_s"] < 5  # a single line: a few seconds
    job = client.replace_lines(
        task_id=song.task_id,
        audio_id=song.audio_id,
        lines=4,
        new_lyrics="city lights are shining through",
        tags="synth pop",
        title="One line",
    )
    sent = _param(sb, job.task_id)
    start, end = sent["infillStartS"], sent["infillEndS"]
    assert start <= line["start_s"] and end >= line["end_s"]
    assert 10.0 <= round(end - start, 2) <= 11.0
    # Around it: the section's middle is near the line's middle.
    assert abs((start + end) / 2 - (line["start_s"] + line["end_s"]) / 2) <= 1.0
    assert job.lines == (4,) and "widened to the minimum 10 s" in job.widened
    assert "city lights are shining through" in sent["fullLyrics"]


def test_a_fragment_in_two_lines_is_refused_before_any_submit(sb, song, rx):
    client = _client(sb, rx)
    with pytest.raises(SectionValidationError) as err:
        client.replace_lines(
            task_id=song.task_id,
            audio_id=song.audio_id,
            lines="all night long",
            new_lyrics=NEW,
            tags="pop",
            title="Nope",
        )
    message = str(err.value)
    assert err.value.field == "lines"
    assert "line 3: 'all night long'" in message and "line 7: 'all night long again'" in message
    assert not any("replace-section" in path for _, path in client.session.sent)
    assert [t["task_id"] for t in sb.tasks()] == [song.task_id]


def test_bad_new_lyrics_are_refused_before_any_request(sb, song):
    client = _client(sb)
    with pytest.raises(SectionValidationError) as err:
        client.replace_lines(
            task_id=song.task_id,
            audio_id=song.audio_id,
            lines=1,
            new_lyrics=" ",
            tags="pop",
            title="x",
        )
    assert err.value.field == "new_lyrics" and client.session.sent == []


# --- timestamped_lyrics -----------------------------------------------------------------------


def test_timestamped_lyrics_are_cached_in_the_store(sb, song, rx):
    client = _client(sb, rx)
    first = client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id)
    assert ("POST", "api/v1/generate/get-timestamped-lyrics") in client.session.sent
    count = len(client.session.sent)
    again = client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id)
    assert len(client.session.sent) == count  # no request
    assert again.equals(first)
    # Another client on the same receiver finds them in the store.
    other = _client(sb, rx)
    assert other.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id).equals(first)
    assert other.session.sent == []
    assert first.attrs["lyrics"] == LYRICS and first.attrs["is_streamed"] is False


def test_without_a_receiver_the_client_caches_them(sb, song):
    client = _client(sb)
    first = client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id)
    count = len(client.session.sent)
    assert client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id).equals(first)
    assert len(client.session.sent) == count
    assert list(lines_frame(first)["section"].unique()) == [
        "Verse 1",
        "Chorus 1",
        "Verse 2",
        "Chorus 2",
    ]


def test_unknown_task_or_track_is_not_found(sb, song):
    client = _client(sb)
    with pytest.raises(NotFoundError):
        client.timestamped_lyrics(task_id="0" * 32, audio_id=song.audio_id)
    with pytest.raises(NotFoundError):
        client.timestamped_lyrics(task_id=song.task_id, audio_id="f" * 36)
    with pytest.raises(SectionValidationError) as err:
        client.timestamped_lyrics(task_id=song.task_id, audio_id="")
    assert err.value.field == "audio_id"


def test_a_description_prompt_gets_invented_lyrics_with_sections(sb, rx):
    client = _client(sb, rx)
    job = client.generate(prompt="a song about the harbour at night")
    assert rx.wait(job.task_id, timeout=60, progress=False).ok
    track = sb.record_info(job.task_id)["response"]["sunoData"][0]
    assert track["prompt"].startswith("[Verse]")  # the lyrics the service wrote
    words = client.timestamped_lyrics(task_id=job.task_id, audio_id=track["id"])
    sections = list(dict.fromkeys(words["section"]))
    assert sections[:3] == ["Verse 1", "Chorus 1", "Verse 2"]
    assert words["confidence"].between(0, 1).all() and (words["end_s"] > words["start_s"]).all()
    assert (words["end_s"] <= track["duration"]).all()


def test_an_instrumental_has_no_words(sb, rx):
    client = _client(sb, rx)
    job = client.generate(
        prompt=None, custom_mode=True, instrumental=True, style="ambient", title="Quiet"
    )
    assert rx.wait(job.task_id, timeout=60, progress=False).ok
    track = sb.record_info(job.task_id)["response"]["sunoData"][0]["id"]
    words = client.timestamped_lyrics(task_id=job.task_id, audio_id=track)
    assert words.empty and list(words.columns)[:3] == ["line", "section", "word"]
    with pytest.raises(SectionValidationError, match="no line 0"):
        client.replace_lines(
            task_id=job.task_id, audio_id=track, lines=0, new_lyrics="la", tags="x", title="y"
        )


# --- the sandbox's timings --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_sandbox_words_sit_in_their_planned_sections_on_the_beat(seed):
    plan = synth.plan_song(150.0, seed)
    text = sandbox_lyrics.invent(plan, seed)
    aligned = sandbox_lyrics.align(text, plan, seed)
    beat = 60.0 / plan.tempo
    section = None
    for w in aligned:
        if w["word"].startswith("["):
            section = w["word"][1:].split("]")[0].lower()
        assert w["success"] is True
        assert plan.section_at(w["startS"]) == section
        assert plan.section_at(w["endS"]) == section
        on_grid = w["startS"] / (beat / 4)  # on a beat, half or quarter beat
        assert abs(on_grid - round(on_grid)) < 0.05
    # A rest between lines: each line's first word starts after the last one ended.
    ends = [w["endS"] for w in aligned]
    starts = [w["startS"] for w in aligned]
    assert all(b > a for a, b in zip(ends, starts[1:], strict=False))


def test_sandbox_lyrics_too_long_for_the_song_come_back_unaligned():
    plan = synth.plan_song(40.0, 3)
    parts = [p[0] for p in plan.sections if p[0] not in ("intro", "outro")]
    text = "\n".join(f"[{name}]\nline number {i}" for i, name in enumerate([*parts, "x", "y"]))
    aligned = sandbox_lyrics.align(text, plan)
    assert [w["success"] for w in aligned].count(False) == 2 * 3
    assert np.isclose(aligned[-1]["startS"], round(plan.duration, 2))
