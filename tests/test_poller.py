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
from suno_nb.errors import NetworkError
from suno_nb.events import Feed
from suno_nb.poller import Poller
from suno_nb.rows import Submission
from suno_nb.store import Store

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
    from suno_nb.rows import Submission
    from suno_nb.store import Store
    from tests.conftest import wait_until
    from tests.test_poller import HangingProxy

    path = sys.argv[1]
    with snb.Sandbox(delay=0.3, retry_backoff=0.1, faults=snb.Faults(drop=True)) as sb:
        song = sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")
        proxy = HangingProxy(sb.url, "task-hang")
        earlier = Store(path)  # tasks left by an earlier kernel, on a sandbox long gone
        for task in ("task-gone", "task-hang"):
            earlier.record_submission(Submission(task, submitted_at=time.time() - 600))
        earlier.close()
        rx = snb.start_receiver(
            path, tunnel=None, poll_interval=0.5, poll_grace=0.0, poll_timeout=1.0
        )
        client = snb.SunoClient(base_url=proxy.url, api_key=sb.api_key, receiver=rx)
        job = client.replace_section(
            task_id=song.task_id, audio_id=song.audio_id, prompt="new words", tags="jazz",
            title="Take", infill_start_s=20.0, infill_end_s=32.0, original_duration=60.0,
            full_lyrics="[Verse] la la la / [Chorus] new words", callback_url=rx.url,
        )
        assert wait_until(lambda: rx.store.task(job.task_id)["state"] == "succeeded", 120)
        assert wait_until(lambda: rx.store.task("task-gone")["state"] == "unknown", 120)
        polls_at_give_up = proxy.polls["task-gone"]
        hang_then = proxy.polls["task-hang"]
        # two more rounds (each asks the hanging task once more): the given-up task is not
        assert wait_until(lambda: proxy.polls["task-hang"] >= hang_then + 2, 120)
        out = {
            "third": dict(rx.store.task(job.task_id)),
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


@pytest.mark.slow
def test_unknown_and_hanging_tasks_stay_quiet_and_do_not_stop_the_others(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rx.sqlite3"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no logging configured: not one line reaches stderr
    out = json.loads(proc.stdout)
    # the third task: resolved by polling although another task's requests hang
    assert out["third"]["state"] == "succeeded" and out["third"]["source"] == "poll"
    assert out["hang"]["state"] == "pending" and out["hang_polls"] >= 3
    # the unknown task: final after N=3 consecutive "unknown" answers, then never polled
    assert out["gone"]["state"] == "unknown"
    assert out["gone"]["unknown_polls"] == 3
    assert "3 polls in a row" in out["gone"]["reason"]
    assert out["gone_polls_at_give_up"] == 3 == out["gone_polls_later"]
    # what the user must see is in the repr, in plain words; the details in rx.log()
    assert "1 task unknown to the service" in out["repr"]
    assert any("unknown to the service (3/3)" in m for m in out["log"])


# --- in-process: the same mechanisms, one at a time ----------------------------------------------


@pytest.fixture
def feed() -> Iterator[Feed]:
    f = Feed()
    yield f
    f.close()


def _poller(store: Store, feed: Feed, fetch, **kw) -> Poller:
    poller = Poller(store, feed, **kw)
    poller.fetch = fetch
    return poller


def test_a_hanging_poll_is_bounded_by_its_timeout_and_not_retried(sb, store, feed):
    proxy = HangingProxy(sb.url, "task-hang")
    try:
        client = SunoClient(base_url=proxy.url, api_key=sb.api_key, timeout=60, get_retries=3)
        _pending(store, "task-hang", 60)
        poller = _poller(store, feed, client.poll_fetch, interval=30, request_timeout=0.5)
        assert poller.poll_task("task-hang") is None  # timed out: noted, tried next round
        assert proxy.polls["task-hang"] == 1  # the client's own 3 retries are not used
        assert client.timeout == 60 and client.get_retries == 3  # the client is unchanged
        assert store.task("task-hang")["poll_count"] == 1
    finally:
        proxy.close()


def test_a_round_polls_what_is_due_and_stores_terminal_answers_as_polls(sb, store, feed):
    client = SunoClient(base_url=sb.url, api_key=sb.api_key)
    song = sb.create_song(duration=60)
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
    assert sb.wait_idle(30)  # the result exists at the service (its callback was dropped)
    poller = _poller(store, feed, client.poll_fetch, interval=0.34, grace=0.0)
    poller.poll_due(now=time.time() + 1)
    task = store.task(job.task_id)
    assert (task["state"], task["source"], task["service_status"]) == (
        "succeeded",
        "poll",
        "SUCCESS",
    )
    assert len(store.tracks_of(job.task_id)) == 2


def test_unknown_task_gives_up_after_n_consecutive_answers(sb, store, feed):
    client = SunoClient(base_url=sb.url, api_key=sb.api_key)
    _pending(store, "task-gone", 60)
    poller = _poller(store, feed, client.poll_fetch, interval=0.34, grace=0.0, unknown_after=3)
    for n in (1, 2):
        poller.poll_due(now=time.time() + 100 * n)
        assert store.task("task-gone")["state"] == "pending"
    poller.poll_due(now=time.time() + 300)
    row = store.task("task-gone")
    assert row["state"] == "unknown" and row["unknown_polls"] == 3 and row["reason"]
    polls = row["poll_count"]
    poller.poll_due(now=time.time() + 400)  # terminal: never polled again
    assert store.task("task-gone")["poll_count"] == polls


def test_task_older_than_retention_expires_without_a_request(store, feed):
    calls: list[str] = []

    def fetch(task_id, timeout):  # pragma: no cover - must not be called
        calls.append(task_id)
        raise AssertionError("polled an expired task")

    _pending(store, "task-old", 15 * 86400)
    poller = _poller(store, feed, fetch, interval=1.0, grace=0.0)
    poller.poll_due()
    row = store.task("task-old")
    assert row["state"] == "expired" and "14 days" in row["reason"]
    assert calls == []


def test_backoff_doubles_after_n_polls_and_is_capped(store, feed):
    poller = Poller(store, feed, interval=30, backoff_after=10, max_interval=300)
    assert [poller.interval_for({"poll_count": n}) for n in (0, 9, 10, 19, 20, 30, 99)] == [
        30,
        30,
        60,
        60,
        120,
        240,
        300,
    ]
    fast = Poller(store, feed, interval=0.1)
    assert fast.interval == pytest.approx(1 / 3)  # never above 3 queries/s per task


def test_rounds_run_on_the_feed_and_stop_ends_them(store, feed):
    asked: list[str] = []
    rounds = threading.Semaphore(0)

    def fetch(task_id, timeout):
        asked.append(task_id)
        rounds.release()
        raise NetworkError("no answer")

    _pending(store, "task-a", 60)
    poller = _poller(store, feed, fetch, interval=0.34, grace=0.0)
    poller.start()
    assert rounds.acquire(timeout=30) and rounds.acquire(timeout=30)  # two rounds, on a timer
    poller.stop()
    assert feed.join(30)
    seen = len(asked)
    poller.wake()  # a stopped poller plans nothing
    feed.call_later(1.0, lambda: None)
    assert feed.join(30)
    assert len(asked) == seen and not poller.running
    assert [t.name for t in threading.enumerate() if t.name.startswith("suno_nb-poll")] == []
