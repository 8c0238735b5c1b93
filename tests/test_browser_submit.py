"""The submit form in a real browser: JupyterLab (dark theme, a 1,000 px window) and headless
Chromium.

A notebook written by this test opens a Sandbox, a receiver and the form on a song whose
timed words are given.  The test drags a new section on the waveform (too short: Submit is
disabled, and looks it), resizes and moves it (Submit enabled), submits it, then chooses two
lines of the lyrics (the region follows), types their replacement and submits again; the
sandbox's record of each request is read in the kernel.  Keys typed in the form are not
JupyterLab's shortcuts, and nothing is clipped at this width.  Reuses the JupyterLab and
Chromium fixtures of test_browser.py; screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from tests.test_browser import (
    ARTIFACTS,
    IDLE,
    KERNEL_EXEC,
    LUMA,
    NEXT_FRAMES,
    Lab,
    _browse,
    _luma,
    _serve,
    _shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

NOTEBOOK = "submit_demo.ipynb"
WIDTH = 1000
CELLS = [
    '''import json
from collections.abc import Iterator
from pathlib import Path

import suno_nb as snb
from suno_nb import widgets as snw
from suno_nb.lyrics import lyric_lines, words_frame

sb = snb.Sandbox(delay=3600).start()  # results never land: this notebook only submits
rx = snb.start_receiver(Path("submit_demo.sqlite3").resolve(), tunnel=None, poll=False)
client = snb.SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
song = sb.create_song(duration=60, title="Harbour Lights", tags="indie pop")
LYRICS = """[Verse]
lights over the harbour
boats are coming home

[Chorus]
oh the tide turns
and the lights go on

[Verse]
nets are drying slowly
gulls above the foam
"""
aligned, t = [], 4.0  # the service's alignedWords: a word per 0.5 s, 1.5 s between lines
for _, text, _ in lyric_lines(LYRICS):
    ws = text.split()
    for i, w in enumerate(ws):
        aligned.append({"word": w + ("\\n" if i == len(ws) - 1 else " "), "success": True,
                        "startS": t, "endS": t + 0.4})
        t += 0.5
    t += 1.0
words = words_frame(aligned, LYRICS)
Path("submit_state.json").write_text(json.dumps({"duration": song.duration}))
print("ready")''',
    """form = snw.submit_form(
    client,
    rx,
    task_id=song.task_id,
    audio_id=song.audio_id,
    prompt="[Bridge] The tide turns",
    tags="indie pop, brass",
    title="Harbour Lights (new bridge)",
    full_lyrics="[Verse] Harbour lights\\n[Bridge] The tide turns",
    section=(8.0, 20.0),
    words=words,
)
form""",
]

ROOT_SEL = ".snb-submit"
BUTTON = "button.suno-nb-submit"
DARK = "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
# The Submit button's look: what tells a user it can (not) be clicked.
LOOK = (
    "(b) => { const s = getComputedStyle(b); return {opacity: s.opacity, cursor: s.cursor,"
    " filter: s.filter, aria: b.getAttribute('aria-disabled'), disabled: b.disabled}; }"
)
# Controls of the form (ipywidgets and the picker) that end right of the notebook's output
# area, or are squeezed to nothing: clipped at this width.
CLIPPED = """() => {
  const form = [...document.querySelectorAll('.widget-vbox')]
    .filter(b => b.querySelector('.snb-submit')).pop();
  const area = form.closest('.jp-OutputArea-output').getBoundingClientRect();
  const out = [];
  for (const el of form.querySelectorAll('input, button, textarea, select, .snb-wave')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // hidden (the collapsed "more" section)
    if (r.right > area.right + 1 || r.left < area.left - 1 || r.width < 16)
      out.push(`${el.tagName}.${el.className} ${Math.round(r.left)}-${Math.round(r.right)}`);
  }
  const root = form.querySelector('.snb-submit');
  if (root.scrollWidth > root.clientWidth + 1) out.push(`picker scrolls: ${root.scrollWidth}`);
  return {clipped: out, width: Math.round(area.width)};
}"""
SECTION = (
    "() => ['start', 'end'].map(k => parseFloat(document.querySelector('.snb-submit').dataset[k]))"
)


@pytest.fixture
def submit_lab(tmp_path) -> Iterator[Lab]:
    notebook = tmp_path / "src" / NOTEBOOK
    notebook.parent.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, notebook)
    yield from _serve(notebook, tmp_path)


@pytest.fixture
def narrow_page(submit_lab):
    for pg in _browse():
        pg.set_viewport_size({"width": WIDTH, "height": 1000})
        yield pg


def _x(box: dict, seconds: float, duration: float) -> float:
    return box["x"] + box["width"] * seconds / duration


def _drag(page, x0: float, x1: float, y: float) -> None:
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, y, steps=4)
    page.mouse.move(x1, y, steps=4)
    page.mouse.up()


def _kernel(page, code: str) -> str:
    return str(page.evaluate(KERNEL_EXEC, code)).strip()


def _wait_section(page, check: str) -> list[float]:
    """Wait until the page's section ``[a, b]`` passes ``check`` (JS on a, b); return it."""
    page.wait_for_function(f"() => {{ const [a, b] = ({SECTION})(); return {check}; }}")
    return list(page.evaluate(SECTION))


def test_submit_form_drag_checks_lines_and_submit_in_the_dark_at_1000px(submit_lab, narrow_page):
    lab, page = submit_lab, narrow_page
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}&reset")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel; return !!k && k.status === 'idle'; }",
        timeout=45_000,
    )
    page.evaluate(DARK)
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(f"{ROOT_SEL}[data-ready='true']", timeout=60_000)
    page.wait_for_function(IDLE, timeout=60_000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()
    duration = json.loads((lab.root / "submit_state.json").read_text())["duration"]
    root = page.locator(ROOT_SEL)
    form = page.locator(".widget-vbox", has=root).last
    button = page.locator(BUTTON)

    # --- the dark theme: no white block, light text ----------------------------------------
    page.wait_for_function(
        f"() => {LUMA}(getComputedStyle(document.querySelector('{ROOT_SEL}')).backgroundColor) < 90"
    )
    wave_bg = page.evaluate(
        "() => getComputedStyle(document.querySelector('.snb-wave')).backgroundColor"
    )
    assert _luma(page, wave_bg) < 90, wave_bg
    text = page.evaluate("() => getComputedStyle(document.querySelector('.snb-line')).color")
    assert _luma(page, text) > 150, text

    # --- at 1,000 px (file browser open or not): nothing clipped -------------------------
    layout = page.evaluate(CLIPPED)
    assert layout["clipped"] == [], layout
    assert layout["width"] < WIDTH, layout
    page.evaluate(NEXT_FRAMES)
    _shot(form, "submit-dark.png")

    # --- the initial section (8-20 s) is fine: Submit enabled -----------------------------
    assert _wait_section(page, "a === 8 && b === 20") == [8.0, 20.0]
    page.wait_for_function(f"() => !document.querySelector('{BUTTON}').disabled")
    enabled = button.evaluate(LOOK)
    assert enabled["aria"] == "false" and enabled["cursor"] == "pointer", enabled

    # --- drag out a new section on the waveform: 30-35 s is too short ----------------------
    wave = root.locator(".snb-wave")
    box = wave.bounding_box()
    assert box is not None and box["width"] > 300, box
    y = box["y"] + box["height"] / 2
    _drag(page, _x(box, 30, duration), _x(box, 35, duration), y)
    a, b = _wait_section(page, "Math.abs(a - 30) < 1 && Math.abs(b - 35) < 1")
    page.wait_for_function(f"() => document.querySelector('{BUTTON}').disabled")
    disabled = button.evaluate(LOOK)
    assert disabled["aria"] == "true" and disabled["cursor"] == "not-allowed", disabled
    assert float(disabled["opacity"]) < 0.6 <= float(enabled["opacity"]), (disabled, enabled)
    # the region sits on the waveform's time axis, and so does the ruler under it
    region = root.locator(".snb-region").bounding_box()
    tick = root.locator(".snb-tick", has_text="0:30").bounding_box()
    assert region is not None and tick is not None
    assert abs(region["x"] - _x(box, a, duration)) <= 2, (region, box)
    assert abs(tick["x"] - _x(box, 30, duration)) <= 2, (tick, box)
    checks = root.locator(".snb-checks")
    assert checks.is_visible() and "limit: 10 s" in checks.inner_text()
    assert root.locator(".snb-region").count() == 1  # the new section replaced the old one
    kernel = _kernel(page, "print(*form.section.value, form.submit.disabled)").split()
    assert [float(kernel[0]), float(kernel[1]), kernel[2]] == [a, b, "True"], kernel
    _shot(form, "submit-too-short.png")

    # --- resize it by its right edge to 46 s: fine again -----------------------------------
    handle = root.locator("[part~='region-handle-right']")
    hb = handle.bounding_box()
    assert hb is not None
    _drag(page, hb["x"] + hb["width"] / 2, _x(box, 46, duration), y)
    a, b = _wait_section(page, "Math.abs(b - 46) < 1")
    assert abs(a - 30) < 1
    page.wait_for_function(f"() => !document.querySelector('{BUTTON}').disabled")
    assert not checks.is_visible()
    # --- move it by its middle, 5 s to the right ------------------------------------------
    _drag(page, _x(box, 38, duration), _x(box, 43, duration), y)
    a2, b2 = _wait_section(page, f"Math.abs(a - {a + 5}) < 1")
    assert abs((b2 - a2) - (b - a)) < 0.05  # moved, not resized
    # the fields follow the region, and the kernel has the same section
    assert float(root.locator("input.snb-start").input_value()) == a2
    assert float(root.locator("input.snb-end").input_value()) == b2
    page.wait_for_function(f"() => !document.querySelector('{BUTTON}').disabled")

    # --- keys typed in the form are not JupyterLab's shortcuts ------------------------------
    cells = page.evaluate("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length")
    root.evaluate("el => el.focus()")
    for key in ("a", "b", "m", "d", "d"):
        page.keyboard.press(key)
    assert page.evaluate("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length") == cells
    assert page.locator(".jp-Notebook .jp-MarkdownCell").count() == 0

    # --- submit the dragged section -------------------------------------------------------
    button.click()
    page.wait_for_selector("text=Submitted: task", timeout=30_000)
    first = _kernel(page, "print(form.last_job.task_id)")
    sent = json.loads(_kernel(page, f"print(sb.record_info({first!r})['param'])"))
    assert (sent["infillStartS"], sent["infillEndS"]) == (a2, b2), sent

    # --- choose two lines (click, shift-click): the region follows ---------------------------
    lines = root.locator(".snb-line")
    chorus = lines.filter(has_text="tide turns")
    chorus.click()
    lines.filter(has_text="lights go on").click(modifiers=["Shift"])
    page.wait_for_function(
        f"() => document.querySelector('{ROOT_SEL}').dataset.selected.split(',').length === 2"
    )
    # the two lines' plan came back from the kernel (after the one line's of the first click)
    page.wait_for_function(
        "() => document.querySelector('.snb-plan').textContent.startsWith('Lines ')"
    )
    a3, b3 = _wait_section(page, f"a !== {a2}")
    kernel = _kernel(page, "print(*form.section.value)").split()
    assert [float(v) for v in kernel] == [a3, b3], (kernel, a3, b3)
    assert a3 < 13.0 < b3 and b3 - a3 >= 10.0, (a3, b3)  # lines sung ~12-16 s, widened to 10 s
    assert root.locator(".snb-line.snb-chosen").count() == 2
    new = root.locator("textarea.snb-newlyrics")
    assert new.is_visible() and new.input_value() == "oh the tide turns\nand the lights go on"
    assert "widened" in root.locator(".snb-plan").inner_text().lower()
    new.fill("oh the tide is high\nand the boats come in")
    new.press("Tab")  # the change is sent (typing is sent after a pause, too)
    page.wait_for_function(f"() => !document.querySelector('{BUTTON}').disabled")
    _shot(form, "submit-lines.png")
    button.click()
    page.wait_for_function(
        "(old) => [...document.querySelectorAll('.widget-html')].some(h =>"
        " h.innerText.includes('Submitted: task') && !h.innerText.includes(old))",
        arg=first,
    )
    code = (
        "import json\n"
        "p = json.loads(sb.record_info(form.last_job.task_id)['param'])\n"
        "print(json.dumps([p['infillStartS'], p['infillEndS'], p['fullLyrics'], len(sb.tasks())]))"
    )
    start, end, full, count = json.loads(_kernel(page, code))
    assert (start, end) == (a3, b3) and count == 3  # the song, and one task per submit
    assert "oh the tide is high\nand the boats come in" in full and "tide turns" not in full
    # the saved notebook holds no audio and no player code
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    saved = Path(lab.root / NOTEBOOK).read_text()
    assert "katspaugh" not in saved and "data:audio" not in saved
    (ARTIFACTS / "submit-layout.json").write_text(json.dumps(layout))
