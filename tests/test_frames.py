"""The DataFrames come from one row schema: columns and dtypes derive from ``rows.py``, and a
task's result is exactly its rows of ``rx.frame()``."""

from __future__ import annotations

import pandas as pd

from suno_nb import frame, rows, views
from suno_nb.rows import Submission
from suno_nb.store import Store

from .conftest import post, seed_bytes

DTYPES = {
    "text": "object",
    "real": "float64",
    "int": "Int64",
    "count": "int64",
    "bool": "bool",
    "time": "datetime64[ns, UTC]",
    "stamp": "datetime64[ns]",
    "json": "object",
    "blob": "object",
}


def test_result_tracks_equal_the_frame_filtered_to_the_task_after_rate_and_pick(rx):
    for name in ("seed_success.json", "seed_success_zh.json", "seed_failure_error.json"):
        assert post(rx.url, seed_bytes(name)).status_code == 200
    all_rows = rx.frame()
    task = all_rows.iloc[0]["task_id"]
    first, *_ = all_rows[all_rows.task_id == task]["track_id"]
    rx.rate(first, 4, "warm seams", task_id=task)
    rx.pick(first, task_id=task)
    result = rx.result(task)
    assert result is not None and result.ok
    expected = rx.frame().query("task_id == @task").reset_index(drop=True)
    pd.testing.assert_frame_equal(result.tracks.reset_index(drop=True), expected)
    assert list(result.tracks.dtypes) == list(rx.frame().dtypes)
    row = result.tracks.iloc[0]
    assert (row["rating"], row["note"], row["picked"]) == (4, "warm seams", True)


def test_every_view_has_the_dtypes_its_column_kinds_say(tmp_path):
    with Store(tmp_path / "v.sqlite3") as store:
        store.record_submission(Submission("pending-one", infill_start_s=1.0, infill_end_s=12.0))
        for view, read in (
            (views.FRAME, frame.frame),
            (views.TASKS_VIEW, frame.tasks),
            (views.DELIVERIES_VIEW, frame.deliveries),
        ):
            df = read(store)
            assert list(df.columns) == list(view.names)
            for column in view.columns:
                assert str(df[column.name].dtype) == DTYPES[column.kind], column


def test_the_tracks_table_and_the_parse_target_are_one_definition():
    track_fields = {f for f in rows.TRACK_VALUES}
    table = set(rows.TRACKS.names) - {"task_id", "track_id", "received_at", "source", "delivery_id"}
    assert table == track_fields
    assert {snake for _, snake, _ in rows.TRACK_WIRE} >= {"audio_url", "createTime", "duration"}
