"""The receive path over real HTTP: seeds, concurrency, malformed input, signatures, failures."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import suno_nb.session as session
from suno_nb.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature_headers
from suno_nb.store import Store

from .conftest import post, seed_bytes
from .rawhttp import one_answer, read_until_close

# --- the seeds' examples --------------------------------------------------------------------


def test_seed_success_becomes_the_documented_row(rx):
    r = post(rx.url, seed_bytes("seed_success.json"))
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
    assert (pd.Timestamp.now(tz="UTC") - row["received_at"]).total_seconds() < 60
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


def test_stalled_client_is_cut_off_and_does_not_block_others(rx):
    host, port = "127.0.0.1", rx.port
    stalled = socket.create_connection((host, port))
    stalled.sendall(
        f"POST {rx.url.split(str(port), 1)[1]} HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{".encode()
    )
    t0 = time.monotonic()
    # another delivery is answered while the stalled one hangs
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    assert time.monotonic() - t0 < 1.5
    stalled.settimeout(10)
    status, doc = one_answer(read_until_close(stalled))  # cut off at the request deadline
    assert status == 408 and "within" in doc["msg"]
    assert time.monotonic() - t0 < 8
    stalled.close()
    assert len(rx.frame()) == 1


def test_client_that_sends_headers_only_then_stalls(rx):
    s = socket.create_connection(("127.0.0.1", rx.port))
    s.sendall(b"POST /callback/x HTTP/1.1\r\nHost: x\r\n")  # never finishes the headers
    s.settimeout(10)
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
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
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


# --- signatures and the allow-list ----------------------------------------------------------

KEY = "whsec-test-key-0123456789"


@pytest.fixture
def signed_rx(tmp_path):
    receiver = session.start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False, hmac_key=KEY)
    yield receiver
    session.stop_receiver()


def test_correct_signature_passes(signed_rx):
    headers = signature_headers(KEY, "2fac****9f72")
    assert post(signed_rx.url, seed_bytes("seed_success.json"), headers).status_code == 200
    assert len(signed_rx.frame()) == 1


def _signature_case(case: str) -> dict[str, str]:
    now = int(time.time())
    if case == "wrong key":
        return signature_headers("not-the-key", "2fac****9f72", now)
    if case == "changed task_id":
        return signature_headers(KEY, "another-task", now)
    if case == "stale timestamp":
        return signature_headers(KEY, "2fac****9f72", now - 301)
    if case == "missing signature":
        return {TIMESTAMP_HEADER: str(now)}
    if case == "missing timestamp":
        return {SIGNATURE_HEADER: signature_headers(KEY, "2fac****9f72", now)[SIGNATURE_HEADER]}
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case, reason",
    [
        ("wrong key", "does not match"),
        ("changed task_id", "does not match"),
        ("stale timestamp", "tolerance"),
        ("missing signature", f"missing {SIGNATURE_HEADER}"),
        ("missing timestamp", f"missing {TIMESTAMP_HEADER}"),
    ],
)
def test_bad_signatures_get_401_with_a_distinct_reason(signed_rx, case, reason):
    r = post(signed_rx.url, seed_bytes("seed_success.json"), _signature_case(case))
    assert r.status_code == 401
    assert reason in r.json()["msg"]
    d = signed_rx.deliveries().iloc[0]
    assert d["verdict"] == "rejected" and reason in d["reason"]
    assert signed_rx.frame().empty
    assert KEY not in r.text and KEY not in d["reason"]


def test_hmac_key_never_in_repr_or_frames(signed_rx):
    post(signed_rx.url, seed_bytes("seed_success.json"), signature_headers(KEY, "2fac****9f72"))
    texts = [
        repr(signed_rx),
        signed_rx._repr_html_(),
        repr(signed_rx.config),
        signed_rx.frame().to_string(),
        signed_rx.tasks().to_string(),
        signed_rx.deliveries().to_string(),
    ]
    assert not any(KEY in t for t in texts)


def test_allow_list_rejects_other_addresses(tmp_path):
    rx = session.start_receiver(
        tmp_path / "a.sqlite3", tunnel=None, poll=False, allow_ips=["203.0.113.0/24"]
    )
    r = post(rx.url, seed_bytes("seed_success.json"))
    assert r.status_code == 403 and "allow-list" in r.json()["msg"]
    rx2 = session.start_receiver(
        tmp_path / "a.sqlite3", tunnel=None, poll=False, allow_ips=["127.0.0.1"]
    )
    assert rx2 is not rx and not rx.running
    assert post(rx2.url, seed_bytes("seed_success.json")).status_code == 200


# --- durability -----------------------------------------------------------------------------


def test_failed_store_write_answers_5xx_and_nothing_acknowledged_is_lost(tmp_path):
    path = tmp_path / "d.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False)
    acked = []
    for n in range(5):
        r = post(rx.url, _body(n))
        assert r.status_code == 200
        acked.append(f"task{n:04d}")
    # The disk "fills up": every insert into tracks now fails inside SQLite.
    with rx.store._wlock:
        rx.store._wconn.execute(
            "CREATE TRIGGER full BEFORE INSERT ON tracks "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    r = post(rx.url, _body(99))
    assert r.status_code == 503
    assert "retry" in r.json()["msg"]
    with rx.store._wlock:
        rx.store._wconn.execute("DROP TRIGGER full")
    assert post(rx.url, _body(99)).status_code == 200  # the sender's retry lands
    acked.append("task0099")
    session.stop_receiver()
    reopened = Store(path)
    try:
        stored = {r["task_id"] for r in reopened.query("SELECT DISTINCT task_id FROM tracks")}
        assert stored == set(acked)
        assert reopened.query("SELECT count(*) AS n FROM tracks")[0]["n"] == 2 * len(acked)
    finally:
        reopened.close()


def test_reopening_the_store_file_shows_earlier_results(tmp_path):
    path = tmp_path / "k.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False)
    post(rx.url, seed_bytes("seed_success.json"))
    url = rx.url
    session.stop_receiver()
    rx2 = session.start_receiver(path, tunnel=None, poll=False)  # "kernel restart"
    assert len(rx2.frame()) == 1
    assert rx2.url.rsplit("/", 1)[1] == url.rsplit("/", 1)[1]  # same callback token


# --- lifecycle ------------------------------------------------------------------------------


def test_rerun_reuses_the_receiver_and_stop_frees_the_port(tmp_path):
    path = tmp_path / "r.sqlite3"
    before = {t.name for t in threading.enumerate()}
    rx = session.start_receiver(path, tunnel=None, poll=False)
    again = session.start_receiver(path, tunnel=None, poll=False)
    assert again is rx
    servers = [t for t in threading.enumerate() if t.name.startswith("suno_nb-receiver")]
    assert len(servers) == 1
    port, thread = rx.port, rx._server.thread
    session.stop_receiver()
    assert not thread.is_alive() and not rx.running
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again
    leftover = {t.name for t in threading.enumerate()} - before
    assert not [n for n in leftover if n.startswith("suno_nb")]
    rx.stop()  # idempotent
    session.stop_receiver()


def test_receiver_binds_loopback_only(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        session.start_receiver(tmp_path / "x.sqlite3", host="0.0.0.0", tunnel=None)


def test_handlers_run_after_the_ack_and_a_raising_handler_is_isolated(rx):
    seen, order = [], []
    gate = threading.Event()

    def slow(event):
        gate.wait(5)
        order.append("slow")

    def broken(event):
        raise RuntimeError("handler bug")

    def good(event):
        seen.append((event.task_id, event.state, event.new_track_ids))

    rx.on_callback(slow)
    rx.on_callback(broken)
    rx.on_callback(good)
    t0 = time.monotonic()
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    assert time.monotonic() - t0 < 2  # the ack did not wait for the slow handler
    gate.set()
    assert rx.flush(5)
    assert order == ["slow"]
    assert seen == [("2fac****9f72", "succeeded", ("e231****-****-****-****-****8cadc7dc",))]
    rx.on_callback(good, remove=True)
    post(rx.url, _body(5))
    rx.flush(5)
    assert len(seen) == 1


def test_replay_reruns_handlers_without_duplicate_rows(rx):
    events = []
    rx.on_callback(events.append)
    post(rx.url, seed_bytes("seed_success.json"))
    rx.flush(5)
    first = int(rx.deliveries().iloc[0]["delivery_id"])
    verdict = rx.replay(first)
    rx.flush(5)
    assert verdict.status == 200
    assert [e.source for e in events] == ["callback", "replay"]
    assert len(rx.frame()) == 1
    d = rx.deliveries()
    assert list(d["source"]) == ["callback", "replay"]
    assert d.iloc[1]["replay_of"] == first
