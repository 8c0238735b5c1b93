"""kie.ai's task API (issue 22 part A): createTask bodies, recordInfo polling, its codes
(402 credits, 429 rate limit, 433 sub-key limit), task callbacks in the receiver's parser,
and the sandbox serving it to ``rx.wait`` by callback and by polling.

Requests go to a recording server or the sandbox on 127.0.0.1; nothing leaves loopback.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

import suno_nb.session as session
from suno_nb import Faults, Sandbox
from suno_nb.client import SunoClient
from suno_nb.contract import get_provider
from suno_nb.errors import (
    InsufficientCreditsError,
    KeyLimitError,
    PayloadError,
    RateLimitError,
    SectionValidationError,
)
from suno_nb.payloads import parse_callback, parse_task_record
from tests.test_client import KEY, REPLACE, RecordingServer, ok
from tests.test_contract_v6 import RECORD_INFO, TASK, _auth, _post, task_args


@pytest.fixture
def server():
    srv = RecordingServer().start()
    yield srv
    srv.stop()


# --- kie.ai's task API: the client --------------------------------------------------------------


def task_record(state: str, **extra: Any) -> dict[str, Any]:
    """recordInfo's ``data`` as kie.ai's get-task-detail page describes it."""
    return {"taskId": "k-1", "model": "ai-music-api/replace-section", "state": state, **extra}


RESULT = {
    "resultUrls": ["https://cdn.test/a1.mp3", "https://cdn.test/a2.mp3"],
    "sunoData": [
        {"id": "a1", "audioUrl": "https://cdn.test/a1.mp3", "title": "T", "duration": 120.0},
        {"id": "a2", "audioUrl": "https://cdn.test/a2.mp3", "title": "T", "duration": 120.0},
    ],
}


def test_kie_ai_submits_a_create_task_body(server):
    server.reply("POST", TASK, 200, ok({"taskId": "k-1"}))
    c = SunoClient(KEY, base_url=server.url, provider="kie.ai")
    job = c.replace_section(
        **task_args(callback_url="https://cb.test/hook", style_weight=0.5, variety=2)
    )
    assert job.task_id == "k-1"
    [req] = server.requests
    assert req.path == TASK
    assert req.json == {
        "model": "ai-music-api/replace-section",
        "callBackUrl": "https://cb.test/hook",
        "input": {
            "task_id": "parent-1",
            "audio_id": "audio-1",
            "prompt": "new words here",
            "tags": "Jazz",
            "title": "Take two",
            "infill_start_s": 30.0,
            "infill_end_s": 40.0,
            "full_lyrics": "[Verse] all the words, the new ones too",
            "style_weight": 0.5,
            "variety": 2,
        },
    }


def test_kie_ai_requires_full_lyrics_and_has_no_upload_mode(server):
    c = SunoClient(KEY, base_url=server.url, provider="kie.ai")
    with pytest.raises(SectionValidationError) as info:
        c.replace_section(**task_args(full_lyrics=None))
    assert info.value.field == "full_lyrics" and "full_lyrics" in str(info.value)
    upload = dict(task_id=None, audio_id=None, upload_url="https://cdn.test/a.mp3", model="V6")
    with pytest.raises(SectionValidationError, match="no upload mode"):
        c.replace_section(**task_args(**upload))
    with pytest.raises(ValueError, match=r"kie\.ai-legacy"):
        c.generate(prompt="a song", callback_url="https://cb.test/x")
    assert server.requests == []


def test_kie_ai_get_details_reads_record_info_states(server):
    c = SunoClient(KEY, base_url=server.url, provider="kie.ai", get_retries=0, backoff=0.01)
    for state in ("waiting", "queuing", "generating"):
        server.script.clear()
        server.reply("GET", RECORD_INFO, 200, ok(task_record(state, resultJson="")))
        info = c.get_details("k-1")
        assert (info.status, info.terminal, info.tracks) == ("PENDING", False, ())
    server.script.clear()
    server.reply("GET", RECORD_INFO, 200, ok(task_record("success", resultJson=json.dumps(RESULT))))
    info = c.get_details("k-1")
    assert info.done and [t.id for t in info.tracks] == ["a1", "a2"]
    assert info.tracks[0].audio_url == "https://cdn.test/a1.mp3"
    assert server.requests[-1].query == {"taskId": ["k-1"]}
    server.script.clear()
    failed = task_record("fail", resultJson="", failCode="501", failMsg="generation failed")
    server.reply("GET", RECORD_INFO, 200, ok(failed))
    info = c.get_details("k-1")
    assert info.failed and (info.error_code, info.error_message) == (501, "generation failed")


def test_kie_ai_result_urls_alone_still_make_tracks():
    info = parse_task_record(
        task_record("success", resultJson=json.dumps({"resultUrls": ["https://c.test/x/t9.mp3"]}))
    )
    [track] = info.tracks
    assert (track.id, track.audio_url) == ("t9", "https://c.test/x/t9.mp3")
    with pytest.raises(PayloadError, match="resultJson"):
        parse_task_record(task_record("success", resultJson="{not json"))


@pytest.mark.parametrize(
    ("code", "cls"),
    [(429, RateLimitError), (402, InsufficientCreditsError), (433, KeyLimitError)],
)
def test_kie_ai_codes_map_to_their_errors(server, code, cls):
    server.reply("POST", TASK, 200, {"code": code, "msg": f"kie says {code}"})
    server.reply("GET", RECORD_INFO, 200, {"code": code, "msg": f"kie says {code}"})
    c = SunoClient(KEY, base_url=server.url, provider="kie.ai", get_retries=0, backoff=0.01)
    with pytest.raises(cls) as info:
        c.replace_section(**task_args())
    assert info.value.code == code and info.value.message == f"kie says {code}"
    with pytest.raises(cls):
        c.get_details("k-1")
    # On kie.ai 429 is never "insufficient credits" (it is on sunoapi.org's generic table).
    assert not (code == 429 and isinstance(info.value, InsufficientCreditsError))
    if code == 433:
        assert "sub-key" in str(info.value)


def test_rate_limit_codes_per_provider():
    org, kie = get_provider(), get_provider("kie.ai")
    assert org.code("record-info", 430).kind == "rate_limit"
    assert org.code("record-info", 429).kind == "credits"
    for endpoint in ("replace-section", "record-info", "credits"):
        assert kie.code(endpoint, 429).kind == "rate_limit"
        assert kie.code(endpoint, 402).kind == "credits"
        assert kie.code(endpoint, 433).kind == "key_limit"
    assert kie.routes["replace-section"] == TASK and kie.routes["record-info"] == RECORD_INFO
    assert get_provider("kie.ai-legacy").routes["replace-section"] == REPLACE


# --- kie.ai's task callbacks in the receiver's parser ---------------------------------------


def test_task_completed_callbacks_parse_to_the_family_stages():
    done = {
        "code": 200,
        "msg": "success",
        "data": {
            **task_record("success", resultJson=json.dumps(RESULT)),
            "callbackType": "task_completed",
        },
    }
    cb = parse_callback(json.dumps(done).encode())
    assert (cb.task_id, cb.callback_type, cb.final, cb.succeeded) == ("k-1", "complete", True, True)
    assert [t.id for t in cb.tracks] == ["a1", "a2"]
    failed = {
        "code": 200,
        "msg": "failed",
        "data": {
            **task_record("fail", resultJson="", failCode="531", failMsg="refunded"),
            "callbackType": "task_completed",
        },
    }
    cb = parse_callback(failed)
    assert (cb.callback_type, cb.code, cb.tracks) == ("error", 531, ())
    assert "refunded" in (cb.error or "")
    with pytest.raises(PayloadError, match="taskId"):
        parse_callback({"code": 200, "msg": "x", "data": {"callbackType": "task_completed"}})


# --- the sandbox speaks both ------------------------------------------------------------------


def _task_body(song: Any, **extra: Any) -> dict[str, Any]:
    return {
        "model": "ai-music-api/replace-section",
        "input": {
            "task_id": song.task_id,
            "audio_id": song.audio_id,
            "prompt": "[Bridge] new",
            "tags": "jazz",
            "title": "New",
            "infill_start_s": 10.0,
            "infill_end_s": 20.0,
            "full_lyrics": "[Verse] old\n[Bridge] new",
            **extra,
        },
    }


@pytest.fixture
def kie_sb():
    with Sandbox(provider="kie.ai", delay=0.3, retry_backoff=0.05, callback_timeout=2.0) as sb:
        yield sb


def test_kie_sandbox_serves_create_task_and_record_info_states(kie_sb):
    sb = kie_sb
    song = sb.create_song(duration=60)
    old = requests.post(f"{sb.url}{REPLACE}", json={}, headers=_auth(sb), timeout=30)
    assert old.status_code == 404  # the task API replaces the old route on this profile
    reply = _post(sb, TASK, _task_body(song, style_weight=0.25, vocal_gender="m"))
    assert reply["code"] == 200
    task_id = reply["data"]["taskId"]
    r = requests.get(
        f"{sb.url}{RECORD_INFO}", params={"taskId": task_id}, headers=_auth(sb), timeout=30
    )
    first = r.json()["data"]
    assert first["state"] in ("waiting", "queuing", "generating") and first["resultJson"] == ""
    assert sb.wait_idle(30)
    data = sb.record_info(task_id)
    assert data["state"] == "success" and data["failCode"] == ""
    result = json.loads(data["resultJson"])
    assert len(result["sunoData"]) == 2 and len(result["resultUrls"]) == 2
    assert json.loads(data["param"])["input"]["style_weight"] == 0.25
    assert parse_task_record(data).done


@pytest.mark.parametrize(
    ("extra", "word"),
    [
        ({"style_weight": 1.5}, "style_weight"),
        ({"audio_weight": 0.333}, "audio_weight"),
        ({"variety": 7}, "variety"),
        ({"vocal_gender": "x"}, "vocal_gender"),
        ({"persona_model": "other"}, "persona_model"),
        ({"lyrics": "y" * 5001}, "lyrics"),
        ({"full_lyrics": None}, "full_lyrics"),
        ({"upload_url": "https://cdn.test/a.mp3"}, "upload_url"),
    ],
)
def test_kie_sandbox_refuses_bad_input_with_422(kie_sb, extra, word):
    song = kie_sb.create_song(duration=60)
    body = _task_body(song, **extra)
    body["input"] = {k: v for k, v in body["input"].items() if v is not None}
    reply = _post(kie_sb, TASK, body)
    assert reply["code"] == 422 and word in reply["msg"], reply
    assert kie_sb.tasks()[-1]["task_id"] == song.task_id  # no task was made


def test_kie_sandbox_refuses_another_task_model_and_a_flat_body(kie_sb):
    song = kie_sb.create_song(duration=60)
    reply = _post(kie_sb, TASK, {**_task_body(song), "model": "ai-music-api/generate"})
    assert reply["code"] == 422 and "ai-music-api/replace-section" in reply["msg"]
    reply = _post(kie_sb, TASK, _task_body(song)["input"])
    assert reply["code"] == 422


def test_kie_sandbox_answers_402_without_credits(kie_sb):
    song = kie_sb.create_song(duration=60)
    kie_sb.credits = 0
    assert _post(kie_sb, TASK, _task_body(song))["code"] == 402


def _kie_submit(client: SunoClient, song: Any) -> Any:
    return client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="[Bridge] new",
        tags="jazz",
        title="New",
        full_lyrics="[Verse] old\n[Bridge] new",
        infill_start_s=10.0,
        infill_end_s=20.0,
        lyrics="[Bridge] new",
        audio_weight=0.7,
    )


def test_kie_task_reaches_rx_wait_by_callback_and_a_dropped_one_by_polling(kie_sb, tmp_path):
    sb = kie_sb
    rx = session.start_receiver(
        tmp_path / "k.sqlite3", tunnel=None, poll_interval=0.4, poll_grace=0.5
    )
    try:
        client = SunoClient(
            base_url=sb.url, api_key=sb.api_key, provider="kie.ai", receiver=rx, backoff=0.01
        )
        song = sb.create_song(duration=60.0)
        job = _kie_submit(client, song)
        result = rx.wait(job.task_id, timeout=60, progress=False)
        assert result.ok and result.source == "callback" and len(result.tracks) == 2
        assert sb.wait_idle(30)  # the sandbox logs a delivery once it has the answer
        assert sb.delivery_log()[-1]["callback_type"] == "task_completed"
        sb.inject(Faults(drop=True))  # this task's callback never comes
        dropped = _kie_submit(client, song)
        result = rx.wait(dropped.task_id, timeout=60, progress=False)
        assert result.ok and result.source == "poll" and len(result.tracks) == 2
        sb.inject(Faults(error_code=501))
        failed = _kie_submit(client, song)
        result = rx.wait(failed.task_id, timeout=60, progress=False)
        assert (result.ok, result.code, result.source) == (False, 501, "callback")
    finally:
        rx.stop()


def test_kie_task_callbacks_are_signed_over_their_task_id(tmp_path):
    """kie.ai signs webhooks with HMAC(task_id.timestamp); the task API names it taskId."""
    hmac_key = "whsec-kie-test-0123456789"
    rx = session.start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False, hmac_key=hmac_key)
    try:
        with Sandbox(provider="kie.ai", hmac_key=hmac_key, delay=0.3, retry_backoff=0.05) as sb:
            client = SunoClient(base_url=sb.url, api_key=sb.api_key, provider="kie.ai", receiver=rx)
            song = sb.create_song(duration=60.0)
            job = _kie_submit(client, song)
            result = rx.wait(job.task_id, timeout=60, progress=False)
            assert result.ok and result.source == "callback"
            assert sb.wait_idle(30)  # the sandbox logs a delivery once it has the answer
            assert sb.delivery_log()[-1]["signed"] is True
            sb.inject(Faults(wrong_signature=True))
            forged = _kie_submit(client, song)
            assert sb.wait_idle(30) and rx.flush(30)
            d = rx.deliveries()
            mine = d[(d["task_id"] == forged.task_id) & (d["source"] == "callback")]
            assert set(mine["verdict"]) == {"rejected"}
    finally:
        rx.stop()
