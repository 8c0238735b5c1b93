"""The audition, finished, in a real browser: JupyterLab 4.6 on loopback, headless Chromium.

One notebook (written here): a Sandbox, a receiver, one replace task, the audition.  Then,
in the page:

- **keys** pressed inside the player (a, b, m, d d, arrows, space) work the player and never
  reach JupyterLab's command mode: the notebook's cell count and cell types are unchanged
  (the same ``b`` pressed on the notebook itself does insert a cell: the check has teeth);
  ``d`` opens the difference view, whose PNG comes from the kernel;
- **per-lane progress colours** follow the active lane;
- **new results**: a new task is announced ("show it") while the user is in the player,
  and followed at once when they are not; picker entries tell the tasks apart;
- **the pre-roll box** shows the value used (-5 typed: 0, in the page and the kernel);
- **below ~1,000 px** the ruler and the longest waveform have the same left edge and width,
  and the metrics wrap under the waveform inside the player instead of being clipped;
- **a stopped receiver** (``rx.stop()`` in the kernel) disables stars, keep and note, with
  the one line that brings the receiver back;
- **a kernel restart** leaves the old view saying it is disconnected, its controls disabled.

Reuses the JupyterLab and Chromium helpers of ``test_browser.py``; waits are on page
conditions, never sleeps.  Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from tests.test_browser import ARTIFACTS, KERNEL_EXEC, _browse, _run_all, _shot, lab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "audition_finish.ipynb"
CELLS = [
    """import json
from pathlib import Path

import suno_nb as snb
from suno_nb import widgets as snw

sb = snb.Sandbox(delay=0.5, retry_backoff=0.2).start()
rx = snb.start_receiver(Path("finish.sqlite3").resolve(), tunnel=None, poll=False)
client = snb.SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
song = sb.create_song(duration=60, title="Harbour Lights", tags="indie pop, synth")
job = client.replace_section(
    task_id=song.task_id,
    audio_id=song.audio_id,
    prompt="[Bridge] The tide turns",
    tags="indie pop, brass",
    title="Harbour Lights (new bridge)",
    full_lyrics="[Verse] Harbour lights\\n[Bridge] The tide turns",
    infill_start_s=20.0,
    infill_end_s=32.0,
    original_duration=song.duration,
)
result = rx.wait(job.task_id, timeout=60, progress=False)
Path("finish_state.json").write_text(json.dumps({"task_id": job.task_id}))
print(result.state, len(result.tracks), "takes")""",
    "au = snw.audition(rx)\nau",
    "print('last cell')",
]
CELL_TYPES = """() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(c =>
  c.classList.contains('jp-MarkdownCell') ? 'markdown'
  : c.classList.contains('jp-CodeCell') ? 'code' : 'raw')"""
BOX = """(sel) => { const r = document.querySelector(sel).getBoundingClientRect();
  return {x: r.x, w: r.width, r: r.right, y: r.y}; }"""
NEW_TASK = """job_n = client.replace_section(
    task_id=song.task_id,
    audio_id=song.audio_id,
    prompt="[Outro] Lights out",
    tags="indie pop",
    title="Harbour Lights (new outro)",
    full_lyrics="[Verse] Harbour lights\\n[Outro] Lights out",
    infill_start_s={start},
    infill_end_s={end},
    original_duration=song.duration,
)
rx.wait(job_n.task_id, timeout=60, progress=False)
rx.flush()
au.wait_idle()
print(job_n.task_id)"""
# the audition shows task ``id`` (its section ``sec``) with its three lanes ready to play
READY_TASK = """([id, sec]) => { const r = document.querySelector('.snb-audition');
  return r.dataset.task === id && r.dataset.section === sec
    && r.querySelectorAll(".snb-lane[data-ready='true']").length === 3; }"""
LONGEST_WAVE = """() => {
  const waves = [...document.querySelectorAll('.snb-audition .snb-wavebox')];
  const r = waves.map(w => w.getBoundingClientRect()).sort((a, b) => b.width - a.width)[0];
  return {x: r.x, w: r.width, r: r.right, y: r.y};
}"""


@pytest.fixture
def page(lab) -> Iterator[Any]:  # noqa: F811
    yield from _browse("--autoplay-policy=no-user-gesture-required")


def _write_notebook(root) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, root / NOTEBOOK)


def _same_columns(page) -> dict[str, Any]:
    ruler = page.evaluate(BOX, ".snb-audition .snb-ruler")
    wave = page.evaluate(LONGEST_WAVE)
    player = page.evaluate(BOX, ".snb-audition")
    assert abs(ruler["x"] - wave["x"]) <= 1.5 and abs(ruler["w"] - wave["w"]) <= 1.5, (ruler, wave)
    sides = page.eval_on_selector_all(
        ".snb-audition .snb-side", "els => els.map(e => e.getBoundingClientRect().right)"
    )
    assert max(sides) <= player["r"] + 0.5, (sides, player)  # nothing clipped on the right
    return {"ruler": ruler, "wave": wave, "player": player}


def test_audition_keys_layout_stopped_receiver_and_restart(lab, page):  # noqa: F811
    _write_notebook(lab.root)
    nb = lab.root / NOTEBOOK
    _run_all(page, lab, nb, ".snb-audition .snb-lane")
    page.wait_for_function(
        "() => document.querySelectorAll(\".snb-lane[data-ready='true']\").length === 3",
        timeout=30_000,
    )
    root = page.locator(".snb-audition")
    cells_before = page.evaluate(CELL_TYPES)
    assert cells_before == ["code", "code", "code"]

    # --- progress colours: the active lane's own colour, the others none ---------------------
    lanes = root.locator(".snb-lane")
    first_colour = lanes.nth(0).get_attribute("data-progress")
    assert first_colour == "#546e7a"  # the original's colour while it is active
    assert lanes.nth(1).get_attribute("data-progress") != "#ef6c00"

    # --- keys inside the player work it and never reach the notebook -------------------------
    root.locator(".snb-title").click()  # focus in the player (notebook in command mode)
    page.keyboard.press("b")  # B: back to the take last heard (take 1)
    assert root.get_attribute("data-active") == "1"
    assert lanes.nth(1).get_attribute("data-progress") == "#ef6c00"  # repainted
    assert lanes.nth(0).get_attribute("data-progress") != "#546e7a"
    page.keyboard.press("3")
    page.keyboard.press("a")  # A: the original
    assert root.get_attribute("data-active") == "0"
    page.keyboard.press("b")  # B: back to take 2, the take last heard
    assert root.get_attribute("data-active") == "2"
    page.keyboard.press("m")  # no master lane here: nothing happens, nothing leaks
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert abs(float(root.get_attribute("data-position") or 0) - 10.0) < 0.2
    page.keyboard.press("d")  # the difference view of take 2, from the kernel
    page.wait_for_selector(".snb-diff[data-state='shown']", timeout=30_000)
    caption = root.locator(".snb-diff-caption").inner_text()
    assert "Take 2 − original" in caption and "inside the section" in caption
    _shot(root, "audition-difference.png")
    page.keyboard.press("d")
    page.keyboard.press("d")  # "d d" would delete the cell in command mode
    page.keyboard.press("d")
    assert root.locator(".snb-diff").is_hidden()
    page.keyboard.press(" ")
    page.wait_for_function(
        "() => document.querySelector('.snb-audition').dataset.playing === 'true'"
    )
    page.keyboard.press(" ")
    assert page.evaluate(CELL_TYPES) == cells_before  # no cell added, none turned Markdown
    # the same key on the notebook itself does insert a cell: the check above has teeth
    page.evaluate("() => window.jupyterapp.shell.currentWidget.content.node.focus()")
    page.keyboard.press("b")
    page.wait_for_function(f"() => ({CELL_TYPES})().length === 4")
    page.evaluate("window.jupyterapp.commands.execute('notebook:undo-cell-action')")

    # --- narrow: one width for ruler and waveforms, the side column wraps --------------------
    page.set_viewport_size({"width": 1900, "height": 1000})
    page.wait_for_function("() => document.querySelector('.snb-audition').offsetWidth > 1000")
    _same_columns(page)
    side = page.evaluate(BOX, ".snb-audition .snb-lane[data-kind='take'] .snb-side")
    wave = page.evaluate(BOX, ".snb-audition .snb-lane[data-kind='take'] .snb-wavecol")
    assert side["x"] > wave["r"]  # wide: the metrics beside the waveform
    page.set_viewport_size({"width": 900, "height": 1000})
    page.wait_for_function("() => document.querySelector('.snb-audition').offsetWidth < 900")
    narrow = _same_columns(page)
    side = page.evaluate(BOX, ".snb-audition .snb-lane[data-kind='take'] .snb-side")
    wave = page.evaluate(BOX, ".snb-audition .snb-lane[data-kind='take'] .snb-wavecol")
    assert side["y"] > wave["y"] and side["x"] >= wave["x"] - 1  # under the waveform
    assert narrow["wave"]["w"] > 0.5 * narrow["player"]["w"]  # the waveform keeps its room
    _shot(root, "audition-narrow.png")
    page.set_viewport_size({"width": 1400, "height": 1000})

    # --- the pre-roll box shows the value used -----------------------------------------------
    box = root.locator("input.snb-preroll")
    box.fill("-5")
    box.dispatch_event("change")
    assert box.input_value() == "0"
    out = page.evaluate(KERNEL_EXEC, "au.wait_idle(); print(au.preroll)")
    assert out.strip() == "0.0", out

    # --- new results: announced while the user is in the player, followed when not ---------
    first_task = root.get_attribute("data-task")
    root.locator(".snb-title").click()  # the user is in the player
    job2 = page.evaluate(KERNEL_EXEC, NEW_TASK.format(start=40.0, end=52.0)).strip()
    show = root.locator(".snb-fresh button.snb-show-fresh")
    show.wait_for(timeout=30_000)
    assert root.get_attribute("data-task") == first_task  # not pulled away from the listener
    assert "0:40.00" in root.locator(".snb-fresh").inner_text()
    options = root.locator("select.snb-picker option").all_inner_texts()
    assert len(options) == 2 and len(set(options)) == 2, options
    assert any("0:40.00" in o and "[Outro] Lights out" in o for o in options), options
    show.click()
    page.wait_for_function(READY_TASK, arg=[job2, "40,52"], timeout=30_000)
    assert root.locator(".snb-fresh").is_hidden()
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    job3 = page.evaluate(KERNEL_EXEC, NEW_TASK.format(start=2.0, end=14.0)).strip()
    page.wait_for_function(READY_TASK, arg=[job3, "2,14"], timeout=30_000)  # idle: followed at once
    _shot(root, "audition-followed.png")

    # --- the receiver stops: ratings visibly off, one line to bring it back ------------------
    assert page.evaluate(KERNEL_EXEC, "rx.stop(); print(rx.running)").strip() == "False"
    page.wait_for_selector(".snb-audition[data-live='false']")
    offline = root.locator(".snb-offline")
    assert offline.is_visible()
    line = offline.inner_text()
    assert "receiver is stopped" in line and "snb.start_receiver(" in line
    assert "snb.widgets.audition(rx)" in line
    assert root.locator("button.snb-star:disabled").count() == 10
    assert root.locator("button.snb-pick:disabled").count() == 2
    assert root.locator("input.snb-note:disabled").count() == 2
    root.locator("button.snb-star[data-stars='4']").first.click(force=True)  # disabled: nothing
    assert "kept" not in root.locator(".snb-footer").inner_text().lower()
    _shot(root, "audition-receiver-stopped.png")

    # --- the kernel restarts: the old view says it is disconnected ---------------------------
    page.evaluate(
        "async () => {"
        " await window.jupyterapp.shell.currentWidget.sessionContext.restartKernel(); }"
    )
    page.wait_for_selector(".snb-audition[data-connected='false']", timeout=30_000)
    dead = root.locator(".snb-disconnected")
    assert dead.is_visible() and "Disconnected" in dead.inner_text()
    assert "re-run this cell" in dead.inner_text()
    assert root.locator("input.snb-diff-toggle:disabled").count() == 1
    # still plays what it has (blob URLs), but says clicks no longer reach the kernel
    _shot(root, "audition-disconnected.png")
    state = json.loads((lab.root / "finish_state.json").read_text())
    assert first_task == state["task_id"] and root.get_attribute("data-task") == job3
