"""Widget models and what the tracker shows: re-runs leave no model behind, a replaced tracker
says so, colours follow JupyterLab's theme, rows say only what tells something.

Models are counted in the kernel with ``ipywidgets.Widget.widgets`` (every open model; its
deprecation warning is silenced here).  A "cell" is what the widgets read from the kernel's
parent message (``cellId``); tests set it by patching the widgets' ``current_cell_id``.
"""

from __future__ import annotations

import importlib
import re
import time
import warnings

import ipywidgets
import pytest

from suno_nb import Sandbox, SunoClient
from suno_nb.session import start_receiver, stop_receiver
from suno_nb.store import Submission
from suno_nb.widgets import audition, render_tasks, submit_form, tracker
from tests.test_widgets import WAIT_S, land, settle, trait_change

RERUNS = 10


def models() -> int:
    """Open widget models in this kernel."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return len(ipywidgets.Widget.widgets)


@pytest.fixture
def sb():
    with Sandbox(delay=0.3, retry_backoff=0.1) as sandbox:
        yield sandbox


@pytest.fixture
def rx(tmp_path):
    receiver = start_receiver(tmp_path / "models.sqlite3", tunnel=None, poll=False)
    yield receiver
    stop_receiver()


@pytest.fixture
def client(sb, rx):
    with SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx) as c:
        yield c


@pytest.fixture
def song(sb):
    return sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")


@pytest.fixture
def cell(monkeypatch):
    """The notebook cell the widgets believe they run in (``cell["id"] = ...``)."""
    current = {"id": "cell-A"}
    for name in ("tracker", "audition", "submit"):  # the modules (their factories share names)
        module = importlib.import_module(f"suno_nb.widgets.{name}")
        monkeypatch.setattr(module, "current_cell_id", lambda: current["id"])
    return current


def _replace(client, song, title="Take", start=20.0, end=32.0):
    return client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt="new words",
        tags="jazz",
        title=title,
        full_lyrics="[Verse] la la\n[Chorus] new words",
        infill_start_s=start,
        infill_end_s=end,
        original_duration=song.duration,
    )


# --- re-running a cell leaves no model behind ---------------------------------------------------


def test_rerunning_the_tracker_cell_leaves_no_model_behind(rx, client, song, cell):
    before = models()
    first = tracker(rx)
    one = models() - before
    assert one >= 10  # the box, its buttons, the tables... and their layouts and styles
    counts = []
    for _ in range(RERUNS):
        tracker(rx)
        counts.append(models())
    assert counts == [before + one] * RERUNS, counts
    assert first.comm is None and first.html.comm is None and first.layout.comm is None
    latest = tracker(rx)
    latest.close()
    assert models() == before  # and closing the last one closes every model it made


def test_rerunning_the_tracker_cell_without_a_cell_id_closes_the_old_one_too(rx, client, song):
    before = models()
    made = [tracker(rx)]  # no notebook cell id: a script, a console, an older front end
    one = models() - before
    for _ in range(RERUNS):
        made.append(tracker(rx))
        assert models() == before + one
    assert all(m.comm is None for m in made[:-1])
    made[-1].close()
    assert models() == before


def test_a_tracker_in_another_cell_replaces_the_old_one_which_says_so(rx, client, sb, song, cell):
    sb.delay = 3600  # callbacks are landed by hand
    job = _replace(client, song)
    before = models()
    old = tracker(rx)
    full = models() - before
    cell["id"] = "cell-B"
    new = tracker(rx)
    # the old one stays in cell A's output with a note, and only the note's models
    assert old.comm is not None and not old.live and old.children == (old.status,)
    assert "replaced by a newer tracker" in old.status.value
    assert old.html.comm is None and old.filter.comm is None and old.history.comm is None
    kept = models() - before - full
    assert 0 < kept <= 5, kept  # the box and its note (with their layouts and style)
    status = old.status.value
    with trait_change(new.html, "value", lambda v: "data-state='succeeded'" in v) as drawn:
        land(rx, job.task_id, song)
        assert drawn.wait(WAIT_S)
    settle(rx, new)
    assert old.status.value == status  # the replaced one no longer updates
    # re-running cell A: its note goes for good, cell B's tracker now says it was replaced
    cell["id"] = "cell-A"
    again = tracker(rx)
    assert old.comm is None and old.status.comm is None and old.layout.comm is None
    assert not new.live and "replaced by a newer tracker" in new.status.value
    assert models() - before == full + kept
    again.close()
    new.close()
    assert models() == before


@pytest.mark.slow  # seconds of work: the fast lane stays under 90 s; CI runs it
def test_rerunning_form_and_audition_cells_leaves_no_model_behind(rx, client, song, cell):
    job = _replace(client, song)
    rx.wait(job.task_id, timeout=WAIT_S, progress=False, raise_on_failure=True)
    before = models()
    for make in (
        lambda: submit_form(client, rx, task_id=song.task_id, audio_id=song.audio_id),
        lambda: audition(rx),
    ):
        first = make()
        one = models() - before
        counts = []
        for _ in range(RERUNS):
            latest = make()
            counts.append(models())
        assert latest.wait_idle(WAIT_S)
        assert counts == [before + one] * RERUNS, counts
        assert first.comm is None and first.layout.comm is None
        latest.close()
        assert models() == before


# --- colours follow the theme; rows say what tells something ----------------------------------

HEX_OR_RGB = re.compile(r"#[0-9a-fA-F]{3,8}\b|rgba?\(|(?<![-\w])(?:white|black)(?![-\w])")
THEMED = re.compile(r"var\(--jp-[a-z0-9-]+, (#[0-9a-fA-F]{3,8}|[a-z-]+)\)")


def fixed_colours(html: str) -> list[str]:
    """Colours in ``html`` that are not a JupyterLab theme variable (fallbacks allowed)."""
    return HEX_OR_RGB.findall(THEMED.sub("", html))


def _rows(now: float) -> list[dict]:
    base = {"submitted_at": now - 90, "first_seen_at": now - 90, "tracks": 0}
    return [
        {**base, "task_id": "ok", "state": "succeeded", "code": 200, "source": "callback",
         "msg": "All generated successfully.", "completed_at": now - 30, "tracks": 2,
         "title": "A very long title " * 8 + "that ends here", "infill_start_s": 20.0,
         "infill_end_s": 32.0},
        {**base, "task_id": "odd", "state": "succeeded", "code": 207, "source": "poll",
         "msg": "partly generated", "completed_at": now - 20, "tracks": 1},
        {**base, "task_id": "bad", "state": "failed", "code": 501, "source": "callback",
         "msg": "Generation failed", "error": "Audio generation failed", "completed_at": now},
        {**base, "task_id": "lost", "state": "unknown", "reason": "the service did not know it",
         "completed_at": now},
        {**base, "task_id": "open", "state": "running", "service_status": "TEXT_SUCCESS"},
    ]  # fmt: skip


def _cells(html: str, task_id: str) -> list[str]:
    row = re.search(rf"<tr data-task-id='{task_id}'.*?</tr>", html, re.S)
    assert row is not None, task_id
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)


def test_tracker_rows_say_the_code_and_message_only_when_they_tell_something():
    now = time.time()
    html = render_tasks(_rows(now), now=now)
    details = {t: _cells(html, t)[6] for t in ("ok", "odd", "bad", "lost", "open")}
    assert details["ok"] == ""  # not "200 · All generated successfully." on every row
    assert "All generated successfully." not in html
    assert details["odd"] == "207 · partly generated"
    assert details["bad"] == "501 · Audio generation failed"
    assert details["lost"] == "the service did not know it"
    assert "waiting for the callback" in details["open"] and "TEXT_SUCCESS" in details["open"]


def test_tracker_titles_stay_on_one_line_with_the_full_title_as_a_tooltip():
    now = time.time()
    title = "A very long title " * 8 + "that ends here"
    html = render_tasks(_rows(now), now=now)
    cell = _cells(html, "ok")[1]
    assert f"title='{title}'" in cell and cell.endswith(f">{title}</div>")
    for rule in ("white-space: nowrap", "overflow: hidden", "text-overflow: ellipsis"):
        assert rule in cell
    assert "max-width" in cell


def test_every_colour_of_the_tracker_and_its_notes_is_a_theme_variable(tmp_path):
    now = time.time()
    for state in ("all", "pending", "succeeded", "failed"):
        html = render_tasks(_rows(now), state, now=now, hidden=3)
        assert fixed_colours(html) == [], (state, fixed_colours(html))
    empty = render_tasks([], now=now)  # an "info" note
    assert "No tasks yet" in empty and fixed_colours(empty) == []
    rx = start_receiver(tmp_path / "dark.sqlite3", tunnel=None, poll=False)
    rx.store.record_submission(Submission("t-1", "p", "a", 10.0, 20.0, title="one"))
    tr = tracker(rx)
    try:
        stop_receiver()
        tr.refresh()
        assert "receiver is stopped" in tr.status.value  # the stopped-receiver warning
        for value in (tr.html.value, tr.status.value):
            assert fixed_colours(value) == [], fixed_colours(value)
    finally:
        tr.close()


def test_the_submit_form_uses_theme_colours_too(rx, client, song):
    fields = {"prompt": "p", "tags": "t", "title": "T", "full_lyrics": "la la"}
    form = submit_form(
        client, rx, task_id=song.task_id, audio_id=song.audio_id, section=(20.0, 32.0), **fields
    )
    try:
        assert form.wait_idle(WAIT_S)
        assert "Ready to submit" in form.validation.value  # an "ok" note
        assert fixed_colours(form.validation.value) == [], form.validation.value
        form.title.value = ""  # not ready: a "warn" note ...
        form.submit.click()  # ... and a click: a "Not sent" error note
        for part in (form.header, form.original_info, form.validation):
            assert fixed_colours(part.value) == [], part.value
        picker = form.section.get_state()  # the waveform's module and styles, as the page gets
        assert fixed_colours(picker["_css"]) == [], fixed_colours(picker["_css"])
        # canvas colours (wavesurfer's) are read from the theme's variables in the page
        assert 'cssVar(root, "--jp-ui-font-color2"' in picker["_esm"]
        assert "data-jp-theme-light" in picker["_esm"]  # and again when the theme changes
        assert "Not ready" in form.validation.value
        assert fixed_colours(form.status.value) == [] and "Not sent" in form.status.value
        page_code = form.submit.get_state()["_esm"]  # the button's module, as the page gets it
        assert fixed_colours(page_code) == []  # the "queued" text of the button
        assert ":disabled" in form.submit.get_state()["_css"]  # a disabled Submit looks it
    finally:
        form.close()


def test_the_tracker_says_when_a_callback_is_held_back_unconfirmed():
    from suno_nb.widgets.tracker import render_tasks

    row = {"task_id": "t1", "state": "running", "unconfirmed": 1, "title": "x"}
    assert "unconfirmed callback is held back" in render_tasks([row])
