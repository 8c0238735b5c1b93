"""The sandbox's thread budget and its callback policy on the loop-driven sender.

A sandbox runs inside the user's kernel: at most 4 threads (3 by design: the server's
loop and two workers), every one named ``suno-sandbox*``, none left after ``stop()``.
Counts are sampled from a receiver handler, at the moment a retry is scheduled, after
``wait_idle()``, and by a background sampler over the whole run (its peak).
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

import suno_nb
from suno_nb import Faults, Sandbox, SunoClient

PREFIX = "suno-sandbox"
BUDGET = 4


def sandbox_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(PREFIX))


class Census:
    """``suno-sandbox*`` threads seen, by label; the peak over every sample.

    Used as a context manager it also samples in the background until exit, so the peak
    covers moments no test step looks at (a render, a POST in flight, a backoff)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[list[str]]] = {}
        self.peak: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-census", daemon=True)

    def sample(self, label: str) -> list[str]:
        names = sandbox_threads()
        with self._lock:
            self.samples.setdefault(label, []).append(names)
            if len(names) > len(self.peak):
                self.peak = names
        return names

    def _run(self) -> None:
        while not self._done.wait(0.002):
            self.sample("background")

    def __enter__(self) -> Census:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(5)


class OnLog(logging.Handler):
    """Calls ``fn(message)`` for each record of logger ``suno_nb.sandbox``, as it is emitted."""

    def __init__(self, fn: Any) -> None:
        super().__init__(logging.DEBUG)
        self.fn = fn

    def emit(self, record: logging.LogRecord) -> None:
        self.fn(record.getMessage())


@pytest.fixture
def sandbox_log(caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    """Attach handlers to the sandbox's logger at INFO for one test (restored after)."""
    caplog.set_level(logging.INFO, logger="suno_nb.sandbox")
    logger = logging.getLogger("suno_nb.sandbox")
    added: list[logging.Handler] = []

    def attach(fn: Any) -> None:
        handler = OnLog(fn)
        logger.addHandler(handler)
        added.append(handler)

    yield attach
    for handler in added:
        logger.removeHandler(handler)


class ScriptedReceiver:
    """A plain stdlib callback target on 127.0.0.1:0 (one thread, named ``test-receiver``):
    records every POST and answers 503 to the first ``fail_text`` ``text`` callbacks."""

    def __init__(self, fail_text: int = 0) -> None:
        self.fail_text = fail_text
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kind = body["data"]["callbackType"]
                with outer.lock:
                    failing = kind == "text" and outer.fail_text > 0
                    outer.fail_text -= failing
                    outer.got.append({"type": kind, "at": time.monotonic(), "failed": failing})
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="test-receiver", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _replace(client: SunoClient, song: Any) -> str:
    job = client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="[Verse] new words",
        tags="jazz",
        title="Census",
        full_lyrics="[Verse] old words\n[Verse] new words",
        infill_start_s=10.0,
        infill_end_s=20.0,
    )
    return job.task_id


def test_a_replace_section_through_a_receiver_stays_within_the_budget(tmp_path: Any) -> None:
    assert sandbox_threads() == []  # no sandbox of an earlier test is left over
    rx = suno_nb.start_receiver(tmp_path / "rx.sqlite3", tunnel=None, poll=False)
    census = Census()
    handled = threading.Event()

    def on_result(event: Any) -> None:  # on the receiver's thread, after the store commit
        census.sample("handler")
        handled.set()

    rx.on_callback(on_result)
    with census:
        sb = Sandbox(delay=0.3)
        with sb:
            client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
            song = sb.create_song(duration=30)
            task_id = _replace(client, song)
            result = rx.wait(task_id, timeout=60, progress=False)
            assert result.state == "succeeded"
            assert handled.wait(30)
            assert sb.wait_idle(30)
            census.sample("idle")
            # Both result tracks rendered at once: the two workers busy together.
            urls = [t["audioUrl"] for t in sb.record_info(task_id)["response"]["sunoData"]]
            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda u: requests.get(u, timeout=60), urls))
            assert [a.status_code for a in answers] == [200, 200]
            census.sample("rendered")
        census.sample("stopped")
    assert census.samples["handler"] and census.samples["idle"]
    assert "suno-sandbox-http" in census.peak
    assert 1 <= len(census.peak) <= BUDGET, census.peak
    assert census.samples["stopped"] == [[]]  # stop() joined every sandbox thread
    sb.stop()  # twice is fine
    assert sandbox_threads() == []


def test_staged_generate_with_a_retried_text_callback_keeps_the_policy(
    sandbox_log: Any,
) -> None:
    backoff = 0.1
    target = ScriptedReceiver(fail_text=2)  # text: 503, 503, then 200
    census = Census()
    retry_pending = threading.Event()

    def on_log(message: str) -> None:
        # Logged on the loop right after an attempt, before its backoff timer is set:
        # the moment a retry is pending.
        if "-> HTTP 503" in message:
            census.sample("retry pending")
            retry_pending.set()

    sandbox_log(on_log)
    try:
        with census, Sandbox(delay=0.6, retry_backoff=backoff, callback_timeout=5.0) as sb:
            client = SunoClient(base_url=sb.url, api_key=sb.api_key)
            job = client.generate(prompt="a calm piano piece", callback_url=target.url)
            assert retry_pending.wait(30)
            assert sb.wait_idle(30)
            census.sample("idle")
            log = [e for e in sb.delivery_log() if e["task_id"] == job.task_id]
    finally:
        target.close()

    assert len(census.samples["retry pending"]) == 2
    assert 1 <= len(census.peak) <= BUDGET, census.peak
    assert sandbox_threads() == []
    # Every stage delivered once; the text stage after two 503s, with growing backoff.
    assert {e["callback_type"] for e in log} == {"text", "first", "complete"}
    texts = [e for e in log if e["callback_type"] == "text"]
    assert [e["attempt"] for e in texts] == [1, 2, 3]
    assert [e["status"] for e in texts] == [503, 503, 200]
    assert [e["outcome"] for e in texts] == ["retry", "retry", "delivered"]
    for stage in ("first", "complete"):
        (only,) = [e for e in log if e["callback_type"] == stage]
        assert only["outcome"] == "delivered" and only["attempt"] == 1
    arrivals = [g["at"] for g in target.got if g["type"] == "text"]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert gaps[0] >= backoff and gaps[1] >= 2 * backoff  # backoff * 2**(n-1)
    # The stages went out in order (first attempts): text, first, complete.
    firsts = {e["callback_type"]: e["sent_at"] for e in log if e["attempt"] == 1}
    assert firsts["text"] < firsts["first"] < firsts["complete"]


def test_every_thread_the_sandbox_starts_is_its_own_and_none_outlives_stop() -> None:
    before = set(threading.enumerate())
    target = ScriptedReceiver()
    try:
        with Sandbox(delay=0.2, retry_backoff=0.05) as sb:
            auth = {"Authorization": f"Bearer {sb.api_key}"}
            song = sb.create_song(duration=30)
            track = song.tracks[0]
            # Every route, files with and without ranges, HEAD and 416: nothing may reach
            # AnyIO's thread pool or the loop's default executor.
            full = requests.get(track.audio_url, timeout=30)
            assert full.status_code == 200
            size = len(full.content)
            assert requests.get(track.stream_audio_url, timeout=30).status_code == 200
            ranged = requests.get(track.audio_url, headers={"Range": "bytes=10-99"}, timeout=30)
            assert ranged.status_code == 206
            assert requests.head(track.audio_url, timeout=30).status_code == 200
            late = requests.get(track.audio_url, headers={"Range": f"bytes={size}-"}, timeout=30)
            assert late.status_code == 416
            assert requests.get(track.image_url, timeout=30).status_code == 200
            assert requests.get(f"{sb.url}/files/{'0' * 32}.mp3", timeout=30).status_code == 404
            assert requests.get(f"{sb.url}/nowhere", timeout=30).status_code == 404
            credit = requests.get(f"{sb.url}/api/v1/generate/credit", headers=auth, timeout=30)
            assert credit.json()["code"] == 200
            body = {"prompt": "hi", "model": "V5", "callBackUrl": target.url}
            gen = requests.post(f"{sb.url}/api/v1/generate", json=body, headers=auth, timeout=30)
            assert gen.json()["code"] == 200
            assert sb.wait_idle(30)
            info = requests.get(
                f"{sb.url}/api/v1/generate/record-info",
                params={"taskId": gen.json()["data"]["taskId"]},
                headers=auth,
                timeout=30,
            )
            assert info.json()["data"]["status"] == "SUCCESS"
            started = [t for t in threading.enumerate() if t not in before]
    finally:
        target.close()
    names = sorted(t.name for t in started if t.name != "test-receiver")
    assert names, "the sandbox serves from threads of its own"
    assert all(n.startswith(PREFIX) for n in names), names
    assert len(names) <= BUDGET, names
    assert not any(t.is_alive() for t in started if t.name.startswith(PREFIX))


def test_stop_lets_a_send_under_way_finish_and_drops_the_rest() -> None:
    received, answered = threading.Event(), threading.Event()
    sandbox: list[Sandbox] = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            received.set()
            while sandbox[0].running:  # answer only once stop() has begun
                if answered.wait(0.005):
                    break
            self.send_response(503)  # would be retried, but the sandbox is stopping
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Slow)
    serving = threading.Thread(target=httpd.serve_forever, name="test-slow", daemon=True)
    serving.start()
    try:
        # A long backoff: the retry could only come after stop() has dropped it.
        sb = Sandbox(delay=0.05, retry_backoff=5.0, callback_timeout=30.0).start()
        sandbox.append(sb)
        client = SunoClient(base_url=sb.url, api_key=sb.api_key)
        song = sb.create_song(duration=30)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
        sb.inject(Faults(extra_delay=3600.0))  # this one's result is never due before stop
        never = client.replace_section(
            task_id=song.task_id,
            audio_id=song.audio_id,
            prompt="p",
            tags="t",
            title="T",
            full_lyrics="la",
            infill_start_s=10,
            infill_end_s=20,
            callback_url=url,
        ).task_id
        sent = client.replace_section(
            task_id=song.task_id,
            audio_id=song.audio_id,
            prompt="p",
            tags="t",
            title="T",
            full_lyrics="la",
            infill_start_s=10,
            infill_end_s=20,
            callback_url=url,
        ).task_id
        assert received.wait(30)  # the POST is under way (and a timer armed)
        assert not sb.wait_idle(0)
        sb.stop()
        answered.set()
    finally:
        httpd.shutdown()
        httpd.server_close()
        serving.join(5)
    log = sb.delivery_log()
    # The POST under way finished and was logged; its retry was dropped.
    assert [(e["task_id"], e["attempt"], e["status"]) for e in log] == [(sent, 1, 503)]
    assert log[0]["outcome"] == "retry"
    assert sb.record_info(never)["status"] == "PENDING"  # its timer was dropped
    assert sb.wait_idle(0)
    assert sandbox_threads() == []
