"""Zero acknowledged callbacks lost, whatever breaks (the benchmark's soak, at CI scale)."""

from __future__ import annotations

import threading
import time

import suno_nb.session as session
from suno_nb import Faults, Sandbox, SunoClient
from suno_nb.store import Store


def _submit(client, song, n: int) -> str:
    job = client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt=f"p{n}",
        tags="t",
        title=f"T{n}",
        full_lyrics="[Verse] la la la\n[Chorus] new words",
        infill_start_s=10,
        infill_end_s=20,
    )
    return job.task_id


def _acknowledged(sb, task_ids):
    """Task ids whose callback the receiver answered with 200, per the sandbox's own log."""
    log = sb.delivery_frame()
    ok = log[(log["status"] == 200) & log["task_id"].isin(task_ids)]
    return set(ok["task_id"])


def _stored(path, task_ids):
    store = Store(path)
    try:
        rows = store.query("SELECT task_id, state FROM tasks")
    finally:
        store.close()
    return {r["task_id"]: r["state"] for r in rows if r["task_id"] in task_ids}


def test_receiver_restarted_mid_burst_loses_nothing_acknowledged(tmp_path):
    path = tmp_path / "burst.sqlite3"
    with Sandbox(delay=1.0, retry_backoff=0.4, callback_timeout=2.0, workers=8) as sb:
        client = SunoClient(base_url=sb.url, api_key=sb.api_key)
        rx = session.start_receiver(path, tunnel=None, client=client, poll=False)
        port = rx.port
        song = sb.create_song(duration=120.0)
        task_ids = []
        t0 = time.monotonic()
        for n in range(60):  # callbacks spread over ~1.0-4.0 s from now, each sent twice
            sb.inject(Faults(duplicates=1, extra_delay=n * 0.05))
            task_ids.append(_submit(client, song, n))
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
        session.stop_receiver()  # the kernel dies mid-burst...
        time.sleep(0.7)
        # ...and a new one comes back on the same port while the sender retries.
        rx = session.start_receiver(
            path, port=port, tunnel=None, client=client, poll_interval=0.5, poll_grace=0.5
        )
        for task_id in task_ids:
            rx.wait(task_id, timeout=30, progress=False)
        assert sb.wait_idle(20)
        acked = _acknowledged(sb, task_ids)
        log = sb.delivery_frame()
        refused = log[log["task_id"].isin(task_ids) & log["status"].isna()]
    session.stop_receiver()
    stored = _stored(path, set(task_ids))
    assert acked - set(stored) == set()  # zero acknowledged callbacks lost
    assert len(refused) > 0  # the outage really happened: some attempts hit a closed port
    assert len(acked) > 30  # most callbacks got through, before or after the restart
    assert set(stored) == set(task_ids)  # retries and polling recovered every task
    assert all(state == "succeeded" for state in stored.values())


def test_store_failure_mid_burst_loses_nothing_acknowledged(tmp_path):
    path = tmp_path / "fail.sqlite3"
    with Sandbox(delay=0.2, retry_backoff=0.3, callback_timeout=2.0) as sb:
        client = SunoClient(base_url=sb.url, api_key=sb.api_key)
        rx = session.start_receiver(
            path, tunnel=None, client=client, poll_interval=0.5, poll_grace=2.0
        )
        song = sb.create_song(duration=120.0)
        task_ids = []
        for n in range(30):
            if n == 10:  # the disk fills up for a while
                with rx.store._wlock:
                    rx.store._wconn.execute(
                        "CREATE TRIGGER full BEFORE INSERT ON tracks "
                        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
                    )
                threading.Timer(
                    0.6, lambda: rx.store.transact(lambda c: c.execute("DROP TRIGGER full"))
                ).start()
            task_ids.append(_submit(client, song, n))
            time.sleep(0.03)
        for task_id in task_ids:
            rx.wait(task_id, timeout=30, progress=False)
        assert sb.wait_idle(20)
        acked = _acknowledged(sb, task_ids)
        log = sb.delivery_frame()
        answered_503 = log[log["task_id"].isin(task_ids) & (log["status"] == 503)]
    session.stop_receiver()
    stored = _stored(path, set(task_ids))
    assert acked - set(stored) == set()
    assert len(answered_503) > 0  # the failure was seen and answered 5xx
    assert set(stored) == set(task_ids)
