"""rx.master(): the original with the picked takes' sections spliced in (issue 23).

A real Sandbox makes one song and replace tasks on two sections of it (plus one that
overlaps the first); a real receiver gets the results; the master is built from MP3s fetched
over loopback, as in a notebook.  The sandbox's own MP3s are checked for headroom too.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import requests
import soundfile as sf

from suno_nb import Faults, Sandbox, SunoClient, compare_takes
from suno_nb.audio import load
from suno_nb.errors import MasterError
from suno_nb.sandbox import decode_audio
from suno_nb.session import start_receiver, stop_receiver

# Seconds of synthesis and MP3 coding per module (a song and six takes): the slow lane, so
# the fast lane stays under 90 s on two cores.  CI runs both.
pytestmark = pytest.mark.slow

SECTIONS = {"a": (12.0, 22.0), "b": (36.0, 46.0), "overlap": (18.0, 28.0)}
SONG_S = 60.0
LOUD = (2.0, 12.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One song, a replace task per section, one take picked of "a" and of "b"."""
    tmp = tmp_path_factory.mktemp("master")
    path = tmp / "m.sqlite3"
    with Sandbox(delay=0.2, retry_backoff=0.1) as sb:
        rx = start_receiver(path, tunnel=None, poll=False, archive=False)
        try:
            with SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx) as client:
                rx.use_client(client)
                song = sb.create_song(duration=SONG_S, title="Harbour Lights", tags="indie pop")
                ids = {}
                for name, (start, end) in SECTIONS.items():
                    job = client.replace_section(
                        task_id=song.task_id,
                        audio_id=song.audio_id,
                        prompt=f"take {name}",
                        tags="jazz",
                        title=f"Harbour Lights ({name})",
                        full_lyrics="[Verse] Harbour lights\n[Bridge] take " + name,
                        infill_start_s=start,
                        infill_end_s=end,
                    )
                    ids[name] = job.task_id
                sb.inject(Faults(outside_gain_db=3.0), count=1)  # the rest comes back louder
                ids["loud"] = client.replace_section(
                    task_id=song.task_id,
                    audio_id=song.audio_id,
                    prompt="take loud",
                    tags="jazz",
                    title="Harbour Lights (loud)",
                    full_lyrics="[Verse] Harbour lights\n[Bridge] take loud",
                    infill_start_s=LOUD[0],
                    infill_end_s=LOUD[1],
                ).task_id
                other = sb.create_song(duration=SONG_S, title="Other Song", tags="folk")
                ids["other"] = client.replace_section(
                    task_id=other.task_id,
                    audio_id=other.audio_id,
                    prompt="take other",
                    tags="jazz",
                    title="Other Song (b)",
                    full_lyrics="[Verse] Another\n[Bridge] take other",
                    infill_start_s=SECTIONS["b"][0],
                    infill_end_s=SECTIONS["b"][1],
                ).task_id
                for task_id in ids.values():
                    assert rx.wait(task_id, timeout=60, progress=False).state == "succeeded"
                frame = rx.frame()
                takes = {n: list(frame[frame.task_id == t].track_id) for n, t in ids.items()}
                rx.pick(takes["a"][0])
                rx.pick(takes["b"][1])
                master = rx.master()
                assert rx.flush(30)
                yield {
                    "sb": sb,
                    "client": client,
                    "path": path,
                    "song": song,
                    "ids": ids,
                    "takes": takes,
                    "frame": frame,
                    "master": master,
                }
        finally:
            stop_receiver()


@pytest.fixture
def rx(world):
    """A receiver on the world's store (the autouse fixture stops it after the test)."""
    r = start_receiver(world["path"], tunnel=None, poll=False, archive=False)
    r.use_client(world["client"])
    return r


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def _aligned(world, track_id: str, offset_ms: float, sr: int, n: int) -> np.ndarray:
    url = world["frame"].set_index("track_id").loc[track_id, "audio_url"]
    take, take_sr = load(url)
    assert take_sr == sr
    lag = round(offset_ms * sr / 1000)
    out = np.zeros(n, dtype=np.float32)
    src = take[max(lag, 0) :]
    m = min(n - max(-lag, 0), src.size)
    out[max(-lag, 0) : max(-lag, 0) + m] = src[:m]
    return out


def test_master_splices_each_picked_section_into_the_original(world):
    m, sr = world["master"], world["master"].sample_rate
    original, osr = load(world["song"].audio_url)
    assert osr == sr and m.audio.dtype == np.float32 and m.audio.ndim == 2
    assert abs(m.audio.shape[1] - original.size) / sr <= 0.010
    mono = m.audio.mean(axis=0)
    secs = m.sections
    assert list(secs.task_id) == [world["ids"]["a"], world["ids"]["b"]]
    assert list(secs.track_id) == [world["takes"]["a"][0], world["takes"]["b"][1]]
    assert list(zip(secs.start_s, secs.end_s, strict=True)) == [SECTIONS["a"], SECTIONS["b"]]
    half = sr // 2
    outside_from = 0
    for row in secs.itertuples():
        i0, i1 = round(row.start_s * sr), round(row.end_s * sr)
        take = _aligned(world, row.track_id, row.offset_ms, sr, original.size)
        inside = slice(i0 + half, i1 - half)
        assert _corr(mono[inside], take[inside]) >= 0.95
        assert _corr(mono[inside], original[inside]) < 0.9  # new music, not the old
        outside = slice(outside_from + (half if outside_from else 0), i0 - half)
        assert _corr(mono[outside], original[outside]) >= 0.99
        outside_from = i1
    assert _corr(mono[outside_from + half :], original[outside_from + half :]) >= 0.99
    assert secs[["seam_start_db", "seam_end_db"]].notna().all().all()


def test_seams_do_not_click(world):
    m, sr = world["master"], world["master"].sample_rate
    jumps = np.abs(np.diff(m.audio.mean(axis=0).astype(np.float64)))
    for row in m.sections.itertuples():
        for seam in (row.seam_start_s, row.seam_end_s):
            assert abs(seam - (row.start_s if seam < row.end_s - 1 else row.end_s)) <= 0.051
            at, reach = round(seam * sr), round(0.03 * sr)  # the crossfade and a bit
            near = jumps[at - reach : at + reach].max()
            around = np.concatenate(
                [jumps[at - sr // 2 : at - reach], jumps[at + reach : at + sr // 2]]
            )
            assert near <= 1.5 * around.max(), (seam, near, around.max())
        assert 20 <= row.crossfade_start_ms <= 50 and 20 <= row.crossfade_end_ms <= 50  # auto


def test_save_round_trips_and_is_listed_with_its_sha256(world, rx, tmp_path):
    m = rx.master(world["takes"]["a"][:1] + world["takes"]["b"][1:])
    wav = m.save(tmp_path / "song.wav")
    data, sr = sf.read(wav, dtype="float32", always_2d=True)
    info = sf.info(str(wav))
    assert sr == m.sample_rate and data.shape == m.audio.T.shape
    lsb = 2.0**-23 if info.subtype == "PCM_24" else 2.0**-15 if info.subtype == "PCM_16" else 0
    assert np.max(np.abs(data - m.audio.T)) <= lsb + 1e-9
    flac = m.save(tmp_path / "song.flac", format="flac")
    assert sf.info(str(flac)).format == "FLAC"
    listed = rx.masters()
    row = listed[listed.master_id == m.master_id].iloc[0]
    assert row.path == str(flac.resolve()) and row.format == "flac"
    assert row.sha256 == hashlib.sha256(flac.read_bytes()).hexdigest()
    assert row.picks == [world["takes"]["a"][0], world["takes"]["b"][1]]
    # the fixture's master (never saved) is listed too, without a file
    first = listed[listed.master_id == world["master"].master_id].iloc[0]
    assert pd.isna(first.path) and pd.isna(first.sha256)


def test_save_never_clips(world, tmp_path):
    m = world["master"]
    loud = type(m)(
        m.audio * np.float32(1.6 / np.abs(m.audio).max()), m.sample_rate, m.sections, "x"
    )
    wav = loud.save(tmp_path / "loud.wav")
    assert sf.info(str(wav)).subtype == "FLOAT"
    data, _ = sf.read(wav, dtype="float32", always_2d=True)
    np.testing.assert_array_equal(data, loud.audio.T)
    flac = loud.save(tmp_path / "loud.flac", format="flac")
    data, _ = sf.read(flac, dtype="float32", always_2d=True)
    assert np.abs(data).max() < 1.0 and _corr(data[:, 0], loud.audio[0]) > 0.9999


def test_overlapping_sections_are_refused(world, rx):
    a, over = world["takes"]["a"][0], world["takes"]["overlap"][0]
    with pytest.raises(MasterError, match="overlap") as err:
        rx.master([a, over])
    assert world["ids"]["a"] in str(err.value) and world["ids"]["overlap"] in str(err.value)
    assert "12-22" in str(err.value) and "18-28" in str(err.value)


def test_takes_of_different_originals_are_refused(world, rx):
    with pytest.raises(MasterError, match="different originals") as err:
        rx.master([world["takes"]["a"][0], world["takes"]["other"][0]])
    assert world["song"].audio_id in str(err.value)


def test_no_pick_is_refused(tmp_path):
    empty = start_receiver(tmp_path / "empty.sqlite3", tunnel=None, poll=False)
    with pytest.raises(MasterError, match="nothing is picked"):
        empty.master()
    with pytest.raises(MasterError, match="empty"):
        empty.master([])
    with pytest.raises(ValueError, match="crossfade_ms"):
        empty.master(crossfade_ms=-5)
    assert len(empty.masters()) == 0


def test_sandbox_mp3s_decode_below_full_scale(world):
    """The synthesis leaves headroom for MP3's overshoot: a faithful 16-bit export of a
    sandbox file does not clip (it used to peak at 1.17-1.29)."""
    urls = [world["song"].audio_url, *world["frame"].audio_url]
    assert len(urls) == 11  # the original and two takes of each of five tasks
    for url in urls:
        samples, _ = decode_audio(requests.get(url, timeout=30).content)
        assert 0.1 < np.abs(samples).max() < 1.0, url


def test_the_master_shows_its_sections_and_after_saving_a_player_for_the_file(
    world, rx, tmp_path, monkeypatch
):
    """The display never embeds the audio (saved notebooks stay small): before saving it
    says how to listen; after saving in the working folder it plays that file."""
    m = rx.master()
    before = m._repr_html_()
    assert "<audio" not in before and "save it" in before
    assert world["ids"]["a"] in before and world["ids"]["b"] in before
    monkeypatch.chdir(tmp_path)
    m.save(tmp_path / "takes" / "my song.wav")
    after = m._repr_html_()
    assert '<audio controls preload="none" src="takes/my%20song.wav">' in after
    assert "base64" not in after and len(after) < 10_000
    monkeypatch.chdir(tmp_path / "takes")
    elsewhere = tmp_path / "elsewhere.wav"
    m.save(elsewhere)  # outside the served folder: no player that could not load
    assert "<audio" not in m._repr_html_()


def test_a_fixed_crossfade_and_no_loudness_matching(world, rx):
    m = rx.master(crossfade_ms=40, match_loudness=False)
    assert (m.sections.crossfade_start_ms == 40).all() and (m.sections.crossfade_end_ms == 40).all()
    assert (m.sections.gain_db == 0).all()
    listed = rx.masters().set_index("master_id")
    assert listed.loc[m.master_id, "crossfade_ms"] == 40
    assert not listed.loc[m.master_id, "match_loudness"]


def test_loudness_is_matched_on_the_music_around_the_section(world, rx):
    """A take whose whole rest came back 3 dB louder is brought back down by 3 dB, so the
    master's level outside the section is the original's and no step is heard at the seams."""
    take = world["takes"]["loud"][0]
    m = rx.master([take])
    (row,) = m.sections.itertuples()
    measured = compare_takes(rx, world["ids"]["loud"], progress=False)
    louder = measured.set_index("track_id").loc[take, "outside_gain_db"]
    assert 2.0 <= louder <= 3.5 and abs(row.gain_db + louder) <= 0.3, (row.gain_db, louder)
    unmatched = rx.master([take], match_loudness=False)
    assert unmatched.sections.gain_db.iloc[0] == 0
    sr = m.sample_rate
    original, _ = load(world["song"].audio_url)
    inside = slice(round((LOUD[0] + 0.5) * sr), round((LOUD[1] - 0.5) * sr))
    ratio = np.sqrt(np.mean(m.audio[0, inside] ** 2) / np.mean(unmatched.audio[0, inside] ** 2))
    assert abs(20 * np.log10(ratio) - row.gain_db) <= 0.1
    after = slice(round((LOUD[1] + 0.5) * sr), None)
    assert _corr(m.audio[0, after], original[after]) >= 0.99
