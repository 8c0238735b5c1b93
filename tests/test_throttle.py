"""One throttle per provider host and API key: the client stays under the documented rate,
the sandbox refuses past it like the provider, refusals are honoured, the key stays hidden.

No test waits for the rate's real seconds: the throttle and the sandbox's limiter share a
fake clock whose ``sleep`` moves time forward (and records each wait).
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from suno_nb import throttle
from suno_nb.client import SunoClient
from suno_nb.contract import RateLimit, get_provider
from suno_nb.errors import RateLimitError, ServerError
from suno_nb.sandbox import Sandbox
from suno_nb.sandbox.limits import Limiter
from suno_nb.throttle import Throttle
from tests.test_client import RecordingServer, args, ok, record_info

SUNO = get_provider("sunoapi.org")
KIE = get_provider("kie.ai")
KEY = "sk-throttle-test-0123456789abcdef"
REPLACE = SUNO.routes["replace-section"]
RECORD = SUNO.routes["record-info"]


class FakeClock:
    """Monotonic seconds that only ``sleep`` moves; every wait is recorded.  Thread-safe:
    a sleeper wakes at its own wake time, and time never goes back."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()
        self.during_sleep: list[str | None] = []  # throttle.status() while asleep

    def now(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        self.during_sleep.append(throttle.status())
        with self.lock:
            self.sleeps.append(seconds)
            self.t += seconds


class Blocked(Exception):
    """Raised by a frozen clock's sleep: the caller would have had to wait."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def gates() -> Iterator[Any]:
    """register(url, key, Throttle on a clock); forgotten after the test."""
    made: list[tuple[str, str]] = []

    def make(url: str, key: str, limit: RateLimit, clock: FakeClock, **kw: Any) -> Throttle:
        gate = Throttle(limit, name="test", clock=clock.now, sleep=clock.sleep, **kw)
        throttle.register(url, key, gate)
        made.append((url, key))
        return gate

    yield make
    for url, key in made:
        throttle.register(url, key, None)


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    srv = RecordingServer().start()
    yield srv
    srv.stop()


def most_in_any_window(times: list[float], period: float) -> int:
    """The largest number of ``times`` inside any half-open window of ``period`` seconds."""
    times = sorted(times)
    return max((sum(1 for u in times if t <= u < t + period) for t in times), default=0)


# --- the acceptance test: a batch through one client, measured at the server --------------


@pytest.mark.parametrize("provider", [SUNO, KIE], ids=lambda p: p.name)
def test_25_back_to_back_submits_stay_within_the_limit_at_the_server(clock, gates, provider):
    limit = provider.rate_limit
    assert limit is not None and (limit.requests, limit.per_s) == (20, 10.0)
    with Sandbox(provider=provider, delay=60, rate_limit=Limiter(limit, clock=clock.now)) as sb:
        gates(sb.url, sb.api_key, limit, clock)
        song = sb.create_song(duration=60)
        with SunoClient(sb.api_key, base_url=sb.url, provider=provider) as client:
            jobs = [
                client.replace_section(
                    **args(task_id=song.task_id, audio_id=song.tracks[0].id, original_duration=60)
                )
                for _ in range(25)
            ]
        assert len({j.task_id for j in jobs}) == 25
        seen = sb.rate_limiter.admitted()
        assert len(seen) == 25
        assert most_in_any_window(seen, limit.per_s) == 20  # never more than the limit
        assert sb.rate_limiter.refused == 0
    assert len(clock.sleeps) == 1 and clock.sleeps[0] >= limit.per_s  # one wait, the window's


def test_the_sandbox_refuses_past_the_limit_like_each_provider(clock):
    for provider, status in ((SUNO, 200), (KIE, 429)):
        limit = provider.rate_limit
        assert limit is not None
        with Sandbox(provider=provider, rate_limit=Limiter(limit, clock=clock.now)) as sb:
            url = sb.url + provider.routes["credits"]
            head = {"Authorization": f"Bearer {sb.api_key}"}
            answers = [requests.get(url, headers=head, timeout=10) for _ in range(21)]
            assert [r.json()["code"] for r in answers[:20]] == [200] * 20
            last = answers[-1]
            assert last.status_code == status and last.json()["code"] == limit.code
            assert last.headers["Retry-After"] == "10"
            assert "too frequent" in last.json()["msg"]
            assert sb.rate_limiter.refused == 1
            # A wrong key is refused as unauthorized and counts against nobody.
            bad = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
            assert bad.json()["code"] == 401 and sb.rate_limiter.refused == 1
        clock.t += 100


def test_sandbox_rate_limit_option():
    assert Sandbox().rate_limiter is not None
    assert Sandbox(rate_limit=False).rate_limiter is None
    mine = RateLimit(requests=5, per_s=1.0)
    assert Sandbox(rate_limit=mine).rate_limiter.limit is mine
    with pytest.raises(TypeError, match="rate_limit must be"):
        Sandbox(rate_limit=20)  # type: ignore[arg-type]


# --- refusals: Retry-After honoured, POSTs resent only after a rate-limit refusal ----------


def test_a_430_with_retry_after_is_retried_once_after_that_wait(server, clock, gates, caplog):
    gates(server.url, KEY, SUNO.rate_limit, clock)
    server.reply("POST", REPLACE, 200, {"code": 430, "msg": "slow"}, headers={"Retry-After": "7"})
    server.reply("POST", REPLACE, 200, ok({"taskId": "new-1"}))
    client = SunoClient(KEY, base_url=server.url)
    with caplog.at_level(logging.INFO, logger="suno_nb"):
        job = client.replace_section(**args())
    assert job.task_id == "new-1"
    assert len(server.seen("POST")) == 2  # one refusal, one retry: the submit is not doubled
    assert clock.sleeps == [7.0]
    assert "Retry-After" in caplog.text and "waiting 7.0 s" in caplog.text


def test_submitted_at_is_the_accepted_attempt_not_the_refused_one(server, clock, gates):
    """A task's ``submitted_at`` (and so its latency) starts when the request that created
    it was sent: not at a refused attempt before it, nor while the throttle held it."""
    gates(server.url, KEY, SUNO.rate_limit, clock)
    server.reply("POST", REPLACE, 200, {"code": 430, "msg": "slow"}, headers={"Retry-After": "7"})
    server.reply("POST", REPLACE, 200, ok({"taskId": "new-1"}))

    sent: list[float] = []

    class Timed(requests.Session):
        def request(self, method, url, *args, **kwargs):
            sent.append(time.time())
            return super().request(method, url, *args, **kwargs)

    job = SunoClient(KEY, base_url=server.url, session=Timed()).replace_section(**args())
    first, second = sent
    assert first < job.submitted_at <= second


def test_kie_http_429_on_record_info_is_a_rate_limit_and_retried(server, clock, gates):
    gates(server.url, KEY, KIE.rate_limit, clock)
    refusal = {"code": 429, "msg": "rate limited"}
    server.reply("GET", RECORD, 429, refusal, headers={"Retry-After": "2"})
    server.reply("GET", RECORD, 200, record_info("t1", [("a", 100.0)]))
    client = SunoClient(KEY, base_url=server.url, provider="kie.ai-legacy")
    assert client.get_details("t1").tracks[0].id == "a"
    assert clock.sleeps == [2.0]


def test_a_retry_after_date_is_honoured(server, clock, gates):
    gates(server.url, KEY, SUNO.rate_limit, clock)
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.reply("GET", RECORD, 200, {"code": 405, "msg": "slow"}, headers={"Retry-After": when})
    server.reply("GET", RECORD, 200, record_info("t1", [("a", 100.0)]))
    assert SunoClient(KEY, base_url=server.url).get_details("t1").task_id == "t1"
    [waited] = clock.sleeps
    assert 28.0 <= waited <= 30.0  # the date has whole seconds


def test_a_submit_refused_every_time_is_resent_a_few_times_then_raises(server, clock, gates):
    gates(server.url, KEY, SUNO.rate_limit, clock)
    server.reply("POST", REPLACE, 200, {"code": 429, "msg": "slow"}, headers={"Retry-After": "3"})
    client = SunoClient(KEY, base_url=server.url)
    with pytest.raises(RateLimitError) as info:
        client.replace_section(**args())
    assert info.value.retry_after == 3.0  # the wait it was told
    assert len(server.seen("POST")) == 4 and clock.sleeps == [3.0, 3.0, 3.0]


def test_a_submit_failing_otherwise_is_never_resent(server, clock, gates):
    gates(server.url, KEY, SUNO.rate_limit, clock)
    server.reply("POST", REPLACE, 200, {"code": 500, "msg": "boom"})
    with pytest.raises(ServerError, match="boom"):
        SunoClient(KEY, base_url=server.url).replace_section(**args())
    assert len(server.seen("POST")) == 1 and clock.sleeps == []


def test_without_retry_after_the_backoff_grows(server, clock, gates):
    gates(server.url, KEY, SUNO.rate_limit, clock)
    server.reply("GET", RECORD, 200, {"code": 430, "msg": "slow"})
    client = SunoClient(KEY, base_url=server.url, get_retries=3, backoff=1.0)
    with pytest.raises(RateLimitError):
        client.get_details("t1")
    assert len(clock.sleeps) == 3
    for step, waited in enumerate(clock.sleeps):  # full jitter around 1, 2, 4 s
        assert 0.5 * 2**step <= waited <= 1.5 * 2**step


# --- one bucket per host and key ------------------------------------------------------------


def test_clients_with_one_key_share_a_bucket_and_other_keys_do_not(server, clock, gates):
    small = RateLimit(requests=2, per_s=10.0)
    gates(server.url, "key-one", small, clock)
    gates(server.url, "key-two", small, clock)
    server.reply("GET", SUNO.routes["credits"], 200, ok(5))
    a, b = SunoClient("key-one", base_url=server.url), SunoClient("key-one", base_url=server.url)
    other = SunoClient("key-two", base_url=server.url)
    for c in (a, b, other, other):
        c.credits()
    assert clock.sleeps == []  # 2 per key so far
    b.credits()  # the third of key-one, whichever client sends it
    assert len(clock.sleeps) == 1


def test_the_registry_is_keyed_by_host_and_key():
    limit = SUNO.rate_limit
    one = throttle.for_key("https://h.test", "k1", limit)
    assert throttle.for_key("https://h.test/", "k1", limit) is one
    assert throttle.for_key("https://h.test", "k2", limit) is not one
    assert throttle.for_key("https://other.test", "k1", limit) is not one
    assert throttle.for_key("https://h.test", "k1", None) is None  # no limit known
    stricter = dataclasses.replace(limit, requests=5)
    assert throttle.for_key("https://h.test", "k1", stricter) is one and one.limit == stricter


def test_the_key_never_appears_in_reprs_status_or_logs(clock, caplog):
    secret = "sk-live-do-not-show-4f1c2a"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    gate = Throttle(RateLimit(requests=1, per_s=10.0), clock=clock.now, sleep=clock.sleep)
    throttle.register("https://h.test", secret, gate)
    try:
        assert throttle.for_key("https://h.test", secret, SUNO.rate_limit) is gate
        with caplog.at_level(logging.INFO, logger="suno_nb.throttle"):
            gate.acquire(what="GET /x")
            gate.acquire(what="GET /x")
        seen = [repr(throttle.registry()), repr(gate), caplog.text, *map(str, clock.during_sleep)]
        assert "waiting 10.2 s before GET /x" in caplog.text
        for text in seen:
            assert secret not in text and digest not in text and digest[:8] not in text
    finally:
        throttle.register("https://h.test", secret, None)


# --- per-task polls (kie.ai), visibility, interruption, threads ------------------------------


def test_kie_per_task_poll_limit_in_the_throttle_and_the_sandbox(clock, gates):
    limit = KIE.rate_limit
    assert limit is not None and limit.per_task_poll_per_s == 3.0
    assert SUNO.rate_limit is not None and SUNO.rate_limit.per_task_poll_per_s is None
    with Sandbox(provider="kie.ai", rate_limit=Limiter(limit, clock=clock.now)) as sb:
        song = sb.create_song(duration=30)
        url = sb.url + KIE.routes["record-info"]
        head = {"Authorization": f"Bearer {sb.api_key}"}
        raw = [
            requests.get(url, params={"taskId": song.task_id}, headers=head, timeout=10)
            for _ in range(4)
        ]
        assert [r.status_code for r in raw] == [200, 200, 200, 429]
        assert raw[-1].headers["Retry-After"] == "1"
        other = requests.get(url, params={"taskId": "another-task"}, headers=head, timeout=10)
        assert other.status_code == 200  # another task's queries are counted apart
        clock.t += 5
        gates(sb.url, sb.api_key, limit, clock)
        client = SunoClient(sb.api_key, base_url=sb.url, provider="kie.ai")
        for _ in range(4):
            assert client.get_details(song.task_id).task_id == song.task_id
        assert sb.rate_limiter.refused == 1  # only the raw one above
        assert len(clock.sleeps) == 1 and 1.0 <= clock.sleeps[0] <= 1.5


def test_a_wait_is_logged_once_and_shown_by_status_and_watchers(clock, caplog):
    limit = RateLimit(requests=1, per_s=10.0)
    gate = Throttle(limit, name="sunoapi.org", clock=clock.now, sleep=clock.sleep)
    heard: list[str | None] = []
    throttle.register("https://status.test", KEY, gate)
    throttle.watch(heard.append)
    try:
        with caplog.at_level(logging.INFO, logger="suno_nb.throttle"):
            gate.acquire(what="POST /api/v1/generate")
            gate.acquire(what="POST /api/v1/generate")
        assert throttle.status() is None  # nothing waits any more
        [during] = clock.during_sleep
        assert during is not None and "before POST /api/v1/generate" in during
        assert "sunoapi.org allows 1 requests per 10 s per API key" in during
        assert heard == [during, None]
        lines = [r for r in caplog.records if r.name == "suno_nb.throttle"]
        assert len(lines) == 1 and lines[0].levelno == logging.INFO
    finally:
        throttle.watch(heard.append, remove=True)
        throttle.register("https://status.test", KEY, None)


def test_short_waits_are_not_logged(clock, caplog):
    gate = Throttle(
        RateLimit(requests=1, per_s=0.2), clock=clock.now, sleep=clock.sleep, margin=0.0
    )
    with caplog.at_level(logging.INFO, logger="suno_nb.throttle"):
        gate.acquire()
        gate.acquire()
    assert clock.sleeps == [pytest.approx(0.2)] and caplog.records == []


def test_an_interrupted_wait_leaves_the_bucket_as_it_was(clock):
    interrupts = [KeyboardInterrupt()]

    def sleep(seconds: float) -> None:  # Ctrl-C in the kernel during the first wait
        if interrupts:
            raise interrupts.pop()
        clock.sleep(seconds)

    limit = RateLimit(requests=2, per_s=10.0)
    gate = Throttle(limit, clock=clock.now, sleep=sleep, margin=0.0)
    gate.acquire()
    gate.acquire()
    with pytest.raises(KeyboardInterrupt):
        gate.acquire()
    assert gate.status() is None
    clock.t += 10.0
    gate.acquire()
    gate.acquire()  # both slots free: the interrupted call took none
    assert clock.sleeps == []
    gate.acquire()
    assert clock.sleeps == [10.0]


def test_threads_share_the_bucket_exactly(clock):
    """Time stands still and a wait ends the worker: exactly ``requests`` get through,
    however the 8 threads interleave."""

    def blocked(seconds: float) -> None:
        raise Blocked

    gate = Throttle(RateLimit(requests=20, per_s=10.0), clock=clock.now, sleep=blocked)
    passed: list[int] = []
    go = threading.Barrier(8)

    def worker(n: int) -> None:
        go.wait()
        try:
            for _ in range(10):
                gate.acquire()
                passed.append(n)
        except Blocked:
            pass

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(passed) == 20
    assert "20/20 in the last 10 s" in repr(gate)


def test_rate_limit_rejects_nonsense():
    with pytest.raises(ValueError, match="requests >= 1"):
        RateLimit(requests=0, per_s=10.0)
    with pytest.raises(ValueError, match="per_s > 0"):
        RateLimit(requests=20, per_s=0.0)
    with pytest.raises(TypeError, match="requests must be an int"):
        RateLimit(requests=2.5, per_s=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="per_task_poll_per_s"):
        RateLimit(requests=20, per_s=10.0, per_task_poll_per_s=0)
    with pytest.raises(TypeError, match="RateLimit"):
        Throttle(20)  # type: ignore[arg-type]


# --- visible in the widgets -------------------------------------------------------------------


def test_a_wait_for_the_rate_limit_shows_in_the_tracker_and_clears(tmp_path):
    from suno_nb.session import start_receiver
    from suno_nb.widgets import tracker

    asleep, wake = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:  # the waiting request parks here until released
        asleep.set()
        assert wake.wait(30)

    gate = Throttle(RateLimit(requests=1, per_s=60.0), name="test host", sleep=sleep)
    gate.acquire()  # the one slot is used: the next request must wait
    throttle.register("http://throttled.invalid", KEY, gate)
    rx = start_receiver(tmp_path / "t.sqlite3", tunnel=None, poll=False)
    tr = tracker(rx)
    seen: list[str] = []
    tr.status.observe(lambda change: seen.append(change["new"]), names="value")
    try:
        waiter = threading.Thread(target=gate.acquire, kwargs={"what": "a test request"})
        waiter.start()
        assert asleep.wait(30)
        assert "before a test request" in tr.status.value
        assert "test host allows 1 requests per 60 s" in tr.status.value
        gate.hold(0.0)
        gate.set_limit(RateLimit(requests=5, per_s=60.0))  # room again: the waiter goes
        wake.set()
        waiter.join(30)
        assert not waiter.is_alive()
        assert tr.status.value == "" and any("a test request" in s for s in seen)
    finally:
        wake.set()
        tr.close()
        rx.stop()
        throttle.register("http://throttled.invalid", KEY, None)
