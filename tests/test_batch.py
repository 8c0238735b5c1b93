"""Batches that run unattended (issue 24): preview, keys and resume, uncertain requests,
budget, the rate at the server.  Everything against the sandbox on loopback."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import requests

import suno_nb as snb
from suno_nb import session, throttle
from suno_nb.contract import get_provider
from suno_nb.sandbox import Faults
from suno_nb.sandbox.limits import Limiter
from suno_nb.throttle import Throttle

from .conftest import wait_until

SUNO = get_provider("sunoapi.org")


class FakeClock:
    """Monotonic seconds that only ``sleep`` moves (the throttle's and the sandbox's)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(seconds)
            self.t += seconds


def rows(song, n: int, **extra) -> list[dict]:
    return [
        {
            "task_id": song.task_id,
            "audio_id": song.tracks[0].id,
            "prompt": f"take {i}",
            "tags": "pop, synth",
            "title": f"row {i}",
            "infill_start_s": 10.0,
            "infill_end_s": 22.0,
            "full_lyrics": "[Verse] new words\n[Chorus] We sing it again",
            "original_duration": 60.0,
            **extra,
        }
        for i in range(n)
    ]


def posts_per_title(sb) -> Counter:
    """How many replace-section tasks the sandbox made for each title (one per POST it took)."""
    out: Counter = Counter()
    for t in sb.tasks():
        if t["type"] == "REPLACE_SECTION":
            out[json.loads(sb.record_info(t["task_id"])["param"])["title"]] += 1
    return out


@pytest.fixture
def sb():
    with snb.Sandbox(delay=0.2, retry_backoff=0.2) as sandbox:
        yield sandbox


@pytest.fixture
def rx(tmp_path):
    receiver = session.start_receiver(
        tmp_path / "batch.sqlite3", tunnel=None, poll_interval=0.5, poll_grace=1.0
    )
    yield receiver
    session.stop_receiver()


@pytest.fixture
def client(sb):
    with snb.SunoClient(sb.api_key, base_url=sb.url) as c:
        yield c


# --- preview ------------------------------------------------------------------------------


def test_preview_reports_every_invalid_row_with_field_and_rule_and_sends_nothing(sb, client, rx):
    song = sb.create_song(duration=60)
    jobs = rows(song, 5)
    jobs[1]["infill_end_s"] = 14.0  # a 4 s section: under the 10 s minimum
    del jobs[2]["full_lyrics"]  # required on sunoapi.org
    for k in ("task_id", "audio_id"):  # upload mode with a model nobody has
        del jobs[3][k]
    jobs[3] |= {"upload_url": "https://example.com/a.mp3", "model": "V99"}
    jobs[4]["colour"] = "blue"  # not an argument of replace_section

    problems = snb.preview_batch(client, jobs)

    assert list(problems["row"]) == [1, 2, 3, 4]
    by_row = problems.set_index("row")
    assert by_row.loc[1, "field"] == "infill_end_s" and "10" in by_row.loc[1, "rule"]
    assert by_row.loc[2, "field"] == "full_lyrics" and by_row.loc[2, "rule"] == "required"
    assert by_row.loc[3, "field"] == "model" and "V6" in by_row.loc[3, "rule"]
    assert by_row.loc[4, "field"] == "colour" and by_row.loc[4, "rule"] == "unknown column"
    assert sb.rate_limiter.admitted() == []  # not one request reached the service

    with pytest.raises(ValueError, match="4 invalid row"):
        snb.run_batch(client, jobs, receiver=rx, name="bad", progress=False)
    assert sb.rate_limiter.admitted() == [] and posts_per_title(sb) == Counter()

    b = snb.run_batch(client, jobs, receiver=rx, name="bad", skip_invalid=True, progress=False)
    b.wait(timeout=60, progress=False)
    assert list(b.frame()["state"]) == ["succeeded", "skipped", "skipped", "skipped", "skipped"]


def test_lines_rows_are_recognised_and_checked_by_replace_lines_rules(sb, client):
    song = sb.create_song(duration=60)
    jobs = [
        {"task_id": song.task_id, "audio_id": song.tracks[0].id, "lines": "Chorus",
         "new_lyrics": "fresh words", "tags": "pop", "title": "x"},
        {"task_id": song.task_id, "audio_id": song.tracks[0].id, "lines": "Chorus",
         "new_lyrics": "", "tags": "pop", "title": "x"},
        {"kind": "remix", "task_id": song.task_id},
    ]  # fmt: skip
    problems = snb.preview_batch(client, jobs)
    assert list(zip(problems["row"], problems["kind"], problems["field"], strict=True)) == [
        (1, "lines", "new_lyrics"),
        (2, "remix", "kind"),
    ]


# --- the rate, keys and re-runs -------------------------------------------------------------


def test_60_rows_each_submitted_once_within_the_documented_rate_at_the_server(tmp_path, rx):
    clock = FakeClock()  # no real waiting: the throttle and the sandbox share this clock
    limit = SUNO.rate_limit
    assert limit is not None
    with snb.Sandbox(delay=0.2, rate_limit=Limiter(limit, clock=clock.now)) as sb:
        gate = Throttle(limit, name="test", clock=clock.now, sleep=clock.sleep)
        throttle.register(sb.url, sb.api_key, gate)
        try:
            song = sb.create_song(duration=60)
            with snb.SunoClient(sb.api_key, base_url=sb.url) as client:
                b = snb.run_batch(client, rows(song, 60), receiver=rx, name="sixty")
                b.wait(timeout=120)
            seen = sb.rate_limiter.admitted()
            refused = sb.rate_limiter.refused
        finally:
            throttle.register(sb.url, sb.api_key, None)
        assert posts_per_title(sb) == Counter({f"row {i}": 1 for i in range(60)})
    assert refused == 0
    assert max(sum(1 for u in seen if t <= u < t + limit.per_s) for t in seen) <= limit.requests
    assert clock.sleeps  # the throttle did have to wait
    df = b.frame()
    assert (df["state"] == "succeeded").all() and (df["sends"] == 1).all()
    assert (df["takes"] == 2).all()
    res = b.results()
    assert len(res) == 120 and set(res["row"]) == set(range(60))
    assert res.groupby("prompt_job")["track_id"].count().eq(2).all()


def test_running_the_same_batch_again_sends_nothing_twice(sb, client, rx):
    song = sb.create_song(duration=60)
    jobs = rows(song, 4) + rows(song, 1)  # row 4 repeats row 0: its own job and key
    first = snb.run_batch(client, jobs, receiver=rx, name="again", progress=False)
    first.wait(timeout=60, progress=False)
    again = snb.run_batch(client, jobs, receiver=rx, name="again", progress=False)
    assert list(again.frame()["key"]) == list(first.frame()["key"])
    assert len(set(first.frame()["key"])) == 5
    assert posts_per_title(sb) == Counter({"row 0": 2, "row 1": 1, "row 2": 1, "row 3": 1})
    assert again.summary()["succeeded"] == 5
    assert repr(again) == "Batch('again', rows=5, succeeded=5)"
    assert sb.api_key not in repr(again) + again.frame().to_string() + str(again.summary())
    other = snb.run_batch(client, jobs[:1], receiver=rx, name="another", progress=False)
    assert other.frame()["key"][0] != first.frame()["key"][0]  # the name is in the key


# --- uncertain requests -------------------------------------------------------------------


def test_accepted_then_dropped_is_uncertain_not_resent_and_adopted_by_its_callback(sb, client, rx):
    song = sb.create_song(duration=60)
    sb.inject(Faults(drop_connection=True))  # the first row's task is made, its answer lost
    b = snb.run_batch(client, rows(song, 3), receiver=rx, name="drop", progress=False)
    # its callback may be in already, even its result
    assert b.frame()["state"][0] in ("uncertain", "submitted", "succeeded")
    assert b.frame()["sends"].tolist() == [1, 1, 1]
    b.wait(timeout=60, uncertain=True, progress=False)
    df = b.frame()
    assert list(df["state"]) == ["succeeded"] * 3
    assert df["task_id"].notna().all()
    assert posts_per_title(sb) == Counter({"row 0": 1, "row 1": 1, "row 2": 1})
    assert rx.store.task(df["task_id"][0])["submitted_at"] is not None  # recorded on adoption
    snb.run_batch(client, rows(song, 3), receiver=rx, name="drop", progress=False)
    assert posts_per_title(sb)["row 0"] == 1
    # the sandbox's deliberate drop is not a warning of the receiver's
    assert rx.log("WARNING").empty and "⚠" not in repr(rx)


def test_uncertain_rows_with_the_same_words_are_not_guessed_between(sb, client, rx):
    """Two sections asked for with the same prompt, title and tags, both answers lost: their
    callbacks cannot say which is which, so neither row adopts a task (a wrong guess would
    measure and splice the wrong section); the rows say why, and one resubmit settles it."""
    song = sb.create_song(duration=60)
    same = {"prompt": "take", "title": "same words", "tags": "pop"}
    jobs = [
        rows(song, 1, **same)[0],
        rows(song, 1, **same, infill_start_s=30.0, infill_end_s=42.0)[0],
    ]
    sb.inject(Faults(drop_connection=True), count=2)
    b = snb.run_batch(client, jobs, receiver=rx, name="twins", progress=False)
    sb.wait_idle()  # both tasks made, both callbacks delivered
    rx.flush()
    df = b.frame()
    assert list(df["state"]) == ["uncertain", "uncertain"]
    assert all("cannot be told apart" in e for e in df["error"])
    assert len(rx.tasks()) == 2  # the two unrecorded tasks, kept
    b = snb.run_batch(
        client, jobs, receiver=rx, name="twins", resubmit_uncertain=True, progress=False
    )
    b.wait(timeout=60, progress=False)
    done = b.frame()
    assert list(done["state"]) == ["succeeded", "succeeded"]
    sections = [rx.store.task(t)["infill_start_s"] for t in done["task_id"]]
    assert sections == [10.0, 30.0]  # each row its own new task, its own section


def test_an_uncertain_row_whose_callback_never_comes_is_resent_only_when_asked(sb, client, rx):
    song = sb.create_song(duration=60)
    sb.inject(Faults(drop_connection=True, drop=True))  # no answer and no callback
    b = snb.run_batch(client, rows(song, 2), receiver=rx, name="lost", progress=False)
    b.wait(timeout=60, progress=False)
    assert list(b.frame()["state"]) == ["uncertain", "succeeded"]
    assert "may have reached the service" in b.frame()["error"][0]
    snb.run_batch(client, rows(song, 2), receiver=rx, name="lost", progress=False)
    assert posts_per_title(sb)["row 0"] == 1  # never resent automatically
    b = snb.run_batch(
        client, rows(song, 2), receiver=rx, name="lost", resubmit_uncertain=True, progress=False
    )
    b.wait(timeout=60, progress=False)
    assert list(b.frame()["state"]) == ["succeeded", "succeeded"]
    assert b.frame()["sends"].tolist() == [2, 1]
    assert posts_per_title(sb) == Counter({"row 0": 2, "row 1": 1})


# --- budget -------------------------------------------------------------------------------


def test_max_credits_stops_before_the_request_that_would_exceed_it(sb, client, rx):
    song = sb.create_song(duration=60)
    sb.credits = 7 * 5  # a replacement costs 5 in the sandbox: the balance covers 7
    with pytest.warns(snb.SunoNbWarning, match="5 row"):
        b = snb.run_batch(client, rows(song, 10), receiver=rx, name="budget", max_credits=25)
    states = Counter(b.frame()["state"])
    assert states["over_budget"] == 5 and states["submitted"] + states["succeeded"] == 5
    assert len(posts_per_title(sb)) == 5 and sb.credits == 10
    s = b.summary()
    assert s["over_budget"] == 5 and s["price"] == 5 and s["credits_spent"] == 25
    assert "5 row(s) left over_budget" in s["stopped"]
    b.wait(timeout=60, progress=False)


def test_running_out_of_credits_stops_cleanly_and_leaves_the_rest_queued(sb, client, rx):
    song = sb.create_song(duration=60)
    sb.credits = 3 * 5
    with pytest.warns(snb.SunoNbWarning, match="no credits left") as said:
        b = snb.run_batch(client, rows(song, 6), receiver=rx, name="broke", progress=False)
    assert said[0].filename == __file__  # the warning points at the caller's line
    assert list(b.frame()["state"][3:]) == ["queued"] * 3
    assert "3 row(s) left queued" in b.summary()["stopped"]
    assert len(posts_per_title(sb)) == 3
    sb.credits = 100  # top up and run the same cell again: only the rest goes out
    b = snb.run_batch(client, rows(song, 6), receiver=rx, name="broke", progress=False)
    b.wait(timeout=60, progress=False)
    assert posts_per_title(sb) == Counter({f"row {i}": 1 for i in range(6)})
    assert b.summary()["succeeded"] == 6 and b.summary()["stopped"] is None


# --- a killed process, resumed in another -------------------------------------------------

CHILD = Path(__file__).with_name("batch_child.py")  # run_batch in a process of its own


@pytest.mark.slow
def test_a_killed_batch_resumes_in_a_new_process_sending_only_the_rest(tmp_path, sb):
    song = sb.create_song(duration=60)
    jobs_file = tmp_path / "jobs.json"
    jobs_file.write_text(json.dumps(rows(song, 30)))
    script = CHILD
    store, marker = tmp_path / "night.sqlite3", tmp_path / "stopped"
    env = {**os.environ, "PYTHONPATH": str(Path(snb.__file__).parent.parent)}
    args = [sys.executable, str(script), sb.url, sb.api_key, str(store), str(marker)]
    child = subprocess.Popen([*args, str(jobs_file), "15"], env=env)
    try:
        assert wait_until(marker.exists, timeout=120)
        # The 15th task's callback reaches the child's receiver before it dies.
        # (the child stopped after reading the 15th answer, before storing it: that row
        # is left "sending", and the resumed run adopts it through this stored callback)
        stored = lambda: sum(a["status"] == 200 for a in sb.delivery_log())  # noqa: E731
        assert wait_until(lambda: stored() >= 15, timeout=60)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert sum(posts_per_title(sb).values()) == 15

    done = subprocess.run(
        [*args, str(jobs_file), "0"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary, frame = (json.loads(line) for line in done.stdout.strip().splitlines()[-2:])
    assert posts_per_title(sb) == Counter({f"row {i}": 1 for i in range(30)})
    assert summary["succeeded"] == 30, summary
    assert frame["sends"] == [1] * 30 and frame["state"] == ["succeeded"] * 30


def test_the_tracker_can_show_only_one_batch(sb, client, rx):
    from suno_nb.widgets import tracker

    song = sb.create_song(duration=60)
    other = client.replace_section(receiver=rx, **rows(song, 1)[0] | {"title": "by hand"})
    b = snb.run_batch(client, rows(song, 2), receiver=rx, name="shown", progress=False)
    b.wait(timeout=60, progress=False)
    rx.wait(other.task_id, timeout=60)
    t = tracker(rx, batch=b)
    try:
        html = t.refresh()
        assert "row 0" in html and "row 1" in html and "by hand" not in html
        assert "by hand" in tracker(rx).refresh()
    finally:
        t.close()


def test_keys_are_stable_across_spellings_of_the_same_numbers_and_differ_by_content():
    import pandas as pd  # a core dependency: never skipped

    from suno_nb.batch.jobs import make_jobs

    a = make_jobs("n", [{"prompt": "p", "infill_start_s": 10, "variety": 2}])
    b = make_jobs("n", pd.DataFrame([{"prompt": "p", "infill_start_s": 10.0, "variety": 2}]))
    c = make_jobs("n", [{"prompt": "q", "infill_start_s": 10, "variety": 2}])
    assert a[0].key == b[0].key != c[0].key
    assert a[0].params["variety"] == 2 and isinstance(b[0].params["variety"], int)


def test_a_service_that_cannot_be_reached_leaves_rows_queued_not_uncertain(sb, rx):
    song = sb.create_song(duration=60)
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = snb.SunoClient(sb.api_key, base_url=dead, timeout=5)
    with client, pytest.warns(snb.SunoNbWarning, match="could not reach"):
        b = snb.run_batch(client, rows(song, 3), receiver=rx, name="down", progress=False)
    assert list(b.frame()["state"]) == ["queued"] * 3
    assert "3 row(s) queued" in b.summary()["stopped"]


class _Interrupt(requests.adapters.HTTPAdapter):
    """Raises KeyboardInterrupt from inside the transport, as Ctrl-C mid-request would."""

    def send(self, *args, **kwargs):
        raise KeyboardInterrupt


def test_an_interrupt_while_waiting_sends_nothing_and_one_mid_request_is_uncertain(sb, rx):
    song = sb.create_song(duration=60)
    clock = FakeClock()

    def interrupted_sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    limit = dataclasses.replace(SUNO.rate_limit, requests=1)  # the 2nd request must wait
    throttle.register(sb.url, sb.api_key, Throttle(limit, clock=clock.now, sleep=interrupted_sleep))
    try:
        client = snb.SunoClient(sb.api_key, base_url=sb.url)
        with client, pytest.raises(KeyboardInterrupt):
            snb.run_batch(client, rows(song, 2), receiver=rx, name="ctrl-c", progress=False)
    finally:
        throttle.register(sb.url, sb.api_key, None)
    first = rx.store.query("SELECT row, state, error FROM batch_jobs ORDER BY row")
    assert [r["state"] for r in first] == ["submitted", "queued"]  # waited, never sent
    interrupting = requests.Session()
    interrupting.mount("http://", _Interrupt())
    client = snb.SunoClient(sb.api_key, base_url=sb.url, session=interrupting)
    with client, pytest.raises(KeyboardInterrupt):
        snb.run_batch(client, rows(song, 2), receiver=rx, name="ctrl-c", progress=False)
    with snb.SunoClient(sb.api_key, base_url=sb.url) as client:
        b = snb.run_batch(client, rows(song, 2), receiver=rx, name="ctrl-c", progress=False)
    assert list(b.frame()["state"])[1] == "uncertain"  # and not sent again
    assert "while its request was out" in b.frame()["error"][1]
    assert posts_per_title(sb) == Counter({"row 0": 1})
