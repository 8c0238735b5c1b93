"""Notebook manners: quiet logging, session-scoped views, bounded widgets, small lifecycle
promises (``@rx.on_callback`` returns the function, ``result()`` by key, the repr says what
went wrong in plain words)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

import suno_nb
from suno_nb import Sandbox, SunoClient
from suno_nb.session import start_receiver, stop_receiver
from suno_nb.store import Store, Submission
from suno_nb.widgets import submit_form, tracker
from suno_nb.widgets.tracker import render_tasks
from tests.frontend import shown
from tests.test_widgets import WAIT_S, settle, trait_change

QUEUED_TEXT = "queued — runs when the current cell finishes"  # what the page shows


def _ours() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("suno_nb"))


RECEIVER_THREADS = ("suno_nb-dispatch", "suno_nb-receiver-", "suno_nb-store-writer")


def _widget_threads() -> list[str]:
    """suno_nb threads that are not the receiver's three (the widgets must start none)."""
    return [n for n in _ours() if not n.startswith(RECEIVER_THREADS)]


@pytest.fixture
def sb():
    with Sandbox(delay=0.3, retry_backoff=0.1) as sandbox:
        yield sandbox


@pytest.fixture
def song(sb):
    return sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")


@pytest.fixture
def old_store(tmp_path):
    """A store file with tasks from an earlier run (two done, one still pending)."""
    path = tmp_path / "m.sqlite3"
    earlier = time.time() - 3 * 3600
    with Store(path) as store:
        for i, task in enumerate(("old-closed-1", "old-closed-2", "old-open")):
            store.record_submission(
                Submission(
                    task,
                    "old-parent",
                    f"old-audio-{i}",
                    10.0,
                    20.0,
                    title=task,
                    submitted_at=earlier + i,
                )
            )
        for task in ("old-closed-1", "old-closed-2"):
            store.give_up(task, "expired", "from an earlier run")
    return path


@pytest.fixture
def mrx(old_store):
    rx = start_receiver(old_store, tunnel=None, poll=False)
    yield rx
    stop_receiver()


@pytest.fixture
def client(sb, mrx):
    with SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=mrx) as c:
        yield c


def _replace(client, song, title="Take"):
    return client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="new words",
        tags="jazz",
        title=title,
        infill_start_s=20.0,
        infill_end_s=32.0,
        original_duration=song.duration,
        full_lyrics="la la",
    )


# --- logging: nothing reaches a cell ------------------------------------------------------------


def test_package_logger_has_a_null_handler_and_no_other_config():
    pkg = logging.getLogger("suno_nb")
    assert any(isinstance(h, logging.NullHandler) for h in pkg.handlers)
    assert pkg.propagate is True  # the application's logging config still applies
    assert suno_nb.__name__ == "suno_nb"


def test_rx_log_keeps_records_without_secrets_and_detaches_on_stop(tmp_path):
    rx = start_receiver(tmp_path / "l.sqlite3", tunnel=None, poll=False, hmac_key="k" * 32)
    try:
        token = rx.url.rsplit("/", 1)[-1]
        log = logging.getLogger("suno_nb.test")
        done = threading.Event()

        def background() -> None:
            log.warning("delivery to %s failed with key %s", rx.url, "k" * 32)
            log.warning("a second note")
            log.debug("below the kept level")
            done.set()

        threading.Thread(target=background).start()
        assert done.wait(30)
        df = rx.log()
        assert list(df.columns) == ["time", "level", "logger", "message"]
        text = " ".join(df["message"])
        assert "a second note" in text and "delivery to" in text
        assert "below the kept level" not in text
        assert token not in text and "k" * 32 not in text
        assert set(rx.log("WARNING")["level"]) == {"WARNING"}
        assert rx.log("ERROR").empty
        assert "delivery to" in repr(rx) and "rx.log()" in shown(rx)["text/html"]
        with pytest.raises(ValueError, match="level"):
            rx.log("LOUD")
    finally:
        stop_receiver()
    assert not [h for h in logging.getLogger("suno_nb").handlers if "Logbook" in repr(h)]


def test_repr_says_how_many_tasks_were_given_up(mrx):
    mrx.store.give_up("old-open", "unknown", "the service did not know this task")
    assert "1 task unknown to the service" in repr(mrx)
    assert "1 task unknown to the service" in shown(mrx)["text/html"]


# --- lifecycle promises -----------------------------------------------------------------------


def test_on_callback_is_a_decorator_that_returns_the_function(mrx, client, song):
    seen: list[str] = []

    @mrx.on_callback
    def handler(event):
        seen.append(event.task_id)

    assert callable(handler) and handler.__name__ == "handler"
    job = _replace(client, song)
    mrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    assert mrx.flush(WAIT_S)
    assert job.task_id in seen
    assert mrx.on_callback(handler, remove=True) is handler


def test_result_reads_only_the_task_it_is_asked_for(mrx, client, song):
    first, second = _replace(client, song, "A"), _replace(client, song, "B")
    a = mrx.wait(first.task_id, timeout=WAIT_S, progress=False)
    mrx.wait(second.task_id, timeout=WAIT_S, progress=False)
    assert set(a.tracks["task_id"]) == {first.task_id} and len(a.tracks) == 2
    whole = mrx.frame()
    expected = whole[whole["task_id"] == first.task_id].reset_index(drop=True)
    assert list(a.tracks.columns) == list(expected.columns[: len(a.tracks.columns)])
    assert a.tracks["track_id"].tolist() == expected["track_id"].tolist()
    assert a.tracks["duration"].dtype == "float64"
    assert str(a.tracks["received_at"].dtype).startswith("datetime64")


# --- views scoped to this session -------------------------------------------------------------


def test_tracker_shows_this_session_by_default_and_history_on_request(mrx, client, song):
    job = _replace(client, song)
    tr = tracker(mrx)
    try:
        # the still-open task of the earlier run stays visible: it may still land
        assert tr.task_ids == ["old-open", job.task_id]
        assert "old-closed-1" not in tr.html.value and "2 earlier tasks hidden" in tr.html.value
        tr.history.value = True  # one click
        assert tr.task_ids == ["old-closed-1", "old-closed-2", "old-open", job.task_id]
        assert "old-closed-1" in tr.html.value and "tasks hidden" not in tr.html.value
        tr.history.value = False
        assert "old-closed-1" not in tr.task_ids
    finally:
        tr.close()


def test_known_tracks_are_this_sessions_by_default(mrx, client, song, old_store):
    job = _replace(client, song)
    mrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    form = submit_form(client, mrx)
    try:
        values = [v for _, v in form.known.options if v]
        assert (song.task_id, song.audio_id) in values  # original of this session's task
        assert ("old-parent", "old-audio-2") in values  # the earlier run's still-open task
        assert ("old-parent", "old-audio-0") not in values
        form.history.value = True
        values = [v for _, v in form.known.options if v]
        assert ("old-parent", "old-audio-0") in values
    finally:
        form.close()


def test_tracker_reads_the_store_once_per_burst(mrx, client, song):
    tr = tracker(mrx)
    try:
        before = tr.reads
        for i in range(40):
            mrx.store.record_submission(
                Submission(f"burst-{i}", song.task_id, song.audio_id, 20.0, 32.0, title="b")
            )
        settle(mrx, tr)
        assert sum(t.startswith("burst-") for t in tr.task_ids) == 40
        # 40 commits in a burst: far fewer re-reads (not one per commit, nor one per second)
        assert tr.reads - before < 20, tr.reads - before
    finally:
        tr.close()


def test_tracker_keeps_its_table_and_says_when_the_receiver_stops(tmp_path):
    rx = start_receiver(tmp_path / "s.sqlite3", tunnel=None, poll=False)
    rx.store.record_submission(Submission("t-1", "p", "a", 10.0, 20.0, title="one"))
    tr = tracker(rx, tick=0.2)
    try:
        assert "updates live" in tr.html.value and tr.ticking
        stop_receiver()
        tr.filter.value = "pending"  # the next draw (a click, a re-run) says it
        assert "receiver is stopped" in tr.status.value and not tr.ticking
        assert "t-1" in tr.html.value and "not updating" in tr.html.value
        assert tr.refresh() == tr.html.value and "t-1" in tr.html.value  # the table is kept
    finally:
        tr.close()


def test_tracker_says_by_itself_when_the_receiver_stops(tmp_path):
    rx = start_receiver(tmp_path / "s2.sqlite3", tunnel=None, poll=False)
    rx.store.record_submission(Submission("t-1", "p", "a", 10.0, 20.0, title="one"))
    tr = tracker(rx)
    try:
        with trait_change(tr.status, "value", lambda v: "receiver is stopped" in v) as said:
            stop_receiver()
            assert said.wait(WAIT_S)
    finally:
        tr.close()


def test_render_tasks_shows_given_up_tasks_with_their_reason():
    now = time.time()
    rows = [
        {
            "task_id": "a",
            "state": "unknown",
            "reason": "the service did not know this task",
            "submitted_at": now - 60,
            "first_seen_at": now - 60,
            "completed_at": now,
            "tracks": 0,
        },
        {
            "task_id": "b",
            "state": "running",
            "service_status": "TEXT_SUCCESS",
            "submitted_at": now - 5,
            "first_seen_at": now - 5,
            "tracks": 0,
        },
    ]
    html = render_tasks(rows, now=now)
    assert "did not know this task" in html and "1 given up" in html
    assert "service: TEXT_SUCCESS" in html
    assert "data-state='running'" in render_tasks(rows, "pending", now=now)
    assert "data-state='unknown'" in render_tasks(rows, "failed", now=now)


# --- re-run a widget cell 10 times: no thread, one subscription, closed models -------------


def test_ten_reruns_of_the_tracker_cell_stay_bounded_and_close_restores(mrx, client, song):
    _replace(client, song)
    base_subscribers = mrx.feed.subscribers
    made = [tracker(mrx) for _ in range(10)]
    assert _widget_threads() == []  # the tracker runs on the receiver's feed: no thread
    assert mrx.feed.subscribers == base_subscribers + 1  # only the live one listens
    assert all(w.comm is None for w in made[:-1])  # the earlier ones were closed
    assert all(w.html.comm is None and w.filter.comm is None for w in made[:-1])  # and theirs
    made[-1].close()
    assert mrx.feed.subscribers == base_subscribers and _widget_threads() == []


def test_ten_reruns_of_the_submit_form_cell_stay_bounded_and_close_restores(mrx, client, song):
    base_subscribers = mrx.feed.subscribers
    made = []
    for _ in range(10):
        form = submit_form(client, mrx, task_id=song.task_id, audio_id=song.audio_id)
        made.append(form)
    assert made[-1].wait_idle(WAIT_S)
    assert made[-1].original is not None and made[-1].original.duration == 60.0
    assert mrx.feed.subscribers == base_subscribers + 1  # the live form's only
    assert _widget_threads() == []  # lookups and waveforms ran on the feed: no thread
    assert all(f.comm is None and f.submit.comm is None for f in made[:-1])
    made[-1].close()
    assert mrx.feed.subscribers == base_subscribers and _widget_threads() == []


@pytest.mark.slow  # seconds of work: the fast lane stays under 90 s; CI runs it
def test_ten_reruns_of_an_audition_cell_stay_bounded_and_other_cells_keep_theirs(
    mrx, client, song, monkeypatch
):
    import importlib

    from suno_nb.widgets import audition

    audition_module = importlib.import_module("suno_nb.widgets.audition")

    job = _replace(client, song)
    mrx.wait(job.task_id, timeout=WAIT_S, progress=False)
    base_subscribers = mrx.feed.subscribers
    cell = {"id": "cell-A"}
    monkeypatch.setattr(audition_module, "current_cell_id", lambda: cell["id"])
    made = [audition(mrx) for _ in range(10)]  # the same cell run 10 times
    assert mrx.feed.subscribers == base_subscribers + 1  # the live audition's only
    assert all(a.comm is None for a in made[:-1]) and made[-1].comm is not None
    cell["id"] = "cell-B"  # another cell's audition lives beside it
    other = audition(mrx)
    assert made[-1].comm is not None and mrx.feed.subscribers == base_subscribers + 2
    assert _widget_threads() == []
    other.close()
    made[-1].close()
    assert mrx.feed.subscribers == base_subscribers and _widget_threads() == []


# --- the Submit button: a queued click is acknowledged, never doubled -------------------------


def test_queued_button_acknowledges_each_click_once(mrx, client):
    form = submit_form(client, mrx)  # nothing filled in: a click sends nothing
    button = form.submit
    try:
        calls: list[int] = []
        button.on_click(lambda b: calls.append(b.clicks))
        assert button.queued_text == QUEUED_TEXT
        page_code = button.get_state()["_esm"]  # the module the page runs (anywidget)
        assert "queued_text" in page_code and "acked" in page_code
        button.click()
        assert calls == [1] and button.acked == 1
        button.clicks = 2  # what the page sends when the kernel gets to a queued click
        assert calls == [1, 2] and button.acked == 2
        assert len(mrx.tasks()) == 3  # the stale tasks only: neither click sent one
    finally:
        form.close()


def _form(client, rx, song, **kw):
    """A form on ``song`` with every field filled but what ``kw`` overrides."""
    fields = {"prompt": "p", "tags": "t", "title": "T", "full_lyrics": "la la"}
    return submit_form(client, rx, task_id=song.task_id, audio_id=song.audio_id, **{**fields, **kw})


def test_a_click_while_submitting_sends_nothing_more(mrx, client, song):
    form = _form(client, mrx, song, section=(20.0, 32.0))
    try:
        assert form.wait_idle(WAIT_S) and form.valid
        form.submit.click()
        form.submit.click()  # while the first is being sent (on the dispatcher thread)
        assert form.wait_idle(WAIT_S) and form.last_job is not None
        assert len(mrx.store.tasks_since(mrx.started_at, include_open=False)) == 1
        form.submit.click()  # same settings again
        assert form.wait_idle(WAIT_S) and "Not sent again" in form.status.value
        assert len(mrx.store.tasks_since(mrx.started_at, include_open=False)) == 1
    finally:
        form.close()


def test_full_lyrics_are_required(mrx, client, song):
    form = _form(client, mrx, song, full_lyrics="")
    try:
        assert form.wait_idle(WAIT_S)
        assert form.reason.startswith("full_lyrics:") and form.submit.disabled
        form.full_lyrics.value = "la la"
        assert form.valid and not form.submit.disabled
    finally:
        form.close()


def test_a_receiver_that_cannot_bind_releases_its_store(tmp_path):
    import socket

    from suno_nb import session
    from suno_nb.errors import ReceiverError

    before = {t.name for t in threading.enumerate()}
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        port = busy.getsockname()[1]
        with pytest.raises(ReceiverError):
            start_receiver(tmp_path / "b.sqlite3", tunnel=None, poll=False, port=port)
    finally:
        busy.close()
    assert {t.name for t in threading.enumerate()} - before == set()  # writer and feed ended
    Store(tmp_path / "b.sqlite3").close()  # the file is whole and free
    assert session.current_receiver() is None


def test_wait_ends_when_the_poller_gives_up_and_says_why(mrx, monkeypatch):
    from suno_nb.errors import TaskFailedError

    looked = threading.Event()  # set once rx.wait() has read the task (and found it open)
    read_task = mrx.store.task

    def watched(task_id):
        row = read_task(task_id)
        looked.set()
        return row

    monkeypatch.setattr(mrx.store, "task", watched)

    def give_up_while_waiting() -> None:
        if looked.wait(WAIT_S):
            mrx.store.give_up("old-open", "unknown", "the service did not know this task")

    giver = threading.Thread(target=give_up_while_waiting)
    giver.start()
    result = mrx.wait("old-open", timeout=WAIT_S, progress=False)
    giver.join(WAIT_S)
    assert result.state == "unknown" and not result.ok
    assert "did not know this task" in repr(result)
    with pytest.raises(TaskFailedError, match="did not know this task"):
        mrx.wait("old-open", timeout=5, progress=False, raise_on_failure=True)


def test_a_failed_lookup_typed_again_leaves_the_section_usable(mrx, song):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dead = SunoClient(base_url=f"http://127.0.0.1:{port}", api_key="k", get_retries=0)
    form = _form(dead, mrx, song)
    try:
        assert form.wait_idle(WAIT_S) and "could not look up" in form.original_info.value
        assert not form.section.disabled
        form.load_original()  # the same ids again (e.g. the refresh button, a re-typed id)
        assert form.wait_idle(WAIT_S)
        assert not form.section.disabled and form.valid
    finally:
        form.close()
