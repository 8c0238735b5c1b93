"""Expired links, Recovery Audio and WAV conversion, end to end against the sandbox: the
sandbox lets a task's links die, the audio fetch says so plainly, ``rx.recover`` brings new
links into ``rx.frame()``; an all-failed recovery is stored and answered 200 with the tracks
saying why; ``client.wav`` puts a real WAV's URL on the track; bad input names the field."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
import requests
import soundfile as sf

from suno_nb import (
    AudioError,
    NotFoundError,
    Sandbox,
    SectionValidationError,
    SunoClient,
    audio,
)
from suno_nb.contract import get_provider
from suno_nb.events import MediaEvent
from suno_nb.rows import MediaSubmission
from suno_nb.sandbox import Faults

from .conftest import post


@pytest.fixture
def sb():
    with Sandbox(delay=0.1, retry_backoff=0.05, callback_timeout=2.0) as sandbox:
        yield sandbox


@pytest.fixture
def client(sb, rx):
    return SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)


class JobWaiter:
    """Waits (on the receiver's feed, no sleeping) for the event of one WAV/recovery job."""

    def __init__(self, rx) -> None:
        self.events: dict[str, MediaEvent] = {}
        self._cond = threading.Condition()
        rx.on_callback(self._seen)

    def _seen(self, event) -> None:
        if isinstance(event, MediaEvent):
            with self._cond:
                self.events[event.job_id] = event
                self._cond.notify_all()

    def wait(self, job_id: str, timeout: float = 60.0) -> MediaEvent:
        with self._cond:
            assert self._cond.wait_for(lambda: job_id in self.events, timeout), job_id
            return self.events[job_id]


def _song(client, rx) -> str:
    """An original made through the receiver (its tracks are in rx.frame())."""
    job = client.generate(prompt="a quiet song about the harbour")
    result = rx.wait(job.task_id, timeout=60, progress=False)
    assert result.state == "succeeded" and len(result.tracks) == 2
    return job.task_id


def _tracks(rx, task_id: str):
    frame = rx.frame()
    return frame[frame.task_id == task_id].set_index("track_id")


@pytest.mark.slow
def test_expire_then_recover_then_fetch(sb, rx, client, tmp_path, monkeypatch):
    monkeypatch.setenv("SUNO_NB_CACHE_DIR", str(tmp_path / "cache"))
    waiter = JobWaiter(rx)
    task_id = _song(client, rx)
    before = _tracks(rx, task_id)
    first = before.index[0]
    assert audio.fetch(before.loc[first, "audio_url"]).exists()

    sb.expire(task_id)
    with pytest.raises(AudioError) as caught:
        audio.fetch(before.loc[before.index[1], "audio_url"])
    message = str(caught.value)
    assert "expired or was removed" in message and "rx.recover(task_id)" in message
    assert "/files/" not in message and sb.api_key not in message  # host only, no secrets
    assert requests.get(before.loc[first, "stream_audio_url"], timeout=10).status_code == 404

    job_id = rx.recover(task_id)
    event = waiter.wait(job_id)
    assert event.task_id == task_id and event.job_kind == "recovery"
    assert event.verdict == "accepted" and set(event.track_ids) == set(before.index)
    after = _tracks(rx, task_id)
    assert (after.recovery == "recovered").all() and after.audio_error.isna().all()
    for track in before.index:
        assert after.loc[track, "audio_url"] != before.loc[track, "audio_url"]
        samples, sr = audio.load(after.loc[track, "audio_url"])
        assert sr > 0 and len(samples) > sr
    deliveries = rx.deliveries()
    row = deliveries[deliveries.task_id == job_id]
    assert list(row.verdict) == ["accepted"] and list(row.status) == [200]


def test_recovery_all_failed_is_stored_and_answered_200(sb, rx, client):
    waiter = JobWaiter(rx)
    task_id = _song(client, rx)
    urls = _tracks(rx, task_id).audio_url.to_dict()
    sb.expire(task_id)
    sb.inject(Faults(recovery_error="feed_failed"))
    job_id = rx.recover(task_id)
    event = waiter.wait(job_id)
    assert event.callback.code == 500 and event.verdict == "accepted"
    tracks = _tracks(rx, task_id)
    assert (tracks.recovery == "failed").all()
    assert (tracks.audio_error == "feed_failed").all()
    assert tracks.audio_url.to_dict() == urls  # the dead links stay; the tracks say why
    assert sb.wait_idle(30)  # the sender logs its attempt after the 200 it got back
    attempts = [a for a in sb.delivery_log() if a["task_id"] == job_id]
    assert (attempts[-1]["code"], attempts[-1]["status"]) == (500, 200)  # stored: 200
    job = rx.store.query("SELECT state, code, error FROM media_jobs WHERE job_id = ?", (job_id,))
    assert job[0]["state"] == "failed" and "feed_failed" in job[0]["error"]


@pytest.mark.slow
def test_wav_lands_on_the_track_and_decodes(sb, rx, client):
    waiter = JobWaiter(rx)
    task_id = _song(client, rx)
    track = _tracks(rx, task_id).index[1]
    job = client.wav(task_id=task_id, audio_id=track)
    assert job.parent_task_id == task_id and job.audio_id == track and "callback" not in repr(job)
    event = waiter.wait(job.task_id)
    assert event.job_kind == "wav" and event.track_ids == (track,)
    tracks = _tracks(rx, task_id)
    url = tracks.loc[track, "wav_url"]
    assert url.endswith(".wav") and tracks.wav_url.notna().sum() == 1
    data = requests.get(url, timeout=30).content
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    samples, sr = sf.read(io.BytesIO(data))
    assert sr == sb.sample_rate and len(samples) > sr
    details = client.wav_details(job.task_id)
    assert details.status == "SUCCESS" and details.url == url


def test_wav_failure_and_a_lost_callback_polled(sb, tmp_path):
    from suno_nb import session

    rx = session.start_receiver(
        tmp_path / "poll.sqlite3", tunnel=None, poll=True, poll_interval=0.5, poll_grace=0.3
    )
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    waiter = JobWaiter(rx)
    task_id = _song(client, rx)
    track = _tracks(rx, task_id).index[0]
    sb.inject(Faults(error_code=501, error_message="conversion broke", drop=True))
    job = client.wav(task_id=task_id, audio_id=track)
    event = waiter.wait(job.task_id)
    assert event.source == "poll" and event.callback.code == 501
    tracks = _tracks(rx, task_id)
    assert tracks.wav_url.isna().all() and "conversion broke" in tracks.loc[track, "wav_error"]


@pytest.mark.slow  # two receivers and a song: seconds of work
def test_what_an_earlier_kernel_left_pending_is_polled_once_a_client_is_made(sb, tmp_path):
    """A WAV job and a replace task whose callbacks were lost while no poller ran: the next
    receiver on the same store polls both as soon as a client names it (no submission)."""
    from suno_nb import session

    path = tmp_path / "restart.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False)
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    task_id = _song(client, rx)
    track = _tracks(rx, task_id).index[0]
    sb.inject(Faults(drop=True))
    wav = client.wav(task_id=task_id, audio_id=track)
    sb.inject(Faults(drop=True))
    replace = client.replace_section(
        task_id=task_id,
        audio_id=track,
        prompt="new words",
        tags="jazz",
        title="Take",
        full_lyrics="[Verse] la la la\n[Chorus] new words",
        infill_start_s=10.0,
        infill_end_s=22.0,
        original_duration=float(_tracks(rx, task_id).loc[track, "duration"]),
    )
    sb.wait_idle()
    session.stop_receiver()  # the kernel is gone: both still pending in the store

    rx2 = session.start_receiver(path, tunnel=None, poll_interval=0.5, poll_grace=0.3)
    waiter = JobWaiter(rx2)
    SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx2)
    event = waiter.wait(wav.task_id)
    assert event.source == "poll" and event.callback.code == 200
    assert _tracks(rx2, task_id).loc[track, "wav_url"].startswith(sb.url)
    result = rx2.wait(replace.task_id, timeout=60, progress=False)
    assert result.state == "succeeded" and result.source == "poll"
    session.stop_receiver()


def test_callbacks_for_jobs_never_asked_for_are_refused(rx):
    wav = {
        "code": 200,
        "msg": "success",
        "data": {"audioWavUrl": "https://x/a.wav", "task_id": "w1"},
    }
    rec = {
        "code": 200,
        "msg": "success",
        "task_id": "r1",
        "data": [
            {
                "id": "t",
                "audio_url": "https://x/a.mp3",
                "title": "x",
                "status": "success",
                "error": "",
            }
        ],
    }
    for body in (wav, rec):
        resp = post(rx.url, json.dumps(body).encode())
        assert resp.status_code == 400
        assert "was asked for through this receiver" in resp.json()["msg"]
    bad = dict(rec, data=[{"id": "t", "status": "lost"}])
    assert post(rx.url, json.dumps(bad).encode()).status_code == 400
    assert rx.flush()
    rejected = rx.deliveries()
    assert set(rejected.task_id.dropna()) >= {"w1", "r1"}
    assert set(rejected.verdict) == {"rejected"}
    # Once the job is recorded, the kept delivery is applied (a replay of it adds nothing).
    rx.record_job(MediaSubmission("w1", "wav", "t0", "a0"))
    first = int(rejected[rejected.task_id == "w1"].delivery_id.iloc[0])
    event = rx.replay(first)
    assert isinstance(event, MediaEvent) and event.verdict == "duplicate"
    assert event.task_id == "t0" and event.job_kind == "wav"


def test_a_callback_that_beats_its_job_record_is_applied_when_the_job_is_recorded(rx):
    body = {
        "code": 200,
        "msg": "success",
        "data": {"audioWavUrl": "https://h/w.wav", "task_id": "w9"},
    }
    assert post(rx.url, json.dumps(body).encode()).status_code == 400
    assert rx.flush()
    rx.record_job(MediaSubmission("w9", "wav", "t9", "a9"))
    assert rx.flush()
    frame_row = rx.store.query("SELECT wav_url FROM track_media WHERE track_id = 'a9'")
    assert frame_row == [{"wav_url": "https://h/w.wav"}]
    verdicts = rx.deliveries().set_index("delivery_id").verdict.to_dict()
    assert sorted(verdicts.values()) == ["accepted", "rejected"]


def test_signed_wav_and_recovery_callbacks_verify(tmp_path):
    from suno_nb import session

    with Sandbox(delay=0.1, retry_backoff=0.05, hmac_key="webhook-key") as sb:
        rx = session.start_receiver(
            tmp_path / "signed.sqlite3", tunnel=None, hmac_key="webhook-key"
        )  # polling on: generate's staged callbacks share a signature and get confirmed
        client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
        waiter = JobWaiter(rx)
        task_id = _song(client, rx)
        sb.inject(Faults(recovery_error="clip_error"))
        job_id = rx.recover(task_id)  # signed over the top-level task_id
        assert waiter.wait(job_id).verdict == "accepted"
        sb.inject(Faults(error_code=400, error_message="unsupported source"))
        wav = client.wav(task_id=task_id, audio_id=_tracks(rx, task_id).index[0])
        assert waiter.wait(wav.task_id).callback.code == 400  # signed over data.task_id
        assert rx.flush()
        assert "rejected" not in set(rx.deliveries().verdict)


# The docs' own examples (sunoapi.org's WAV callback page, kie.ai's Chinese WAV page with
# its snake_case key, sunoapi.org's Chinese recovery page): each parses to its shape.
WAV_DOC = {
    "code": 200,
    "msg": "success",
    "data": {"audioWavUrl": "https://example.com/s/04e6****e727.wav", "task_id": "988e****c8d3"},
}
WAV_DOC_SNAKE = {
    "code": 200,
    "msg": "success",
    "data": {"audio_wav_url": "https://example.com/s/04e6****e727.wav", "task_id": "988e****c8d3"},
}
RECOVERY_DOC = {
    "code": 200,
    "msg": "success",
    "task_id": "bbbb****0f7b",
    "data": [
        {
            "id": "3bc3****48fc",
            "audio_url": "https://example.com/****.m4a",
            "title": "Sunrise Love",
            "status": "success",
            "error": "",
        }
    ],
}


def test_the_docs_examples_parse_and_other_shapes_stay_refused():
    from suno_nb.errors import PayloadError
    from suno_nb.payloads import parse_callback
    from suno_nb.payloads.media import media_callback

    for doc in (WAV_DOC, WAV_DOC_SNAKE):
        wav = media_callback(doc)
        assert wav is not None and wav.kind == "wav" and wav.succeeded
        assert wav.task_id == "988e****c8d3" and wav.url.endswith("e727.wav")
    rec = media_callback(RECOVERY_DOC)
    assert rec is not None and rec.kind == "recovery" and rec.task_id == "bbbb****0f7b"
    assert [(t.id, t.recovered, t.error) for t in rec.tracks] == [("3bc3****48fc", True, None)]
    failed = {**WAV_DOC, "code": 500, "msg": "try later", "data": {"task_id": "988e"}}
    assert media_callback(failed).url is None  # a failure needs no URL
    for broken in (
        {**WAV_DOC, "data": {**WAV_DOC["data"], "extra": 1}},  # strict keys
        {**WAV_DOC, "data": {"audioWavUrl": None, "task_id": "x"}},  # 200 without a URL
        {**RECOVERY_DOC, "data": [{"id": "a", "status": "maybe"}]},
        {**RECOVERY_DOC, "data": [{**RECOVERY_DOC["data"][0], "status": "failed"}]},  # 200
        {**RECOVERY_DOC, "code": "200"},
    ):
        with pytest.raises(PayloadError):
            media_callback(broken)
    seed = json.loads((Path(__file__).parent / "data" / "seed_success.json").read_text())
    assert media_callback(seed) is None and parse_callback(seed).succeeded


def test_recover_needs_a_client_and_a_task_id(rx, sb):
    from suno_nb.errors import ReceiverError

    with pytest.raises(ReceiverError, match="client"):
        rx.recover("some-task")
    client = SunoClient(base_url=sb.url, api_key=sb.api_key)
    with pytest.raises(SectionValidationError) as caught:
        rx.recover("", client=client)
    assert caught.value.field == "task_id"


def test_bad_input_is_refused_naming_the_field_before_any_request(sb, rx, client):
    with pytest.raises(SectionValidationError) as caught:
        client.wav(task_id="", audio_id="a")
    assert caught.value.field == "task_id"
    with pytest.raises(SectionValidationError) as caught:
        client.wav(task_id="t", audio_id=None)
    assert caught.value.field == "audio_id"
    with pytest.raises(SectionValidationError) as caught:
        client.recover("  ")
    assert caught.value.field == "task_id"
    with pytest.raises(SectionValidationError) as caught:
        client.wav(task_id="t", audio_id="a", callback_url="ftp://x")
    assert caught.value.field == "callback_url"
    alone = SunoClient(base_url=sb.url, api_key=sb.api_key)
    with pytest.raises(SectionValidationError) as caught:
        alone.recover("t")  # no receiver, no callback URL: required
    assert caught.value.field == "callback_url"
    kie = SunoClient(base_url=sb.url, api_key=sb.api_key, provider="kie.ai", receiver=rx)
    with pytest.raises(SectionValidationError, match=r"kie\.ai has no Recovery Audio"):
        kie.recover("t")
    assert sb.rate_limiter is not None and sb.rate_limiter.admitted() == []


def test_sandbox_refuses_like_the_docs(sb, rx, client):
    def call(route: str, body: object) -> dict:
        url = sb.url + get_provider().routes[route]
        headers = {"Authorization": f"Bearer {sb.api_key}"}
        return requests.post(url, json=body, headers=headers, timeout=10).json()

    song = sb.create_song(duration=20.0)
    assert call("recovery", {"sunoTaskId": song.task_id})["code"] == 400  # callBackUrl
    assert call("recovery", {"callBackUrl": rx.url})["code"] == 400
    assert call("recovery", {"sunoTaskId": "f" * 32, "callBackUrl": rx.url})["code"] == 404
    body = {"taskId": song.task_id, "audioId": "0" * 32, "callBackUrl": rx.url}
    answer = call("wav", body)
    assert answer["code"] == 400 and "audioId" in answer["msg"]
    assert call("wav", {**body, "audioId": song.audio_id, "callBackUrl": "nope"})["code"] == 400
    with pytest.raises(NotFoundError, match="no WAV task"):
        client.wav_details("f" * 32)
