"""compare_takes recovers what the sandbox was told to do to a take (issue 14, "Must show").

The takes are made by a real Sandbox, delivered to a real receiver, fetched over loopback
HTTP as MP3 and decoded: the same path a notebook takes.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from suno_nb import Faults, Sandbox, SunoClient, compare_takes
from suno_nb.analysis import METRICS, loudness, measure
from suno_nb.audio import clear_memory_cache, load
from suno_nb.sandbox import synth, takes
from suno_nb.session import start_receiver, stop_receiver

# Synthesizes, encodes and measures eight takes: CPU-bound seconds, so the slow lane (CI runs it).
pytestmark = pytest.mark.slow

SECTION = (20.0, 32.0)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One sandbox, one receiver, one song and a replace task per kind of fault."""
    tmp = tmp_path_factory.mktemp("analysis")
    with Sandbox(delay=0.2, retry_backoff=0.1) as sb:
        rx = start_receiver(tmp / "a.sqlite3", tunnel=None, poll=False)
        try:
            with SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx) as client:
                rx.use_client(client)
                song = sb.create_song(duration=40, title="Harbour Lights", tags="indie pop")
                kinds = {
                    "clean": None,
                    "gain": Faults(outside_gain_db=3.0),
                    "shift": Faults(shift_ms=20.0),
                    "hard": Faults(hard_seams=True),
                }
                ids = {}
                for name, faults in kinds.items():
                    if faults is not None:
                        sb.inject(faults, count=1)
                    job = client.replace_section(
                        task_id=song.task_id,
                        audio_id=song.audio_id,
                        prompt=f"take {name}",
                        tags="jazz",
                        title=f"Harbour Lights ({name})",
                        full_lyrics="[Verse] Harbour lights\n[Bridge] take " + name,
                        infill_start_s=SECTION[0],
                        infill_end_s=SECTION[1],
                    )
                    ids[name] = job.task_id
                for task_id in ids.values():
                    assert rx.wait(task_id, timeout=60, progress=False).state == "succeeded"
                assert rx.flush(30)
                clear_memory_cache()
                table = compare_takes(rx, list(ids.values()), progress=False)
                # The autouse fixture stops the current receiver after each test; what
                # compare_takes reads from it (its tables, its client) is kept here.
                snap = SimpleNamespace(tasks=rx.tasks(), frame=rx.frame())
                view = SimpleNamespace(
                    tasks=lambda: snap.tasks,
                    frame=lambda: snap.frame,
                    lookup=lambda task_id, timeout=10.0: client.get_details(task_id),
                )
                yield {"rx": view, "sb": sb, "song": song, "ids": ids, "table": table}
        finally:
            stop_receiver()


def rows(world, name):
    t = world["table"]
    return t[t.task_id == world["ids"][name]]


def test_one_row_per_take_with_every_metric(world):
    t = world["table"]
    assert list(t.columns[-len(METRICS) - 1 : -1]) == list(METRICS)
    assert len(t) == 8 and t.error.isna().all()
    assert sorted(t["take_no"].unique()) == [1, 2]
    assert (t.original_track_id == world["song"].audio_id).all()
    assert (t.start_s == SECTION[0]).all() and (t.end_s == SECTION[1]).all()
    assert np.isfinite(t[list(METRICS)].to_numpy(dtype=float)).all()


def test_clean_takes_are_untouched_outside_and_aligned(world):
    clean = rows(world, "clean")
    assert (clean.outside_diff_db < -40).all(), clean.outside_diff_db.tolist()
    assert (clean.offset_ms.abs() <= 2).all()
    assert (clean.outside_gain_db.abs() < 0.1).all()
    assert (clean.duration_delta_s.abs() < 0.05).all()


def test_outside_gain_is_recovered(world):
    gain = rows(world, "gain")
    assert ((gain.outside_gain_db - 3.0).abs() <= 0.5).all(), gain.outside_gain_db.tolist()
    assert (gain.offset_ms.abs() <= 2).all()
    assert (gain.outside_diff_db > -20).all()  # the rest of the song did change


def test_shift_is_recovered_and_undone_before_the_other_measures(world):
    shift = rows(world, "shift")
    assert ((shift.offset_ms - 20.0).abs() <= 3).all(), shift.offset_ms.tolist()
    # Aligned, only the MP3 coding noise of two separate encodings is left (about -20 dB);
    # unaligned, 20 ms of music against itself differs as much as the music itself.
    assert (shift.outside_diff_db < -15).all(), shift.outside_diff_db.tolist()
    assert (shift.outside_gain_db.abs() < 0.5).all()
    original, sr = load(world["song"].audio_url)
    take, _ = load(world["rx"].frame().set_index("track_id").loc[shift.track_id.iloc[0]].audio_url)
    n = min(original.size, take.size)
    unaligned = measure(original[:n], take[:n], sr, *SECTION)
    assert unaligned["offset_ms"] == pytest.approx(shift.offset_ms.iloc[0], abs=0.5)
    raw = take[: 10 * sr] - original[: 10 * sr]
    assert 10 * math.log10(np.mean(raw**2) / np.mean(original[: 10 * sr] ** 2)) > -10


def test_hard_seams_score_worse_than_crossfaded_ones(world):
    clean, hard = rows(world, "clean"), rows(world, "hard")
    seams = ["seam_start_db", "seam_end_db"]
    worst_hard, worst_clean = hard[seams].max(axis=1), clean[seams].max(axis=1)  # per take
    # On 16 seeds (MP3, 22.05 kHz) the worst seam of a crossfaded take was -0.0..2.0 dB
    # (mean 0.8) and of a hard-cut one 3.0..8.6 dB (mean 5.6).
    assert worst_hard.mean() > worst_clean.mean() + 1.5, (worst_hard, worst_clean)
    assert (clean[seams].abs() < 3.5).all().all()  # crossfaded: about as smooth as the original


def test_hard_seams_on_many_seeds_without_mp3():
    """The seam measure itself, on raw samples: hard cuts are worse for every seed."""
    sr = 22050
    song = synth.synthesize_song(40.0, seed=5, sr=sr)
    for seed in range(4):
        soft = takes.replace_section(song, 10, 22, seed, sr, base_seed=5)
        hard = takes.replace_section(song, 10, 22, seed, sr, base_seed=5, hard_seams=True)
        m_soft, m_hard = measure(song, soft, sr, 10, 22), measure(song, hard, sr, 10, 22)
        worst = max(m_hard["seam_start_db"], m_hard["seam_end_db"])
        assert worst > max(m_soft["seam_start_db"], m_soft["seam_end_db"]), seed


def test_lufs_is_finite_and_matches_pyloudnorm_on_the_same_samples(world):
    original, sr = load(world["song"].audio_url)
    frame = world["rx"].frame().set_index("track_id")
    i0, i1 = round(SECTION[0] * sr), round(SECTION[1] * sr)
    import pyloudnorm  # here, not at the top: it loads scipy (1.4 s) in every collecting worker

    meter = pyloudnorm.Meter(sr)
    for row in world["table"].itertuples():
        assert math.isfinite(row.section_lufs) and math.isfinite(row.original_section_lufs)
        take, _ = load(frame.loc[row.track_id].audio_url)
        lag = round(row.offset_ms * sr / 1000)
        direct = meter.integrated_loudness(take[i0 + lag : i1 + lag].astype(np.float64))
        assert abs(row.section_lufs - direct) <= 0.5
        assert (
            abs(
                row.original_section_lufs
                - meter.integrated_loudness(original[i0:i1].astype(np.float64))
            )
            <= 0.5
        )


def test_default_task_is_the_latest_replace_task_and_unknowns_are_named(world):
    rx = world["rx"]
    latest = compare_takes(rx, progress=False)
    assert set(latest.task_id) == {world["ids"]["hard"]}
    with pytest.raises(KeyError, match="task_id"):
        compare_takes(rx, "no-such-task", progress=False)


def test_progress_shows_fetching_then_measuring(world, capsys):
    """With ``progress``, a batch shows both phases (outside a notebook: text bars on stderr)."""
    clear_memory_cache()
    t = compare_takes(world["rx"], list(world["ids"].values()), progress=True)
    err = capsys.readouterr().err
    assert "fetching audio" in err and "measuring takes" in err
    assert f"{len(t)}/{len(t)}" in err.split("measuring takes")[-1]  # one step per take


def test_unreachable_audio_is_reported_per_take_not_raised(world):
    """A take whose audio host is gone (nobody listens on its port) says so in ``error``."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connections are refused
        s.bind(("127.0.0.1", 0))
        gone = f"http://127.0.0.1:{s.getsockname()[1]}"
    task_id = world["ids"]["clean"]
    frame = world["rx"].frame().copy()
    mine = frame.task_id == task_id
    frame.loc[mine, "audio_url"] = [f"{gone}/secret-token/{t}.mp3" for t in frame[mine].track_id]
    frame.loc[mine, "stream_audio_url"] = None
    view = SimpleNamespace(tasks=world["rx"].tasks, frame=lambda: frame, lookup=world["rx"].lookup)
    clear_memory_cache()
    t = compare_takes(view, task_id, progress=False)
    assert len(t) == 2 and t.error.str.contains("take audio: .*ConnectionError").all(), t.error
    assert not t.error.str.contains("secret-token").any()  # hosts only, never paths
    assert t[list(METRICS)].isna().all().all()


def test_loudness_of_silence_and_too_short():
    assert loudness(np.zeros(22050, dtype=np.float32), 22050) == float("-inf")
    assert math.isnan(loudness(np.zeros(100, dtype=np.float32), 22050))
