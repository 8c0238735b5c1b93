"""The widgets in a real browser: JupyterLab on loopback, driven by headless Chromium.

A copy of ``tests/browser/widgets_demo.ipynb`` runs in a real kernel (Sandbox + receiver +
client + the three widgets).  Then, with the kernel idle and no cell running, the test POSTs
a callback to the kernel's receiver and waits for the tracker row to change IN THE PAGE;
it also checks the audition's audio players (URLs with media fragments, one of them loads
its metadata) and that the waveform images are decoded.  Screenshots go to
``test-artifacts/browser/``.

Chromium is Debian's (``/usr/bin/chromium``), launched through Playwright's Python API;
``playwright install`` is never used.  Without Chromium the test is skipped, unless
``SUNO_NB_REQUIRE_BROWSER=1`` (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).parent / "browser" / "widgets_demo.ipynb"
AUDITION_NOTEBOOK = Path(__file__).parent / "browser" / "audition_demo.ipynb"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]
LAB_SETTINGS = {
    # render every cell (no windowing), so off-screen outputs are in the DOM and laid out
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no "get notified about news?" toast in the screenshots, no network calls
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
        "never `playwright install`"
    )
    if os.environ.get("SUNO_NB_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (SUNO_NB_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _direct() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback only: never through a proxy
    return session


class Lab:
    """A JupyterLab server process on 127.0.0.1 with a random token."""

    def __init__(self, root: Path, home: Path):
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        settings = home / "lab-settings"
        for name, value in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.log_path = home / "lab.log"
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--no-browser",
                "--allow-root",
                "--ip=127.0.0.1",
                f"--port={self.port}",
                f"--ServerApp.token={self.token}",
                f"--ServerApp.root_dir={root}",
                "--ServerApp.port_retries=0",
                "--LabApp.expose_app_in_browser=True",
                f"--LabApp.user_settings_dir={settings}",
                f"--LabApp.workspaces_dir={home / 'lab-workspaces'}",
            ],
            cwd=root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.http = _direct()
        self.http.headers["Authorization"] = f"token {self.token}"

    def wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"JupyterLab exited early:\n{self.log()}")
            try:
                if self.http.get(f"{self.url}/api/status", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"JupyterLab did not answer in {timeout:g} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                for kernel in self.http.get(f"{self.url}/api/kernels", timeout=5).json():
                    self.http.delete(f"{self.url}/api/kernels/{kernel['id']}", timeout=10)
        except (requests.RequestException, ValueError):
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()  # by pid: only the process this test started
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self._log.close()
            self.http.close()


def _serve(notebook: Path, tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on a copy of ``notebook`` (never the original: Lab autosaves)."""
    _require_chromium()
    root = tmp_path / "nb"
    root.mkdir()
    shutil.copy(notebook, root / notebook.name)
    server = Lab(root, tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _browse(*extra_args: str) -> Iterator[Any]:
    """A Playwright page in Debian's Chromium (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            pg = context.new_page()
            pg.set_default_timeout(30_000)
            yield pg
        finally:
            browser.close()


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    yield from _serve(NOTEBOOK, tmp_path)


@pytest.fixture
def page(lab):
    yield from _browse()


def _run_all(page, lab: Lab, notebook: Path, last: str) -> None:
    """Open ``notebook``, Run All, wait for ``last`` (a selector) and for every cell to end."""
    page.goto(f"{lab.url}/lab/tree/{notebook.name}?token={lab.token}&reset")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel; return !!k && k.status === 'idle'; }",
        timeout=45_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(last, state="attached", timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'idle' && ![...document.querySelectorAll('.jp-InputPrompt')]"
        ".some(p => p.textContent.includes('*'))",
        timeout=60_000,
    )


def _success_callback(task_id: str, state: dict) -> bytes:
    """A success callback in the seeds' shape, for the task the notebook left pending."""
    track = {
        "id": str(uuid.uuid4()),
        "audio_url": state["original"]["audio_url"],
        "stream_audio_url": state["original"]["audio_url"],
        "image_url": state["original"]["image_url"],
        "prompt": "[Outro] Fade into the night",
        "model_name": "chirp-v3-5",
        "title": "Harbour Lights (new outro)",
        "tags": "indie pop, strings",
        "createTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "duration": 60.0,
    }
    body = {
        "code": 200,
        "msg": "All generated successfully.",
        "data": {"callbackType": "complete", "task_id": task_id, "data": [track]},
    }
    return json.dumps(body).encode()


def _shot(locator, name: str) -> None:
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(ARTIFACTS / name))


def test_widgets_update_live_in_jupyterlab(lab, page):
    started = time.monotonic()
    # every cell ran: the last one's audition lanes are in the page
    _run_all(page, lab, NOTEBOOK, ".snb-audition .snb-lane")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()

    state = json.loads((lab.root / "browser_state.json").read_text())
    pending, done = state["pending_task_id"], state["done_task_id"]

    # --- the tracker: pending row, then a callback POSTed with no cell running -----
    tracker_box = page.locator(".widget-vbox", has=page.locator("table.suno-nb-tracker")).last
    page.wait_for_selector(f"tr[data-task-id='{pending}'][data-state='pending']")
    page.wait_for_selector(f"tr[data-task-id='{done}'][data-state='succeeded']")
    assert "waiting for the callback" in tracker_box.inner_text()
    _shot(tracker_box, "tracker-before.png")
    with _direct() as http:
        reply = http.post(
            state["receiver_url"],
            data=_success_callback(pending, state),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
    assert reply.status_code == 200 and reply.json()["code"] == 200
    t0 = time.monotonic()
    page.wait_for_selector(f"tr[data-task-id='{pending}'][data-state='succeeded']", timeout=10_000)
    live_update_s = time.monotonic() - t0
    row = page.locator(f"tr[data-task-id='{pending}']")
    assert "succeeded" in row.inner_text() and "callback" in row.inner_text()
    assert "2 succeeded" in tracker_box.inner_text()
    _shot(tracker_box, "tracker-after.png")

    # --- the audition (tested in depth by test_audition_plays_switches_seeks_and_rates) -----
    audition_box = page.locator(".snb-audition").last
    page.wait_for_selector(".snb-audition .snb-lane[data-ready='true']", timeout=30_000)
    assert audition_box.locator(".snb-lane").count() == 3  # original + 2 takes

    # --- waveform picture decoded (the form's) -----
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('img.widget-image')]"
        ".filter(i => i.getAttribute('src'));"
        " return imgs.length >= 1 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        timeout=20_000,
    )
    widths = page.eval_on_selector_all(
        "img.widget-image", "els => els.filter(i => i.getAttribute('src')).map(i => i.naturalWidth)"
    )
    assert len(widths) >= 1 and min(widths) >= 800, widths

    form_box = page.locator(".widget-vbox", has=page.locator("text=Replace a section")).last
    assert "Ready to submit" in form_box.inner_text()
    assert page.locator("button:has-text('Submit')").first.is_enabled()
    _shot(form_box, "submit-form.png")
    _shot(audition_box, "audition.png")
    # the whole notebook in one picture: a tall window, scrolled to the top
    page.set_viewport_size({"width": 1400, "height": 3000})
    page.evaluate(
        "() => document.querySelectorAll('.jp-NotebookPanel .jp-WindowedPanel-outer')"
        ".forEach(e => { e.scrollTop = 0; })"
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "notebook.png"))

    assert live_update_s < 5, f"the tracker took {live_update_s:.1f} s to show the callback"
    assert time.monotonic() - started < 60


# --- the audition: A/B player in a real browser -----------------------------------------------

# Run code in the notebook's kernel from the page (as a cell would), return its printed text.
KERNEL_EXEC = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let out = "";
  future.onIOPub = (msg) => {
    const c = msg.content;
    if (msg.header.msg_type === "stream") out += c.text;
    if (msg.header.msg_type === "error") out += `${c.ename}: ${c.evalue}`;
  };
  await future.done;
  return out;
}"""
# Current time, paused flag and error of each lane's <audio> element.
MEDIA_STATE = (
    "() => [...document.querySelectorAll('.snb-audition .snb-lane audio.snb-media')]"
    ".map(a => ({t: a.currentTime, paused: a.paused, error: a.error && a.error.code}))"
)


@pytest.fixture
def audition_lab(tmp_path) -> Iterator[Lab]:
    yield from _serve(AUDITION_NOTEBOOK, tmp_path)


@pytest.fixture
def audio_page(audition_lab):
    yield from _browse("--autoplay-policy=no-user-gesture-required")


def _stale_audition_says_so(page, stale: dict[str, Any]) -> None:
    """The notebook's last audition: a task of a second sandbox that stopped before anything
    fetched its audio.  Its widget says so in plain words; then it is closed, so the rest of
    the test drives the one playable audition."""
    assert len(stale["urls"]) == 3 and stale["cached_before"] == [], stale  # never fetched
    assert stale["cached_after"] == [], stale  # and could not be fetched by the audition
    with _direct() as http, pytest.raises(requests.ConnectionError):
        http.get(stale["urls"][0], timeout=5)
    page.wait_for_function("() => document.querySelectorAll('.snb-audition').length === 2")
    box = page.locator(".snb-audition").last  # the notebook's last cell
    said = box.inner_text()
    assert f"task {stale['task_id'][:8]}" in said, said
    assert "The audio of the original cannot be fetched: the server did not answer" in said, said
    lanes = box.locator(".snb-lane")
    assert lanes.count() == 2 and box.locator(".snb-lane[data-error='true']").count() == 2
    for i, lane in enumerate(lanes.all(), start=1):
        assert f"The audio of take {i} cannot be fetched:" in lane.inner_text()
    assert box.locator(".snb-lane[data-ready='true']").count() == 0  # no dead player
    _shot(box, "audition-stale.png")
    assert page.evaluate(KERNEL_EXEC, "au_stale.close()") == ""
    page.wait_for_function("() => document.querySelectorAll('.snb-audition').length === 1")


def _position(page) -> float:
    return float(page.get_attribute(".snb-audition", "data-position") or 0)


def test_audition_plays_switches_seeks_and_rates(audition_lab, audio_page):
    lab, page = audition_lab, audio_page
    _run_all(page, lab, AUDITION_NOTEBOOK, ".snb-audition .snb-lane")
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()
    state = json.loads((lab.root / "audition_state.json").read_text())
    _stale_audition_says_so(page, state["stale"])
    # The sandbox has stopped: the browser cannot fetch the audio from it any more ...
    with _direct() as http, pytest.raises(requests.ConnectionError):
        http.get(state["song_url"], timeout=5)
    # ... and yet every lane has its audio (sent by the kernel from its cache).
    page.wait_for_function(
        "() => document.querySelectorAll(\".snb-lane[data-ready='true']\").length === 3",
        timeout=30_000,
    )
    root = page.locator(".snb-audition")
    assert root.locator(".snb-lane[data-error]").count() == 0
    assert "offset" in root.inner_text() and "loudness" in root.inner_text()
    _shot(root, "audition-light.png")

    # --- play, then "2": take 1 at the same position -----
    root.locator(".snb-play").click()
    page.wait_for_function(
        "() => parseFloat(document.querySelector('.snb-audition').dataset.position) > 1.5",
        timeout=15_000,
    )
    page.keyboard.press("2")
    media = page.evaluate(MEDIA_STATE)
    assert page.get_attribute(".snb-audition", "data-active") == "1"
    assert media[0]["paused"] and not media[1]["paused"] and media[2]["paused"]  # exclusive
    # the original stopped where take 1 started; take 1 has played on only since the key
    switched_at, take_now = media[0]["t"], media[1]["t"]
    assert -0.1 <= take_now - switched_at <= 0.1 + 0.25, media
    page.wait_for_timeout(500)
    media = page.evaluate(MEDIA_STATE)
    assert media[1]["t"] > switched_at + 0.2 and media[1]["error"] is None  # still playing

    # --- a click on a waveform seeks there (and makes that lane the one playing) -----
    wave = root.locator(".snb-lane").nth(2).locator(".snb-wave")
    box = wave.bounding_box()
    assert box is not None
    wave.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    page.wait_for_timeout(300)
    assert page.get_attribute(".snb-audition", "data-active") == "2"
    media = page.evaluate(MEDIA_STATE)
    assert abs(media[2]["t"] - 45.0) < 1.5, media  # 75 % of 60 s
    assert abs(_position(page) - 45.0) < 1.5
    assert media[2]["error"] is None and not media[2]["paused"]

    # --- level-matched: the louder sections are turned down, the quietest plays at 1 -----
    root.locator("input.snb-level").check()
    volumes = page.eval_on_selector_all(
        ".snb-lane audio.snb-media", "els => els.map(a => a.volume)"
    )
    assert max(volumes) == 1.0 and all(0.3 < v <= 1.0 for v in volumes), volumes
    root.locator("input.snb-level").uncheck()
    assert page.eval_on_selector_all(
        ".snb-lane audio.snb-media", "els => els.map(a => a.volume)"
    ) == [1.0, 1.0, 1.0]

    # --- loop the section with pre-roll -----
    root.locator("input.snb-loop").check()
    page.wait_for_timeout(400)
    assert 17.0 - 0.1 <= _position(page) <= 35.0, _position(page)  # 20-32 s ± 3 s context
    root.locator(".snb-play").click()  # pause
    assert page.get_attribute(".snb-audition", "data-playing") == "false"

    # --- a star click lands in the ledger: rx.frame() in the kernel -----
    take1 = state["takes"][0]
    root.locator(".snb-lane").nth(1).locator(".snb-star[data-stars='4']").click()
    page.wait_for_selector(".snb-lane[data-stars='4']", timeout=10_000)
    code = (
        "f = rx.frame().set_index('track_id')\n"
        f"print(int(f.loc['{take1}', 'rating']) if 'rating' in f.columns else "
        f"'no rating column', [r['stars'] for r in rx.store.ratings('{state['task_id']}')])"
    )
    out = page.evaluate(KERNEL_EXEC, code)
    assert out.strip() == "4 [4]", out

    # --- dark theme: the player follows JupyterLab's theme -----
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    page.wait_for_timeout(500)
    background = page.evaluate(
        "() => getComputedStyle(document.querySelector('.snb-audition')).backgroundColor"
    )
    rgb = [int(v) for v in background[background.index("(") + 1 : -1].split(",")[:3]]
    assert sum(rgb) / 3 < 90, background  # dark, not a white block
    _shot(root, "audition-dark.png")

    # --- saved from the browser, the notebook stays small and holds no audio -----
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=15_000
    )
    saved = (lab.root / AUDITION_NOTEBOOK.name).read_text()
    assert len(saved.encode()) < 1_000_000
    assert "audio/mpeg" not in saved and "data:audio" not in saved
    nb = json.loads(saved)
    state = json.dumps(nb["metadata"].get("widgets", {}))
    assert len(state) < 200_000 and "katspaugh" not in state  # no vendored player code either
