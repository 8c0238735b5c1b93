"""Callbacks applied in batches: the same result as one by one, in few statements.

The writer hands every callback queued together to one call of ``apply_callbacks``.  These
tests pin that a batch (of any split) leaves exactly the rows and outcomes that applying
the same deliveries one per transaction leaves, that a batch takes one read and one write
statement whatever its size, and that one bad item fails alone.
"""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suno_nb import payloads
from suno_nb.errors import PayloadError, StoreError
from suno_nb.store import Delivery, Store, checkpoint
from suno_nb.store.callbacks import apply_callbacks
from suno_nb.store.checkpoint import BACKSTOP_PAGES

TABLES = {
    "deliveries": "SELECT * FROM deliveries ORDER BY id",
    "tasks": "SELECT * FROM tasks ORDER BY task_id",
    "tracks": "SELECT * FROM tracks ORDER BY task_id, track_id",
}

_text = st.sampled_from([None, "", "one", "two"])
_track = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"])},
    optional={
        "audio_url": _text,
        "stream_audio_url": _text,
        "title": _text,
        "tags": _text,
        "duration": st.sampled_from([None, 1.5, 180, 179.96, 0.1 + 0.2, 1e-7 / 3]),
        "lyric": _text,  # not a known field: kept in ``extra``
    },
)
_callback = st.fixed_dictionaries(
    {
        "task": st.sampled_from(["t1", "t2", "t3"]),
        "stage": st.sampled_from(["text", "first", "complete", "error", "failed", "later"]),
        "code": st.sampled_from([200, 200, 400, 531]),
        "tracks": st.lists(_track, max_size=3),
        "source": st.sampled_from(["callback", "poll", "replay"]),
    }
)


def _item(spec: dict, n: int) -> tuple[Delivery, payloads.Callback]:
    body = {
        "code": spec["code"],
        "msg": "m",
        "data": {"callbackType": spec["stage"], "task_id": spec["task"], "data": spec["tracks"]},
    }
    delivery = Delivery(
        body=b"%d" % n, source=spec["source"], headers={"X-N": str(n)}, received_at=1000.0 + n
    )
    return delivery, payloads.parse_callback(body)


def _items(specs: list[dict]) -> list[tuple[Delivery, payloads.Callback]]:
    items = []
    for n, spec in enumerate(specs):
        try:
            items.append(_item(spec, n))
        except PayloadError:
            continue  # a body the receiver would refuse never reaches the store
    return items


def _rows(store: Store) -> dict[str, list[tuple]]:
    with store.reading() as conn:
        return {name: [tuple(r) for r in conn.execute(sql)] for name, sql in TABLES.items()}


def _apply_in(parts: list[list], store: Store) -> list:
    outcomes = []
    for part in parts:
        outcomes += store.transact(lambda conn, part=part: apply_callbacks(conn, part))
    return outcomes


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(specs=st.lists(_callback, min_size=1, max_size=12), cuts=st.sets(st.integers(1, 11)))
def test_a_batch_leaves_what_one_by_one_leaves(specs, cuts):
    items = _items(specs)
    one_by_one, whole, split = Store(":memory:"), Store(":memory:"), Store(":memory:")
    try:
        expected = _apply_in([[item] for item in items], one_by_one)
        assert _apply_in([items], whole) == expected
        bounds = [0, *sorted(c for c in cuts if c < len(items)), len(items)]
        parts = [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]
        assert _apply_in(parts, split) == expected
        rows = _rows(one_by_one)
        assert _rows(whole) == rows
        assert _rows(split) == rows
    finally:
        for store in (one_by_one, whole, split):
            store.close()


def test_a_batch_is_one_read_and_one_write(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    specs = [
        {"task": f"t{n % 5}", "stage": "complete", "code": 200, "tracks": [{"id": f"k{n}"}]}
        for n in range(40)
    ]
    items = [_item({**spec, "source": "callback"}, n) for n, spec in enumerate(specs)]
    store.transact(lambda conn: apply_callbacks(conn, items[:5]))  # tasks that exist
    statements: list[str] = []

    class Counting:  # each execute() lets go of the GIL: count them
        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            statements.append(sql.split()[0])
            return self.conn.execute(sql, *args)

        def getlimit(self, category: int) -> int:
            return self.conn.getlimit(category)

    outcomes = store.transact(lambda conn: apply_callbacks(Counting(conn), items[5:]))
    assert len(outcomes) == 35
    assert statements == ["SELECT", "INSERT"]
    assert store.counts()["deliveries"] == 40
    store.close()


def test_a_batch_naming_more_ids_than_one_statement_holds(tmp_path):
    """SQLite before 3.32 allows 999 variables per statement: reads and writes split."""
    store = Store(tmp_path / "s.sqlite3")
    store._wconn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    n = 1200  # more track ids than one read holds, more rows than one write holds
    many = [{"id": f"k{i}", "audio_url": "u"} for i in range(n)]

    def item(stage: str, k: int) -> tuple:
        return _item({"task": "big", "stage": stage, "code": 200, "tracks": many, "source": "x"}, k)

    first, again = item("first", 0), item("complete", 1)
    outcomes = store.transact(lambda conn: apply_callbacks(conn, [first, again]))
    assert len(outcomes[0].new_track_ids) == n
    assert outcomes[1].new_track_ids == () and outcomes[1].verdict == "accepted"
    assert store.record_callback(*item("complete", 2)).verdict == "duplicate"
    assert store.counts()["tracks"] == n
    store.close()


def _queued_together(store: Store, tasks: list[str]) -> list:
    """Submit a callback per task while the writer is held, so they form one batch."""
    started, release = threading.Event(), threading.Event()
    held = store.submit(lambda conn: (started.set(), release.wait(30)))
    assert started.wait(30)
    futures = [store.submit_callback(*_item(_spec(task), n)) for n, task in enumerate(tasks)]
    release.set()
    held.result(30)
    return futures


def test_callbacks_queued_together_are_applied_in_one_call(tmp_path, monkeypatch):
    import suno_nb.store.callbacks as callbacks

    calls: list[int] = []
    real = callbacks.apply_callbacks

    def counting(conn, items):
        calls.append(len(items))
        return real(conn, items)

    monkeypatch.setattr(callbacks, "apply_callbacks", counting)
    store = Store(tmp_path / "s.sqlite3")
    futures = _queued_together(store, [f"q{n}" for n in range(20)])
    assert [f.result(30).verdict for f in futures] == ["accepted"] * 20
    assert calls == [20]
    store.close()


def test_an_item_that_fails_fails_alone(tmp_path, monkeypatch):
    import suno_nb.store.callbacks as callbacks

    real = callbacks.apply_callbacks

    def picky(conn, items):
        if any(cb.task_id == "bad" for _, cb in items):
            raise sqlite3.IntegrityError("this one cannot be stored")
        return real(conn, items)

    monkeypatch.setattr(callbacks, "apply_callbacks", picky)
    store = Store(tmp_path / "s.sqlite3")
    names = ["a", "b", "bad", "c", "d"]
    futures = _queued_together(store, names)
    for name, future in zip(names, futures, strict=True):
        if name == "bad":
            with pytest.raises(StoreError, match="cannot be stored"):
                future.result(30)
        else:
            assert future.result(30).verdict == "accepted"
    assert store.task("bad") is None
    assert {t["task_id"] for t in store.query("SELECT task_id FROM tasks")} == set("abcd")
    store.close()


def _spec(task: str) -> dict:
    return {"task": task, "stage": "complete", "code": 200, "tracks": [{"id": "x"}], "source": "c"}


# --- checkpoints ---------------------------------------------------------------------------


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_checkpoints_run_on_their_own_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "INTERVAL_S", 0.05)
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    # The writer's own (in-COMMIT) checkpoint is only a backstop far away.
    assert store._wconn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == BACKSTOP_PAGES
    for n in range(30):
        store.record_callback(*_item(_spec(f"c{n}"), n))
    assert _wait(lambda: store._checkpointer.checkpoints >= 1)
    assert "suno_nb-checkpoint" in {t.name for t in threading.enumerate()}
    with sqlite3.connect(path) as other:  # the log is copied back: nothing left to copy
        assert _wait(lambda: _left_in_log(other) == 0)
    store.close()
    assert "suno_nb-checkpoint" not in {t.name for t in threading.enumerate()}


def _left_in_log(conn: sqlite3.Connection) -> int:
    _busy, log_frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return log_frames - copied


def test_a_deleted_store_file_is_never_recreated_by_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "INTERVAL_S", 0.05)
    path = tmp_path / "s.sqlite3"
    store = Store(path)
    store.record_callback(*_item(_spec("before"), 0))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        name.unlink(missing_ok=True)
    with pytest.raises(StoreError, match="deleted or replaced"):
        store.record_callback(*_item(_spec("after"), 1))
    store._checkpointer.poke()
    time.sleep(0.3)  # several checkpoint intervals
    assert not path.exists()
    store.close()


def test_a_transaction_left_open_is_rolled_back_never_committed(tmp_path):
    """BEGIN runs through executescript(), which would COMMIT an open transaction first."""
    store = Store(tmp_path / "s.sqlite3")
    store._wconn.execute("BEGIN")
    store._wconn.execute("INSERT INTO meta (key, value) VALUES ('leftover', 'x')")
    store.record_callback(*_item(_spec("next"), 0))
    assert store.get_meta("leftover") is None
    assert store.task("next") is not None
    store.close()
