"""The whole callback family (issue 12): stages, ``taskId``, extra item fields, unknown stages."""

from __future__ import annotations

import json
import logging

import pytest

from suno_nb import payloads
from suno_nb.rows import Delivery
from suno_nb.store import Store
from suno_nb.store.schema import FAILED, RUNNING, SUCCEEDED, UNKNOWN

from .conftest import post


def _item(track_id: str, *, ready: bool) -> dict:
    """A generate item as sent: ``first`` has no audio_url yet; extra ``source_*`` fields."""
    return {
        "id": track_id,
        "audio_url": f"https://cdn.example/{track_id}.mp3" if ready else "",
        "source_audio_url": f"https://src.example/{track_id}.mp3" if ready else "",
        "stream_audio_url": f"https://cdn.example/{track_id}",
        "source_stream_audio_url": f"https://src.example/{track_id}",
        "image_url": "https://cdn.example/i.jpeg",
        "prompt": "[Verse] la la",
        "model_name": "chirp-v5",
        "title": "Song",
        "tags": "pop",
        "createTime": "2025-01-01 00:00:00",
        "duration": 180.5 if ready else None,
    }


def body(stage: str, task: str = "g1", *, code: int = 200, key: str = "task_id", items=None):
    data = {"callbackType": stage, key: task, "data": items}
    return json.dumps({"code": code, "msg": f"{stage} ok", "data": data}).encode()


STAGES = {
    "text": body("text", items=[]),
    "first": body("first", items=[_item("a", ready=False)]),
    "complete": body("complete", items=[_item("a", ready=True), _item("b", ready=True)]),
}


@pytest.fixture
def store():
    s = Store(":memory:")
    yield s
    s.close()


def record(store: Store, raw: bytes):
    return store.record_callback(Delivery(body=raw), payloads.parse_callback(raw)).result(30)


def test_parsed_stages_and_properties():
    for stage, final in (("text", False), ("first", False), ("complete", True)):
        cb = payloads.parse_callback(STAGES[stage])
        assert (cb.stage, cb.final, cb.known) == (stage, final, True)
    cb = payloads.parse_callback(body("ERROR", code=501))
    assert (cb.stage, cb.final, cb.succeeded) == ("error", True, False)
    odd = payloads.parse_callback(body("Lyrics_Ready"))
    assert (odd.stage, odd.final, odd.known) == ("lyrics_ready", False, False)
    with pytest.raises(payloads.PayloadError, match="callbackType"):
        payloads.parse_callback(body("x" * 33))
    with pytest.raises(payloads.PayloadError, match="callbackType"):
        payloads.parse_callback(body(""))


def test_text_first_complete_end_succeeded_with_each_track_once(store):
    text = record(store, STAGES["text"])
    assert (text.verdict, text.state, text.stage) == ("accepted", RUNNING, "text")
    assert store.task("g1")["stage"] == "text" and store.tracks_of("g1") == []
    first = record(store, STAGES["first"])
    assert (first.state, first.stage, first.new_track_ids) == (RUNNING, "first", ("a",))
    [a] = store.tracks_of("g1")
    assert a["audio_url"] == "" and a["stream_audio_url"] == "https://cdn.example/a"
    done = record(store, STAGES["complete"])
    assert (done.state, done.stage, done.new_track_ids) == (SUCCEEDED, "complete", ("b",))
    tracks = store.tracks_of("g1")
    assert [t["track_id"] for t in tracks] == ["a", "b"]  # no duplicate rows
    assert tracks[0]["audio_url"] == "https://cdn.example/a.mp3"  # completed by `complete`
    assert tracks[0]["duration"] == 180.5
    assert json.loads(tracks[0]["extra"])["source_audio_url"] == "https://src.example/a.mp3"
    task = store.task("g1")
    assert (task["state"], task["stage"], task["callback_type"]) == (
        SUCCEEDED,
        "complete",
        "complete",
    )
    assert task["completed_at"] is not None
    # Retries of any stage after the result: duplicates, nothing moves back.
    for stage in ("complete", "first", "text"):
        again = record(store, STAGES[stage])
        assert (again.verdict, again.state) == ("duplicate", SUCCEEDED), stage
    assert store.task("g1")["stage"] == "complete"
    assert len(store.tracks_of("g1")) == 2
    assert store.counts()["deliveries"] == 6


def test_stages_may_be_skipped_or_arrive_out_of_order(store):
    done = record(store, body("complete", "g2", items=[_item("a", ready=True)]))
    assert done.state == SUCCEEDED
    late = record(store, body("first", "g2", items=[_item("a", ready=False)]))
    assert late.verdict == "duplicate"
    assert store.tracks_of("g2")[0]["audio_url"] == "https://cdn.example/a.mp3"  # not erased


def test_the_first_final_result_decides(store):
    record(store, STAGES["first"])
    failed = record(store, body("error", code=501, items=None))
    assert failed.state == FAILED and store.task("g1")["stage"] == "error"
    assert record(store, body("failed", code=500)).verdict == "duplicate"  # stays failed
    assert record(store, STAGES["text"]).state == FAILED  # a late stage cannot reopen it
    upgraded = record(store, STAGES["complete"])  # a success upgrades a failure
    assert upgraded.state == SUCCEEDED
    assert record(store, body("error", code=531)).state == SUCCEEDED  # nothing downgrades it


def test_the_failed_stage_name_of_another_provider(store):
    out = record(store, body("failed", "k1", code=501))
    assert out.state == FAILED and store.task("k1")["stage"] == "failed"


def test_a_real_result_decides_a_task_we_gave_up_on(store):
    for task, raw, expected in (
        ("u1", body("complete", "u1", items=[_item("a", ready=True)]), SUCCEEDED),
        ("u2", body("error", "u2", code=501), FAILED),
        ("u3", body("first", "u3", items=[_item("a", ready=False)]), RUNNING),
    ):
        record(store, body("text", task))
        store.give_up(task, UNKNOWN, "unknown to the service after 3 polls")
        assert store.task(task)["state"] == UNKNOWN
        assert record(store, raw).state == expected
        task_row = store.task(task)
        assert task_row["reason"] is None and task_row["unknown_polls"] == 0
        assert (task_row["completed_at"] is None) == (expected == RUNNING)


def test_task_id_in_camel_case(store):
    out = record(store, body("complete", "lyr1", key="taskId", items=[_item("x", ready=True)]))
    assert (out.task_id, out.state) == ("lyr1", SUCCEEDED)
    both = json.loads(body("complete", "snake"))
    both["data"]["taskId"] = "camel"
    assert payloads.parse_callback(both).task_id == "snake"  # the documented name wins


def test_an_undocumented_stage_is_stored_and_logged_quietly(store, caplog):
    with caplog.at_level(logging.DEBUG, logger="suno_nb"):
        out = record(store, body("lyrics_ready", "m1", items=[]))
    assert (out.verdict, out.state, out.stage) == ("accepted", RUNNING, "lyrics_ready")
    assert store.delivery(out.delivery_id)["verdict"] == "accepted"
    notes = [r for r in caplog.records if "lyrics_ready" in r.getMessage()]
    assert notes and all(r.levelno <= logging.INFO for r in notes)


@pytest.mark.parametrize(
    ("status", "stage"), [("TEXT_SUCCESS", "text"), ("FIRST_SUCCESS", "first")]
)
def test_record_info_interim_statuses_become_stages(store, status, stage):
    info = payloads.parse_record_info(
        {
            "taskId": "p1",
            "status": status,
            "response": {"sunoData": [{"id": "a", "streamAudioUrl": "https://s"}]},
        }
    )
    cb = payloads.callback_from_record(info)
    assert (cb.stage, cb.final) == (stage, False)
    out = store.record_callback(Delivery(body=b"{}", source="poll", method=None), cb).result(30)
    assert (out.state, store.task("p1")["stage"]) == (RUNNING, stage)
    assert store.pending_tasks()[0]["task_id"] == "p1"  # still polled
    with pytest.raises(ValueError, match="PENDING"):
        payloads.callback_from_record(
            payloads.parse_record_info({"taskId": "p", "status": "PENDING"})
        )


def test_receiver_accepts_the_whole_family_over_http(rx, capfd):
    for stage in ("text", "first", "complete"):
        r = post(rx.url, STAGES[stage])
        assert r.status_code == 200, (stage, r.text)
    assert post(rx.url, body("complete", "lyr", key="taskId", items=[])).status_code == 200
    r = post(rx.url, body("mystery_stage", "m9", items=[]))
    assert r.status_code == 200, r.text
    tasks = rx.store
    assert tasks.task("g1")["state"] == SUCCEEDED
    assert [t["track_id"] for t in tasks.tracks_of("g1")] == ["a", "b"]
    assert tasks.task("lyr")["state"] == SUCCEEDED
    assert tasks.task("m9")["stage"] == "mystery_stage"
    stored = tasks.query("SELECT verdict FROM deliveries WHERE task_id = 'm9'")
    assert stored == [{"verdict": "accepted"}]
    assert "mystery_stage" not in capfd.readouterr().err


def test_a_body_with_thousands_of_items_is_stored_in_chunks(store):
    many = [{"id": f"t{i}"} for i in range(5000)]
    out = record(store, body("first", "big", items=many))
    assert len(out.new_track_ids) == 5000
    more = record(store, body("complete", "big", items=[*many, {"id": "last"}, {"id": "t1"}]))
    assert more.new_track_ids == ("last",) and more.state == SUCCEEDED
    assert store.counts()["tracks"] == 5001
