"""The store's one writer, durability checks, rejected-row cap, lifecycle and poller support."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import threading
import time
from concurrent.futures import Future

import pytest

from suno_nb import payloads
from suno_nb.errors import StoreError
from suno_nb.events import CallbackEvent, Dispatcher
from suno_nb.store import (
    _OPEN,
    EXPIRED,
    MIGRATIONS,
    PENDING,
    RUNNING,
    SCHEMA_VERSION,
    SUCCEEDED,
    UNKNOWN,
    Delivery,
    Store,
    Submission,
    clean_headers,
)


def _cb(task="t1", ids=("a", "b"), code=200, stage=None):
    stage = stage or ("complete" if code == 200 else "error")
    return payloads.parse_callback(
        {
            "code": code,
            "msg": "m",
            "data": {
                "callbackType": stage,
                "task_id": task,
                "data": [{"id": i} for i in ids] if code == 200 else None,
            },
        }
    )


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    s = Store(":memory:" if request.param == "memory" else tmp_path / "s.sqlite3")
    yield s
    s.close()


def _hold_writer(store: Store) -> tuple[threading.Event, Future]:
    """Occupy the writer with a job that waits; what is submitted meanwhile queues up."""
    started, release = threading.Event(), threading.Event()

    def blocker(conn):
        started.set()
        assert release.wait(30)

    fut = store.submit(blocker)
    assert started.wait(30)
    return release, fut


# --- the one writer -----------------------------------------------------------------------


def test_submit_callback_is_non_blocking_and_resolves_after_commit(store):
    release, held = _hold_writer(store)
    fut = store.submit_callback(Delivery(body=b"x"), _cb())
    assert isinstance(fut, Future) and not fut.done()  # queued behind the held job
    if not store.memory:  # (a memory store's reads wait for the writer's batch)
        assert store.task("t1") is None  # nothing visible before the COMMIT
    release.set()
    outcome = fut.result(30)
    assert (outcome.verdict, outcome.state, outcome.stage) == ("accepted", SUCCEEDED, "complete")
    assert store.task("t1")["state"] == SUCCEEDED  # committed when resolved
    held.result(30)


def test_what_queues_meanwhile_is_committed_in_one_transaction(store):
    release, held = _hold_writer(store)
    before = store.version
    futs = [store.submit_callback(Delivery(body=b"x"), _cb(f"k{i}")) for i in range(50)]
    futs.append(store.submit_rejection(Delivery(body=b"?"), 400, "bad"))
    release.set()
    held.result(30)
    assert all(f.result(30) for f in futs)
    assert store.version - before == 2  # the held job's batch, then ONE batch of 51
    assert store.counts()["tasks"] == 50 and store.counts()["rejected"] == 1


def test_one_bad_job_fails_alone_in_its_batch(store):
    release, held = _hold_writer(store)
    good = [
        store.submit(lambda c, i=i: c.execute("INSERT INTO meta VALUES (?, 'v')", (f"k{i}",)))
        for i in range(5)
    ]
    bad = store.submit(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))
    dup = store.submit(lambda c: c.execute("INSERT INTO meta VALUES ('k0', 'again')"))
    release.set()
    held.result(30)
    for f in good:
        f.result(30)
    with pytest.raises(StoreError, match="nowhere"):
        bad.result(30)
    with pytest.raises(StoreError, match="UNIQUE"):
        dup.result(30)
    assert len(store.query("SELECT * FROM meta")) == 5
    assert store.get_meta("k0") == "v"


def test_a_failed_commit_fails_every_job_of_the_batch(tmp_path):
    store = Store(tmp_path / "fk.sqlite3")
    try:
        store.transact(lambda c: c.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)"))
        store.transact(
            lambda c: c.execute(
                "CREATE TABLE ch (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
        with store._wlock:  # the writer is idle: switch on FK checks (only outside a transaction)
            store._wconn.execute("PRAGMA foreign_keys=ON")
        release, held = _hold_writer(store)
        fine = store.submit_callback(Delivery(body=b"x"), _cb("fine"))
        orphan = store.submit(lambda c: c.execute("INSERT INTO ch VALUES (99)"))  # fails at COMMIT
        release.set()
        held.result(30)  # its own batch, committed before the others were taken
        for fut in (fine, orphan):
            with pytest.raises(StoreError, match="FOREIGN KEY"):
                fut.result(30)
        assert store.task("fine") is None  # nothing of the batch is stored
        assert store.record_callback(Delivery(body=b"x"), _cb("later")).verdict == "accepted"
    finally:
        store.close()


def test_a_transaction_cannot_wait_for_another(store):
    with pytest.raises(StoreError, match="cannot wait"):
        store.transact(lambda c: store.transact(lambda c2: None))


def test_concurrent_writers_and_readers(store):
    errors: list[BaseException] = []

    def write(n):
        try:
            for i in range(40):
                store.record_callback(Delivery(body=b"x"), _cb(f"w{n}-{i}", ids=(f"{n}-{i}",)))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read():
        try:
            for _ in range(40):
                store.counts()
                store.pending_tasks()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store.counts()["tracks"] == 240


# --- durability -----------------------------------------------------------------------------


def _remove_files(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")


@pytest.mark.parametrize("how", ["file deleted", "directory deleted", "file replaced"])
def test_a_deleted_or_replaced_store_file_fails_every_write(tmp_path, how):
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "s.sqlite3"
    store = Store(path)
    try:
        store.record_callback(Delivery(body=b"x"), _cb("before"))
        assert store.healthy and store.problem is None
        if how == "file deleted":
            _remove_files(path)
        elif how == "directory deleted":
            shutil.rmtree(folder)
        else:
            other = tmp_path / "other.sqlite3"
            Store(other).close()
            os.replace(other, path)
        with pytest.raises(StoreError, match="the store file was deleted or replaced"):
            store.record_callback(Delivery(body=b"x"), _cb("after"))
        with pytest.raises(StoreError, match="deleted or replaced"):
            store.record_rejection(Delivery(body=b"x"), 400, "bad")
        assert not store.healthy
        assert "deleted or replaced" in store.problem and "UNHEALTHY" in repr(store)
        if how == "directory deleted":  # re-created: still not the file this store opened
            folder.mkdir()
            Store(path).close()
            with pytest.raises(StoreError, match="deleted or replaced"):
                store.record_callback(Delivery(body=b"x"), _cb("again"))
    finally:
        store.close()


def test_healthy_notices_without_a_write(tmp_path):
    store = Store(tmp_path / "h.sqlite3")
    try:
        _remove_files(tmp_path / "h.sqlite3")
        assert not store.healthy and "no longer exists" in store.problem
    finally:
        store.close()
    assert store.problem == "the store is closed"


# --- rejected rows are capped -----------------------------------------------------------------


def test_rejected_rows_are_capped_keeping_the_newest(tmp_path):
    path = tmp_path / "cap.sqlite3"
    store = Store(path, max_rejected=100)
    try:
        store.record_callback(Delivery(body=b"x"), _cb("kept"))
        ids = [
            f.result(30)
            for f in [
                store.submit_rejection(Delivery(body=b"?"), 404, f"scan {i}") for i in range(350)
            ]
        ]
        rows = store.query("SELECT id, reason FROM deliveries WHERE verdict = 'rejected'")
        assert 0 < len(rows) <= 100
        assert rows[-1]["id"] == ids[-1] and rows[-1]["reason"] == "scan 349"
        assert [r["id"] for r in rows] == ids[-len(rows) :]  # the newest, in order
        assert (
            store.query("SELECT count(*) AS n FROM deliveries WHERE verdict = 'accepted'")[0]["n"]
            == 1
        )
    finally:
        store.close()
    again = Store(path, max_rejected=100)  # the count survives reopening
    try:
        for i in range(150):
            again.record_rejection(Delivery(body=b"?"), 404, f"more {i}")
        assert again.counts()["rejected"] <= 100
    finally:
        again.close()


# --- lifecycle --------------------------------------------------------------------------------


def test_close_finishes_queued_writes_then_refuses_everything(store):
    futs = [store.submit_callback(Delivery(body=b"x"), _cb(f"q{i}")) for i in range(100)]
    store.close()
    assert all(f.result(30).verdict == "accepted" for f in futs)
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.submit_callback(Delivery(body=b"x"), _cb("late")).result(5)
    for call in (
        lambda: store.record_rejection(Delivery(body=b"x"), 400, "late"),
        lambda: store.task("q1"),
        lambda: store.counts(),
        lambda: store.rate("a", 3),
        lambda: store.transact(lambda c: None),
    ):
        with pytest.raises(StoreError, match="closed"):
            call()
    store.close()  # idempotent


def test_close_waits_for_an_in_flight_reader(tmp_path):
    store = Store(tmp_path / "r.sqlite3")
    store.record_callback(Delivery(body=b"x"), _cb())
    inside, leave, closed = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def reader():
        with store.reading() as conn:
            inside.set()
            assert leave.wait(30)
            seen.append(conn.execute("SELECT count(*) FROM tracks").fetchone()[0])

    t = threading.Thread(target=reader)
    t.start()
    assert inside.wait(30)
    closer = threading.Thread(target=lambda: (store.close(), closed.set()))
    closer.start()
    assert not closed.wait(0.3)  # close waits for the reader
    leave.set()
    t.join(30)
    assert closed.wait(30) and seen == [2]


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_racing_close_only_ever_raises_store_error(tmp_path, kind):
    for run in range(5):  # bounded
        store = Store(":memory:" if kind == "memory" else tmp_path / f"race{run}.sqlite3")
        problems: list[BaseException] = []
        stop = threading.Event()

        def hammer(n, store=store, problems=problems, stop=stop):
            i = 0
            while not stop.is_set() and i < 2000:
                i += 1
                try:
                    if i % 2:
                        store.record_callback(Delivery(body=b"x"), _cb(f"{n}-{i}", ids=()))
                    else:
                        store.query("SELECT count(*) FROM tasks")
                        store.pending_tasks()
                except StoreError:
                    return  # the only acceptable failure: the store is closed
                except BaseException as exc:
                    problems.append(exc)
                    return

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.02 * (run + 1))
        store.close()
        stop.set()
        for t in threads:
            t.join(30)
        assert problems == [], problems


# --- poller support ---------------------------------------------------------------------------


def test_note_poll_counts_consecutive_unknown_answers(store):
    store.record_submission(Submission("p1", None, None, None, None))
    assert store.note_poll("p1", None, unknown=True) == 1
    assert store.note_poll("p1", None, unknown=True) == 2
    assert store.note_poll("p1", "PENDING") == 0  # a known answer resets the count
    assert store.note_poll("p1", None, unknown=True) == 1
    task = store.task("p1")
    assert (task["poll_count"], task["unknown_polls"], task["service_status"]) == (4, 1, "PENDING")
    assert store.note_poll("missing", None, unknown=True) == 0


def test_give_up_ends_polling_with_a_reason(store):
    for t in ("p1", "p2", "p3"):
        store.record_submission(Submission(t, None, None, None, None))
    store.record_callback(Delivery(body=b"x"), _cb("p3", stage="first"))
    assert [t["task_id"] for t in store.pending_tasks()] == ["p1", "p2", "p3"]
    store.give_up("p1", UNKNOWN, "unknown to the service after 3 polls")
    store.give_up("p2", EXPIRED, "older than the 14-day retention")
    task = store.task("p1")
    assert (task["state"], task["reason"]) == (UNKNOWN, "unknown to the service after 3 polls")
    assert task["completed_at"] is not None
    assert [t["task_id"] for t in store.pending_tasks()] == ["p3"]  # running is still open
    assert store.task("p3")["state"] == RUNNING
    store.record_callback(Delivery(body=b"x"), _cb("p3"))
    store.give_up("p3", UNKNOWN, "too late")  # decided tasks are left alone
    assert store.task("p3")["state"] == SUCCEEDED and store.task("p3")["reason"] is None
    with pytest.raises(ValueError, match="unknown, expired"):
        store.give_up("p1", "failed", "no")
    with pytest.raises(KeyError, match="nope"):
        store.give_up("nope", UNKNOWN, "no")


def test_tasks_since_scopes_by_time_and_keeps_open_tasks(store):
    store.record_submission(Submission("old-open", None, None, None, None, submitted_at=100.0))
    store.record_submission(Submission("old-done", None, None, None, None, submitted_at=100.0))
    store.record_callback(Delivery(body=b"x", received_at=150.0), _cb("old-done"))
    store.record_submission(Submission("new", None, None, None, None, submitted_at=1000.0))
    store.record_callback(Delivery(body=b"x", received_at=2000.0), _cb("seen-new"))
    assert [t["task_id"] for t in store.tasks_since(500.0)] == ["old-open", "new", "seen-new"]
    assert [t["task_id"] for t in store.tasks_since(500.0, include_open=False)] == [
        "new",
        "seen-new",
    ]
    assert store.task("old-open")["state"] == PENDING


def test_lookups_by_key_use_indexes(store):
    plans = {
        "task": "SELECT * FROM tasks WHERE task_id = 'x'",
        "tracks": "SELECT * FROM tracks WHERE task_id = 'x' ORDER BY rowid",
        "track": "SELECT task_id FROM tracks WHERE track_id = 'x'",
        "since": "SELECT * FROM tasks WHERE coalesce(submitted_at, first_seen_at) >= 1",
        # The store's own text for open tasks: the partial index serves it only while the
        # query names the same states as the index does.
        "open": f"SELECT * FROM tasks WHERE state IN {_OPEN}",
        "rejected": "SELECT id FROM deliveries WHERE verdict = 'rejected' ORDER BY id DESC",
    }
    for name, sql in plans.items():
        plan = " ".join(r["detail"] for r in store.query(f"EXPLAIN QUERY PLAN {sql}"))
        scans = ("SCAN tasks", "SCAN tracks", "SCAN deliveries\b(?! USING)")
        assert "USING" in plan and not any(re.search(scan, plan) for scan in scans), (
            name,
            plan,
        )


# --- schema and headers ---------------------------------------------------------------------


def test_a_version_1_store_is_migrated_in_place(tmp_path):
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute(
        "INSERT INTO tasks (task_id, state, callback_type, first_seen_at, updated_at)"
        " VALUES ('old', 'succeeded', 'complete', 1, 1)"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        assert store.schema_version == SCHEMA_VERSION == 3
        task = store.task("old")
        assert (task["stage"], task["reason"], task["unknown_polls"]) == ("complete", None, 0)
        assert store.ratings() == []
        indexes = {
            r["name"] for r in store.query("SELECT name FROM sqlite_schema WHERE type = 'index'")
        }
        assert {"deliveries_rejected", "tasks_open", "tasks_seen", "tracks_track"} <= indexes
        assert not indexes & {"deliveries_task", "deliveries_verdict", "tasks_state"}
    finally:
        store.close()


def test_a_callback_touches_only_the_indexes_it_needs(tmp_path):
    """Accepted callbacks stay out of the partial indexes (each index a callback touches is
    one more page per commit): only open tasks and rejected deliveries are in them."""
    store = Store(tmp_path / "s.sqlite3")
    try:
        store.record_submission(Submission("open", None, None, None, None))
        for n in range(5):
            store.record_callback(Delivery(body=b"x"), _cb(f"done-{n}"))
        store.record_rejection(Delivery(body=b"?"), 400, "bad")
        open_rows = store.query(
            "SELECT task_id FROM tasks INDEXED BY tasks_open WHERE state IN ('pending', 'running')"
        )
        assert [r["task_id"] for r in open_rows] == ["open"]
        rejected = store.query(
            "SELECT id FROM deliveries INDEXED BY deliveries_rejected WHERE verdict = 'rejected'"
        )
        assert len(rejected) == 1
    finally:
        store.close()


def test_credential_like_headers_are_dropped_by_pattern():
    headers = {
        "Authorization": "Bearer sk",
        "Proxy-Authorization": "x",
        "Cookie": "a=b",
        "Api-Key": "k",
        "X-Api-Key": "k",
        "X-Auth-Token": "t",
        "X-Ngrok-Authtoken": "t",
        "X-Client-Secret": "s",
        "X-Password": "p",
        "X-Webhook-Timestamp": "1700000000",
        "X-Webhook-Signature": "sig",
        "Content-Type": "application/json",
        "Keep-Alive": "timeout=5",
        "User-Agent": "suno",
    }
    assert clean_headers(headers) == {
        "X-Webhook-Timestamp": "1700000000",
        "X-Webhook-Signature": "sig",
        "Content-Type": "application/json",
        "Keep-Alive": "timeout=5",
        "User-Agent": "suno",
    }
    store = Store(":memory:")
    try:
        store.record_rejection(Delivery(body=b"x", headers=headers), 400, "bad")
        stored = json.loads(store.query("SELECT headers FROM deliveries")[0]["headers"])
        assert "Api-Key" not in stored and "X-Auth-Token" not in stored
    finally:
        store.close()


# --- events -----------------------------------------------------------------------------------


def _event(task="t1"):
    return CallbackEvent(task, SUCCEEDED, "accepted", "callback", 1, ("a",), _cb(task))


def test_dispatcher_on_is_a_decorator_and_nothing_runs_after_stop():
    d = Dispatcher()
    seen = []

    @d.on
    def handler(event):
        seen.append(event.task_id)

    assert callable(handler) and d.handlers == (handler,)
    assert d.dispatch(_event("one"))
    assert d.join(30) and seen == ["one"]
    assert _event().stage == "complete" and _event().final
    d.stop()
    assert d.dispatch(_event("late")) is False  # dropped silently
    time.sleep(0.05)
    assert seen == ["one"] and d.stopped
    d.stop()  # idempotent
    assert d.on(handler, remove=True) is handler and d.handlers == ()


def test_dispatcher_with_no_handler_wakes_no_thread():
    d = Dispatcher()
    assert d.dispatch(_event("nobody listens")) and d.join(1)
    assert d._thread is None  # a receiver nobody listens to costs no hand-off per callback
    seen = []
    d.on(lambda event: seen.append(event.task_id))
    assert d.dispatch(_event("heard")) and d.join(30) and seen == ["heard"]
    d.stop()


def test_dispatcher_stop_from_a_handler_does_not_deadlock():
    d = Dispatcher()
    done = threading.Event()

    def stopper(event):
        d.stop()
        done.set()

    d.on(stopper)
    d.dispatch(_event())
    assert done.wait(30)
    assert d.dispatch(_event()) is False


def test_the_writer_thread_starts_on_demand_and_ends_when_idle(tmp_path, monkeypatch):
    from suno_nb.store import writer

    monkeypatch.setattr(writer, "IDLE_EXIT_S", 0.2)
    store = Store(tmp_path / "idle.sqlite3")
    try:
        store.task("x")
        assert not store._writer.running  # a store that is only read holds no thread
        store.record_callback(Delivery(body=b"x"), _cb("one"))
        thread = store._writer._thread
        assert thread is not None and thread.name == "suno_nb-store-writer"
        thread.join(30)
        assert not thread.is_alive() and not store._writer.running  # ended when idle
        assert store.record_callback(Delivery(body=b"x"), _cb("two")).verdict == "accepted"
        assert store._writer.running
    finally:
        store.close()
    assert not store._writer.running


def test_a_rejection_with_lone_surrogates_is_still_recorded():
    store = Store(":memory:")
    try:
        row_id = store.record_rejection(
            Delivery(body=b"x", path="/callback/\ud800", headers={"X-Odd": "\udc00"}),
            400,
            "bad \ud800",
            task_id="\udbff",
        )
        row = store.delivery(row_id)
        assert (row["path"], row["reason"], row["task_id"]) == (
            "/callback/\ufffd",
            "bad \ufffd",
            "\ufffd",
        )
        assert json.loads(row["headers"]) == {"X-Odd": "\udc00"}  # kept as a JSON escape
    finally:
        store.close()


def test_reads_may_nest(store):
    store.record_callback(Delivery(body=b"x"), _cb())
    with store.reading() as conn:
        assert store.task("t1")["state"] == SUCCEEDED  # a query inside a reading block
        assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == 2
