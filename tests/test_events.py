"""The change feed: order, batches, timers, debouncing, waiting, isolation, closing."""

from __future__ import annotations

import threading

from suno_nb import payloads
from suno_nb.events import CallbackEvent, Change, Debounced, Feed


def _event(task="t1") -> CallbackEvent:
    cb = payloads.parse_callback(
        {"code": 200, "msg": "m", "data": {"callbackType": "complete", "task_id": task}}
    )
    return CallbackEvent(
        task_id=task,
        state="succeeded",
        verdict="accepted",
        source="callback",
        delivery_id=1,
        new_track_ids=(),
        callback=cb,
    )


def test_changes_reach_subscribers_in_order_and_batches_see_bursts():
    feed = Feed()
    one_by_one: list[Change] = []
    batches: list[list[Change]] = []
    gate, entered = threading.Event(), threading.Event()

    def slow(change):
        if change.task_id == "first":
            entered.set()
            assert gate.wait(30)  # keep the feed busy while more changes queue up
        one_by_one.append(change)

    feed.subscribe(slow)
    feed.subscribe(batches.append, batch=True)
    feed.publish(Change("submission", "first"))
    assert entered.wait(30)
    for n in range(5):
        feed.publish(Change("poll", f"t{n}"))
    gate.set()
    assert feed.join(30)
    assert [c.task_id for c in one_by_one] == ["first", "t0", "t1", "t2", "t3", "t4"]
    assert [len(b) for b in batches] == [1, 5]  # the burst arrived as one batch
    assert feed.seq == 6
    feed.close()


def test_a_raising_subscriber_is_logged_and_the_others_still_run(caplog):
    feed = Feed()
    seen = []

    def broken(change):
        raise RuntimeError("boom")

    feed.subscribe(broken)
    feed.subscribe(seen.append)
    feed.publish(_event())
    assert feed.join(30)
    assert [c.task_id for c in seen] == ["t1"]
    assert "boom" in caplog.text
    assert _event().stage == "complete" and _event().final and _event().succeeded
    feed.close()


def test_timers_run_on_the_feed_thread_in_time_order_and_can_be_cancelled():
    feed = Feed()
    ran: list[tuple[str, bool]] = []
    done = threading.Event()
    feed.call_later(0.2, lambda: (ran.append(("late", feed.on_thread())), done.set()))
    cancelled = feed.call_later(0.1, lambda: ran.append(("cancelled", True)))
    feed.call_later(0.0, lambda: ran.append(("now", feed.on_thread())))
    cancelled.cancel()
    assert done.wait(30)
    assert ran == [("now", True), ("late", True)]
    assert not feed.on_thread()
    feed.close()


def test_debounced_runs_once_per_burst():
    feed = Feed()
    calls = []
    ran = threading.Event()
    debounced = Debounced(feed, lambda: (calls.append(1), ran.set()), delay=0.05)
    for _ in range(50):
        debounced.trigger()
    assert ran.wait(30) and feed.join(30)
    assert calls == [1]
    ran.clear()
    debounced.trigger()
    assert ran.wait(30) and calls == [1, 1]
    debounced.trigger()
    debounced.cancel()
    feed.close()
    assert calls == [1, 1]


def test_wait_returns_on_the_next_change_or_when_closed():
    feed = Feed()
    seen = feed.seq
    threading.Thread(target=feed.publish, args=(Change("meta"),)).start()
    assert feed.wait(seen, 30) == seen + 1
    closer = threading.Thread(target=feed.close)
    closer.start()
    feed.wait(feed.seq, 30)  # returns: the feed closed
    closer.join(30)
    assert feed.closed


def test_close_from_a_subscriber_does_not_deadlock_and_nothing_runs_after():
    feed = Feed()
    seen = []
    done = threading.Event()

    def closer(change):
        seen.append(change.task_id)
        feed.close()
        done.set()

    feed.subscribe(closer)
    feed.publish(Change("meta", "one"))
    assert done.wait(30)
    feed.publish(Change("meta", "late"))  # dropped: the feed is closed
    feed.call_later(0, lambda: seen.append("timer"))
    assert feed.join(30)
    assert seen == ["one"]


def test_subscribing_twice_counts_once_and_unsubscribe_removes():
    feed = Feed()
    seen = []
    feed.subscribe(seen.append)
    feed.subscribe(seen.append)
    assert feed.subscribers == 1
    feed.unsubscribe(seen.append)
    feed.publish(Change("meta"))
    assert feed.join(30) and seen == []
    feed.close()
