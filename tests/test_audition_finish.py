"""The audition, finished (issue 23), driven through the widget's public model as a page would:
traits set, messages sent from the page (``tests/frontend.py``), messages sent to it read.

A stopped receiver turns ratings off with one line (and nothing claims to be kept); the
picker never leaves the task the player shows; new results are followed; a master is one
more lane; the difference view is a spectrogram of take minus original; the pre-roll is the
value used.  The page's side of each is in ``tests/test_browser_audition.py``.
"""
# ruff: noqa: F811

from __future__ import annotations

import numpy as np
import pytest

from suno_nb.audio import decode
from suno_nb.widgets import audition
from suno_nb.widgets._diff import FLOOR_DB, difference, difference_png

from .frontend import send_from_page, sent_to_page

# sb, wrx, client, song and made are test_widgets.py's fixtures, imported so that pytest finds
# them here (test parameters then "redefine" them: F811 is off for this file).
from .test_widgets import (  # noqa: F401
    PNG_MAGIC,
    WAIT_S,
    _replace,
    client,
    made,
    sb,
    settle,
    song,
    wrx,
)

# --- the difference view, pure ------------------------------------------------------------------


def _tone(sr: int, seconds: float, hz: float, seed: int = 0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.3 * np.sin(2 * np.pi * hz * t) + noise).astype(np.float32)


def test_difference_is_dark_outside_the_section_and_bright_inside_after_undoing_the_offset():
    sr = 16000
    original = _tone(sr, 20.0, 220.0)
    take = original.copy()
    a, b = int(8 * sr), int(12 * sr)
    take[a:b] = _tone(sr, 4.0, 660.0, seed=1)  # new music in the section
    late = np.concatenate([np.zeros(int(0.012 * sr), np.float32), take])  # 12 ms late
    d = difference(original, late, sr, 8.0, 12.0, offset_s=0.012, context=3.0)
    assert d.window == (5.0, 15.0)
    inside, before, after = d.level(8.2, 11.8), d.level(5.0, 7.8), d.level(12.2, 15.0)
    assert inside > -20  # the new section: as loud as the music
    assert before == FLOOR_DB and after == FLOOR_DB  # aligned: the rest cancels exactly
    unaligned = difference(original, late, sr, 8.0, 12.0, offset_s=0.0, context=3.0)
    assert unaligned.level(5.0, 7.8) > -40  # not undoing the offset leaves the rest bright
    png = difference_png(d, label="Take 1")
    assert png[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="section"):
        difference(original, take, sr, 12.0, 8.0)


# --- with a receiver, a sandbox and the real client -------------------------------------------


def _done(rx, client, song, *sections, title="Take"):
    jobs = [_replace(client, song, a, b, title=f"{title} {i}") for i, (a, b) in enumerate(sections)]
    for job in jobs:
        rx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    return jobs


@pytest.mark.slow  # renders and decodes songs
def test_a_stopped_receiver_turns_ratings_off_with_one_line_and_claims_nothing(
    client, wrx, song, made
):
    _done(wrx, client, song, (20.0, 32.0))
    au = audition(wrx)
    made.append(au)
    assert au.live and au.offline == ""
    take1 = au.lanes[1]["track_id"]
    wrx.stop()
    assert not au.live  # told by the feed's "stopped", before any click
    assert "receiver is stopped" in au.offline
    assert "snb.start_receiver(" in au.offline and "snb.widgets.audition(rx)" in au.offline
    assert str(wrx.store.path) in au.offline  # the same store brings the ratings back
    before = dict(au.ratings)
    for msg in (
        {"type": "note", "track_id": take1, "note": "horns!"},
        {"type": "rate", "track_id": take1, "stars": 4},
        {"type": "pick", "track_id": take1, "picked": True},
    ):
        send_from_page(au, msg)
        assert au.feedback.startswith("Not saved.") and "kept" not in au.feedback.lower()
        assert "store is closed" not in au.feedback  # the line, not a raw error
    assert au.ratings == before


@pytest.mark.slow
def test_an_audition_made_after_the_stop_says_ratings_are_off(client, wrx, song, made):
    (job,) = _done(wrx, client, song, (20.0, 32.0))
    wrx.stop()
    au = audition(wrx, task_ids=[job.task_id])
    made.append(au)
    assert not au.live and "start_receiver" in au.offline
    assert au.lanes == [] and "store is closed" in au.message


@pytest.mark.slow
def test_with_the_receiver_stopped_the_picker_stays_on_the_task_the_player_plays(
    client, wrx, song, made
):
    first, second, third = _done(wrx, client, song, (5.0, 15.0), (20.0, 30.0), (40.0, 50.0))
    au = audition(wrx, task_ids=[first.task_id, second.task_id, third.task_id])
    made.append(au)
    au.task_id = second.task_id  # seen once while the receiver ran
    assert au.wait_idle(WAIT_S) and au.section == [20.0, 30.0]
    au.task_id = first.task_id
    assert au.wait_idle(WAIT_S) and au.section == [5.0, 15.0]
    wrx.stop()  # 03's last cell
    au.task_id = third.task_id  # never built: nothing can load it now
    assert au.task_id == first.task_id and au.section == [5.0, 15.0]  # picker == player
    assert third.task_id[:8] in au.feedback
    assert "cannot be loaded: the receiver is stopped" in au.feedback
    au.task_id = second.task_id  # built before: shown from memory
    assert au.task_id == second.task_id and au.section == [20.0, 30.0]
    assert second.task_id[:8] in au.heading["detail"]


@pytest.mark.slow
def test_new_results_are_followed_and_picker_entries_tell_tasks_apart(client, wrx, song, made):
    (first,) = _done(wrx, client, song, (20.0, 32.0))
    au = audition(wrx)
    made.append(au)
    assert au.task_id == first.task_id and au.fresh == []
    (second,) = _done(wrx, client, song, (40.0, 50.0), title="Later")
    settle(wrx, au)
    assert au.fresh == [second.task_id]  # announced; the page moves there when idle
    assert au.task_id == first.task_id  # never pulled away from under the listener
    labels = [t["label"] for t in au.tasks]
    assert len(set(labels)) == 2
    newest = au.tasks[0]
    assert newest["task_id"] == second.task_id
    assert newest["section"].startswith("0:40.00") and newest["prompt"] == "new words"
    assert newest["state"] == "succeeded" and newest["takes"] == "2" and newest["time"]
    assert "0:40.00" in newest["label"] and "2 takes" in newest["label"]
    au.task_id = second.task_id  # "show it" in the page
    assert au.wait_idle(WAIT_S)
    assert au.section == [40.0, 50.0] and au.fresh == []


@pytest.mark.slow
def test_a_master_is_one_more_lane_and_the_difference_view_comes_as_a_png(client, wrx, song, made):
    (job,) = _done(wrx, client, song, (20.0, 32.0))
    takes = wrx.frame()
    wrx.pick(takes["track_id"].iloc[0])
    master = wrx.master()
    au = audition(wrx, master=master)
    made.append(au)
    kinds = [lane["kind"] for lane in au.lanes]
    assert kinds == ["original", "take", "take", "master"]
    lane = au.lanes[-1]
    assert lane["label"] == "Master" and lane["bytes"] and lane["offset_s"] == 0.0
    assert abs(lane["duration"] - master.duration) < 0.05 and len(lane["peaks"]) >= 700
    assert lane["metrics"]["seam_start_db"] is not None
    assert "+ master" in au.summary()
    sent = sent_to_page(au)
    send_from_page(au, {"type": "audio", "key": "master"})
    send_from_page(au, {"type": "diff", "key": "take1"})
    send_from_page(au, {"type": "diff", "key": "master"})
    send_from_page(au, {"type": "diff", "key": "original"})
    assert au.wait_idle(WAIT_S)
    by = {(c["type"], c["key"]): (c, b) for c, b in sent}
    content, buffers = by[("audio", "master")]
    samples, sr = decode(bytes(buffers[0]))
    assert abs(samples.size / sr - master.duration) < 0.2
    for key in ("take1", "master"):
        content, buffers = by[("diff", key)]
        assert bytes(buffers[0])[:8] == PNG_MAGIC
        assert "inside the section" in content["caption"]
    content, _ = by[("diff_error", "original")]
    assert "compare with the original" in content["message"]
    # the master, spliced with crossfades, is closer to the original outside the section
    # than inside it; its caption says so in numbers
    cap = by[("diff", "master")][0]["caption"]
    inside, around = (float(x.split(" dB")[0].split()[-1]) for x in cap.split(", "))
    assert inside > around

    # without master=, the newest saved master of this original shows
    path = master.save(wrx.store.path + ".master.wav")
    au2 = audition(wrx, job.task_id)
    made.append(au2)
    assert [lane["kind"] for lane in au2.lanes][-1] == "master" and path.exists()
    path.unlink()  # moved away: no saved master left to show
    au2.show_master(None)
    assert [lane["kind"] for lane in au2.lanes] == ["original", "take", "take"]
    au2.show_master(master)  # given in a cell: shown at once
    assert [lane["kind"] for lane in au2.lanes][-1] == "master"


def test_the_preroll_is_the_value_used(wrx, made):
    au = audition(wrx)  # nothing to show yet: the transport settings still hold
    made.append(au)
    au.set_state({"preroll": -5})  # what a page's box could send
    assert au.preroll == 0.0
    au.set_state({"preroll": 99})
    assert au.preroll == 30.0
    with pytest.raises(ValueError, match="context"):
        audition(wrx, context=31)
