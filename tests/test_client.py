"""SunoClient against a real loopback HTTP server that records every request.

Nothing here reaches beyond 127.0.0.1: the "service" is a scripted ThreadingHTTPServer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import socket
import threading
import time
import traceback
from collections import deque
from dataclasses import FrozenInstanceError, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suno_nb.client import (
    MISSING_KEY_MESSAGE,
    GenerateJob,
    ReplaceJob,
    SunoClient,
)
from suno_nb.client_base import POST_RATE_RETRIES
from suno_nb.contract import get_provider
from suno_nb.errors import (
    ApiError,
    ApiValidationError,
    AuthError,
    ConflictError,
    GenerationFailedError,
    InsufficientCreditsError,
    MaintenanceError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ResourceUnavailableError,
    SectionValidationError,
    ServerError,
    SunoNbWarning,
)
from suno_nb.payloads import RecordInfo
from suno_nb.rows import Submission

KEY = "sk-test-9f8e7d6c5b4a3210-SECRET"
REPLACE = "/api/v1/generate/replace-section"
RECORD = "/api/v1/generate/record-info"
CREDIT = "/api/v1/generate/credit"
GENERATE = "/api/v1/generate"
RX_URL = "https://rx.example.test/cb/capability-token-123"


# --- the recording server ---------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list/number -> JSON; str/bytes -> sent raw as text/html
    hold: threading.Event | None = None  # answer only once the test sets it
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RecordingServer:
    """Scripted replies per (method, path), FIFO; the last scripted reply repeats."""

    requests: list[Seen] = field(default_factory=list)
    script: dict[tuple[str, str], deque[Reply]] = field(default_factory=dict)
    holding: threading.Event = field(default_factory=threading.Event)  # a reply held back

    def start(self) -> RecordingServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                owner.requests.append(
                    Seen(
                        self.command,
                        parts.path,
                        parse_qs(parts.query),
                        dict(self.headers.items()),
                        body,
                        time.monotonic(),
                    )
                )
                reply = owner.next_reply(self.command, parts.path)
                if reply.hold is not None:  # released by the test, or by stop()
                    owner.holding.set()
                    reply.hold.wait()
                if isinstance(reply.body, (str, bytes)):
                    raw = reply.body.encode() if isinstance(reply.body, str) else reply.body
                    ctype = "text/html"
                else:
                    raw = json.dumps(reply.body).encode()
                    ctype = "application/json"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # the client gave up (read-timeout test)
                    pass

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        for queue in self.script.values():
            for reply in queue:
                if reply.hold is not None:
                    reply.hold.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def reply(
        self,
        method: str,
        path: str,
        status: int = 200,
        body: Any = None,
        *,
        hold: threading.Event | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        reply = Reply(status, body, hold, dict(headers or {}))
        self.script.setdefault((method, path), deque()).append(reply)

    def next_reply(self, method: str, path: str) -> Reply:
        queue = self.script.get((method, path))
        if not queue:
            return Reply(404, {"code": 404, "msg": f"no script for {method} {path}"})
        return queue.popleft() if len(queue) > 1 else queue[0]

    def seen(self, method: str | None = None) -> list[Seen]:
        return [r for r in self.requests if method is None or r.method == method]


@pytest.fixture
def server():
    srv = RecordingServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with SunoClient(KEY, base_url=server.url, timeout=30, backoff=0.001) as c:
        yield c


class FakeReceiver:
    def __init__(self, url: str = RX_URL):
        self.url = url
        self.submissions: list[Submission] = []

    def record_submission(self, sub: Submission, fetch: Any = None) -> None:
        self.submissions.append(sub)
        self.fetch = fetch


def ok(data: Any) -> dict[str, Any]:
    return {"code": 200, "msg": "success", "data": data}


def record_info(task_id: str, tracks: list[tuple[str, float]], status: str = "SUCCESS"):
    return ok(
        {
            "taskId": task_id,
            "status": status,
            "param": "{}",
            "response": {
                "taskId": task_id,
                "sunoData": [{"id": tid, "duration": dur, "title": "t"} for tid, dur in tracks],
            },
            "errorCode": None,
            "errorMessage": None,
        }
    )


def args(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        task_id="parent-1",
        audio_id="audio-1",
        prompt="new words here",
        tags="Jazz",
        title="Take two",
        infill_start_s=30.0,
        infill_end_s=45.5,
        full_lyrics="[Verse] all the words, the new ones too",
        original_duration=120.0,
    )
    base.update(over)
    return base


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + str(exc) + repr(exc)


# --- replace_section: the request -------------------------------------------------------------


def test_replace_section_exact_body_and_headers(server, client):
    server.reply("POST", REPLACE, 200, ok({"taskId": "new-1"}))
    before = time.time()
    job = client.replace_section(**args(infill_start_s=30.123, infill_end_s=45.456))
    after = time.time()

    [req] = server.requests
    assert (req.method, req.path, req.query) == ("POST", REPLACE, {})
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.headers["Content-Type"] == "application/json"
    # Exactly the documented fields, rounded to 2 decimals, optional ones left out.
    assert req.json == {
        "taskId": "parent-1",
        "audioId": "audio-1",
        "prompt": "new words here",
        "tags": "Jazz",
        "title": "Take two",
        "infillStartS": 30.12,
        "infillEndS": 45.46,
        "fullLyrics": "[Verse] all the words, the new ones too",
    }
    assert job == ReplaceJob(
        task_id="new-1",
        parent_task_id="parent-1",
        audio_id="audio-1",
        infill_start_s=30.12,
        infill_end_s=45.46,
        submitted_at=job.submitted_at,
        callback_url=None,
    )
    assert before <= job.submitted_at <= after
    assert job.section_length_s == 15.34


def test_replace_section_optional_fields_and_receiver(server, client):
    server.reply("POST", REPLACE, 200, ok({"taskId": "new-2"}))
    rx = FakeReceiver()
    job = client.replace_section(
        **args(negative_tags="Metal", full_lyrics="all the words"), receiver=rx
    )
    body = server.requests[0].json
    assert body["negativeTags"] == "Metal"
    assert body["fullLyrics"] == "all the words"
    assert body["callBackUrl"] == RX_URL
    assert job.callback_url == RX_URL

    [sub] = rx.submissions
    expected_params = {k: v for k, v in body.items() if k != "callBackUrl"}
    assert dict(sub.params) == expected_params
    assert "callBackUrl" not in sub.params
    assert sub == Submission(
        task_id="new-2",
        parent_task_id="parent-1",
        audio_id="audio-1",
        infill_start_s=30.0,
        infill_end_s=45.5,
        prompt="new words here",
        tags="Jazz",
        title="Take two",
        negative_tags="Metal",
        full_lyrics="all the words",
        params=expected_params,
        submitted_at=job.submitted_at,
    )
    # submitted_at is taken just before sending.
    assert job.submitted_at <= time.time()


def test_explicit_callback_url_wins_and_submission_still_recorded(server, client):
    server.reply("POST", REPLACE, 200, ok({"taskId": "new-3"}))
    rx = FakeReceiver()
    client.replace_section(**args(callback_url="https://elsewhere.test/hook"), receiver=rx)
    assert server.requests[0].json["callBackUrl"] == "https://elsewhere.test/hook"
    assert [s.task_id for s in rx.submissions] == ["new-3"]


def test_receiver_precedence_argument_then_constructor_and_no_global_default(server):
    server.reply("POST", REPLACE, 200, ok({"taskId": "t"}))
    ctor, arg = FakeReceiver("http://c.test/x"), FakeReceiver("http://a.test/x")
    c = SunoClient(KEY, base_url=server.url, receiver=ctor)
    c.replace_section(**args(), receiver=arg)
    c.replace_section(**args())
    SunoClient(KEY, base_url=server.url).replace_section(**args())  # no receiver: no callback
    urls = [r.json.get("callBackUrl") for r in server.requests]
    assert urls == ["http://a.test/x", "http://c.test/x", None]
    assert [len(r.submissions) for r in (arg, ctor)] == [1, 1]


def test_the_receiver_gets_a_fetch_that_polls_once_with_a_timeout(server, client):
    server.reply("POST", REPLACE, 200, ok({"taskId": "t"}))
    rx = FakeReceiver()
    client.replace_section(**args(), receiver=rx)
    server.reply("GET", RECORD, 500, {"code": 500, "msg": "down"})
    with pytest.raises(ServerError):
        rx.fetch("t", 0.5)  # no retries of its own: the poller's next round is the retry
    assert [r.method for r in server.requests].count("GET") == 1


def test_receiver_failure_does_not_lose_the_job(server, client, caplog):
    class Broken(FakeReceiver):
        def record_submission(self, sub: Submission, fetch: Any = None) -> None:
            raise RuntimeError("store is closed")

    server.reply("POST", REPLACE, 200, ok({"taskId": "kept"}))
    with (
        caplog.at_level(logging.WARNING, logger="suno_nb.client"),
        pytest.warns(SunoNbWarning, match="could not record it") as seen,
    ):
        job = client.replace_section(**args(), receiver=Broken())
    assert job.task_id == "kept"
    assert "could not record" in caplog.text and "store is closed" in caplog.text
    assert seen[0].filename == __file__  # shown at the user's own line, in their cell


def test_a_worker_thread_logs_the_problem_but_never_warns(server, client, caplog, recwarn):
    """A warning from a worker thread (the submit form sends from one) would print into
    whichever cell runs then: there it goes to the log only."""

    class Broken(FakeReceiver):
        def record_submission(self, sub: Submission, fetch: Any = None) -> None:
            raise RuntimeError("store is closed")

    server.reply("POST", REPLACE, 200, ok({"taskId": "kept"}))
    jobs: list = []
    with caplog.at_level(logging.WARNING, logger="suno_nb.client"):
        worker = threading.Thread(
            target=lambda: jobs.append(client.replace_section(**args(), receiver=Broken()))
        )
        worker.start()
        worker.join(30)
    assert jobs[0].task_id == "kept"
    assert "could not record" in caplog.text
    assert [w for w in recwarn if issubclass(w.category, SunoNbWarning)] == []


def test_replace_job_is_frozen_and_repr_hides_the_callback_path():
    job = ReplaceJob("new-1", "parent-1", "audio-1", 30.0, 45.5, 1_700_000_000.0, RX_URL)
    with pytest.raises(FrozenInstanceError):
        job.task_id = "other"  # type: ignore[misc]
    text = repr(job)
    assert "new-1" in text and "parent-1" in text and "30.00-45.50 s" in text
    assert "2023-11-14 22:13:20 UTC" in text
    assert "capability-token" not in text and "https://rx.example.test/…" in text


# --- replace_section: validation before any request -------------------------------------------


@pytest.mark.parametrize(
    ("over", "field", "limit"),
    [
        pytest.param(dict(infill_start_s=30, infill_end_s=30), "infill_end_s", 30, id="start=end"),
        pytest.param(dict(infill_start_s=40, infill_end_s=30), "infill_end_s", 40, id="start>end"),
        pytest.param(dict(infill_start_s=-1, infill_end_s=10), "infill_start_s", 0, id="neg"),
        pytest.param(dict(infill_start_s=10, infill_end_s=19.99), "infill_end_s", 10.0, id="<10s"),
        pytest.param(
            dict(infill_start_s=0, infill_end_s=50.01, original_duration=100),
            "infill_end_s",
            50.0,
            id=">50%",
        ),
        pytest.param(
            dict(infill_start_s=90, infill_end_s=100.5, original_duration=100),
            "infill_end_s",
            100.0,
            id="past-end",
        ),
        pytest.param(dict(infill_start_s="30"), "infill_start_s", None, id="str-start"),
        pytest.param(dict(infill_end_s=None), "infill_end_s", None, id="none-end"),
        pytest.param(dict(infill_start_s=True), "infill_start_s", None, id="bool-start"),
        pytest.param(dict(infill_end_s=math.nan), "infill_end_s", None, id="nan-end"),
        pytest.param(dict(original_duration="120"), "original_duration", None, id="str-dur"),
        pytest.param(dict(prompt="x" * 5001), "prompt", 5000, id="prompt-too-long"),
        pytest.param(dict(negative_tags=123), "negative_tags", None, id="neg-tags-type"),
        pytest.param(
            dict(callback_url="ftp://x.test/cb"),
            "callback_url",
            "http(s) URL",
            id="callback-scheme",
        ),
    ],
)
def test_section_rules_reject_before_any_request(server, client, over, field, limit):
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(**over))
    assert info.value.field == field
    assert info.value.limit == limit
    assert field in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("field", ["task_id", "audio_id", "prompt", "tags", "title"])
@pytest.mark.parametrize("bad", ["", "   ", None], ids=["empty", "blank", "none"])
def test_each_required_string_is_checked(server, client, field, bad):
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(**{field: bad}))
    assert info.value.field == field
    assert info.value.limit == "non-empty"
    assert server.requests == []


def test_duration_is_looked_up_from_the_parent(server, client):
    server.reply("GET", RECORD, 200, record_info("parent-1", [("a1", 100.0), ("a2", 200.0)]))
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(
            **args(audio_id="a1", infill_start_s=0, infill_end_s=55, original_duration=None)
        )
    assert (info.value.field, info.value.limit) == ("infill_end_s", 50.0)
    [get] = server.requests
    assert (get.method, get.path, get.query) == ("GET", RECORD, {"taskId": ["parent-1"]})
    assert server.seen("POST") == []

    # The other track is long enough: the lookup is followed by the submit.
    server.reply("POST", REPLACE, 200, ok({"taskId": "new"}))
    job = client.replace_section(
        **args(audio_id="a2", infill_start_s=0, infill_end_s=55, original_duration=None)
    )
    assert job.task_id == "new"
    assert [r.method for r in server.requests] == ["GET", "GET", "POST"]


def test_bad_section_needs_no_lookup(server, client):
    with pytest.raises(SectionValidationError):
        client.replace_section(**args(infill_end_s=31, original_duration=None))
    assert server.requests == []


def test_audio_id_not_among_parent_tracks(server, client):
    server.reply("GET", RECORD, 200, record_info("parent-1", [("a1", 100.0), ("a2", 200.0)]))
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(audio_id="zzz", original_duration=None))
    assert info.value.field == "audio_id"
    assert info.value.limit == ["a1", "a2"]
    assert "'a1', 'a2'" in str(info.value)
    assert server.seen("POST") == []


@pytest.mark.parametrize("status", [404, 500])
def test_failed_lookup_warns_and_submits(server, status, caplog):
    server.reply("GET", RECORD, status, {"code": status, "msg": "lookup broke"})
    server.reply("POST", REPLACE, 200, ok({"taskId": "new"}))
    c = SunoClient(KEY, base_url=server.url, get_retries=1, backoff=0.001)
    with (
        caplog.at_level(logging.WARNING, logger="suno_nb.client"),
        pytest.warns(SunoNbWarning, match="could not look up the original's duration"),
    ):
        job = c.replace_section(**args(original_duration=None))
    assert job.task_id == "new"
    assert "could not look up the original's duration" in caplog.text
    assert "lookup broke" in caplog.text
    n_get = 2 if status == 500 else 1  # 5xx is retried, 404 is not
    assert [r.method for r in server.requests] == ["GET"] * n_get + ["POST"]


# --- errors from the service ------------------------------------------------------------------

# The generic table (record-info, credits, generate): 429 is credits, 405/430 rate limits.
DOCUMENTED = [
    (400, ApiValidationError),
    (401, AuthError),
    (404, NotFoundError),
    (405, RateLimitError),
    (413, ApiValidationError),
    (429, InsufficientCreditsError),
    (430, RateLimitError),
    (455, MaintenanceError),
    (500, ServerError),
]
# Replace-section's own table: 402 is credits, 422 validation, 429 a rate limit.
REPLACE_DOCUMENTED = [
    (401, AuthError),
    (402, InsufficientCreditsError),
    (404, NotFoundError),
    (409, ConflictError),
    (422, ApiValidationError),
    (429, RateLimitError),
    (451, ResourceUnavailableError),
    (455, MaintenanceError),
    (500, ServerError),
    (501, GenerationFailedError),
    (505, GenerationFailedError),
]


@pytest.mark.parametrize("http_status", ["200", "same"])
@pytest.mark.parametrize(("code", "cls"), REPLACE_DOCUMENTED)
def test_documented_codes_map_to_exceptions(server, client, code, cls, http_status):
    status = 200 if http_status == "200" else code
    message = f"service says {code}"
    server.reply("POST", REPLACE, status, {"code": code, "msg": message, "data": None})
    rx = FakeReceiver()
    with pytest.raises(cls) as info:
        client.replace_section(**args(), receiver=rx)
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.message == message
    assert info.value.endpoint == f"POST {REPLACE}"
    assert message in str(info.value)
    # A POST is resent only after a rate-limit refusal (proof it was not accepted).
    assert len(server.seen("POST")) == (1 + POST_RATE_RETRIES if cls is RateLimitError else 1)
    assert rx.submissions == []


def expected_class(code: int) -> type[ApiError]:
    if 500 <= code <= 599:
        return ServerError
    return dict([*DOCUMENTED, (403, AuthError)]).get(code, ApiError)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    code=st.integers(-(10**6), 10**6).filter(lambda c: c != 200)
    | st.sampled_from([400, 401, 403, 404, 405, 413, 429, 430, 455, 500, 503, 599]),
    message=st.text(max_size=80),
    http_status=st.sampled_from([200, 400, 500]),
)
def test_any_code_and_message_are_carried(code, message, http_status):
    srv = _HYPOTHESIS_SERVER
    srv.script.clear()
    srv.reply("GET", CREDIT, http_status, {"code": code, "msg": message})
    # 60 examples against one server and key: the code mapping is the subject here, not
    # the throttle (tests/test_throttle.py), so this client's provider states no rate limit.
    c = SunoClient(KEY, base_url=srv.url, get_retries=0, provider=UNTHROTTLED)
    with pytest.raises(ApiError) as info:
        c.credits()
    assert type(info.value) is expected_class(code)
    assert info.value.code == code
    assert info.value.message == message


_HYPOTHESIS_SERVER: RecordingServer
UNTHROTTLED = dataclasses.replace(get_provider(), rate_limit=None)


@pytest.fixture(autouse=True, scope="module")
def _hypothesis_server():
    global _HYPOTHESIS_SERVER
    _HYPOTHESIS_SERVER = RecordingServer().start()
    yield
    _HYPOTHESIS_SERVER.stop()


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (502, "<html><body>Bad gateway</body></html>", ServerError),
        (401, "Unauthorized", AuthError),
        (200, "not json at all", ApiError),
        (404, {"unexpected": True}, NotFoundError),
    ],
)
def test_non_json_bodies_map_by_http_status(server, status, body, cls):
    server.reply("GET", CREDIT, status, body)
    c = SunoClient(KEY, base_url=server.url, get_retries=0)
    with pytest.raises(cls) as info:
        c.credits()
    assert type(info.value) is cls
    assert info.value.code == status
    assert f"HTTP {status}" in info.value.message
    if isinstance(body, str):
        assert body.replace("<html><body>", "")[:10] in info.value.message


# --- GET retries -------------------------------------------------------------------------------


def test_get_retries_503_with_backoff_then_succeeds(server, caplog):
    server.reply("GET", CREDIT, 503, "<h1>busy</h1>")
    server.reply("GET", CREDIT, 200, {"code": 503, "msg": "busy"})  # JSON code >= 500 too
    server.reply("GET", CREDIT, 200, ok(42.5))
    c = SunoClient(KEY, base_url=server.url, get_retries=3, backoff=0.05)
    with caplog.at_level(logging.INFO, logger="suno_nb.client"):
        assert c.credits() == 42.5
    times = [r.at for r in server.requests]
    assert len(times) == 3
    # Exponential steps (0.05, 0.10 s) with jitter in [0.5, 1.5] of each step.
    assert times[1] - times[0] >= 0.025 * 0.9
    assert times[2] - times[1] >= 0.05 * 0.9
    retries = [r for r in caplog.records if r.levelno == logging.INFO and "retry" in r.message]
    assert [r.message.split("retry ")[1][:3] for r in retries] == ["1/3", "2/3"]
    waits = [float(r.message.rsplit(" in ", 1)[1].split(" s")[0]) for r in retries]
    assert 0.025 <= waits[0] <= 0.075 and 0.05 <= waits[1] <= 0.15


def test_get_gives_up_after_get_retries(server):
    server.reply("GET", RECORD, 503, {"code": 503, "msg": "down for a bit"})
    c = SunoClient(KEY, base_url=server.url, get_retries=2, backoff=0.001)
    with pytest.raises(ServerError) as info:
        c.get_details("t1")
    assert info.value.code == 503 and info.value.message == "down for a bit"
    assert len(server.requests) == 3


def test_4xx_get_is_not_retried(server, client):
    server.reply("GET", RECORD, 200, {"code": 404, "msg": "no such task"})
    with pytest.raises(NotFoundError):
        client.get_details("nope")
    assert len(server.requests) == 1


class CountingSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def request(self, method, url, *a, **kw):  # type: ignore[override]
        self.calls.append(method)
        return super().request(method, url, *a, **kw)


@pytest.fixture
def refused_url():
    # A bound socket that does not listen refuses connections, deterministically.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_connection_refused_get_retries_then_network_error(refused_url, caplog):
    session = CountingSession()
    c = SunoClient(KEY, base_url=refused_url, session=session, get_retries=2, backoff=0.001)
    with (
        caplog.at_level(logging.INFO, logger="suno_nb.client"),
        pytest.raises(NetworkError) as info,
    ):
        c.credits()
    assert not isinstance(info.value, ApiError)
    assert info.value.may_have_reached is False
    assert "Connection refused" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)
    assert session.calls == ["GET"] * 3
    assert sum("retry" in r.message for r in caplog.records) == 2


def test_connection_refused_post_is_not_retried(refused_url):
    session = CountingSession()
    c = SunoClient(KEY, base_url=refused_url, session=session, get_retries=5)
    with pytest.raises(NetworkError) as info:
        c.replace_section(**args())
    assert info.value.may_have_reached is False
    assert session.calls == ["POST"]


def test_post_read_timeout_is_not_retried_and_may_have_reached(server):
    release = threading.Event()
    server.reply("POST", REPLACE, 200, ok({"taskId": "late"}), hold=release)
    server.reply("GET", CREDIT, 200, ok(1))
    rx = FakeReceiver()
    session = CountingSession()
    c = SunoClient(
        KEY, base_url=server.url, session=session, timeout=0.3, get_retries=5, backoff=0.001
    )
    with pytest.raises(NetworkError) as info:
        c.replace_section(**args(), receiver=rx)
    # The client gave up on its own read timeout: the service had the POST and was still
    # holding its answer back (released only now).
    assert server.holding.wait(30)
    release.set()
    exc = info.value
    assert exc.may_have_reached is True
    assert "no answer within 0.3 s" in str(exc)
    assert "client.get_details(" in str(exc) and "second paid task" in str(exc)
    assert session.calls == ["POST"]  # the POST was sent exactly once: no retry
    # The service saw it once too: a later request of ours arrived after it (and after any
    # retry the client could have sent before giving up).
    assert requests.get(server.url + CREDIT, timeout=30).status_code == 200
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert rx.submissions == []


# --- other endpoints ------------------------------------------------------------------------


def test_get_details_parses_record_info(server, client):
    server.reply("GET", RECORD, 200, record_info("t9", [("a1", 198.44)], status="PENDING"))
    info = client.get_details("t9")
    assert isinstance(info, RecordInfo)
    assert (info.task_id, info.status, info.done) == ("t9", "PENDING", False)
    assert [(t.id, t.duration) for t in info.tracks] == [("a1", 198.44)]
    [req] = server.requests
    assert req.query == {"taskId": ["t9"]}
    assert req.headers["Authorization"] == f"Bearer {KEY}"


def test_credits(server, client):
    server.reply("GET", CREDIT, 200, ok(12))
    assert client.credits() == 12.0
    server.script.clear()
    server.reply("GET", CREDIT, 200, ok({"not": "a number"}))
    with pytest.raises(ApiError, match="not a number"):
        client.credits()


def test_generate_body_and_validation(server, client):
    server.reply("POST", GENERATE, 200, ok({"taskId": "orig-1"}))
    job = client.generate(
        prompt="a song",
        style="Jazz",
        title="T",
        custom_mode=True,
        callback_url="http://cb.test/x",
    )
    assert isinstance(job, GenerateJob)
    # The model defaults to the provider's current default.
    assert (job.task_id, job.model, job.title) == ("orig-1", "V6", "T")
    assert server.requests[0].json == {
        "customMode": True,
        "instrumental": False,
        "prompt": "a song",
        "style": "Jazz",
        "title": "T",
        "model": "V6",
        "callBackUrl": "http://cb.test/x",
    }
    with pytest.raises(SectionValidationError) as info:
        client.generate(prompt="a song", custom_mode=True, title="T")
    assert info.value.field == "style"
    with pytest.raises(SectionValidationError) as info:
        client.generate(prompt="  ")
    assert info.value.field == "prompt"
    assert len(server.requests) == 1


def test_reply_without_task_id_is_an_error(server, client):
    server.reply("POST", REPLACE, 200, ok({}))
    with pytest.raises(ApiError, match=r"no data\.taskId"):
        client.replace_section(**args())


# --- configuration and secrecy --------------------------------------------------------------


def test_missing_key_fails_before_any_request(monkeypatch, server, tmp_path):
    monkeypatch.delenv("SUNO_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file above
    with pytest.raises(AuthError) as info:
        SunoClient(base_url=server.url)
    assert str(info.value) == MISSING_KEY_MESSAGE
    assert "SUNO_API_KEY" in str(info.value)
    with pytest.raises(AuthError):
        SunoClient("", base_url=server.url)
    assert server.requests == []


def test_environment_fallbacks_and_trailing_slash(monkeypatch, server):
    monkeypatch.setenv("SUNO_API_KEY", KEY)
    monkeypatch.setenv("SUNO_API_BASE_URL", server.url + "/")
    c = SunoClient()
    assert c.base_url == server.url
    server.reply("GET", CREDIT, 200, ok(3))
    assert c.credits() == 3.0
    assert server.requests[0].headers["Authorization"] == f"Bearer {KEY}"
    monkeypatch.delenv("SUNO_API_BASE_URL")
    assert SunoClient().base_url == "https://api.sunoapi.org"
    with pytest.raises(ValueError, match="http"):
        SunoClient(KEY, base_url="api.sunoapi.org")


def test_key_with_newline_is_refused_without_echoing_it():
    with pytest.raises(AuthError) as info:
        SunoClient("abc\ndef-" + KEY)
    assert KEY not in full_text(info.value)


def test_api_key_never_in_repr_errors_or_logs(server, refused_url, caplog, recwarn):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    texts: list[str] = []
    c = SunoClient(KEY, base_url=server.url, timeout=30, get_retries=1, backoff=0.001)
    impatient = SunoClient(KEY, base_url=server.url, timeout=0.3, get_retries=1, backoff=0.001)
    texts.append(repr(c))

    # The service echoes the key back in its message and in a non-JSON error page.
    server.reply("POST", REPLACE, 200, {"code": 401, "msg": f"bad key {KEY}"})
    server.reply("GET", CREDIT, 500, f"<pre>Authorization: Bearer {KEY}</pre>")
    server.reply("GET", RECORD, 200, {"code": 500, "msg": f"lookup failed for {KEY}"})
    held = threading.Event()  # the service never answers the generate POST in time
    server.reply("POST", GENERATE, 200, ok({"taskId": "g"}), hold=held)
    calls = [
        lambda: c.replace_section(**args()),
        lambda: c.credits(),
        lambda: c.replace_section(**args(original_duration=None)),  # lookup warns, then 401
        lambda: c.replace_section(**args(infill_end_s=1)),
        lambda: impatient.generate(prompt="p"),  # read timeout
        lambda: SunoClient(KEY, base_url=refused_url, get_retries=1, backoff=0.001).credits(),
    ]
    for call in calls:
        with pytest.raises(Exception) as info:
            call()
        texts.append(full_text(info.value))
    server.script.pop(("POST", REPLACE))
    server.reply("POST", REPLACE, 200, ok({"taskId": "fine"}))
    job = c.replace_section(**args(), receiver=FakeReceiver())
    texts.append(repr(job))

    assert "***" in texts[1]  # the echoed key was redacted, not just dropped
    assert any("retry" in r.message for r in caplog.records)
    for text in [*texts, caplog.text]:
        assert KEY not in text
    for record in caplog.records:
        assert KEY not in record.getMessage()
    shown = [str(w.message) for w in recwarn if issubclass(w.category, SunoNbWarning)]
    assert shown and all(KEY not in text for text in shown)  # warnings shown in the cell too


def test_client_repr_and_owned_session_closing(server):
    session = requests.Session()
    c = SunoClient(KEY, base_url=server.url, session=session)
    assert repr(c) == (
        f"SunoClient(provider='sunoapi.org', base_url='{server.url}', api_key=set from argument)"
    )
    assert c.session is session
    c.close()  # a passed-in session is the caller's to close
    server.reply("GET", CREDIT, 200, ok(1))
    assert SunoClient(KEY, base_url=server.url, session=session).credits() == 1.0


# --- the current contract (issue 12) ---------------------------------------------------------


def test_missing_full_lyrics_is_named_before_any_request(server, client):
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(full_lyrics=None))
    assert info.value.field == "full_lyrics"
    assert "full_lyrics" in str(info.value) and "fullLyrics" in str(info.value)
    assert "docs.sunoapi.org" in str(info.value)
    assert server.requests == []


def test_kie_ai_legacy_does_not_require_full_lyrics(server):
    server.reply("POST", REPLACE, 200, ok({"taskId": "k1"}))
    c = SunoClient(KEY, base_url=server.url, provider="kie.ai-legacy")
    assert c.replace_section(**args(full_lyrics=None)).task_id == "k1"
    assert "fullLyrics" not in server.requests[0].json


def test_eight_second_section_names_the_ten_second_minimum(server, client):
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(infill_start_s=20, infill_end_s=28))
    assert info.value.field == "infill_end_s"
    assert info.value.limit == 10.0
    assert "at least 10 s" in str(info.value)
    assert server.requests == []


def test_seventy_seconds_of_two_hundred_is_sent_and_over_half_is_refused(server, client):
    server.reply("POST", REPLACE, 200, ok({"taskId": "long-1"}))
    job = client.replace_section(**args(infill_start_s=60, infill_end_s=130, original_duration=200))
    assert job.section_length_s == 70.0
    assert server.requests[0].json["infillEndS"] == 130.0
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(infill_start_s=0, infill_end_s=100.01, original_duration=200))
    assert (info.value.field, info.value.limit) == ("infill_end_s", 100.0)
    assert "50%" in str(info.value)
    assert len(server.requests) == 1


def test_upload_mode_sends_upload_url_and_model_only(server, client):
    server.reply("POST", REPLACE, 200, ok({"taskId": "up-1"}))
    rx = FakeReceiver()
    over = dict(task_id=None, audio_id=None, upload_url="https://cdn.test/mine.mp3", model="V6")
    job = client.replace_section(**args(**over), receiver=rx)
    body = server.requests[0].json
    assert body["uploadUrl"] == "https://cdn.test/mine.mp3" and body["model"] == "V6"
    assert "taskId" not in body and "audioId" not in body
    assert (job.upload_url, job.model, job.parent_task_id, job.audio_id) == (
        "https://cdn.test/mine.mp3",
        "V6",
        None,
        None,
    )
    assert "mine.mp3" not in repr(job)  # the upload may be a signed URL: host only
    [sub] = rx.submissions
    assert sub.parent_task_id is None and sub.params["uploadUrl"] == body["uploadUrl"]


@pytest.mark.parametrize(
    ("over", "field"),
    [
        pytest.param(
            dict(upload_url="https://cdn.test/a.mp3", model="V5"), "upload_url", id="both"
        ),
        pytest.param(dict(task_id=None, audio_id=None), "task_id", id="neither"),
        pytest.param(dict(task_id=None, audio_id=None, model="V5"), "upload_url", id="no-url"),
        pytest.param(
            dict(task_id=None, audio_id=None, upload_url="https://cdn.test/a.mp3", model="V3"),
            "model",
            id="bad-model",
        ),
        pytest.param(
            dict(task_id=None, audio_id=None, upload_url="https://cdn.test/a.mp3"),
            "model",
            id="no-model",
        ),
    ],
)
def test_exactly_one_mode(server, client, over, field):
    with pytest.raises(SectionValidationError) as info:
        client.replace_section(**args(**over))
    assert info.value.field == field
    assert server.requests == []


def test_replace_section_402_422_429_are_three_distinct_errors(server, client):
    seen = []
    for code, cls in [
        (402, InsufficientCreditsError),
        (422, ApiValidationError),
        (429, RateLimitError),
    ]:
        server.script.clear()
        server.reply("POST", REPLACE, 200, {"code": code, "msg": f"the service: {code}"})
        with pytest.raises(ApiError) as info:
            client.replace_section(**args())
        assert type(info.value) is cls
        assert info.value.message == f"the service: {code}" and info.value.code == code
        assert f"the service: {code}" in str(info.value)
        seen.append(type(info.value))
    assert len(set(seen)) == 3
    # The same 429 elsewhere (generic table) means insufficient credits.
    server.reply("GET", CREDIT, 200, {"code": 429, "msg": "top up"})
    with pytest.raises(InsufficientCreditsError):
        SunoClient(KEY, base_url=server.url, get_retries=0).credits()


def test_kie_ai_credits_route(server):
    server.reply("GET", "/api/v1/chat/credit", 200, ok(77))
    c = SunoClient(KEY, base_url=server.url, provider="kie.ai")
    assert c.provider.name == "kie.ai"
    assert c.credits() == 77.0
    assert [r.path for r in server.requests] == ["/api/v1/chat/credit"]


def test_kie_ai_default_base_url_and_custom_provider(monkeypatch):
    import dataclasses

    from suno_nb.contract import get_provider

    monkeypatch.delenv("SUNO_API_BASE_URL", raising=False)
    assert SunoClient(KEY, provider="kie.ai").base_url == "https://api.kie.ai"
    mine = dataclasses.replace(get_provider(), name="mine", base_url="https://proxy.test")
    c = SunoClient(KEY, provider=mine)
    assert c.provider is mine and c.base_url == "https://proxy.test"
    with pytest.raises(ValueError, match="provider must be one of"):
        SunoClient(KEY, provider="nope.example")


def test_get_honours_retry_after_on_rate_limit(server, caplog):
    server.reply(
        "GET", RECORD, 200, {"code": 430, "msg": "slow down"}, headers={"Retry-After": "1"}
    )
    server.reply("GET", RECORD, 200, record_info("t1", [("a", 100.0)]))
    c = SunoClient(KEY, base_url=server.url, get_retries=2, backoff=0.001)
    with caplog.at_level(logging.INFO, logger="suno_nb.client"):
        info = c.get_details("t1")
    assert info.tracks[0].id == "a"
    first, second = (r.at for r in server.requests)
    assert second - first >= 0.9  # the service's 1 s, not the 1 ms backoff
    assert "in 1.00 s" in caplog.text


def test_post_rate_limit_is_resent_a_few_times_then_raised(server, client):
    # Retry-After 0 keeps it quick; tests/test_throttle.py checks the waits on a fake clock.
    server.reply("POST", REPLACE, 200, {"code": 429, "msg": "slow"}, headers={"Retry-After": "0"})
    with pytest.raises(RateLimitError) as info:
        client.replace_section(**args())
    assert info.value.retry_after == 0.0
    assert len(server.requests) == 1 + POST_RATE_RETRIES


def test_generate_defaults_callback_to_receiver_and_records(server, client):
    server.reply("POST", GENERATE, 200, ok({"taskId": "orig-9"}))
    rx = FakeReceiver()
    job = client.generate(prompt="a calm piano", model="V6_WILD", receiver=rx)
    assert job.task_id == "orig-9" and job.callback_url == RX_URL
    assert server.requests[0].json["callBackUrl"] == RX_URL
    [sub] = rx.submissions
    assert sub.task_id == "orig-9" and sub.parent_task_id is None
    assert "callBackUrl" not in sub.params and sub.params["model"] == "V6_WILD"
    assert "capability-token" not in repr(job)


def test_generate_without_receiver_explains_the_required_callback(server, client):
    with pytest.raises(SectionValidationError) as info:
        client.generate(prompt="a calm piano")
    assert info.value.field == "callback_url"
    assert "requires a callback URL" in str(info.value) and "start_receiver" in str(info.value)
    assert server.requests == []


def test_loopback_callback_to_a_hosted_api_is_refused():
    session = CountingSession()
    c = SunoClient(KEY, session=session, base_url="https://api.sunoapi.org")
    rx = FakeReceiver("http://127.0.0.1:8765/cb/token-abcdefghijklmnop")
    for call in (
        lambda: c.generate(prompt="p", receiver=rx),
        lambda: c.replace_section(**args(), receiver=rx),
        lambda: c.replace_section(**args(callback_url="http://localhost:9/x")),
        # no original_duration: refused before the original's length is looked up
        lambda: c.replace_section(**args(original_duration=None), receiver=rx),
    ):
        with pytest.raises(SectionValidationError) as info:
            call()
        assert info.value.field == "callback_url"
        assert "loopback" in str(info.value)
        assert "tunnel='cloudflared'" in str(info.value) and "tunnel='ngrok'" in str(info.value)
        assert "token-abc" not in str(info.value)
    assert session.calls == []


def test_http_429_from_a_gateway_is_a_rate_limit_and_get_waits(server):
    server.reply("GET", CREDIT, 429, "<h1>Too Many Requests</h1>", headers={"Retry-After": "1"})
    server.reply("GET", CREDIT, 200, ok(3))
    c = SunoClient(KEY, base_url=server.url, get_retries=1, backoff=0.001)
    assert c.credits() == 3.0
    first, second = (r.at for r in server.requests)
    assert second - first >= 0.9
    server.script.clear()
    server.reply("GET", CREDIT, 429, "slow down")
    with pytest.raises(RateLimitError) as info:
        SunoClient(KEY, base_url=server.url, get_retries=0).credits()
    assert info.value.code == 429 and "HTTP 429" in info.value.message
