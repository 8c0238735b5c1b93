"""The ledger (issue 14): ratings, notes and one pick per task, kept across reopening."""

from __future__ import annotations

import pandas as pd
import pytest

from suno_nb import frame, payloads
from suno_nb.errors import StoreError
from suno_nb.rows import Delivery
from suno_nb.store import Store


def _complete(store: Store, task: str, *ids: str) -> None:
    cb = payloads.parse_callback(
        {
            "code": 200,
            "msg": "ok",
            "data": {"callbackType": "complete", "task_id": task, "data": [{"id": i} for i in ids]},
        }
    )
    store.record_callback(Delivery(body=b"{}"), cb).result(30)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "ledger.sqlite3")
    _complete(s, "t1", "a", "b")
    _complete(s, "t2", "c", "d")
    yield s
    s.close()


def _ledger(store: Store) -> dict:
    df = frame.frame(store).set_index("track_id")
    return {k: (v["rating"], v["note"], v["picked"]) for k, v in df.iterrows()}


def test_rate_and_pick_show_in_the_frame_and_survive_reopening(store, tmp_path):
    store.rate("a", 4, "warm seams")
    store.rate("b", 2)
    store.pick("a")
    store.pick("d", task_id="t2")
    ledger = _ledger(store)
    assert ledger["a"] == (4, "warm seams", True)
    assert ledger["b"][0] == 2 and ledger["b"][1] is None and ledger["b"][2] is False
    assert ledger["c"][0] is pd.NA and ledger["c"][2] is False and ledger["d"][2] is True
    store.close()
    again = Store(tmp_path / "ledger.sqlite3")
    try:
        assert _ledger(again)["a"] == (4, "warm seams", True)
        assert _ledger(again)["d"][2] is True
        df = frame.frame(again)
        assert str(df["rating"].dtype) == "Int64" and df["picked"].dtype == bool
    finally:
        again.close()


def test_one_pick_per_task(store):
    store.pick("a")
    store.pick("b")  # another take of the same task unpicks the previous one
    store.pick("c")  # another task keeps its own pick
    picked = {k for k, v in _ledger(store).items() if v[2]}
    assert picked == {"b", "c"}
    store.pick("b")  # picking again is fine
    store.unpick("t1")
    assert {k for k, v in _ledger(store).items() if v[2]} == {"c"}
    store.unpick("t1")  # nothing picked: nothing to do
    assert store.query("SELECT count(*) AS n FROM ratings WHERE picked")[0]["n"] == 1


def test_rating_again_keeps_the_note_unless_given(store):
    store.rate("a", 3, "too loud")
    store.rate("a", 5)
    assert _ledger(store)["a"][:2] == (5, "too loud")
    store.rate("a", 5, "")
    assert _ledger(store)["a"][:2] == (5, "")
    store.pick("a")
    store.rate("a", 1)  # rating keeps the pick
    assert _ledger(store)["a"] == (1, "", True)


@pytest.mark.parametrize("stars", [0, 6, -1, 2.5, "4", True, None])
def test_stars_outside_one_to_five_name_the_field_and_range(store, stars):
    with pytest.raises(ValueError, match=r"stars must be an integer from 1 to 5"):
        store.rate("a", stars)
    assert store.ratings() == []


def test_unknown_and_ambiguous_tracks(store):
    with pytest.raises(KeyError, match="zzz"):
        store.rate("zzz", 3)
    with pytest.raises(KeyError, match="zzz"):
        store.pick("zzz")
    with pytest.raises(KeyError, match="'a' in task 't2'"):
        store.pick("a", task_id="t2")
    with pytest.raises(KeyError, match="nope"):
        store.unpick("nope")
    _complete(store, "t3", "a")  # the same track id in another task
    with pytest.raises(ValueError, match=r"several tasks.*task_id"):
        store.rate("a", 3)
    with pytest.raises(ValueError, match="task_id"):
        store.pick("a")
    store.rate("a", 3, task_id="t3")
    store.pick("a", task_id="t3")
    rows = {(r["task_id"], r["track_id"]): r for r in store.ratings()}
    assert rows[("t3", "a")]["stars"] == 3 and rows[("t3", "a")]["picked"] == 1
    assert ("t1", "a") not in rows
    with pytest.raises(ValueError, match="note must be"):
        store.rate("b", 3, "x" * 5000)


def test_ledger_after_close_is_a_store_error(tmp_path):
    s = Store(tmp_path / "c.sqlite3")
    _complete(s, "t", "a")
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.rate("a", 3)
    with pytest.raises(StoreError, match="closed"):
        s.pick("a")
