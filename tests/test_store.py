"""The store: one writer, durability checks, rejected-row caps, lifecycle, poller support."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from concurrent.futures import Future

import pytest

from suno_nb import payloads
from suno_nb.errors import StoreError
from suno_nb.events import Change, Feed
from suno_nb.rows import Delivery, Submission
from suno_nb.store import Store
from suno_nb.store.schema import (
    EXPIRED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    UNKNOWN,
    clean_headers,
)
from suno_nb.store.writes import MAX_REJECTED_HEADER_BYTES


def cb(task="t1", ids=("a", "b"), code=200, stage=None):
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


def put(store: Store, task="t1", **kw):
    """Store a callback for ``task`` and wait for its commit."""
    return store.record_callback(Delivery(body=b"x"), cb(task, **kw)).result(30)


@pytest.fixture(params=["memory", "file"])
def store(request, tmp_path):
    s = Store(":memory:" if request.param == "memory" else tmp_path / "s.sqlite3")
    yield s
    s.close()


def hold_writer(store: Store) -> tuple[threading.Event, Future]:
    """Occupy the writer with a job that waits; what is submitted meanwhile queues up."""
    started, release = threading.Event(), threading.Event()

    def blocker(conn):
        started.set()
        assert release.wait(30)

    fut = store.submit(blocker)
    assert started.wait(30)
    return release, fut


# --- the one writer -----------------------------------------------------------------------


def test_record_callback_returns_a_future_resolved_after_commit(store):
    release, blocker = hold_writer(store)
    fut = store.record_callback(Delivery(body=b"x"), cb())
    assert not fut.done()  # queued behind the blocker: nothing committed yet
    release.set()
    event = fut.result(30)
    assert (event.verdict, event.state, event.new_track_ids) == ("accepted", SUCCEEDED, ("a", "b"))
    assert blocker.result(30) is None
    assert store.task("t1")["state"] == SUCCEEDED
    assert put(store).verdict == "duplicate"  # the same result again adds nothing


def test_what_queues_meanwhile_shares_one_commit_and_a_bad_job_fails_alone(store):
    release, _ = hold_writer(store)
    good = [store.record_callback(Delivery(body=b"x"), cb(f"g{i}")) for i in range(5)]

    def bad(conn):
        conn.execute("INSERT INTO meta(key, value) VALUES ('bad', 'half-done')")
        raise KeyError("a caller's own mistake")

    failing = store.submit(bad)
    later = store.record_callback(Delivery(body=b"x"), cb("after-bad"))
    release.set()
    assert all(f.result(30).verdict == "accepted" for f in [*good, later])
    with pytest.raises(KeyError, match="own mistake"):  # not a StoreError: the caller's
        failing.result(30)
    assert store.get_meta("bad") is None  # its savepoint was undone, nothing else
    assert store.counts()["tasks"] == 6


def test_sqlite_errors_come_back_as_store_errors(store):
    with pytest.raises(StoreError, match="store write failed"):
        store.write(lambda c: c.execute("INSERT INTO nowhere VALUES (1)"))
    assert put(store).verdict == "accepted"  # the writer carries on


def test_a_failed_commit_fails_every_job_of_the_group(tmp_path, monkeypatch):
    path = tmp_path / "f.sqlite3"
    store = Store(path)
    try:
        release, _ = hold_writer(store)
        futs = [store.record_callback(Delivery(body=b"x"), cb(f"c{i}")) for i in range(3)]
        os.remove(path)  # the guard refuses the COMMIT of the whole group
        release.set()
        for fut in futs:
            with pytest.raises(StoreError, match="deleted or replaced"):
                fut.result(30)
    finally:
        store.close()


def test_a_transaction_cannot_wait_for_another(store):
    with pytest.raises(StoreError, match="cannot wait"):
        store.write(lambda c: store.write(lambda c2: None))


def test_concurrent_writers_and_readers(store):
    errors: list[BaseException] = []

    def write(n):
        try:
            for i in range(40):
                put(store, f"w{n}-{i}", ids=(f"{n}-{i}",))
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


def test_every_commit_is_published_in_order_before_its_future_resolves(tmp_path):
    feed = Feed()
    seen: list[Change] = []
    feed.subscribe(seen.append)
    store = Store(tmp_path / "feed.sqlite3", on_commit=feed.publish)
    try:
        store.record_submission(Submission("t1"))
        put(store, "t1", stage="first", ids=("a",))
        put(store, "t1")
        store.rate("a", 4, task_id="t1")
        store.note_poll("t1", "SUCCESS")
        store.record_rejection(Delivery(body=b"?"), 400, "bad").result(30)  # changes no result
        assert feed.join(30)
        assert [(c.kind, c.task_id) for c in seen] == [
            ("submission", "t1"),
            ("callback", "t1"),
            ("callback", "t1"),
            ("ledger", "t1"),
            ("poll", "t1"),
        ]
        assert [c.state for c in seen if c.kind == "callback"] == [RUNNING, SUCCEEDED]
    finally:
        store.close()
        feed.close()


# --- opening: what is ours, what is not -------------------------------------------------------


def test_reopening_shows_everything_stored_before(tmp_path):
    path = tmp_path / "re.sqlite3"
    with Store(path) as store:
        put(store)
    with Store(path) as again:
        assert again.counts()["tracks"] == 2 and again.task("t1")["state"] == SUCCEEDED


def _sha(path) -> str:
    import hashlib

    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _files(folder) -> list[str]:
    return sorted(os.listdir(folder))


def test_a_foreign_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path):
    import sqlite3

    path = tmp_path / "theirs.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.commit()
    conn.close()
    before, listing = _sha(path), _files(tmp_path)
    with pytest.raises(StoreError, match=r"did not create.*nothing was written"):
        Store(path)
    assert _sha(path) == before and _files(tmp_path) == listing  # no -wal, no -shm


def test_an_older_suno_nb_store_is_refused_with_what_to_do(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY); CREATE TABLE tasks (task_id TEXT);"
        "PRAGMA user_version=3;"
    )
    conn.close()
    before, listing = _sha(path), _files(tmp_path)
    with pytest.raises(StoreError, match=r"older suno_nb.*move the file aside"):
        Store(path)
    assert _sha(path) == before and _files(tmp_path) == listing


@pytest.mark.parametrize("content", [b"hello, not a database", b"SQLite format 3\x00short"])
def test_a_file_that_is_not_a_database_is_refused(tmp_path, content):
    path = tmp_path / "text.sqlite3"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="not a SQLite database"):
        Store(path)
    assert path.read_bytes() == content


# A read-only store file (as root too, through setpriv): tests/test_holes.py item 9.


def test_a_store_in_a_read_only_folder_is_refused_when_it_opens(tmp_path):
    """Works as root too: the folder is a read-only bind of sorts (a file where a folder
    should be), so SQLite cannot create its journal beside the store."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(StoreError, match=r"cannot use the store|directory"):
        Store(blocker / "s.sqlite3")


# --- durability -------------------------------------------------------------------------------


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
        put(store, "before")
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
            put(store, "after")
        with pytest.raises(StoreError, match="deleted or replaced"):
            store.record_rejection(Delivery(body=b"x"), 400, "bad").result(30)
        assert not store.healthy
        assert "deleted or replaced" in (store.problem or "") and "UNHEALTHY" in repr(store)
    finally:
        store.close()


def test_healthy_notices_without_a_write(tmp_path):
    store = Store(tmp_path / "h.sqlite3")
    try:
        _remove_files(tmp_path / "h.sqlite3")
        assert not store.healthy and "no longer exists" in (store.problem or "")
    finally:
        store.close()
    assert store.problem == "the store is closed"


# --- rejected rows are capped -----------------------------------------------------------------


def test_rejected_rows_are_capped_keeping_the_newest(tmp_path):
    path = tmp_path / "cap.sqlite3"
    store = Store(path, max_rejected=100)
    try:
        put(store, "kept")
        futs = [store.record_rejection(Delivery(body=b"?"), 404, f"scan {i}") for i in range(350)]
        ids = [f.result(30) for f in futs]
        rows = store.query("SELECT id, reason FROM deliveries WHERE verdict = 'rejected'")
        assert 0 < len(rows) <= 100
        assert rows[-1]["id"] == ids[-1] and rows[-1]["reason"] == "scan 349"
        assert [r["id"] for r in rows] == ids[-len(rows) :]  # the newest, in order
        assert store.query("SELECT count(*) AS n FROM deliveries WHERE verdict = 'accepted'") == [
            {"n": 1}
        ]
    finally:
        store.close()
    again = Store(path, max_rejected=100)  # the count survives reopening
    try:
        for i in range(150):
            again.record_rejection(Delivery(body=b"?"), 404, f"more {i}").result(30)
        assert again.counts()["rejected"] <= 100
    finally:
        again.close()


def test_rejected_rows_keep_a_few_kib_of_headers_and_are_capped_in_bytes(tmp_path):
    store = Store(tmp_path / "bytes.sqlite3", max_rejected_bytes=200_000)
    try:
        headers = {f"X-Junk-{i}": "v" * 1000 for i in range(120)}  # ~120 KB of headers
        for _ in range(200):
            store.record_rejection(Delivery(body=b"", headers=headers), 431, "big").result(30)
        sizes = store.query(
            "SELECT length(headers) AS n FROM deliveries WHERE verdict = 'rejected'"
        )
        assert all(r["n"] <= MAX_REJECTED_HEADER_BYTES + 200 for r in sizes)
        kept = json.loads(store.query("SELECT headers FROM deliveries LIMIT 1")[0]["headers"])
        assert "bytes of headers not kept" in kept["…"]
        total = store.query(
            "SELECT sum(length(headers)) AS n FROM deliveries WHERE verdict = 'rejected'"
        )[0]["n"]
        assert total <= 200_000
    finally:
        store.close()


# --- lifecycle --------------------------------------------------------------------------------


def test_close_finishes_queued_writes_then_refuses_everything(store):
    futs = [store.record_callback(Delivery(body=b"x"), cb(f"q{i}")) for i in range(100)]
    store.close()
    assert all(f.result(30).verdict == "accepted" for f in futs)
    assert store.closed
    with pytest.raises(StoreError, match="closed"):
        store.record_callback(Delivery(body=b"x"), cb("late")).result(5)
    for call in (
        lambda: store.record_rejection(Delivery(body=b"x"), 400, "late").result(5),
        lambda: store.task("q1"),
        lambda: store.counts(),
        lambda: store.rate("a", 3),
        lambda: store.write(lambda c: None),
    ):
        with pytest.raises(StoreError, match="closed"):
            call()
    store.close()  # idempotent


def test_the_writer_thread_lives_as_long_as_the_store(tmp_path):
    before = {t.name for t in threading.enumerate()}
    store = Store(tmp_path / "t.sqlite3")
    assert "suno_nb-store-writer" in {t.name for t in threading.enumerate()} - before
    store.close()
    assert {t.name for t in threading.enumerate()} - before == set()


def test_close_waits_for_an_in_flight_reader(tmp_path):
    store = Store(tmp_path / "r.sqlite3")
    put(store)
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
    leave.set()  # close cannot have closed the connection under the reader
    t.join(30)
    assert closed.wait(30) and seen == [2]


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_racing_close_only_ever_raises_store_error(tmp_path, kind):
    for run in range(5):  # bounded
        store = Store(":memory:" if kind == "memory" else tmp_path / f"race{run}.sqlite3")
        problems: list[BaseException] = []
        started = threading.Barrier(5)

        def hammer(n, store=store, problems=problems, started=started):
            started.wait(30)
            for i in range(2000):
                try:
                    if i % 2:
                        store.record_callback(Delivery(body=b"x"), cb(f"{n}-{i}", ids=()))
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
        started.wait(30)
        for _ in range(run * 20):  # close at a different point each run
            store.counts()
        store.close()
        for t in threads:
            t.join(30)
        assert problems == [], problems


# --- poller support ---------------------------------------------------------------------------


def test_note_poll_counts_consecutive_unknown_answers(store):
    store.record_submission(Submission("p1"))
    assert store.note_poll("p1", None, unknown=True) == 1
    assert store.note_poll("p1", None, unknown=True) == 2
    assert store.note_poll("p1", "PENDING") == 0  # a known answer resets the count
    assert store.note_poll("p1", None, unknown=True) == 1
    task = store.task("p1")
    assert (task["poll_count"], task["unknown_polls"], task["service_status"]) == (4, 1, "PENDING")
    assert store.note_poll("missing", None, unknown=True) == 0


def test_give_up_ends_polling_with_a_reason(store):
    for t in ("p1", "p2", "p3"):
        store.record_submission(Submission(t))
    put(store, "p3", stage="first")
    assert [t["task_id"] for t in store.pending_tasks()] == ["p1", "p2", "p3"]
    store.give_up("p1", UNKNOWN, "unknown to the service after 3 polls")
    store.give_up("p2", EXPIRED, "older than the 14-day retention")
    task = store.task("p1")
    assert (task["state"], task["reason"]) == (UNKNOWN, "unknown to the service after 3 polls")
    assert task["completed_at"] is not None
    assert [t["task_id"] for t in store.pending_tasks()] == ["p3"]  # running is still open
    assert store.task("p3")["state"] == RUNNING
    put(store, "p3")
    store.give_up("p3", UNKNOWN, "too late")  # decided tasks are left alone
    assert store.task("p3")["state"] == SUCCEEDED and store.task("p3")["reason"] is None
    with pytest.raises(ValueError, match="unknown, expired"):
        store.give_up("p1", "failed", "no")
    with pytest.raises(KeyError, match="nope"):
        store.give_up("nope", UNKNOWN, "no")


def test_tasks_since_scopes_by_time_and_keeps_open_tasks(store):
    store.record_submission(Submission("old-open", submitted_at=100.0))
    store.record_submission(Submission("old-done", submitted_at=100.0))
    store.record_callback(Delivery(body=b"x", received_at=150.0), cb("old-done")).result(30)
    store.record_submission(Submission("new", submitted_at=1000.0))
    store.record_callback(Delivery(body=b"x", received_at=2000.0), cb("seen-new")).result(30)
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
        "open": "SELECT * FROM tasks WHERE state IN ('pending', 'running')",
        "rejected": "SELECT id FROM deliveries WHERE verdict = 'rejected' ORDER BY id DESC",
    }
    for name, sql in plans.items():
        plan = " ".join(r["detail"] for r in store.query(f"EXPLAIN QUERY PLAN {sql}"))
        scans = ("SCAN tasks", "SCAN tracks", "SCAN deliveries\b(?! USING)")
        assert "USING" in plan and not any(re.search(scan, plan) for scan in scans), (name, plan)


# --- headers and odd text ---------------------------------------------------------------------


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


def test_a_rejection_with_lone_surrogates_is_still_recorded():
    store = Store(":memory:")
    try:
        row_id = store.record_rejection(
            Delivery(body=b"x", path="/callback/\ud800", headers={"X-Odd": "\udc00"}),
            400,
            "bad \ud800",
            task_id="\udbff",
        ).result(30)
        row = store.delivery(row_id)
        assert (row["path"], row["reason"], row["task_id"]) == (
            "/callback/\ufffd",
            "bad \ufffd",
            "\ufffd",
        )
        assert json.loads(row["headers"]) == {"X-Odd": "\ufffd"}
    finally:
        store.close()


def test_reads_may_nest(store):
    put(store)
    with store.reading() as conn:
        assert store.task("t1")["state"] == SUCCEEDED  # a query inside a reading block
        assert conn.execute("SELECT count(*) FROM tracks").fetchone()[0] == 2


def test_a_store_of_an_earlier_schema_of_ours_is_refused_too(tmp_path):
    import sqlite3

    path = tmp_path / "ours.sqlite3"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    with pytest.raises(StoreError, match=r"older suno_nb \(store schema 4\).*move the file aside"):
        Store(path)
