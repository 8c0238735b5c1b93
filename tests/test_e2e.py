"""Sandbox + receiver + client + poller, end to end over loopback HTTP."""

from __future__ import annotations

import dataclasses

import pytest

import suno_nb.session as session
from suno_nb import Faults, Sandbox, SunoClient
from suno_nb.contract import RateLimit, get_provider

SECTION = {"infill_start_s": 20.0, "infill_end_s": 30.0}


def _submit(client, song, n=0, **extra):
    return client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt=f"variation {n}",
        tags="funk",
        title=f"Take {n}",
        full_lyrics=f"[Verse] the old verse\n[Bridge] variation {n}\n[Chorus] the old chorus",
        **{**SECTION, **extra},
    )


@pytest.fixture
def sb():
    with Sandbox(delay=0.3, retry_backoff=0.05, callback_timeout=2.0) as sandbox:
        yield sandbox


def test_dropped_callback_is_found_by_polling_and_the_late_callback_adds_no_row(sb, tmp_path):
    rx = session.start_receiver(
        tmp_path / "p.sqlite3", tunnel=None, poll_interval=0.4, poll_grace=0.5
    )
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, backoff=0.01, receiver=rx)
    song = sb.create_song(duration=60.0)
    # The callback comes 3 s after the result exists: polling sees SUCCESS first.
    sb.inject(Faults(callback_delay=3.0))
    job = _submit(client, song)
    assert rx.tasks().set_index("task_id").loc[job.task_id, "state"] == "pending"
    result = rx.wait(job.task_id, timeout=60, progress=False)
    assert result.ok and result.source == "poll"
    df = rx.frame()
    mine = df[df["task_id"] == job.task_id]
    assert len(mine) == 2 and set(mine["source"]) == {"poll"}
    assert (mine["infill_start_s"] == 20.0).all() and (mine["parent_task_id"] == song.task_id).all()
    assert (mine["latency_s"] > 0).all()
    assert sb.wait_idle(30)  # the late callback has been delivered
    assert rx.flush(30)
    d = rx.deliveries()
    late = d[(d["task_id"] == job.task_id) & (d["source"] == "callback")]
    assert list(late["verdict"]) == ["duplicate"]
    assert len(rx.frame()[lambda f: f["task_id"] == job.task_id]) == 2


def test_a_poll_after_the_callback_adds_no_row(sb, tmp_path):
    rx = session.start_receiver(
        tmp_path / "c.sqlite3", tunnel=None, poll_interval=60, poll_grace=60
    )
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    song = sb.create_song(duration=60.0)
    job = _submit(client, song, callback_url=rx.url)
    assert rx.wait(job.task_id, timeout=60, progress=False).source == "callback"
    # Force a poll anyway, as a racing poller would.
    assert rx.poller.poll_task(job.task_id) == "SUCCESS"
    mine = rx.frame()[lambda f: f["task_id"] == job.task_id]
    assert len(mine) == 2 and set(mine["source"]) == {"callback"}
    polls = rx.deliveries()[lambda d: (d["task_id"] == job.task_id) & (d["source"] == "poll")]
    assert list(polls["verdict"]) == ["duplicate"]


def test_kernel_restart_resumes_polling_of_pending_tasks(sb, tmp_path):
    path = tmp_path / "k.sqlite3"
    rx = session.start_receiver(path, tunnel=None, poll=False)
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    song = sb.create_song(duration=60.0)
    sb.inject(Faults(drop=True))  # the callback never comes
    job = _submit(client, song)
    session.stop_receiver()  # the kernel dies with the task pending
    assert sb.wait_idle(30)
    # A new kernel: new client object, same store file.
    client2 = SunoClient(base_url=sb.url, api_key=sb.api_key)  # no submission: hand it over
    rx2 = session.start_receiver(
        path, tunnel=None, client=client2, poll_interval=0.4, poll_grace=0.0
    )
    assert rx2 is not rx
    result = rx2.wait(job.task_id, timeout=60, progress=False)
    assert result.ok and result.source == "poll" and len(result.tracks) == 2
    assert rx2.tasks().set_index("task_id").loc[job.task_id, "poll_count"] >= 1


def test_failure_status_ends_the_task_as_failed_with_the_service_message(sb, tmp_path):
    rx = session.start_receiver(
        tmp_path / "f.sqlite3", tunnel=None, poll_interval=0.4, poll_grace=0.3
    )
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    song = sb.create_song(duration=60.0)
    sb.inject(Faults(sensitive_word=True, drop=True))
    job = _submit(client, song)
    result = rx.wait(job.task_id, timeout=60, progress=False)
    assert result.state == "failed" and result.source == "poll"
    assert "SENSITIVE_WORD_ERROR" in result.error
    from suno_nb import TaskFailedError

    with pytest.raises(TaskFailedError, match="SENSITIVE_WORD_ERROR"):
        result.raise_for_failure()


# outcome per fault: (fault, expected state, expected code, expected final source)
MIXED = [
    (None, "succeeded", 200, "callback"),
    (Faults(duplicates=2), "succeeded", 200, "callback"),
    (Faults(drop=True), "succeeded", 200, "poll"),
    (Faults(error_code=400), "failed", 400, "callback"),
    (Faults(error_code=408, error_form="null"), "failed", 408, "callback"),
    (Faults(error_code=500), "failed", 500, "callback"),
    (Faults(error_code=501, duplicates=1), "failed", 501, "callback"),
    (Faults(error_code=531, error_form="null"), "failed", 531, "callback"),
    (Faults(extra_delay=0.5), "succeeded", 200, "callback"),
    (Faults(error_code=501, drop=True), "failed", None, "poll"),
]


@pytest.mark.slow  # a stress test: twenty tasks, every fault
@pytest.mark.alone
def test_twenty_replace_tasks_with_mixed_faults_end_right(tmp_path):
    # 20 submits and the poller's queries pass the documented 20 per 10 s: the client waits
    # and the sandbox enforces, as with the hosted API, at a rate ten times faster so the
    # test stays quick (20 per 1 s on both sides).
    fast = dataclasses.replace(get_provider(), rate_limit=RateLimit(requests=20, per_s=1.0))
    sb = Sandbox(delay=0.3, retry_backoff=0.05, callback_timeout=2.0, provider=fast).start()
    try:
        _twenty_tasks(sb, fast, tmp_path)
    finally:
        sb.stop()


def _twenty_tasks(sb, provider, tmp_path):
    rx = session.start_receiver(
        tmp_path / "m.sqlite3", tunnel=None, poll_interval=0.5, poll_grace=1.5
    )
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx, provider=provider)
    song = sb.create_song(duration=120.0)
    expected = {}
    for n in range(20):
        fault, state, code, source = MIXED[n % len(MIXED)]
        if fault is not None:
            sb.inject(fault)
        start = 5.0 + n * 2
        job = _submit(client, song, n, infill_start_s=start, infill_end_s=start + 10)
        expected[job.task_id] = (state, code, source)
    for task_id in expected:
        rx.wait(task_id, timeout=30, progress=False)
    assert sb.wait_idle(30)
    assert rx.flush(30)
    tasks = rx.tasks().set_index("task_id").loc[list(expected)]
    for task_id, (state, code, source) in expected.items():
        row = tasks.loc[task_id]
        assert row["state"] == state, task_id
        assert row["source"] == source, task_id
        if code is not None:
            assert row["code"] == code, task_id
        if state == "failed":
            assert row["msg"] and row["tracks"] == 0
        else:
            assert row["tracks"] == 2
    df = rx.frame()
    mine = df[df["task_id"].isin(expected)]
    assert not mine.duplicated(["task_id", "track_id"]).any()
    assert len(mine) == 2 * sum(1 for s, _c, _src in expected.values() if s == "succeeded")
    d = rx.deliveries()
    dup = d[
        d["task_id"].isin(expected) & (d["verdict"] == "duplicate") & (d["source"] == "callback")
    ]
    assert len(dup) == 2 * 2 + 2 * 1  # duplicates=2 twice, duplicates=1 twice
    log = sb.delivery_frame()
    assert set(log[log["task_id"].isin(expected)]["outcome"]) == {"delivered"}


def test_rx_wait_follows_a_generated_original_through_its_stages(tmp_path):
    """generate() -> text, first, complete callbacks -> rx.wait() -> replace a section of it.

    Needs the receiver that accepts the whole callback family (text/first stages): with
    an older receiver the intermediate stages are answered 400.
    """
    with Sandbox(delay=0.9, retry_backoff=0.05, callback_timeout=2.0) as sb:
        rx = session.start_receiver(tmp_path / "g.sqlite3", tunnel=None, poll=False)
        client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
        job = client.generate(prompt="a calm harbour song", model="V6")
        assert job.callback_url and job.callback_url.startswith(rx.url.rsplit("/", 1)[0])
        result = rx.wait(job.task_id, timeout=30, progress=False)
        assert result.ok and result.source == "callback"
        assert sb.wait_idle(30)
        log = sb.delivery_frame()
        mine = log[log["task_id"] == job.task_id]
        # Every stage was accepted at the first attempt: no 400, no retry.
        assert list(mine["callback_type"]) == ["text", "first", "complete"]
        assert set(mine["status"]) == {200} and set(mine["attempt"]) == {1}
        assert rx.flush(30)
        tracks = rx.frame()
        originals = tracks[tracks["task_id"] == job.task_id]
        assert len(originals) == 2 and not originals.duplicated("track_id").any()

        # The original is now something to edit, like any generated track.
        first = originals.iloc[0]
        edit = client.replace_section(
            task_id=job.task_id,
            audio_id=first["track_id"],
            prompt="a brass break",
            tags="funk",
            title="Edit",
            full_lyrics="[Verse] calm harbour\n[Break] brass\n[Chorus] calm harbour",
            infill_start_s=20.0,
            infill_end_s=35.0,
        )
        assert rx.wait(edit.task_id, timeout=30, progress=False).ok


def test_wait_on_an_id_nobody_knows_fails_at_once_naming_the_id(sb, tmp_path):
    """A mistyped id used to block for the whole default timeout (600 s)."""
    from suno_nb import UnknownTaskError, WaitTimeout

    rx = session.start_receiver(tmp_path / "u.sqlite3", tunnel=None, poll=False)
    with pytest.raises(WaitTimeout, match="never heard of it") as no_client:
        rx.wait("no-such-task", timeout=0.2, progress=False)  # nobody to ask: waits, then says so
    assert "call wait() again" not in str(no_client.value)
    client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
    rx.use_client(client)
    with pytest.raises(UnknownTaskError) as exc:
        rx.wait("no-such-task", progress=False)  # default timeout: must not be waited out
    message = str(exc.value)
    assert "'no-such-task' is unknown" in message and "rx.tasks()" in message
    assert sb.api_key not in message
    song = sb.create_song(duration=30.0)  # known to the service, not to this receiver
    with pytest.raises(WaitTimeout, match="never heard of it"):
        rx.wait(song.task_id, timeout=0.2, progress=False)
    assert rx.tasks().empty  # looking up changed nothing: no task, no original kept
    assert rx.archiver.kept_original(song.task_id, song.audio_id) is None
