"""The sandbox's audio: music-like songs, section replacement, MP3, covers (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suno_nb.sandbox import synth
from suno_nb.sandbox.synth import (
    cover_png,
    decode_audio,
    encode_mp3,
    plan_song,
    render,
    synthesize_song,
)
from suno_nb.sandbox.takes import replace_section

SR = 22050


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return synthesize_song(60.0, seed=3, sr=SR)


def test_songs_are_deterministic_and_seeded(song: np.ndarray) -> None:
    assert song.dtype == np.float32 and song.shape == (60 * SR,)
    np.testing.assert_array_equal(song, synthesize_song(60.0, seed=3, sr=SR))
    other = synthesize_song(60.0, seed=4, sr=SR)
    assert rms(other - song) > 0.5 * rms(song)
    assert np.abs(song).max() <= 1.0 and rms(song) > 0.05


def test_a_song_is_music_not_a_tone(song: np.ndarray) -> None:
    body = song[10 * SR : 50 * SR]
    # Many partials at once (chords + bass + melody + drums), not one sine.
    frame = body[: 2 * SR] * np.hanning(2 * SR)
    spectrum = np.abs(np.fft.rfft(frame))
    peaks = (spectrum[1:-1] > spectrum[:-2]) & (spectrum[1:-1] > spectrum[2:])
    strong = peaks & (spectrum[1:-1] > spectrum.max() * 0.03)
    assert strong.sum() >= 10
    # The harmony moves: the dominant low-mid frequency changes from bar to bar.
    hop = SR // 2
    dominant = set()
    for i in range(0, body.size - hop, hop):
        s = np.abs(np.fft.rfft(body[i : i + hop] * np.hanning(hop)))
        dominant.add(int(np.argmax(s[:1000])))
    assert len(dominant) >= 5
    # Percussive: short-time energy rises and falls on the beat.
    frames = body[: body.size // 1102 * 1102].reshape(-1, 1102)
    energy = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    assert energy.std() / energy.mean() > 0.15


def test_a_song_has_a_form_where_verses_repeat() -> None:
    plan = plan_song(120.0, seed=5)
    names = [name for name, _, _ in plan.sections]
    assert names[0] == "intro" and names[-1] == "outro"
    assert {"verse", "chorus", "bridge"} <= set(names)
    x = render(plan, SR)
    verses = [(s, e) for n, s, e in plan.sections if n == "verse"]
    chorus = next((s, e) for n, s, e in plan.sections if n == "chorus")
    n = int(4 * plan.bar * SR)  # the first four bars of each part
    v1 = x[int(verses[0][0] * SR) :][:n]
    v2 = x[int(verses[1][0] * SR) :][:n]
    ch = x[int(chorus[0] * SR) :][:n]
    assert np.corrcoef(v1, v2)[0, 1] > 0.9  # the second verse is the verse again
    assert np.corrcoef(v1, ch)[0, 1] < 0.5  # the chorus is another part


def test_rendering_a_window_equals_slicing_the_song(song: np.ndarray) -> None:
    plan = plan_song(60.0, seed=3)
    window = render(plan, SR, 21.3, 33.7)
    np.testing.assert_allclose(window, song[round(21.3 * SR) : round(33.7 * SR)], atol=1e-6)


def test_replace_section_changes_only_the_section(song: np.ndarray) -> None:
    start, end = 20.0, 30.0
    out = replace_section(song, start, end, seed=11, sr=SR, base_seed=3)
    i0, i1 = int(start * SR), int(end * SR)
    assert out.shape == song.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[:i0], song[:i0])
    np.testing.assert_array_equal(out[i1:], song[i1:])
    inside = slice(i0 + SR // 10, i1 - SR // 10)
    assert rms(out[inside] - song[inside]) > 0.6 * rms(song[inside])
    # Level-matched: the new part is about as loud as the old one.
    assert 0.5 < rms(out[inside]) / rms(song[inside]) < 2.0
    # Seams are crossfaded inside the section: the ramp starts at the original and the
    # first quarter of the 50 ms ramp is still mostly the original.
    assert out[i0] == pytest.approx(song[i0], abs=1e-6)
    ramp_start = slice(i0, i0 + int(0.05 * SR) // 4)
    assert rms(out[ramp_start] - song[ramp_start]) < 0.5 * rms(out[inside] - song[inside])
    # Another seed, another variant; the same seed, the same result.
    other = replace_section(song, start, end, seed=12, sr=SR, base_seed=3)
    assert rms(other[inside] - out[inside]) > 0.5 * rms(song[inside])
    np.testing.assert_array_equal(out, replace_section(song, start, end, 11, SR, base_seed=3))


def test_replace_section_rejects_a_section_outside_the_song(song: np.ndarray) -> None:
    with pytest.raises(ValueError, match="not inside"):
        replace_section(song, 55.0, 65.0, seed=1, sr=SR)
    with pytest.raises(ValueError, match="mono"):
        replace_section(np.zeros((10, 2), dtype=np.float32), 0.0, 0.0001, seed=1, sr=SR)


@settings(max_examples=15, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=50.0),
    length=st.floats(min_value=0.2, max_value=10.0),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_outside_the_section_is_always_untouched(start: float, length: float, seed: int) -> None:
    x = _short_song()
    end = min(start + length, x.size / SR)
    out = replace_section(x, start, end, seed=seed, sr=SR)
    i0, i1 = round(start * SR), round(end * SR)
    np.testing.assert_array_equal(out[:i0], x[:i0])
    np.testing.assert_array_equal(out[i1:], x[i1:])


_SHORT: list[np.ndarray] = []


def _short_song() -> np.ndarray:
    if not _SHORT:
        _SHORT.append(synthesize_song(60.0, seed=9, sr=SR))
    return _SHORT[0]


def test_mp3_round_trip_keeps_length_and_sound(song: np.ndarray) -> None:
    data = encode_mp3(song[: 10 * SR], SR)
    assert data[:3] == b"ID3" or data[0] == 0xFF  # an MP3 stream
    decoded, sr = decode_audio(data)
    assert sr == SR and decoded.size == 10 * SR
    err = decoded - song[: 10 * SR]
    assert 10 * np.log10(np.mean(song[: 10 * SR] ** 2) / np.mean(err**2)) > 10  # dB SNR


@pytest.mark.slow  # CPU-bound: two minutes of audio rendered and encoded
def test_a_two_minute_song_synthesizes_and_encodes() -> None:
    # How fast is a benchmark's question (about 1 s on a laptop), not this test's.
    data = encode_mp3(synthesize_song(120.0, seed=1, sr=SR), SR)
    assert len(data) > 100_000
    decoded, sr = decode_audio(data)
    assert sr == SR and abs(decoded.size / SR - 120.0) < 0.1  # the whole two minutes


def test_covers_are_png_and_deterministic() -> None:
    a, b = cover_png(7), cover_png(7)
    assert a.startswith(b"\x89PNG\r\n\x1a\n") and a == b
    assert cover_png(8) != a


def test_stable_seed_is_stable() -> None:
    assert synth.stable_seed("a", 1, 2.5) == synth.stable_seed("a", 1, 2.5)
    assert synth.stable_seed("a", 1) != synth.stable_seed("a", 2)
    assert 0 <= synth.stable_seed("x") < 2**31


# --- misbehaviour on purpose (Faults(outside_gain_db=..., shift_ms=..., hard_seams=...)) -----


def test_outside_gain_scales_only_the_rest_of_the_song(song: np.ndarray) -> None:
    clean = replace_section(song, 20, 32, 7, SR, base_seed=3)
    loud = replace_section(song, 20, 32, 7, SR, base_seed=3, outside_gain_db=3.0)
    i0, i1 = 20 * SR, 32 * SR
    np.testing.assert_array_equal(loud[i0:i1], clean[i0:i1])
    ratio = rms(loud[: i0 - 1]) / rms(clean[: i0 - 1])
    assert 20 * np.log10(ratio) == pytest.approx(3.0, abs=0.05)  # soft clip is not reached


def test_shift_delays_the_whole_take_keeping_its_length(song: np.ndarray) -> None:
    clean = replace_section(song, 20, 32, 7, SR, base_seed=3)
    late = replace_section(song, 20, 32, 7, SR, base_seed=3, shift_ms=20.0)
    early = replace_section(song, 20, 32, 7, SR, base_seed=3, shift_ms=-10.0)
    n = round(0.02 * SR)
    assert late.size == early.size == song.size
    assert not late[:n].any()
    np.testing.assert_array_equal(late[n:], clean[:-n])
    m = round(0.01 * SR)
    np.testing.assert_array_equal(early[:-m], clean[m:])


def test_hard_seams_cut_without_crossfade(song: np.ndarray) -> None:
    hard = replace_section(song, 20, 32, 7, SR, base_seed=3, hard_seams=True)
    soft = replace_section(song, 20, 32, 7, SR, base_seed=3)
    i0 = 20 * SR
    np.testing.assert_array_equal(hard[:i0], song[:i0])  # outside still bit for bit
    # Right after the boundary the crossfade still carries the original; the cut does not.
    k = round(0.005 * SR)
    assert rms(soft[i0 : i0 + k] - song[i0 : i0 + k]) < rms(hard[i0 : i0 + k] - song[i0 : i0 + k])
