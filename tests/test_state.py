"""The two decisions a callback makes, as properties: the task's state and its tracks.

Also: callbacks that share one COMMIT (queued while the writer was busy) leave exactly the
rows that the same callbacks leave one transaction at a time.
"""

from __future__ import annotations

import dataclasses
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suno_nb import payloads
from suno_nb.errors import PayloadError
from suno_nb.rows import TRACK_VALUES, Delivery, Track
from suno_nb.store import Store
from suno_nb.store.schema import EXPIRED, FAILED, PENDING, RUNNING, SUCCEEDED, UNKNOWN
from suno_nb.store.state import decide, merge_tracks

STATES = [None, PENDING, RUNNING, SUCCEEDED, FAILED, UNKNOWN, EXPIRED]
STAGES = ["text", "first", "complete", "error", "failed", "later"]


def _callback(stage: str, code: int = 200, tracks: list[dict] | None = None) -> payloads.Callback:
    return payloads.parse_callback(
        {
            "code": code,
            "msg": "m",
            "data": {"callbackType": stage, "task_id": "t", "data": tracks or []},
        }
    )


callbacks = st.builds(_callback, st.sampled_from(STAGES), st.sampled_from([200, 400, 501, 531]))


@given(before=st.sampled_from(STATES), before_stage=st.sampled_from([None, *STAGES]), cb=callbacks)
def test_decide_follows_the_rules(before, before_stage, cb):
    after, stage = decide(before, before_stage, cb)
    if cb.succeeded:
        assert after == SUCCEEDED  # a success decides, and upgrades a failure
    elif before in (SUCCEEDED, FAILED):
        assert after == before  # the first final result decides; nothing downgrades
    else:
        assert after == (FAILED if cb.final else RUNNING)
    deciding = before not in (SUCCEEDED, FAILED) or after != before
    assert stage == (cb.stage if deciding else before_stage)


@given(st.lists(callbacks, min_size=1, max_size=8))
def test_the_end_state_does_not_depend_on_the_order(cbs):
    def run(seq):
        state, stage = None, None
        for cb in seq:
            state, stage = decide(state, stage, cb)
        return state

    expected = (
        SUCCEEDED
        if any(c.succeeded for c in cbs)
        else FAILED
        if any(c.final for c in cbs)
        else RUNNING
    )
    assert run(cbs) == run(list(reversed(cbs))) == expected


_text = st.sampled_from([None, "", "one", "two"])
tracks = st.builds(
    Track,
    id=st.sampled_from(["a", "b", "c"]),
    audio_url=_text,
    title=_text,
    duration=st.sampled_from([None, 1.5, 180.0]),
    extra=st.dictionaries(st.sampled_from(["lyric", "x"]), _text, max_size=2),
)


def _filled(t: Track) -> dict:
    values = {n: getattr(t, n) for n in TRACK_VALUES if n != "extra"}
    values.update({f"extra.{k}": v for k, v in t.extra.items()})
    return {k: v for k, v in values.items() if v not in (None, "")}


@given(
    stored=st.lists(tracks, max_size=3),
    incoming=st.lists(tracks, max_size=4),
    overwrite=st.booleans(),
)
def test_merging_tracks_keeps_every_value_and_is_idempotent(stored, incoming, overwrite):
    known = {t.id: t for t in stored}
    fresh, changed = merge_tracks(known, incoming, overwrite=overwrite)
    first_of = {}
    for t in incoming:
        first_of.setdefault(t.id, t)
    assert fresh == [i for i in first_of if i not in known]
    after = {**known, **changed}
    for track_id, old in known.items():
        new = after[track_id]
        for key, value in _filled(old).items():  # nothing stored is ever lost
            assert _filled(new).get(key) not in (None, ""), key
            if not overwrite:
                assert _filled(new)[key] == value  # only a success replaces values
    for track_id, t in first_of.items():
        for key, value in _filled(t).items():  # what arrived is there (or was already)
            assert key in _filled(after[track_id])
            if overwrite or track_id not in known:
                assert _filled(after[track_id])[key] == value
    again_fresh, again_changed = merge_tracks(after, incoming, overwrite=overwrite)
    assert again_fresh == [] and again_changed == {}  # the same body twice: a duplicate


# --- grouped commits leave what one by one leaves --------------------------------------------

_wire_track = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"])},
    optional={"audio_url": _text, "title": _text, "lyric": _text},
)
_spec = st.fixed_dictionaries(
    {
        "task": st.sampled_from(["t1", "t2"]),
        "stage": st.sampled_from(STAGES),
        "code": st.sampled_from([200, 200, 531]),
        "tracks": st.lists(_wire_track, max_size=3),
        "source": st.sampled_from(["callback", "poll", "replay"]),
    }
)


def _items(specs):
    items = []
    for n, spec in enumerate(specs):
        body = {
            "code": spec["code"],
            "msg": "m",
            "data": {
                "callbackType": spec["stage"],
                "task_id": spec["task"],
                "data": spec["tracks"],
            },
        }
        try:
            cb = payloads.parse_callback(body)
        except PayloadError:
            continue
        delivery = Delivery(body=b"%d" % n, source=spec["source"], received_at=1000.0 + n)
        items.append((delivery, cb))
    return items


def _rows(store: Store) -> dict:
    with store.reading() as conn:
        return {
            table: [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
            for table in ("deliveries", "tasks", "tracks")
        }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(_spec, min_size=1, max_size=10))
def test_callbacks_sharing_a_commit_leave_what_one_by_one_leaves(specs):
    items = _items(specs)
    with Store(":memory:") as alone, Store(":memory:") as grouped:
        one_by_one = [alone.record_callback(d, cb).result(30) for d, cb in items]
        started, release = threading.Event(), threading.Event()
        grouped.submit(lambda c: (started.set(), release.wait(30)))
        assert started.wait(30)
        futures = [grouped.record_callback(d, cb) for d, cb in items]
        release.set()
        together = [f.result(30) for f in futures]
        strip = [dataclasses.replace(e, delivery_id=0) for e in one_by_one]
        assert [dataclasses.replace(e, delivery_id=0) for e in together] == strip
        assert _rows(alone) == _rows(grouped)
