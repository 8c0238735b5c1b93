"""Notebook manners in a real browser: JupyterLab on loopback, driven by headless Chromium.

A notebook opens a receiver on a store holding tasks from earlier kernels (their sandbox is
gone, so the service does not know them; one is older than the service keeps results),
then waits in a running cell while the poller gives them up, then shows the tracker and a
submit form.  "Restart kernel and run all" — twice — must leave no stderr output in any cell
(before the fix, "poll: task … is unknown to the service" landed in the waiting cell, more
after every restart).  A Submit click while the kernel runs code says "queued" in the page
and sends one task, however many clicks (the busy cell waits on a FIFO the test writes to:
no sleeps).  Reuses the JupyterLab and Chromium fixtures of test_browser.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

from suno_nb.store import Store, Submission
from tests.test_browser import ARTIFACTS, lab, page  # noqa: F401 - the fixtures

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "stale_store.ipynb"
QUEUED_TEXT = "queued — runs when the current cell finishes"  # what the page shows
STALE = ("stale-a", "stale-b", "stale-c")
CELLS = [
    """import suno_nb as snb
from suno_nb import widgets as snw

sb = snb.Sandbox(delay=0.5).start()  # a new sandbox: it knows none of the stale tasks
client = snb.SunoClient(base_url=sb.url, api_key=sb.api_key)
rx = snb.start_receiver(
    "stale.sqlite3", tunnel=None, client=client, poll_interval=0.4, poll_grace=0.0
)
song = sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")
print("ready")""",
    """# a running cell while the poller meets the stale tasks and gives them up
for task in ("stale-a", "stale-b", "stale-c"):
    rx.wait(task, timeout=60, progress=False)""",
    "snw.tracker(rx)",
    """snw.submit_form(
    client,
    rx,
    task_id=song.task_id,
    audio_id=song.audio_id,
    prompt="[Chorus] Louder",
    tags="indie pop",
    title="Harbour Lights (chorus)",
    full_lyrics="[Verse] Harbour lights\\n[Chorus] Louder",
    section=(8.0, 20.0),
)""",
    """states = rx.store.query("SELECT task_id, state FROM tasks ORDER BY task_id")
print({r["task_id"]: r["state"] for r in states if r["task_id"].startswith("stale")})
print("done")""",
]

STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
IDLE = (
    "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " const k = w && w.sessionContext && w.sessionContext.session"
    " && w.sessionContext.session.kernel; return !!k && k.status === 'idle'"
    " && ![...document.querySelectorAll('.jp-InputPrompt')]"
    ".some(p => p.textContent.includes('*')); }"
)


def _write_notebook(root: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, root / NOTEBOOK)
    old = time.time() - 3600
    with Store(root / "stale.sqlite3") as store:
        for i, task in enumerate(STALE):
            store.record_submission(
                Submission(task, "gone-parent", f"gone-audio-{i}", 10.0, 20.0, submitted_at=old)
            )
        store.record_submission(
            Submission(
                "stale-ancient", "gone-parent", "x", 10.0, 20.0, submitted_at=old - 20 * 86400
            )
        )


def _restart_and_run_all(pg) -> None:
    # not awaited: the command's promise resolves only once the dialog below is answered
    pg.evaluate("() => { window.jupyterapp.commands.execute('notebook:restart-run-all'); }")
    pg.locator(".jp-Dialog .jp-mod-accept").click()
    pg.wait_for_selector(".jp-OutputArea-output:has-text('done')", timeout=60_000)
    pg.wait_for_function(IDLE, timeout=30_000)


def test_restart_and_run_all_on_a_stale_store_writes_nothing_to_stderr(lab, page):  # noqa: F811
    _write_notebook(lab.root)
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}&reset")
    try:
        page.wait_for_function(IDLE, timeout=45_000)
    except Exception:  # keep what the page showed, and the server's log, for the report
        page.screenshot(path=str(ARTIFACTS / "stale-store-failed.png"))
        print(lab.log())
        raise

    for run in (1, 2):
        _restart_and_run_all(page)
        errors = page.locator(STDERR)
        assert errors.count() == 0, (run, errors.all_inner_texts())
        last = page.locator(".jp-OutputArea-output:has-text('done')").last.inner_text()
        for task in STALE:
            assert f"'{task}': 'unknown'" in last, (run, last)
        assert "'stale-ancient': 'expired'" in last, (run, last)
        # the tracker shows this session's tasks only: the stale ones are history
        tracker = page.locator(".widget-vbox", has=page.locator(".widget-toggle-button")).first
        assert "stale-a" not in tracker.inner_text()
        assert "earlier tasks hidden" in tracker.inner_text()

    # --- a Submit click while the kernel is busy: "queued", then sent once -----------------------
    form = page.locator(".widget-vbox", has=page.locator("text=Replace a section")).last
    page.wait_for_function(
        "() => [...document.querySelectorAll('.widget-vbox')]"
        ".some(b => b.innerText.includes('Ready to submit'))",
        timeout=30_000,
    )
    # the original's waveform: peaks from the feed, drawn in the page
    form.locator(".snb-submit[data-ready='true']").wait_for()
    release = lab.root / "release.fifo"
    os.mkfifo(release)  # the busy cell blocks reading it until the test writes
    page.evaluate(
        "(code) => { window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        ".requestExecute({code}); }",
        f"open({str(release)!r}).read()",
    )
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'busy'"
    )
    button = page.locator("button.suno-nb-submit")
    button.click()
    button.click(force=True)  # an impatient second click: the button is disabled
    queued = page.locator(".suno-nb-queued")
    page.wait_for_function(
        f"() => document.querySelector('.suno-nb-queued').textContent === {QUEUED_TEXT!r}",
        timeout=30_000,
    )
    assert button.is_disabled()
    form.screenshot(path=str(ARTIFACTS / "submit-queued.png"))
    with release.open("w") as fifo:  # opens once the kernel reads: the busy cell ends
        fifo.write("go")
    page.wait_for_selector("text=Submitted: task", timeout=30_000)
    assert queued.inner_text() == ""
    page.wait_for_function(IDLE, timeout=30_000)
    page.wait_for_selector("table.suno-nb-tracker tr[data-task-id]", timeout=30_000)
    rows = page.locator("table.suno-nb-tracker tr[data-task-id]")
    assert rows.count() == 1  # one click sent one task; the stale ones stay in history
    assert page.locator(STDERR).count() == 0
