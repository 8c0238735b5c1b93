"""Widgets driven headless through their Python API, against the Sandbox, a real receiver
and the real client: values are set, buttons ``.click()``-ed, and updates made on the
receiver's dispatcher thread (callbacks landing, debounced redraws, lookups, the submit) are
awaited on events: ``rx.wait``, ``rx.flush`` and the widgets' ``wait_idle`` (never sleeps).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import requests

import suno_nb.audio as audio
from suno_nb import Faults, Sandbox, SunoClient
from suno_nb.audio import CACHE_ENV, decode
from suno_nb.session import start_receiver, stop_receiver
from suno_nb.widgets import (
    Audition,
    SubmitForm,
    Tracker,
    audition,
    fragment_url,
    submit_form,
    tracker,
)

from .frontend import send_from_page, sent_to_page, shown
from .test_audio_fetch import stub_receiver

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WAIT_S = 30.0  # generous bounds for waits on events (a failure guard, not a measurement)


def settle(rx, *widgets) -> None:
    """Wait until what was committed so far reached the widgets and they drew it."""
    assert rx.flush(WAIT_S)
    for w in widgets:
        assert w.wait_idle(WAIT_S)


@contextmanager
def trait_change(widget, name: str, check=lambda value: True) -> Iterator[threading.Event]:
    """An Event set when ``widget.<name>`` changes to a value ``check`` accepts."""
    event = threading.Event()

    def seen(change: dict[str, Any]) -> None:
        if check(change["new"]):
            event.set()

    widget.observe(seen, names=name)
    try:
        yield event
    finally:
        widget.unobserve(seen, names=name)


def land(rx, task_id: str, song, *, code: int = 200) -> None:
    """POST a final callback for ``task_id`` to ``rx`` as the service would (the receiver
    answers after its commit)."""
    track = {
        "id": str(uuid.uuid4()),
        "audio_url": song.audio_url,
        "stream_audio_url": song.audio_url,
        "image_url": song.tracks[0].image_url,
        "prompt": "[Bridge] new words",
        "model_name": "chirp-v3-5",
        "title": "Landed by hand",
        "tags": "indie pop",
        "createTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "duration": song.duration,
    }
    body = {
        "code": code,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": [track]},
    }
    with requests.Session() as http:
        http.trust_env = False  # loopback only: never through a proxy
        reply = http.post(rx.url, json=body, timeout=10)
    assert reply.status_code == 200, reply.text


@pytest.fixture
def sb():
    with Sandbox(delay=0.5, retry_backoff=0.1) as sandbox:
        yield sandbox


@pytest.fixture
def wrx(tmp_path):
    receiver = start_receiver(tmp_path / "w.sqlite3", tunnel=None, poll=False)
    yield receiver
    stop_receiver()


@pytest.fixture
def client(sb, wrx):
    with SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=wrx) as c:
        yield c


@pytest.fixture
def song(sb):
    return sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")


@pytest.fixture
def made():
    """Widgets created by a test; closed afterwards (unsubscribes them from the feed)."""
    widgets: list = []
    yield widgets
    for w in widgets:
        w.close()


def _form(client, rx, made, **kw) -> SubmitForm:
    form = submit_form(client, rx, **kw)
    made.append(form)
    return form


def _fill(form: SubmitForm, song, section=(20.0, 32.0)) -> None:
    form.task_id.value = song.task_id
    form.audio_id.value = song.audio_id
    assert form.wait_idle(WAIT_S)  # the original is looked up on the dispatcher thread
    form.full_lyrics.value = "[Verse] Harbour lights\n[Bridge] The tide turns, the lights go on"
    form.prompt.value = "[Bridge] The tide turns, the lights go on"
    form.tags.value = "indie pop, brass"
    form.title.value = "Harbour Lights (new bridge)"
    form.section.value = section


def _replace(client, song, start=20.0, end=32.0, title="Take"):
    return client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="new words",
        tags="jazz",
        title=title,
        full_lyrics="[Verse] la la la\n[Chorus] new words",
        infill_start_s=start,
        infill_end_s=end,
        original_duration=song.duration,
    )


def _rows(html: str) -> dict[str, str]:
    """task id -> state, from the tracker's table."""
    return dict(re.findall(r"<tr data-task-id='([^']+)' data-state='([^']+)'", html))


# --- empty receiver -----------------------------------------------------------------------------


def test_entry_points_display_something_sensible_with_an_empty_receiver(client, wrx, made):
    form, tr, au = submit_form(client, wrx), tracker(wrx), audition(wrx)
    made += [form, tr, au]
    assert isinstance(form, SubmitForm) and isinstance(tr, Tracker) and isinstance(au, Audition)
    # stable plain-text reprs: what nbval compares for a displayed widget
    assert repr(form) == "SubmitForm(replace a section)"
    assert repr(tr) == "Tracker(filter='all')"
    assert repr(au) == "Audition(context=3 s)"
    for w in (form, tr):
        bundle = shown(w)
        assert bundle["text/plain"] == repr(w)
        assert "application/vnd.jupyter.widget-view+json" in bundle
    data = shown(au)
    assert data["text/plain"] == repr(au)
    assert "application/vnd.jupyter.widget-view+json" in data and "image/png" not in data
    assert form.submit.disabled
    assert "task_id" in form.reason and "non-empty" in form.reason
    assert "Pick a known track" in form.original_info.value
    assert form.known.options == (("— type the ids below, or pick a known track —", ""),)
    assert form.section.disabled and form.section.peaks == [] and form.section.lines == []
    assert "No tasks yet" in tr.html.value
    assert "Nothing to audition yet" in au.message
    assert au.task_id == "" and au.lanes == [] and au.tasks == []


# --- submit form ----------------------------------------------------------------------------------


def test_invalid_range_disables_submit_and_shows_field_and_limit(client, wrx, song, made):
    form = _form(client, wrx, made)
    _fill(form, song)
    assert form.original.duration == song.duration and form.original.origin == "service"
    assert form.section.duration == song.duration and not form.section.disabled
    assert form.reason == "" and not form.submit.disabled
    assert "Ready to submit" in form.validation.value
    assert form.section.checks == "" and form.section.ready

    # the page drags the region: it sets start and end (one message), as a front end does
    form.section.set_state({"start": 20.0, "end": 28.0})  # 8 s: shorter than the 10 s
    assert form.submit.disabled and not form.section.ready
    assert form.reason.startswith("infill_end_s:") and "(limit: 10 s)" in form.reason
    assert "infill_end_s" in form.validation.value and "limit: 10 s" in form.validation.value
    assert form.section.checks == form.reason  # shown on the waveform, live

    form.section.set_state({"start": 0.0, "end": 35.0})  # 35 s of 60 s: over 50 %
    assert form.submit.disabled
    assert "50%" in form.reason and "(limit: 30 s)" in form.reason
    assert "50%" in form.section.checks

    assert form.section.decimals == client.provider.section.decimals  # the page rounds so

    form.section.value = (20.0, 32.0)
    assert form.section.checks == "" and not form.submit.disabled
    form.title.value = "   "
    assert form.submit.disabled and form.reason.startswith("title:")
    assert "non-empty" in form.reason
    assert form.section.checks == "" and not form.section.ready  # not a section rule

    form.title.value = "x" * 101
    assert form.reason.startswith("title:") and "(limit: 100)" in form.reason

    form.submit.click()  # a click while invalid sends nothing
    assert "Not sent" in form.status.value
    assert len(wrx.tasks()) == 0

    form.title.value = "Fine"
    assert not form.submit.disabled and "12.00 s" in form.section.info


def test_valid_submit_creates_a_task_and_shows_its_id(client, wrx, song, made):
    form = _form(client, wrx, made)
    _fill(form, song, section=(20.0, 32.5))
    form.submit.click()
    assert form.wait_idle(WAIT_S)  # sent from a worker thread
    job = form.last_job
    assert job is not None and job.infill_start_s == 20.0 and job.infill_end_s == 32.5
    assert job.callback_url == wrx.url
    tasks = wrx.tasks()
    assert tasks["task_id"].tolist() == [job.task_id]
    row = tasks.iloc[0]
    # pending, or already done when the sandbox (0.5 s) beat this line on a loaded machine
    assert row["state"] in ("pending", "succeeded") and row["parent_task_id"] == song.task_id
    assert row["audio_id"] == song.audio_id and row["title"] == "Harbour Lights (new bridge)"
    assert job.task_id in form.status.value and "Submitted" in form.status.value
    assert wrx.store.task(job.task_id)["full_lyrics"].startswith("[Verse] Harbour lights")
    # a second click with the same settings does not create a second paid task
    form.submit.click()
    assert form.wait_idle(WAIT_S)
    assert len(wrx.tasks()) == 1 and "Not sent again" in form.status.value
    result = wrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    assert result.ok and len(result.tracks) == 2


def test_service_error_shows_in_the_form_without_raising(client, wrx, sb, song, made):
    form = _form(client, wrx, made)
    _fill(form, song)
    sb.credits = 1  # a replace costs 5
    form.submit.click()  # must not raise
    assert form.wait_idle(WAIT_S)
    assert "code 402" in form.status.value and "Insufficient credits" in form.status.value
    assert "Traceback" not in form.status.value
    assert form.last_job is None and len(wrx.tasks()) == 0
    assert not form.submit.disabled  # the user may top up and try again


def test_unreachable_service_shows_in_the_form(wrx, song, made):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dead = SunoClient(base_url=f"http://127.0.0.1:{port}", api_key="k", get_retries=0)
    form = _form(dead, wrx, made, task_id=song.task_id, audio_id=song.audio_id)
    assert form.wait_idle(WAIT_S)
    # the lookup failed: shown as a warning, the section is still checked without it
    assert "could not look up" in form.original_info.value
    assert form.original.duration is None
    form.prompt.value, form.tags.value, form.title.value = "p", "t", "T"
    form.full_lyrics.value = "la la"
    form.section.value = (10.0, 20.0)
    assert not form.submit.disabled
    form.submit.click()
    assert form.wait_idle(WAIT_S)
    assert "No answer from the service" in form.status.value
    assert "Connection refused" in form.status.value


@pytest.mark.slow  # renders and decodes several songs: CI's slow run
def test_known_tracks_fill_the_ids_and_the_waveform_is_drawn(client, wrx, song, made):
    job = _replace(client, song)
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    form = _form(client, wrx, made, section=(5.0, 15.0))
    options = {v: k for k, v in form.known.options if v}
    takes = wrx.frame()
    for track_id in takes["track_id"]:
        assert (job.task_id, track_id) in options
    assert (song.task_id, song.audio_id) in options  # the original of a submitted task
    target = (job.task_id, takes["track_id"].iloc[1])
    form.known.value = target
    assert (form.task_id.value, form.audio_id.value) == target
    assert form.original.origin == "frame" and form.original.duration == song.duration
    assert form.original.audio_url == takes["audio_url"].iloc[1]
    assert form.wait_idle(WAIT_S)
    peaks = form.section.peaks  # the page draws these: no picture, no audio in the state
    assert len(peaks) == 800 and 0 < max(peaks) <= 255 and form.section.message == ""
    assert form.section.value == (5.0, 15.0) and form.section.duration == song.duration
    # typing other ids clears the pick
    form.task_id.value = song.task_id
    form.audio_id.value = song.audio_id
    assert form.wait_idle(WAIT_S)
    assert form.known.value == "" and form.original.origin == "service"


# --- tracker --------------------------------------------------------------------------------------


def test_tracker_rows_change_when_the_callback_lands(client, wrx, sb, song, made):
    tr = tracker(wrx)
    made.append(tr)
    assert "No tasks yet" in tr.html.value
    sb.delay = 3600  # the sandbox holds its callback: this test lands it by hand
    job = _replace(client, song)
    # the feed delivers the submission, then the callback flips it: no refresh() called
    settle(wrx, tr)
    assert _rows(tr.html.value) == {job.task_id: "pending"}
    assert "waiting for the callback" in tr.html.value
    assert "0:20.00–0:32.00 (12.00 s)" in tr.html.value
    with trait_change(tr.html, "value", lambda v: "data-state='succeeded'" in v) as drawn:
        land(wrx, job.task_id, song)
        assert drawn.wait(WAIT_S)
    html = tr.html.value
    assert _rows(html) == {job.task_id: "succeeded"} and ">callback<" in html
    # a success says nothing more: no "200 · All generated successfully." on the row
    assert "All generated successfully." not in html and "200" not in _cells(html)[6]
    assert "1 task · 0 pending · 1 succeeded · 0 failed" in re.sub(r"<[^>]+>", "", html)


def _cells(html: str) -> list[str]:
    """The cells of the table's first row, as HTML."""
    row = re.search(r"<tr data-task-id=.*?</tr>", html, re.S)
    assert row is not None
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)


def test_tracker_elapsed_time_ticks_while_pending_and_stops_ticking(client, wrx, sb, song, made):
    sb.delay = 60  # stays pending for the whole test
    tr = tracker(wrx, tick=0.2)
    made.append(tr)
    assert not tr.ticking  # nothing open: no timer
    job = _replace(client, song)
    settle(wrx, tr)

    def elapsed(html: str) -> str | None:
        m = re.search(
            r"data-state='pending'>(?:<td[^>]*>.*?</td>){4}<td[^>]*>([^<]+)</td>", html, re.S
        )
        return m.group(1) if m else None

    first = elapsed(tr.html.value)
    assert first is not None and tr.ticking
    with trait_change(tr.html, "value", lambda v: elapsed(v) not in (None, first)) as ticked:
        assert ticked.wait(WAIT_S)  # redrawn by the tick alone: nothing was committed
    assert re.fullmatch(r"\d+ s", elapsed(tr.html.value) or "")
    tr.filter.value = "succeeded"  # no open task shown: the tick is not renewed
    with trait_change(tr.html, "value") as redrawn:
        land(wrx, job.task_id, song)
        assert redrawn.wait(WAIT_S)
    settle(wrx, tr)
    assert not tr.ticking
    tr.filter.value = "all"
    assert not tr.ticking  # the task is done: nothing to tick for
    tr.close()
    assert not tr.live and not tr.ticking


def test_tracker_filter(client, wrx, sb, song, made):
    ok = _replace(client, song, title="Good take")
    sb.inject(Faults(error_code=501), count=1)
    bad = _replace(client, song, 30.0, 40.0, title="Bad take")
    wrx.wait(ok.task_id, timeout=WAIT_S, progress=False)
    wrx.wait(bad.task_id, timeout=WAIT_S, progress=False)
    assert wrx.flush(WAIT_S)
    tr = tracker(wrx)
    made.append(tr)
    assert _rows(tr.html.value) == {ok.task_id: "succeeded", bad.task_id: "failed"}
    tr.filter.value = "failed"
    assert _rows(tr.html.value) == {bad.task_id: "failed"}
    assert "501" in tr.html.value and "Bad take" in tr.html.value  # a failure says why
    assert "Good take" not in tr.html.value
    tr.filter.value = "succeeded"
    assert _rows(tr.html.value) == {ok.task_id: "succeeded"}
    tr.filter.value = "pending"
    assert _rows(tr.html.value) == {} and "No pending tasks" in tr.html.value
    assert repr(tr) == "Tracker(filter='pending')"
    tr.filter.value = "all"
    assert tr.refresh() == tr.html.value and len(_rows(tr.html.value)) == 2
    # newest first
    assert list(_rows(tr.html.value)) == [bad.task_id, ok.task_id]


# --- audition -------------------------------------------------------------------------------------


@pytest.mark.slow  # seconds of audio work: the fast lane stays under 90 s; CI runs it
def test_audition_lanes_metrics_peaks_and_no_audio_in_the_state(client, wrx, song, made):
    job = _replace(client, song, 20.0, 32.0)
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    au = audition(wrx)  # default: the newest succeeded replace task of this session
    made.append(au)
    assert au.task_id == job.task_id and au.section == [20.0, 32.0]
    assert [lane["label"] for lane in au.lanes] == ["Original", "Take 1", "Take 2"]
    takes = wrx.frame()
    assert [lane["track_id"] for lane in au.lanes] == [song.audio_id, *takes["track_id"]]
    for lane in au.lanes:
        assert lane["bytes"] and lane["url"] == "" and lane["error"] is None  # loopback
        assert len(lane["peaks"]) == 800 and 0 <= min(lane["peaks"]) <= max(lane["peaks"]) <= 255
        assert abs(lane["duration"] - 60.0) < 0.2 and lane["lufs"] is not None
    for lane in au.lanes[1:]:
        m = lane["metrics"]
        assert m["outside_diff_db"] < -40 and abs(m["offset_ms"]) <= 2
    assert au.lanes[0]["metrics"] is None
    assert repr(au) == "Audition(context=3 s)"
    assert au.summary() == "'Take' 0:20.00–0:32.00 (12.00 s): original + 2 takes"
    data = shown(au)
    assert data["text/plain"] == repr(au) and data["image/png"][:8] == PNG_MAGIC
    # the synced state (what a notebook could save) is small and holds no audio
    state = json.dumps(au.get_state(), default=str)
    assert len(state) < 60_000 and "data:audio" not in state and "base64" not in state
    assert "katspaugh" not in state  # the player library is sent on request, not saved
    sent = sent_to_page(au)
    send_from_page(au, {"type": "libs"})
    (content, buffers), *_ = sent
    assert content == {"type": "libs"} and len(buffers) == 2  # vendored, not from a CDN
    assert b"wavesurfer.js 7." in buffers[0] and b"regions" in buffers[1]
    assert all(b"export{" in b for b in buffers)


@pytest.mark.slow  # renders and decodes several songs: CI's slow run
def test_audition_sends_audio_bytes_and_keeps_working_after_the_sandbox_stops(
    client, wrx, sb, song, made, tmp_path, monkeypatch
):
    cache = tmp_path / "audio-cache"  # this test's own audio cache: it empties it below
    monkeypatch.setenv(CACHE_ENV, str(cache))
    job = _replace(client, song, 20.0, 32.0)
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    au = audition(wrx, job.task_id)
    made.append(au)
    sent = sent_to_page(au)
    sb.stop()  # the audio is in the cache now: the players must not depend on the sandbox
    for lane in au.lanes:
        send_from_page(au, {"type": "audio", "key": lane["key"]})
    assert au.wait_idle(WAIT_S)  # sent from the dispatcher thread
    assert [c["type"] for c, _ in sent] == ["audio"] * 3
    for (content, buffers), lane in zip(sent, au.lanes, strict=True):
        assert content["key"] == lane["key"] and content["mime"] == "audio/mpeg"
        samples, sr = decode(bytes(buffers[0]))
        assert abs(samples.size / sr - 60.0) < 0.5
    # a track that cannot be fetched says so in plain words: with the cache emptied, take 1
    # has to come from the stopped sandbox again
    shutil.rmtree(cache)
    send_from_page(au, {"type": "audio", "key": "take1"})
    assert au.wait_idle(WAIT_S)
    content, buffers = sent[-1]
    assert content["type"] == "audio_error" and buffers == []
    assert "cannot be fetched" in content["message"] and "stopped" in content["message"]


@pytest.mark.slow  # renders and decodes several songs: CI's slow run
def test_audition_stars_pick_and_note_go_to_the_ledger(client, wrx, song, made, tmp_path):
    job = _replace(client, song, 20.0, 32.0)
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    au = audition(wrx)
    made.append(au)
    take1, take2 = (lane["track_id"] for lane in au.lanes[1:])
    send_from_page(au, {"type": "note", "track_id": take1, "note": "horns!"})
    assert "not saved yet" in au.feedback and "saved with them" in au.feedback
    send_from_page(au, {"type": "rate", "track_id": take1, "stars": 4})
    send_from_page(au, {"type": "rate", "track_id": take2, "stars": 2})
    send_from_page(au, {"type": "pick", "track_id": take2, "picked": True})
    send_from_page(au, {"type": "pick", "track_id": take1, "picked": True})  # one pick per task
    assert au.ratings[take1] == {"stars": 4, "note": "horns!", "picked": True}
    assert au.ratings[take2] == {"stars": 2, "note": "", "picked": False}
    send_from_page(au, {"type": "rate", "track_id": take1, "stars": 7})
    assert "stars" in au.feedback and "1" in au.feedback and "5" in au.feedback
    assert au.ratings[take1]["stars"] == 4
    frame = wrx.frame().set_index("track_id")
    if "rating" in frame.columns:  # the store's frame() columns (helper "store")
        assert frame.loc[take1, "rating"] == 4 and bool(frame.loc[take1, "picked"])
    # the ledger survives reopening the store
    path = wrx.store.path
    stop_receiver()
    again = start_receiver(path, tunnel=None, poll=False)
    rows = {r["track_id"]: r for r in again.store.ratings(job.task_id)}
    assert rows[take1]["stars"] == 4 and rows[take1]["note"] == "horns!" and rows[take1]["picked"]
    assert rows[take2]["stars"] == 2 and not rows[take2]["picked"]


@pytest.mark.slow  # renders and decodes several songs: CI's slow run
def test_audition_batch_steps_through_tasks_in_order(client, wrx, song, made, monkeypatch):
    import suno_nb.analysis as analysis

    built: list[str] = []  # the tasks whose takes were measured, in order
    measure = analysis.compare_takes

    def counted(rx, task_id, *args, **kwargs):
        built.append(task_id)
        return measure(rx, task_id, *args, **kwargs)

    monkeypatch.setattr(analysis, "compare_takes", counted)
    first = _replace(client, song, 10.0, 20.0, title="First")
    second = _replace(client, song, 40.0, 58.5, title="Second")
    for job in (first, second):
        wrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    au = audition(wrx, task_ids=[first.task_id, second.task_id], context=1.5)
    made.append(au)
    assert [t["task_id"] for t in au.tasks] == [first.task_id, second.task_id]
    assert au.task_id == first.task_id and au.section == [10.0, 20.0] and au.preroll == 1.5
    assert "(1 of 2 tasks)" in au.summary() and repr(au) == "Audition(context=1.5 s)"
    au.task_id = second.task_id  # what the picker (or its ▶ button) does in the browser
    assert "Loading task" in au.feedback  # built on the dispatcher thread: the kernel is free
    assert au.wait_idle(WAIT_S)
    assert au.section == [40.0, 58.5] and au.heading["title"] == "Second"
    assert built == [first.task_id, second.task_id]  # each task measured once, not per event
    assert [lane["label"] for lane in au.lanes] == ["Original", "Take 1", "Take 2"]
    with pytest.raises(ValueError, match="context"):
        audition(wrx, context=-1)


@pytest.mark.slow  # seconds of audio work: the fast lane stays under 90 s; CI runs it
def test_audition_of_a_pending_task_shows_it_when_it_lands(client, wrx, song, made):
    job = _replace(client, song)
    au = audition(wrx, job.task_id)
    made.append(au)
    assert "shows here when its result lands" in au.message and au.lanes == []
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    settle(wrx, au)  # the feed delivered the result; the reload it triggered has run
    assert len(au.lanes) == 3
    assert au.task_id == job.task_id and au.message == ""


@pytest.mark.slow  # renders and decodes several songs: CI's slow run
def test_audition_shows_ratings_given_elsewhere(client, wrx, song, made):
    job = _replace(client, song, 20.0, 32.0)
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    au = audition(wrx)
    made.append(au)
    take = au.lanes[-1]["track_id"]
    wrx.rate(take, 5, "from a cell")  # not through the page
    settle(wrx, au)
    assert au.ratings[take] == {"stars": 5, "note": "from a cell", "picked": False}


def test_audition_of_a_failed_task_says_why(client, wrx, sb, song, made):
    sb.inject(Faults(error_code=531), count=1)
    job = _replace(client, song)
    wrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    au = audition(wrx, job.task_id)
    made.append(au)
    assert "failed" in au.message and "531" in au.message and au.lanes == []


def test_audition_streams_public_urls_and_sends_bytes_for_local_ones(made, monkeypatch):
    fetched: list[str] = []  # every URL the audition reads audio from (prefetch or peaks)

    def fake_fetch_many(urls, *args, **kwargs):
        fetched.extend(urls)
        return {}  # all fetched fine

    def fake_peaks(url, points=1200, *args, **kwargs):
        fetched.append(url)
        return np.zeros(points), np.full(points, 0.5), 16.0

    monkeypatch.setattr(audio, "fetch_many", fake_fetch_many)  # no network in this test
    monkeypatch.setattr(audio, "peaks", fake_peaks)
    local = [
        "http://127.0.0.1:8000/a.mp3",
        "http://localhost/a",
        "http://192.168.1.20/a.mp3",
        "http://[::1]:80/a",
    ]
    public = "https://cdn1.suno.ai/abc.mp3"
    rx = stub_receiver(local[0], [*local[1:], public, None])
    tasks = rx.tasks().assign(infill_start_s=None, infill_end_s=None)
    rx.tasks = lambda: tasks.copy()  # no section: nothing is measured, so nothing public read
    au = audition(rx, "replace")
    made.append(au)
    *near, far, silent = au.lanes
    for lane in near:  # loopback and private addresses: fetched here, sent as bytes
        assert lane["bytes"] and lane["url"] == "" and lane["error"] is None
        assert lane["peaks"] == [128] * 800
    assert far["url"] == public and not far["bytes"] and far["error"] is None
    assert far["peaks"] == [] and public not in fetched  # the browser streams it
    assert set(fetched) == set(local)
    assert silent["error"] == "Take 5 has no audio URL."


def test_fragment_url_is_kept_for_links():
    assert fragment_url("http://x/a.mp3#old", 20, 32, 3, 60) == "http://x/a.mp3#t=17.00,35.00"
    assert fragment_url("http://x/a.mp3", 50, 58, 5, 60) == "http://x/a.mp3#t=45.00,60.00"


def test_dragging_the_region_checks_live_and_fetches_the_waveform_once(
    client, wrx, song, made, monkeypatch
):
    calls: list[str] = []
    peaks = audio.peaks

    def counted(url, *args, **kwargs):
        calls.append(url)
        return peaks(url, *args, **kwargs)

    monkeypatch.setattr(audio, "peaks", counted)
    fields = {"prompt": "p", "tags": "t", "title": "T", "full_lyrics": "la la"}
    form = _form(client, wrx, made, task_id=song.task_id, audio_id=song.audio_id, **fields)
    assert form.wait_idle(WAIT_S) and len(form.section.peaks) == 800
    assert calls == [song.audio_url]
    seen: list[tuple[bool, str]] = []
    form.submit.observe(lambda c: seen.append((c["new"], form.section.checks)), names="disabled")
    for i in range(20):  # a region being dragged and resized: 20 positions in a burst
        form.section.set_state({"start": 10.0 + i * 0.5, "end": 19.0 + i})
    assert form.wait_idle(WAIT_S)
    assert calls == [song.audio_url]  # the page draws the region: nothing fetched again
    # 9 s .. 10.5 s long: too short at first, then fine; Submit followed live, with the reason
    assert seen[0] == (True, seen[0][1]) and "limit: 10 s" in seen[0][1]
    assert seen[-1] == (False, "") and not form.submit.disabled
    # the widget's state (what a notebook saves) holds peaks, not audio nor player code
    state = json.dumps(form.section.get_state(), default=str)
    assert len(state) < 60_000 and "data:audio" not in state and "katspaugh" not in state
    sent = sent_to_page(form.section)
    send_from_page(form.section, {"type": "libs"})  # the page asks for wavesurfer.js once
    (content, buffers), *_ = sent
    assert content == {"type": "libs"} and len(buffers) == 2
    assert b"wavesurfer.js 7." in buffers[0] and b"regions" in buffers[1]


# --- the lyrics pane ------------------------------------------------------------------------------

LYRICS = """[Verse]
lights over the harbour
boats are coming home

[Chorus]
oh the tide turns
and the lights go on

[Verse]
nets are drying slowly
gulls above the foam
"""


def _words(lyrics: str = LYRICS, start: float = 4.0):
    """A words frame of ``lyrics`` sung one word per 0.5 s from ``start`` (1.5 s between
    lines), as :func:`suno_nb.lyrics.words_frame` makes of the service's alignedWords."""
    from suno_nb.lyrics import lyric_lines, words_frame

    aligned, t = [], start
    for _, text, _ in lyric_lines(lyrics):
        words = text.split()
        for i, w in enumerate(words):
            tail = "\n" if i == len(words) - 1 else " "
            aligned.append({"word": w + tail, "success": True, "startS": t, "endS": t + 0.4})
            t += 0.5
        t += 1.0
    return words_frame(aligned, lyrics)


def test_choosing_lines_moves_the_region_and_submits_them_replaced(client, wrx, sb, song, made):
    from suno_nb.lyrics import lines_frame, plan_lines

    words = _words()
    table = lines_frame(words)
    fields = {"tags": "indie pop", "title": "Harbour Lights (new chorus)"}
    form = _form(client, wrx, made, task_id=song.task_id, audio_id=song.audio_id, words=words)
    form.tags.value, form.title.value = fields["tags"], fields["title"]
    assert form.wait_idle(WAIT_S)
    assert [row["text"] for row in form.section.lines] == table["text"].tolist()
    assert form.section.lines[2]["section"].lower().startswith("chorus")
    chorus = [i for i, row in enumerate(form.section.lines) if "tide" in row["text"]]
    chorus.append(chorus[0] + 1)  # the chorus's two lines, as a shift-click chooses them

    form.section.set_state({"selected": chorus})  # the page: click, then shift-click
    expected = plan_lines(words, table["line"].iloc[chorus].tolist(), duration=song.duration)
    assert form.section.value == (expected.start_s, expected.end_s)  # the region follows
    assert form.section.new_lyrics == "oh the tide turns\nand the lights go on"  # to edit
    assert "Lines" in form.section.plan and "widened" in form.section.plan.lower()
    assert set(chorus) <= set(form.section.covered)
    assert form.reason == "" and not form.submit.disabled  # prompt and lyrics come from lines

    form.section.set_state({"new_lyrics": ""})  # the replacement emptied: a rule broken
    assert form.submit.disabled and form.reason.startswith("new_lyrics:")
    assert form.section.checks == form.reason
    form.section.set_state({"new_lyrics": "oh the tide is high\nand the boats come in"})
    assert not form.submit.disabled
    form.submit.click()
    assert form.wait_idle(WAIT_S) and form.last_job is not None, form.status.value
    sent = json.loads(sb.record_info(form.last_job.task_id)["param"])
    assert (sent["infillStartS"], sent["infillEndS"]) == (expected.start_s, expected.end_s)
    assert "oh the tide is high\nand the boats come in" in sent["fullLyrics"]
    assert "tide turns" not in sent["fullLyrics"] and "nets are drying" in sent["fullLyrics"]
    assert "the tide is high" in sent["prompt"] and sent["title"] == fields["title"]

    # dragging the region by hand drops the lines' choice; the lines it covers are marked
    form.section.set_state({"start": 0.0, "end": 10.0})
    assert form.section.selected == [] and form.section.plan == ""
    assert form.section.covered == [0, 1]  # the first verse is sung within 0-10 s
    assert form.reason.startswith("prompt:")  # a section alone needs its prompt again


def test_optional_settings_are_sent_only_when_set_and_checked_live(client, wrx, sb, song, made):
    form = _form(client, wrx, made)
    _fill(form, song)
    assert set(form.options) == {  # no model: with task_id + audio_id the service takes none
        "vocal_gender",
        "style_weight",
        "weirdness_constraint",
        "audio_weight",
        "variety",
    }
    assert all(w.value in (None, "") for w in form.options.values())  # unset: defaults
    assert form.more.selected_index is None  # the "more" section starts collapsed
    assert form.reason == ""
    form.options["style_weight"].value = "1.5"
    assert form.submit.disabled and form.reason.startswith("style_weight:")
    assert "0" in form.reason and "1" in form.reason and "styleWeight" in form.reason
    form.options["style_weight"].value = "0.655"  # 3 decimals
    assert form.submit.disabled and form.reason.startswith("style_weight:")
    form.options["style_weight"].value = "0.65"
    assert form.reason == "" and not form.submit.disabled
    form.submit.click()  # only style_weight set: the rest is not sent
    assert form.wait_idle(WAIT_S) and form.last_job is not None, form.status.value
    sent = json.loads(sb.record_info(form.last_job.task_id)["param"])
    assert sent["styleWeight"] == 0.65
    assert not {"vocalGender", "variety", "audioWeight", "weirdnessConstraint"} & set(sent)
    form.options["vocal_gender"].value = "f"
    form.options["variety"].value = 0  # a value set to 0 is sent (not "unset")
    form.options["audio_weight"].value = "0.3"
    first = form.last_job.task_id
    form.submit.click()
    assert form.wait_idle(WAIT_S) and form.last_job.task_id != first, form.status.value
    sent = json.loads(sb.record_info(form.last_job.task_id)["param"])
    assert (sent["vocalGender"], sent["variety"], sent["audioWeight"]) == ("f", 0, 0.3)
    assert "model" not in sent and len(wrx.tasks()) == 2


def test_lines_from_the_service_are_submitted_with_replace_lines(client, wrx, sb, made):
    song = sb.create_song(duration=60, title="Harbour Lights", prompt=LYRICS)
    form = _form(client, wrx, made, task_id=song.task_id, audio_id=song.audio_id)
    form.tags.value, form.title.value = "indie pop", "Harbour Lights (new chorus)"
    assert form.wait_idle(WAIT_S)  # the original, its peaks and its timed lyrics
    from suno_nb.lyrics import lines_frame

    texts = [row["text"] for row in form.section.lines]
    words = client.timestamped_lyrics(task_id=song.task_id, audio_id=song.audio_id)
    assert texts == lines_frame(words)["text"].tolist()  # the service's (cached) timed words
    chorus = [i for i, t in enumerate(texts) if "tide" in t]
    assert chorus, texts
    form.section.set_state({"selected": [chorus[0], chorus[0] + 1]})
    shown = form.section.value
    form.section.set_state({"new_lyrics": "oh the tide is high\nand the boats come in"})
    assert form.reason == "", form.reason
    form.submit.click()
    assert form.wait_idle(WAIT_S) and form.last_job is not None, form.status.value
    job = form.last_job
    assert job.lines == tuple(form.section.lines[i]["line"] for i in (chorus[0], chorus[0] + 1))
    assert (job.infill_start_s, job.infill_end_s) == shown  # the plan shown is the one sent
    sent = json.loads(sb.record_info(job.task_id)["param"])
    assert "oh the tide is high\nand the boats come in" in sent["fullLyrics"]
    assert "tide turns" not in sent["fullLyrics"] and "nets are drying" in sent["fullLyrics"]
