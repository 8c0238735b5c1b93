"""The sandbox against real loopback HTTP: routes, validation, callbacks, faults, files.

A small recording HTTP server in this file stands in for the callback receiver, so these
tests do not depend on suno_nb's own receiver.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from suno_nb import signing
from suno_nb.errors import SignatureError
from suno_nb.payloads import (
    CALLBACK_CODES,
    FAILED_STATUSES,
    parse_callback,
    parse_record_info,
)
from suno_nb.sandbox import Faults, Sandbox, decode_audio

DATA = Path(__file__).parent / "data"
SR = 22050


# --- helpers ------------------------------------------------------------------------------


class Recorder:
    """A loopback callback target that records every POST and answers from a script."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Condition()  # notified on each request
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with recorder.arrived:
                    status = recorder.statuses.pop(0) if recorder.statuses else 200
                    recorder.requests.append(
                        {
                            "path": self.path,
                            "headers": dict(self.headers.items()),
                            "body": json.loads(body),
                            "at": time.monotonic(),
                        }
                    )
                    recorder.arrived.notify_all()
                reply = json.dumps({"code": 200, "msg": "success"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook?token=abc"

    def wait_for(self, n: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The requests so far, once there are ``n`` (or ``timeout`` s passed: anti-hang)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= n, timeout)
            return list(self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # An environment proxy must not intercept the tests' loopback requests.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def make_sandbox() -> Iterator[Any]:
    made: list[Sandbox] = []

    def make(**kw: Any) -> Sandbox:
        kw.setdefault("delay", 0.15)
        kw.setdefault("retry_backoff", 0.05)
        kw.setdefault("callback_timeout", 2.0)
        sb = Sandbox(**kw).start()
        made.append(sb)
        return sb

    yield make
    for sb in made:
        sb.stop()


@pytest.fixture
def sb(make_sandbox: Any) -> Sandbox:
    return make_sandbox()


def auth(sb: Sandbox) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.api_key}"}


def replace_body(song: Any, start: float = 10.0, end: float = 22.0, **extra: Any) -> dict:
    body = {
        "taskId": song.task_id,
        "audioId": song.audio_id,
        "prompt": "[Verse] a brand new bridge",
        "tags": "jazz, brass",
        "title": "New Bridge",
        "infillStartS": start,
        "infillEndS": end,
        "fullLyrics": "[Verse] the old words\n[Bridge] a brand new bridge\n[Chorus] the old chorus",
    }
    body.update(extra)
    return body


def submit(sb: Sandbox, body: dict) -> dict:
    url = f"{sb.url}/api/v1/generate/replace-section"
    r = requests.post(url, json=body, headers=auth(sb), timeout=30)
    assert r.status_code == 200
    return r.json()


def record(sb: Sandbox, task_id: str) -> dict:
    r = requests.get(
        f"{sb.url}/api/v1/generate/record-info",
        params={"taskId": task_id},
        headers=auth(sb),
        timeout=30,
    )
    assert r.status_code == 200
    return r.json()


def credit(sb: Sandbox) -> float:
    r = requests.get(f"{sb.url}/api/v1/generate/credit", headers=auth(sb), timeout=30)
    doc = r.json()
    assert doc["code"] == 200 and doc["msg"] == "success"
    return doc["data"]


def shape(obj: Any) -> Any:
    """Keys and JSON types, recursively; list items must all share one shape."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        shapes = [shape(v) for v in obj]
        assert all(s == shapes[0] for s in shapes)
        return shapes[:1]
    return type(obj).__name__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


# --- auth, status, credits ----------------------------------------------------------------


def test_api_routes_need_the_bearer_key(sb: Sandbox) -> None:
    song = sb.create_song(duration=30)
    routes = [
        ("get", "/api/v1/generate/credit", None),
        ("get", f"/api/v1/generate/record-info?taskId={song.task_id}", None),
        ("post", "/api/v1/generate/replace-section", replace_body(song)),
        ("post", "/api/v1/generate", {"prompt": "x"}),
    ]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": sb.api_key}):
            r = requests.request(method, sb.url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers)
            doc = r.json()
            assert doc["code"] == 401 and "Unauthorized" in doc["msg"]
            assert sb.api_key not in r.text
    assert credit(sb) == 500  # nothing was charged by the refused submissions
    assert [t["type"] for t in sb.tasks()] == ["GENERATE"]
    # File routes are public, like CDN URLs.
    assert requests.get(song.tracks[0].image_url, timeout=30).status_code == 200


def test_record_info_advances_to_success_with_the_reference_shape(
    make_sandbox: Any, recorder: Recorder
) -> None:
    # It polls as fast as round trips go, past the 20 per 10 s a key may send: the subject
    # is the record's shape, so this sandbox does not enforce the rate limit.  Each stage
    # lasts a third of the delay: 1 s, far longer than a round trip on a loaded machine, so
    # no stage can fall between two polls.
    sb = make_sandbox(delay=3.0, rate_limit=False)
    request = {
        "prompt": "A calm piano track",
        "style": "Classical",
        "title": "Peaceful Piano",
        "customMode": True,
        "instrumental": True,
        "model": "V4_5",
        "callBackUrl": recorder.url,
    }
    r = requests.post(f"{sb.url}/api/v1/generate", json=request, headers=auth(sb), timeout=30)
    doc = r.json()
    assert doc["code"] == 200 and doc["msg"] == "success"
    task_id = doc["data"]["taskId"]
    seen: dict[str, int] = {}  # status -> number of tracks shown, in order of appearance
    deadline = time.monotonic() + 60  # a guard against a hang, not a speed check
    while time.monotonic() < deadline:  # each poll is paced by its own round trip
        polled = record(sb, task_id)["data"]
        seen.setdefault(polled["status"], len(polled["response"]["sunoData"]))
        if polled["status"] == "SUCCESS":
            break
    assert list(seen) == ["PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS"]
    assert list(seen.values()) == [0, 0, 1, 2]  # FIRST_SUCCESS: the first track is out

    data = record(sb, task_id)["data"]
    assert list(data) == [
        "taskId",
        "parentMusicId",
        "param",
        "response",
        "status",
        "type",
        "errorCode",
        "errorMessage",
    ]
    assert data["taskId"] == task_id and data["parentMusicId"] == "" and data["type"] == "GENERATE"
    assert json.loads(data["param"]) == request
    assert data["errorCode"] is None and data["errorMessage"] is None
    tracks = data["response"]["sunoData"]
    assert data["response"]["taskId"] == task_id and len(tracks) == 2
    assert set(tracks[0]) == {
        "id",
        "audioUrl",
        "streamAudioUrl",
        "imageUrl",
        "prompt",
        "modelName",
        "title",
        "tags",
        "createTime",
        "duration",
    }
    assert tracks[0]["modelName"] == "chirp-v4-5" and tracks[0]["title"] == "Peaceful Piano"
    info = parse_record_info(data)
    assert info.done and [t.id for t in info.tracks] == [t["id"] for t in tracks]

    # generate sends its stages in order: text (no tracks), first (one), complete (both),
    # the items carrying the source_* fields of generate-music-callbacks.
    assert sb.wait_idle(60)
    deliveries = recorder.wait_for(3)
    assert [d["body"]["data"]["callbackType"] for d in deliveries] == ["text", "first", "complete"]
    assert all(d["headers"]["Content-Type"] == "application/json" for d in deliveries)
    assert [len(d["body"]["data"]["data"]) for d in deliveries] == [0, 1, 2]
    assert all(d["body"]["data"]["task_id"] == task_id for d in deliveries)
    complete = deliveries[-1]["body"]
    assert complete["code"] == 200 and complete["msg"] == "All generated successfully."
    for item in complete["data"]["data"]:
        assert item["source_audio_url"] == item["audio_url"]
        assert {"source_stream_audio_url", "source_image_url"} <= set(item)
    assert [t["id"] for t in complete["data"]["data"]] == [t["id"] for t in tracks]


def test_credits_decrease_and_402_when_exhausted(make_sandbox: Any) -> None:
    sb = make_sandbox(credits=12, cost_replace=5)
    song = sb.create_song(duration=40)
    assert credit(sb) == 12
    assert submit(sb, replace_body(song))["code"] == 200
    assert credit(sb) == 7
    assert submit(sb, replace_body(song, 20, 30))["code"] == 200
    assert credit(sb) == 2
    tasks_before = len(sb.tasks())
    doc = submit(sb, replace_body(song, 0, 10))
    # Replace-section's own table: 402 (the generic table's 429 is for other endpoints).
    assert doc["code"] == 402 and "insufficient credits" in doc["msg"].lower()
    assert "data" not in doc
    assert credit(sb) == 2 and len(sb.tasks()) == tasks_before  # nothing charged or created
    sb.credits = 100
    assert submit(sb, replace_body(song, 0, 10))["code"] == 200
    assert credit(sb) == 95
    sb.credits = 0
    gen = {"prompt": "hi", "model": "V5", "callBackUrl": "https://cb.test/x"}
    r = requests.post(f"{sb.url}/api/v1/generate", json=gen, headers=auth(sb), timeout=30)
    assert r.json()["code"] == 429  # /generate: the generic table


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "words"),
    [
        (10.0, 18.0, ["infillEndS", "8 s long", "at least 10 s"]),
        (30.0, 41.0, ["infillEndS", "past the end", "40 s"]),
        (0.0, 25.0, ["infillEndS", "50%", "20 s"]),
        (12.0, 12.0, ["infillEndS", "greater than infillStartS"]),
        (-1.0, 8.0, ["infillStartS", ">= 0"]),
        ("10", 20.0, ["infillStartS", "number"]),
    ],
)
def test_invalid_range_is_rejected_even_from_raw_requests(
    sb: Sandbox, start: Any, end: Any, words: list[str]
) -> None:
    song = sb.create_song(duration=40)
    # Raw requests.post: no client-side validation in the way.
    r = requests.post(
        f"{sb.url}/api/v1/generate/replace-section",
        json=replace_body(song, start, end),
        headers=auth(sb),
        timeout=30,
    )
    assert r.status_code == 200  # as the hosted API: the error is in the JSON code
    doc = r.json()
    assert doc["code"] == 422, doc  # replace-section's validation code
    for word in words:
        assert word in doc["msg"], doc["msg"]
    assert credit(sb) == 500
    assert len(sb.tasks()) == 1  # only the original


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"prompt": ""}, 422, ["prompt", "required"]),
        ({"tags": None}, 422, ["tags", "required"]),
        ({"title": 7}, 422, ["title", "string"]),
        ({"title": "x" * 101}, 422, ["title", "101 characters"]),
        ({"fullLyrics": None}, 422, ["fullLyrics", "required", "docs.sunoapi.org"]),
        ({"fullLyrics": "  "}, 422, ["fullLyrics", "required"]),
        ({"taskId": "f" * 32}, 404, ["taskId", "no task"]),
        ({"audioId": "not-a-track"}, 422, ["audioId", "not a track"]),
        ({"callBackUrl": "ftp://example.com/x"}, 422, ["callBackUrl"]),
        ({"uploadUrl": "https://x.test/a.mp3", "model": "V5"}, 422, ["taskId", "uploadUrl"]),
    ],
)
def test_bad_fields_are_rejected_with_the_field_named(
    sb: Sandbox, change: dict, code: int, words: list[str]
) -> None:
    song = sb.create_song(duration=40)
    doc = submit(sb, {**replace_body(song), **change})
    assert doc["code"] == code, doc
    for word in words:
        assert word in doc["msg"]
    assert credit(sb) == 500


def test_body_must_be_a_json_object(sb: Sandbox) -> None:
    url = f"{sb.url}/api/v1/generate/replace-section"
    headers = {**auth(sb), "Content-Type": "application/json"}
    for raw in (b"[1, 2]", b"{not json", b""):
        doc = requests.post(url, data=raw, headers=headers, timeout=30).json()
        assert doc["code"] in (400, 422) and ("JSON" in doc["msg"] or "object" in doc["msg"]), raw


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"customMode": True, "instrumental": True, "title": "T"}, ["style", "required"]),
        ({"customMode": True, "style": "jazz", "prompt": "la"}, ["title", "required"]),
        ({"customMode": True, "style": "jazz", "title": "T"}, ["prompt", "required"]),
        ({"prompt": "x" * 501}, ["prompt", "501 characters"]),
        ({"prompt": "hi", "model": "V9"}, ["model", "V5_5"]),
        ({"prompt": "hi", "model": None}, ["model", "V4"]),
        ({"prompt": "hi", "customMode": "yes"}, ["customMode", "true or false"]),
        ({"prompt": "hi", "callBackUrl": None}, ["callBackUrl", "required"]),
    ],
)
def test_generate_validates_its_fields(sb: Sandbox, body: dict, words: list[str]) -> None:
    body = {"model": "V4_5", "callBackUrl": "https://cb.test/x", **body}
    body = {k: v for k, v in body.items() if v is not None}
    r = requests.post(f"{sb.url}/api/v1/generate", json=body, headers=auth(sb), timeout=30)
    doc = r.json()
    assert doc["code"] in (400, 413), doc
    for word in words:
        assert word in doc["msg"]
    assert credit(sb) == 500 and sb.tasks() == []


def test_record_info_and_routes_answer_errors_in_the_service_style(sb: Sandbox) -> None:
    url = f"{sb.url}/api/v1/generate/record-info"
    assert requests.get(url, headers=auth(sb), timeout=30).json()["code"] == 400
    doc = requests.get(url, params={"taskId": "nope"}, headers=auth(sb), timeout=30).json()
    assert doc["code"] == 404 and "nope" in doc["msg"]
    wrong_method = requests.get(f"{sb.url}/api/v1/generate", headers=auth(sb), timeout=30)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == 405
    unknown = requests.get(f"{sb.url}/api/v2/else", headers=auth(sb), timeout=30)
    assert unknown.status_code == 404 and unknown.json()["code"] == 404


def test_replacing_a_section_of_an_unfinished_task_is_refused(make_sandbox: Any) -> None:
    sb = make_sandbox(delay=5.0)
    song = sb.create_song(duration=40)
    first = submit(sb, replace_body(song))["data"]["taskId"]
    result_id = sb.record_info(first)["taskId"]
    doc = submit(sb, {**replace_body(song), "taskId": result_id})
    assert doc["code"] == 422 and "PENDING" in doc["msg"]


# --- audio --------------------------------------------------------------------------------


def test_replacement_differs_inside_and_matches_outside(sb: Sandbox, recorder: Recorder) -> None:
    song = sb.create_song(duration=30, title="Harbour Lights")
    start, end = 10.0, 22.0
    task_id = submit(sb, replace_body(song, start, end, callBackUrl=recorder.url))["data"]["taskId"]
    assert sb.wait_idle(60)
    (delivery,) = recorder.wait_for(1)
    results = delivery["body"]["data"]["data"]
    assert len(results) == 2 and all(t["duration"] == song.duration for t in results)
    assert record(sb, task_id)["data"]["parentMusicId"] == song.audio_id

    original, sr = decode_audio(requests.get(song.audio_url, timeout=30).content)
    assert sr == SR and len(original) == round(30 * SR)
    assert rms(original) > 0.05  # music, not silence
    level = rms(original)
    margin = int(0.25 * SR)  # seams and MP3 frames straddling them are not compared
    i0, i1 = int(start * SR), int(end * SR)
    inside = slice(i0 + margin, i1 - margin)
    decoded = []
    for item in results:
        replaced, sr2 = decode_audio(requests.get(item["audio_url"], timeout=30).content)
        assert sr2 == SR and len(replaced) == len(original)
        diff = replaced - original
        outside = np.concatenate([diff[: i0 - margin], diff[i1 + margin :]])
        # MP3 coding error of the same music is small relative to the level; new music is not.
        assert rms(outside) < 0.15 * level, rms(outside) / level
        assert rms(diff[inside]) > 0.6 * level, rms(diff[inside]) / level
        decoded.append(replaced)
    # Each result track is its own variant.
    assert rms(decoded[0][inside] - decoded[1][inside]) > 0.5 * level

    # Before encoding the samples outside the section are identical, bit for bit.
    a, b = sb.samples(song.audio_id), sb.samples(results[0]["id"])
    np.testing.assert_array_equal(a[:i0], b[:i0])
    np.testing.assert_array_equal(a[i1:], b[i1:])


def test_files_resolve_with_content_types_and_ranges(sb: Sandbox) -> None:
    song = sb.create_song(duration=20)
    track = song.tracks[0]
    full = requests.get(track.audio_url, timeout=30)
    assert full.status_code == 200 and full.headers["Content-Type"] == "audio/mpeg"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert track.audio_url.endswith(".mp3")
    samples, _ = decode_audio(full.content)
    assert abs(len(samples) / SR - track.duration) < 0.01

    stream = requests.get(track.stream_audio_url, timeout=30)
    assert stream.status_code == 200 and stream.headers["Content-Type"] == "audio/mpeg"
    assert stream.content == full.content
    total = len(full.content)

    part = requests.get(track.stream_audio_url, headers={"Range": "bytes=1000-1999"}, timeout=30)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{total}"
    assert part.content == full.content[1000:2000]
    probe = requests.get(track.stream_audio_url, headers={"Range": "bytes=0-"}, timeout=30)
    assert probe.status_code == 206 and probe.content == full.content
    tail = requests.get(track.audio_url, headers={"Range": "bytes=-500"}, timeout=30)
    assert tail.status_code == 206 and tail.content == full.content[-500:]
    bad = requests.get(track.audio_url, headers={"Range": f"bytes={total}-"}, timeout=30)
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{total}"
    # Several ranges at once: Starlette answers multipart/byteranges.
    several = requests.get(track.audio_url, headers={"Range": "bytes=0-9,20-29"}, timeout=30)
    assert several.status_code == 206
    assert several.headers["Content-Type"].startswith("multipart/byteranges")
    assert full.content[:10] in several.content and full.content[20:30] in several.content
    head = requests.head(track.audio_url, timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == total

    image = requests.get(track.image_url, timeout=30)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n")

    assert requests.get(f"{sb.url}/files/{'0' * 32}.mp3", timeout=30).status_code == 404
    assert requests.get(f"{sb.url}/nowhere", timeout=30).status_code == 404


# --- callback bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed_file", "faults"),
    [
        ("seed_success.json", None),
        ("seed_failure_error.json", Faults(error_code=501)),
        ("seed_failure_null.json", Faults(error_code=501, error_form="null")),
    ],
)
def test_callback_bodies_have_the_seed_shapes(
    sb: Sandbox, recorder: Recorder, seed_file: str, faults: Faults | None
) -> None:
    seed = json.loads((DATA / seed_file).read_text(encoding="utf-8"))
    song = sb.create_song(duration=40)
    if faults:
        sb.inject(faults)
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    assert sb.wait_idle(60)
    (delivery,) = recorder.wait_for(1)
    body = delivery["body"]
    assert shape(body) == shape(seed)
    assert list(body) == list(seed) and list(body["data"]) == list(seed["data"])
    assert body["code"] == seed["code"] and body["msg"] == seed["msg"]
    assert body["data"]["task_id"] == task_id
    assert delivery["path"] == "/hook?token=abc"
    if faults is None:
        item = body["data"]["data"][0]
        assert list(item) == list(seed["data"]["data"][0])
        assert time.strptime(item["createTime"], "%Y-%m-%d %H:%M:%S")
    parsed = parse_callback(body)
    assert parsed.succeeded is (faults is None)


@pytest.mark.parametrize("code", [400, 408, 500, 501, 531])
def test_error_codes_fail_the_callback_and_the_record(
    make_sandbox: Any, recorder: Recorder, code: int
) -> None:
    sb = make_sandbox(faults=Faults(error_code=code))
    song = sb.create_song(duration=40)
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    assert credit(sb) == 495
    assert sb.wait_idle(60)
    (delivery,) = recorder.wait_for(1)
    body = delivery["body"]
    assert body["code"] == code and body["data"]["callbackType"] == "error"
    assert isinstance(body["data"]["error"], str) and body["data"]["error"]
    assert code in CALLBACK_CODES
    data = record(sb, task_id)["data"]
    assert data["status"] in FAILED_STATUSES
    assert data["errorCode"] == code and data["errorMessage"] == body["data"]["error"]
    assert data["response"]["sunoData"] == []
    assert parse_record_info(data).failed
    # 531 says "credits refunded" and does it.
    assert credit(sb) == (500 if code == 531 else 495)


def test_sensitive_word_fault(sb: Sandbox, recorder: Recorder) -> None:
    song = sb.create_song(duration=40)
    sb.inject(Faults(sensitive_word=True))
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    assert sb.wait_idle(60)
    (delivery,) = recorder.wait_for(1)
    assert delivery["body"]["data"]["callbackType"] == "error"
    data = record(sb, task_id)["data"]
    assert data["status"] == "SENSITIVE_WORD_ERROR" and data["errorCode"] == 400
    assert "sensitive" in data["errorMessage"]


# --- delivery: retries, faults, signatures ------------------------------------------------


def test_retries_on_503_with_growing_backoff(make_sandbox: Any) -> None:
    rec = Recorder(statuses=[503, 503, 200])
    try:
        sb = make_sandbox(retry_backoff=0.1)
        song = sb.create_song(duration=40)
        task_id = submit(sb, replace_body(song, callBackUrl=rec.url))["data"]["taskId"]
        assert sb.wait_idle(60)
        got = rec.wait_for(3)
    finally:
        rec.close()
    assert len(got) == 3 and all(g["body"]["data"]["task_id"] == task_id for g in got)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(got)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # at least each backoff step (0.1, then 0.2 s)
    log = [e for e in sb.delivery_log() if e["task_id"] == task_id]
    assert [e["attempt"] for e in log] == [1, 2, 3]
    assert [e["status"] for e in log] == [503, 503, 200]
    assert [e["outcome"] for e in log] == ["retry", "retry", "delivered"]
    assert log[0]["error"] == "HTTP 503" and log[2]["error"] is None
    assert all("token" not in e["url"] for e in log)  # the query string is not logged
    assert log[0]["url"].endswith("/hook")
    frame = sb.delivery_frame()
    assert list(frame["outcome"]) == ["retry", "retry", "delivered"]
    assert str(frame["sent_at"].dtype).startswith("datetime64")


def test_a_receiver_that_is_down_gets_max_attempts(make_sandbox: Any) -> None:
    sb = make_sandbox(max_attempts=3)
    song = sb.create_song(duration=40)
    url = f"http://127.0.0.1:{free_port()}/callback/S4J1xD4DY1OWdGR4QNzeYtqwPua18MiW"
    task_id = submit(sb, replace_body(song, callBackUrl=url))["data"]["taskId"]
    assert sb.wait_idle(60)
    log = sb.delivery_log()
    assert [e["attempt"] for e in log] == [1, 2, 3]
    assert all(e["task_id"] == task_id and e["status"] is None for e in log)
    assert all("ConnectionError" in e["error"] for e in log)
    assert [e["outcome"] for e in log] == ["retry", "retry", "failed"]
    # An unguessable callback path is a secret: the log keeps only its first characters.
    assert all(e["url"].endswith("/callback/S4J1…") for e in log)
    # The result is still there for polling.
    assert record(sb, task_id)["data"]["status"] == "SUCCESS"


def test_duplicates_fault_sends_extra_copies(sb: Sandbox, recorder: Recorder) -> None:
    song = sb.create_song(duration=40)
    sb.inject(Faults(duplicates=2))
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    assert sb.wait_idle(60)
    got = recorder.wait_for(3)
    assert len(got) == 3
    assert all(g["body"] == got[0]["body"] for g in got)
    assert got[0]["body"]["data"]["task_id"] == task_id
    assert sorted(e["copy"] for e in sb.delivery_log()) == [0, 1, 2]
    # inject(count=1) covered one task only: the next one is delivered once.
    submit(sb, replace_body(song, 20, 30, callBackUrl=recorder.url))
    assert sb.wait_idle(60)
    assert len(recorder.wait_for(4)) == 4


def test_drop_fault_sends_nothing_but_polling_sees_success(sb: Sandbox, recorder: Recorder) -> None:
    song = sb.create_song(duration=40)
    sb.inject(Faults(drop=True))
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    assert sb.wait_idle(60)  # every timer and send is done: nothing can arrive later
    assert recorder.requests == [] and sb.delivery_log() == []
    data = record(sb, task_id)["data"]
    assert data["status"] == "SUCCESS" and len(data["response"]["sunoData"]) == 2


def test_hmac_key_signs_and_wrong_signature_does_not_verify(
    make_sandbox: Any, recorder: Recorder
) -> None:
    sb = make_sandbox(hmac_key="whsec-sandbox-test")
    song = sb.create_song(duration=40)
    good = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    sb.inject(Faults(wrong_signature=True))
    bad = submit(sb, replace_body(song, 20, 30, callBackUrl=recorder.url))["data"]["taskId"]
    assert sb.wait_idle(60)
    got = {g["body"]["data"]["task_id"]: g for g in recorder.wait_for(2)}
    ts = signing.verify("whsec-sandbox-test", got[good]["headers"], good)
    assert abs(ts - time.time()) < 60
    with pytest.raises(SignatureError, match="does not match"):
        signing.verify("whsec-sandbox-test", got[bad]["headers"], bad)
    assert all(e["signed"] for e in sb.delivery_log())
    assert "whsec-sandbox-test" not in repr(sb)


def test_unsigned_without_hmac_key(sb: Sandbox, recorder: Recorder) -> None:
    song = sb.create_song(duration=40)
    submit(sb, replace_body(song, callBackUrl=recorder.url))
    assert sb.wait_idle(60)
    (got,) = recorder.wait_for(1)
    assert signing.SIGNATURE_HEADER not in got["headers"]
    assert sb.delivery_log()[0]["signed"] is False


def test_set_task_faults_and_extra_delay(sb: Sandbox, recorder: Recorder) -> None:
    song = sb.create_song(duration=40)
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    started = time.monotonic()
    sb.set_task_faults(task_id, Faults(error_code=408, error_form="null", extra_delay=0.4))
    assert sb.wait_idle(60)
    (got,) = recorder.wait_for(1)
    assert got["at"] - started >= 0.4
    assert got["body"]["code"] == 408 and got["body"]["data"]["data"] is None
    assert record(sb, task_id)["data"]["status"] == "GENERATE_AUDIO_FAILED"
    with pytest.raises(ValueError, match="already has its result"):
        sb.set_task_faults(task_id, Faults())
    with pytest.raises(KeyError):
        sb.set_task_faults("0" * 32, Faults())


def test_callback_delay_lets_polling_win(make_sandbox: Any, recorder: Recorder) -> None:
    # The loop below polls as fast as round trips go (past 20 per 10 s): no rate limit here.
    sb = make_sandbox(rate_limit=False)
    song = sb.create_song(duration=40)
    sb.inject(Faults(callback_delay=1.0))
    task_id = submit(sb, replace_body(song, callBackUrl=recorder.url))["data"]["taskId"]
    while record(sb, task_id)["data"]["status"] != "SUCCESS":  # polling, as a poller would
        assert sb.running
    assert recorder.requests == []  # the result is out; its callback is not
    assert sb.wait_idle(60)
    (late,) = recorder.wait_for(1)
    assert late["body"]["data"]["task_id"] == task_id


def test_faults_are_checked() -> None:
    with pytest.raises(ValueError, match="error_code"):
        Faults(error_code=404)
    with pytest.raises(ValueError, match="error_form"):
        Faults(error_form="zh")
    with pytest.raises(ValueError, match="duplicates"):
        Faults(duplicates=-1)
    assert Faults().failure() is None
    failure = Faults(error_code=501).failure()
    assert failure is not None and failure.msg == "Audio generation failed."
    assert failure.error == "Generation failed due to technical issues"


# --- lifecycle, repr, ids, CLI ------------------------------------------------------------


def test_lifecycle_repr_and_ids() -> None:
    sb = Sandbox(api_key="sk-sandbox-visible-nowhere", hmac_key="hmac-secret", delay=0.1)
    assert "sk-sandbox" not in repr(sb) and "hmac-secret" not in repr(sb)
    with pytest.raises(RuntimeError, match="start"):
        sb.create_song()
    with sb:
        assert sb.start() is sb  # idempotent
        assert sb.url.startswith("http://127.0.0.1:") and sb.port > 0
        assert "sk-sandbox" not in repr(sb) and sb.url in repr(sb)
        other = Sandbox(delay=0.1).start()
        try:
            assert other.api_key.startswith("sk-sandbox-") and other.api_key != sb.api_key
            a, b = sb.create_song(duration=30), other.create_song(duration=30)
            ids = {a.task_id, b.task_id, *(t.id for t in a.tracks + b.tracks)}
            assert len(ids) == 6
        finally:
            other.stop()
    sb.stop()  # twice is fine
    assert not sb.running
    with pytest.raises(RuntimeError, match="restarted"):
        sb.start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry_point(kind: str) -> list[str]:
    """The real command lines: ``python -m suno_nb`` and the installed ``suno-nb`` script."""
    if kind == "module":
        return [sys.executable, "-m", "suno_nb"]
    script = Path(sys.executable).with_name("suno-nb")
    assert script.exists(), f"the suno-nb script is not installed beside {sys.executable}"
    return [str(script)]


@pytest.mark.slow  # child interpreters stopped with Ctrl-C: a kill test
@pytest.mark.parametrize(
    ("entry", "args", "credit_route"),
    [
        ("module", ["--delay", "0.1"], "/api/v1/generate/credit"),
        ("script", ["--provider", "kie.ai"], "/api/v1/chat/credit"),
    ],
)
def test_cli_sandbox_serves_on_the_given_port_and_stops_on_ctrl_c(
    entry: str, args: list[str], credit_route: str
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    port = _free_port()
    proc = subprocess.Popen(
        [*_entry_point(entry), "sandbox", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        lines = []
        assert proc.stdout is not None
        while not lines or not lines[-1].startswith("Press Ctrl-C"):
            line = proc.stdout.readline()
            assert line, "the CLI exited early"
            lines.append(line.strip())
        url = next(s for s in lines if s.startswith("Suno API sandbox at ")).split()[-1]
        assert url == f"http://127.0.0.1:{port}"
        key = next(s for s in lines if s.startswith("API key: ")).split()[-1]
        r = requests.get(
            f"{url}{credit_route}", headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert r.json()["data"] == 500
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow  # six interpreter start-ups
@pytest.mark.parametrize("entry", ["module", "script"])
def test_cli_help_exits_zero_and_unknown_options_are_refused(entry: str) -> None:
    run = partial(subprocess.run, capture_output=True, text=True, timeout=60)
    helped = run([*_entry_point(entry), "sandbox", "-h"])
    assert helped.returncode == 0 and "--port" in helped.stdout and "--delay" in helped.stdout
    top = run([*_entry_point(entry), "-h"])
    assert top.returncode == 0 and "sandbox" in top.stdout and "quickstart" in top.stdout
    wrong = run([*_entry_point(entry), "demo", "--no-such-option"])
    assert wrong.returncode == 2 and "unrecognized arguments: --no-such-option" in wrong.stderr


# --- the current contract: upload mode, refusals from the code table, providers ------------


def test_upload_mode_uses_an_own_file_or_a_stand_in_without_fetching(
    sb: Sandbox, recorder: Recorder
) -> None:
    song = sb.create_song(duration=60)
    body = replace_body(song, callBackUrl=recorder.url)
    del body["taskId"], body["audioId"]
    own = submit(sb, {**body, "uploadUrl": song.audio_url, "model": "V5"})
    assert own["code"] == 200, own
    # A URL the sandbox does not serve: a deterministic synthesized stand-in (no network).
    other = submit(sb, {**body, "uploadUrl": "https://nowhere.invalid/mine.mp3", "model": "V4"})
    assert other["code"] == 200, other
    assert sb.wait_idle(60)
    own_info = record(sb, own["data"]["taskId"])["data"]
    assert own_info["status"] == "SUCCESS" and own_info["parentMusicId"] == song.audio_id
    assert json.loads(own_info["param"])["uploadUrl"] == song.audio_url
    other_info = record(sb, other["data"]["taskId"])["data"]
    assert other_info["status"] == "SUCCESS"
    assert other_info["response"]["sunoData"][0]["duration"] > 0
    assert len(recorder.wait_for(2)) == 2
    # The upload's model is checked against the contract's list.
    bad = submit(sb, {**body, "uploadUrl": song.audio_url, "model": "V3_5"})
    assert bad["code"] == 422 and "model" in bad["msg"]


@pytest.mark.parametrize("code", [409, 422, 429, 451, 455, 500])
def test_reply_code_fault_refuses_the_submit_without_charging(sb: Sandbox, code: int) -> None:
    song = sb.create_song(duration=60)
    sb.inject(Faults(reply_code=code, error_message=f"scripted {code}"))
    doc = submit(sb, replace_body(song))
    assert doc == {"code": code, "msg": f"scripted {code}"}
    assert credit(sb) == 500 and len(sb.tasks()) == 1
    assert submit(sb, replace_body(song))["code"] == 200  # the fault was for one request


def test_failing_generate_sends_no_intermediate_stages(sb: Sandbox, recorder: Recorder) -> None:
    sb.inject(Faults(error_code=501))
    body = {"prompt": "hi", "model": "V5", "callBackUrl": recorder.url}
    r = requests.post(f"{sb.url}/api/v1/generate", json=body, headers=auth(sb), timeout=30)
    assert r.json()["code"] == 200
    assert sb.wait_idle(60)
    (only,) = recorder.wait_for(1)
    assert only["body"]["data"]["callbackType"] == "error" and only["body"]["code"] == 501


def test_kie_ai_sandbox_serves_its_routes_and_its_rules(make_sandbox: Any) -> None:
    sb = make_sandbox(provider="kie.ai-legacy")
    assert sb.provider.name == "kie.ai-legacy"
    r = requests.get(f"{sb.url}/api/v1/chat/credit", headers=auth(sb), timeout=30)
    assert r.json() == {"code": 200, "msg": "success", "data": 500}
    old = requests.get(f"{sb.url}/api/v1/generate/credit", headers=auth(sb), timeout=30)
    assert old.status_code == 404
    song = sb.create_song(duration=60)
    body = replace_body(song, 10.0, 17.0)  # 7 s: inside kie.ai's 6-60 s
    del body["fullLyrics"]  # optional on kie.ai's page
    assert submit(sb, body)["code"] == 200
    too_long = submit(sb, replace_body(song, 0.0, 30.0 + 0.01, taskId=song.task_id))
    assert too_long["code"] == 422 and "50%" in too_long["msg"]
