"""The receive path over real HTTP: seeds, concurrency, malformed input, stalled clients."""

from __future__ import annotations

import json
import random
import select
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import suno_nb.session as session

from .conftest import post, seed_bytes
from .rawhttp import one_answer, read_until_close

# --- the seeds' examples --------------------------------------------------------------------


def test_seed_success_becomes_the_documented_row(rx):
    before = pd.Timestamp.now(tz="UTC")
    r = post(rx.url, seed_bytes("seed_success.json"))
    after = pd.Timestamp.now(tz="UTC")
    assert r.status_code == 200
    assert r.json() == {"code": 200, "msg": "success"}
    df = rx.frame()
    assert len(df) == 1
    row = df.iloc[0]
    assert row["task_id"] == "2fac****9f72"
    assert row["track_id"] == "e231****-****-****-****-****8cadc7dc"
    assert row["callback_type"] == "complete"
    assert row["code"] == 200
    assert row["msg"] == "All generated successfully."
    assert row["title"] == "Relaxing Piano"
    assert row["tags"] == "Jazz"
    assert row["prompt"] == "A calm and relaxing piano track."
    assert row["model_name"] == "chirp-v3-5"
    assert row["duration"] == 198.44
    assert row["audio_url"] == "https://example.cn/****.mp3"
    assert row["stream_audio_url"] == "https://example.cn/****"
    assert row["image_url"] == "https://example.cn/****.jpeg"
    assert row["created_at"] == pd.Timestamp("2025-01-01 00:00:00")
    assert row["source"] == "callback"
    slack = pd.Timedelta("1ms")  # float seconds in the store
    assert before - slack <= row["received_at"] <= after + slack  # its arrival, not the body's
    # typed columns, not object
    assert df["duration"].dtype == "float64"
    assert str(df["code"].dtype) == "Int64"
    assert pd.api.types.is_datetime64_any_dtype(df["created_at"])
    assert str(df["received_at"].dtype).startswith("datetime64") and "UTC" in str(
        df["received_at"].dtype
    )
    tasks = rx.tasks()
    assert tasks.loc[0, "state"] == "succeeded" and tasks.loc[0, "tracks"] == 1


def test_chinese_success_body_is_accepted_verbatim(rx):
    assert post(rx.url, seed_bytes("seed_success_zh.json")).status_code == 200
    row = rx.frame().iloc[0]
    assert row["title"] == "替换后的标题" and row["tags"] == "electrifying, rock"


@pytest.mark.parametrize(
    "name, error",
    [
        ("seed_failure_error.json", "Generation failed due to technical issues"),
        ("seed_failure_null.json", None),
    ],
)
def test_seed_failures_become_failed_tasks(rx, name, error):
    r = post(rx.url, seed_bytes(name))
    assert r.status_code == 200
    assert rx.frame().empty
    task = rx.tasks().iloc[0]
    assert task["task_id"] == "2fac****9f72"
    assert task["state"] == "failed"
    assert task["code"] == 501
    assert task["msg"] == "Audio generation failed."
    assert task["callback_type"] == "error"
    assert (task["error"] if error else None) == error or pd.isna(task["error"])
    d = rx.deliveries().iloc[0]
    assert d["verdict"] == "accepted" and d["status"] == 200
    assert d["size"] == len(seed_bytes(name))


def test_unknown_fields_are_kept(rx):
    doc = json.loads(seed_bytes("seed_success.json"))
    doc["data"]["data"][0]["lyric"] = "[Verse] la la"
    doc["data"]["region"] = "eu"
    assert post(rx.url, json.dumps(doc).encode()).status_code == 200
    stored = rx.store.query("SELECT extra FROM tracks")[0]["extra"]
    assert json.loads(stored) == {"lyric": "[Verse] la la"}
    body = rx.store.query("SELECT body FROM deliveries")[0]["body"]
    assert json.loads(body)["data"]["region"] == "eu"


# --- concurrency and dedup ------------------------------------------------------------------


def _body(task: int, tracks: int = 2) -> bytes:
    return json.dumps(
        {
            "code": 200,
            "msg": "All generated successfully.",
            "data": {
                "callbackType": "complete",
                "task_id": f"task{task:04d}",
                "data": [
                    {
                        "id": f"track-{task}-{i}",
                        "audio_url": f"https://x/{task}/{i}.mp3",
                        "title": f"T{task}",
                        "duration": 30.0 + i,
                        "createTime": "2025-01-01 00:00:00",
                    }
                    for i in range(tracks)
                ],
            },
        }
    ).encode()


@pytest.mark.slow  # seconds of work: the fast lane stays under 90 s; CI runs it
@pytest.mark.alone  # 20 senders, 1,000 deliveries
def test_1000_deliveries_from_20_senders_each_sent_1_to_3_times(rx):
    rng = random.Random(7)
    jobs = [(n, _body(n)) for n in range(1000)]
    sends = [job for job in jobs for _ in range(rng.randint(1, 3))]
    rng.shuffle(sends)
    lanes = [sends[i::20] for i in range(20)]
    statuses: list[int] = []
    lock = threading.Lock()

    def sender(lane):
        with requests.Session() as s:  # keep-alive, like a real sender
            for _n, body in lane:
                code = post(rx.url, body, session_=s).status_code
                with lock:
                    statuses.append(code)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(sender, lanes))
    assert len(statuses) == len(sends)
    assert set(statuses) == {200}
    df = rx.frame()
    assert len(df) == 2000
    assert not df.duplicated(["task_id", "track_id"]).any()
    assert set(df["task_id"]) == {f"task{n:04d}" for n in range(1000)}
    d = rx.deliveries()
    assert len(d) == len(sends)
    assert (d["verdict"] == "accepted").sum() == 1000
    assert (d["verdict"] == "duplicate").sum() == len(sends) - 1000


def test_duplicate_delivery_answers_200_and_adds_nothing(rx):
    body = seed_bytes("seed_success.json")
    for _ in range(3):
        assert post(rx.url, body).status_code == 200
    assert len(rx.frame()) == 1
    assert list(rx.deliveries()["verdict"]) == ["accepted", "duplicate", "duplicate"]


# --- malformed input ------------------------------------------------------------------------


def _valid() -> dict:
    return json.loads(seed_bytes("seed_success.json"))


def _mutated(fn) -> bytes:
    doc = _valid()
    fn(doc)
    return json.dumps(doc).encode()


MALFORMED = {
    "not json": (b"{this is not json", 400, "not JSON"),
    "json array": (b"[1, 2, 3]", 400, "JSON object"),
    "code is a string": (_mutated(lambda d: d.update(code="200")), 400, "code"),
    "msg is a number": (_mutated(lambda d: d.update(msg=5)), 400, "msg"),
    "data missing": (_mutated(lambda d: d.pop("data")), 400, "data must be an object"),
    "missing task_id": (_mutated(lambda d: d["data"].pop("task_id")), 400, "task_id"),
    "empty task_id": (_mutated(lambda d: d["data"].update(task_id="")), 400, "task_id"),
    "task_id a number": (_mutated(lambda d: d["data"].update(task_id=12)), 400, "task_id"),
    "empty callbackType": (
        _mutated(lambda d: d["data"].update(callbackType=" ")),
        400,
        "callbackType",
    ),
    "callbackType a number": (
        _mutated(lambda d: d["data"].update(callbackType=3)),
        400,
        "callbackType",
    ),
    "tracks not a list": (_mutated(lambda d: d["data"].update(data={"id": "x"})), 400, "data.data"),
    "track without id": (_mutated(lambda d: d["data"]["data"][0].pop("id")), 400, "id"),
    "duration a word": (
        _mutated(lambda d: d["data"]["data"][0].update(duration="long")),
        400,
        "duration",
    ),
    "title a list": (_mutated(lambda d: d["data"]["data"][0].update(title=["a"])), 400, "title"),
    "deeply nested": (
        b'{"code": 200, "msg": "x", "data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        400,
        "nested",
    ),
    "invalid utf-8": (b'{"code": 200, "msg": "\xff\xfe", "data": {}}', 400, "UTF-8"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_body_gets_400_with_reason_and_is_recorded(rx, case):
    body, status, fragment = MALFORMED[case]
    r = post(rx.url, body)
    assert r.status_code == status
    assert fragment in r.json()["msg"]
    d = rx.deliveries()
    assert list(d["verdict"]) == ["rejected"]
    assert fragment in d.iloc[0]["reason"]
    assert d.iloc[0]["size"] == len(body)
    assert rx.frame().empty and rx.tasks().empty
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200  # still answering


def test_wrong_content_type_is_415(rx):
    r = post(rx.url, seed_bytes("seed_success.json"), {"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["msg"]
    assert rx.deliveries().iloc[0]["verdict"] == "rejected"
    assert rx.frame().empty


def test_body_over_the_limit_is_413_and_the_receiver_keeps_answering(rx):
    big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    r = post(rx.url, big)
    assert r.status_code == 413
    assert "limit" in r.json()["msg"]
    assert rx.flush(30)
    assert rx.deliveries().iloc[0]["status"] == 413
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200


def test_wrong_path_404_and_wrong_method_405(rx):
    assert post(rx.local_url + "x", seed_bytes("seed_success.json")).status_code == 404
    base = rx.local_url.rsplit("/", 1)[0]
    assert post(base + "/guess", seed_bytes("seed_success.json")).status_code == 404
    r = requests.get(rx.url, timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert requests.put(rx.url, data=b"{}", timeout=5).status_code == 405
    d = rx.deliveries().sort_values("delivery_id")
    assert list(d["status"]) == [404, 404, 405, 405]  # every request leaves a row
    assert set(d["verdict"]) == {"rejected"}
    token = rx.local_url.rsplit("/", 1)[1]
    assert not any(token in str(v) for v in d.to_dict("records"))  # paths masked
    assert rx.frame().empty


def test_callback_path_token_is_unguessable(rx):
    token = rx.local_url.rsplit("/", 1)[1]
    assert len(token) >= 22  # >= 128 bits of urlsafe base64


def _stall(rx) -> socket.socket:
    """A delivery that sends its headers and one byte of its 500-byte body, then nothing."""
    stalled = socket.create_connection(("127.0.0.1", rx.port))
    stalled.sendall(
        f"POST {rx.url.split(str(rx.port), 1)[1]} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{".encode()
    )
    return stalled


def test_stalled_client_does_not_block_others(tmp_path):
    # An hour's request deadline: the stalled delivery cannot end before the test does.
    rx = session.start_receiver(
        tmp_path / "hour.sqlite3", tunnel=None, poll=False, request_timeout=3600
    )
    stalled = _stall(rx)
    try:
        # another delivery is answered while the stalled one hangs ...
        assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
        # ... which it still does: unanswered, its connection open
        assert select.select([stalled], [], [], 0)[0] == []
        assert rx.server.connections >= 1
        assert len(rx.frame()) == 1
    finally:
        stalled.close()


def test_stalled_client_is_cut_off_at_the_request_deadline(rx):
    stalled = _stall(rx)
    stalled.settimeout(30)  # anti-hang guard: the deadline is 2 s
    status, doc = one_answer(read_until_close(stalled))  # cut off at the request deadline
    assert status == 408 and doc["msg"] == "request not received within 2 s"
    stalled.close()
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    assert len(rx.frame()) == 1


def test_client_that_sends_headers_only_then_stalls(rx):
    s = socket.create_connection(("127.0.0.1", rx.port))
    s.sendall(b"POST /callback/x HTTP/1.1\r\nHost: x\r\n")  # never finishes the headers
    s.settimeout(30)  # anti-hang guard: the deadline is 2 s
    assert one_answer(read_until_close(s))[0] == 408
    s.close()
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {
                "code": json_values,
                "msg": json_values,
                "data": st.fixed_dictionaries(
                    {
                        "callbackType": st.sampled_from(["complete", "error", "x"]),
                        "task_id": json_values,
                        "data": json_values,
                    }
                ),
            }
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_generated_bodies_get_200_or_a_4xx_with_reason(rx, body):
    r = post(rx.url, body)
    assert r.status_code in (200, 400)
    if r.status_code == 400:
        assert r.json()["code"] == 400 and r.json()["msg"]
    else:
        assert r.json() == {"code": 200, "msg": "success"}


def test_receiver_survives_the_fuzzing(rx):
    for body in (b"\x00" * 10, b"{}", b"null", b'"x"'):
        assert post(rx.url, body).status_code == 400
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    assert rx.running
