"""The polling fallback under real use: unknown tasks, hanging answers, old tasks, backoff.

Everything runs on loopback: the Sandbox is the service; a small proxy in front of it never
answers record-info for one task (a hanging request) and counts every poll per task.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from suno_nb import Faults, Sandbox, SunoClient
from suno_nb.poller import Poller
from suno_nb.store import Store, Submission

ROOT = Path(__file__).resolve().parents[1]


class HangingProxy:
    """Forwards to ``upstream``, counting polls per task; record-info of ``hang_id`` never
    answers until :attr:`release` is set.  Also used by the subprocess test (imported)."""

    def __init__(self, upstream: str, hang_id: str):
        self.polls: Counter[str] = Counter()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # the default writes to stderr
                pass

            def _forward(self, method: str) -> None:
                task = parse_qs(urlsplit(self.path).query).get("taskId", [""])[0]
                if method == "GET" and task:
                    proxy.polls[task] += 1
                    if task == hang_id:
                        proxy.release.wait(120)  # hangs while the test runs
                        return
                size = int(self.headers.get("Content-Length") or 0)
                r = requests.request(
                    method,
                    upstream + self.path,
                    data=self.rfile.read(size) if size else None,
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type")
                    },
                    timeout=10,
                )
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _pending(store: Store, task_id: str, age_s: float) -> None:
    store.record_submission(
        Submission(task_id, "parent", "audio", 10.0, 20.0, submitted_at=time.time() - age_s)
    )


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(delay=0.3, retry_backoff=0.1, faults=Faults(drop=True)) as sandbox:
        yield sandbox


@pytest.fixture
def store(tmp_path) -> Iterator[Store]:
    s = Store(tmp_path / "p.sqlite3")
    yield s
    s.close()


# --- the "must show": a real receiver in a subprocess with no logging configured ----------------

SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[2])
    import suno_nb as snb
    from suno_nb.store import Store, Submission
    from tests.test_poller import HangingProxy

    path = sys.argv[1]
    with snb.Sandbox(delay=0.3, retry_backoff=0.1, faults=snb.Faults(drop=True)) as sb:
        song = sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")
        proxy = HangingProxy(sb.url, "task-hang")
        earlier = Store(path)  # tasks left by an earlier kernel, on a sandbox long gone
        for task in ("task-gone", "task-hang"):
            earlier.record_submission(
                Submission(task, "parent", "audio", 10.0, 20.0, submitted_at=time.time() - 600)
            )
        earlier.close()
        client = snb.SunoClient(base_url=proxy.url, api_key=sb.api_key)
        rx = snb.start_receiver(path, tunnel=None, client=client, poll_interval=0.5,
                                poll_grace=0.0)
        t0 = time.monotonic()
        job = client.replace_section(
            task_id=song.task_id, audio_id=song.audio_id, prompt="new words", tags="jazz",
            title="Take", infill_start_s=20.0, infill_end_s=32.0, original_duration=60.0,
            full_lyrics="[Verse] la la la / [Chorus] new words",
            callback_url=rx.url, receiver=rx,
        )
        resolved_after = hang_open = gone = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            third = rx.store.task(job.task_id)
            if resolved_after is None and third["state"] == "succeeded":
                resolved_after = time.monotonic() - t0
                hang_open = "task-hang" in rx.poller.in_flight
            gone = rx.store.task("task-gone")
            if resolved_after is not None and gone["state"] == "unknown":
                break
            time.sleep(0.05)
        polls_at_give_up = proxy.polls["task-gone"]
        time.sleep(3.0)  # six more poll intervals: a gave-up task is not asked again
        out = {
            "resolved_after": resolved_after,
            "third": dict(rx.store.task(job.task_id)),
            "hang_open_when_resolved": hang_open,
            "hang": dict(rx.store.task("task-hang")),
            "gone": dict(rx.store.task("task-gone")),
            "gone_polls_at_give_up": polls_at_give_up,
            "gone_polls_later": proxy.polls["task-gone"],
            "hang_polls": proxy.polls["task-hang"],
            "repr": repr(rx),
            "log": rx.log()["message"].tolist(),
        }
        proxy.release.set()
        snb.stop_receiver()
        proxy.close()
    print(json.dumps(out, default=str))
    """
)


def test_unknown_and_hanging_tasks_stay_quiet_and_do_not_stall_the_others(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rx.sqlite3"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no logging configured: not one line reaches stderr
    out = json.loads(proc.stdout)
    # the third task: resolved by polling while the other task's request hangs
    assert out["third"]["state"] == "succeeded" and out["third"]["source"] == "poll"
    assert out["resolved_after"] is not None and out["resolved_after"] < 20.0
    assert out["hang_open_when_resolved"] is True
    assert out["hang"]["state"] == "pending" and out["hang_polls"] >= 1
    # the unknown task: final after N=3 consecutive "unknown" answers, then never polled
    assert out["gone"]["state"] == "unknown"
    assert out["gone"]["unknown_polls"] == 3
    assert "3 polls in a row" in out["gone"]["reason"]
    assert out["gone_polls_at_give_up"] == 3 == out["gone_polls_later"]
    # what the user must see is in the repr, in plain words; the details in rx.log()
    assert "1 task unknown to the service" in out["repr"]
    assert any("unknown to the service (3/3)" in m for m in out["log"])


# --- in-process: the same mechanisms, one at a time ----------------------------------------------


def _poller(store: Store, client, **kw) -> Poller:
    stored: list = []

    def keep(delivery, callback):
        stored.append(store.record_callback(delivery, callback))

    poller = Poller(store, keep, lambda: client, **kw)
    poller.stored = stored  # type: ignore[attr-defined]
    return poller


def test_one_hanging_request_does_not_stall_the_pool(sb, store):
    proxy = HangingProxy(sb.url, "task-hang")
    try:
        song = sb.create_song(duration=60)
        client = SunoClient(base_url=proxy.url, api_key=sb.api_key)
        _pending(store, "task-hang", 60)
        job = client.replace_section(
            task_id=song.task_id,
            audio_id=song.audio_id,
            prompt="p",
            tags="t",
            title="x",
            full_lyrics="[Verse] la la la\n[Chorus] new words",
            infill_start_s=20.0,
            infill_end_s=32.0,
            original_duration=60.0,
            callback_url="http://127.0.0.1:9/cb",
        )
        store.record_submission(Submission(job.task_id, song.task_id, song.audio_id, 20.0, 32.0))
        poller = _poller(store, client, interval=0.4, grace=0.0, request_timeout=30.0)
        poller.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if store.task(job.task_id)["state"] == "succeeded":
                    break
                time.sleep(0.05)
            assert store.task(job.task_id)["state"] == "succeeded"
            assert "task-hang" in poller.in_flight  # still hanging, never answered
            assert proxy.polls["task-hang"] == 1  # in flight: not asked a second time
        finally:
            proxy.release.set()
            poller.stop()
    finally:
        proxy.close()


def test_per_request_timeout_bounds_a_hanging_poll(sb, store):
    proxy = HangingProxy(sb.url, "task-hang")
    try:
        client = SunoClient(base_url=proxy.url, api_key=sb.api_key, timeout=60, get_retries=3)
        _pending(store, "task-hang", 60)
        poller = _poller(store, client, interval=30, grace=0.0, request_timeout=0.5)
        t0 = time.monotonic()
        assert poller.poll_task(client, "task-hang") is None
        took = time.monotonic() - t0
        assert took < 10  # 0.5 s, once; the client's own 60 s x 4 attempts would be minutes
        assert client.timeout == 60 and client.get_retries == 3  # the caller's client unchanged
        assert store.task("task-hang")["poll_count"] == 1
    finally:
        proxy.close()


def test_unknown_task_gives_up_after_n_consecutive_answers(sb, store):
    client = SunoClient(base_url=sb.url, api_key=sb.api_key)
    _pending(store, "task-gone", 60)
    poller = _poller(store, client, interval=0.34, grace=0.0, unknown_after=3)
    for n in (1, 2):
        poller.poll_due(now=time.time() + 100 * n)
        assert store.task("task-gone")["state"] == "pending"
    poller.poll_due(now=time.time() + 300)
    row = store.task("task-gone")
    assert row["state"] == "unknown" and row["unknown_polls"] == 3 and row["reason"]
    polls = row["poll_count"]
    poller.poll_due(now=time.time() + 400)  # terminal: never polled again
    assert store.task("task-gone")["poll_count"] == polls


def test_task_older_than_retention_expires_without_a_request(store):
    calls: list[str] = []

    class Client:
        def get_details(self, task_id):  # pragma: no cover - must not be called
            calls.append(task_id)
            raise AssertionError("polled an expired task")

    _pending(store, "task-old", 15 * 86400)
    poller = _poller(store, Client(), interval=1.0, grace=0.0)
    poller.poll_due()
    row = store.task("task-old")
    assert row["state"] == "expired" and "14 days" in row["reason"]
    assert calls == []


def test_backoff_doubles_after_n_polls_and_is_capped():
    poller = Poller(None, None, lambda: None, interval=30, backoff_after=10, max_interval=300)  # type: ignore[arg-type]
    assert [poller.interval_for({"poll_count": n}) for n in (0, 9, 10, 19, 20, 30, 99)] == [
        30,
        30,
        60,
        60,
        120,
        240,
        300,
    ]
    fast = Poller(None, None, lambda: None, interval=0.1)  # type: ignore[arg-type]
    assert fast.interval == pytest.approx(1 / 3)  # never above 3 queries/s per task


def test_stop_cancels_queued_polls_and_ends_the_threads(sb, store):
    proxy = HangingProxy(sb.url, "task-hang")
    try:
        client = SunoClient(base_url=proxy.url, api_key=sb.api_key)
        _pending(store, "task-hang", 60)
        poller = _poller(store, client, interval=0.34, grace=0.0, request_timeout=1.0)
        poller.start()
        deadline = time.monotonic() + 10
        while not proxy.polls["task-hang"] and time.monotonic() < deadline:
            time.sleep(0.02)
        poller.stop()
        assert not poller.running
        # the worker ends with its request's own timeout
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            t.name.startswith("suno_nb-poll") for t in threading.enumerate()
        ):
            time.sleep(0.05)
        assert not [t.name for t in threading.enumerate() if t.name.startswith("suno_nb-poll")]
    finally:
        proxy.close()
