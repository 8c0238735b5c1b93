"""The widgets in a real browser: JupyterLab on loopback, driven by headless Chromium.

A copy of ``tests/browser/widgets_demo.ipynb`` runs in a real kernel (Sandbox + receiver +
client + the three widgets).  Then, with the kernel idle and no cell running, the test POSTs
a callback to the kernel's receiver and waits for the tracker row to change IN THE PAGE;
it also checks the audition's audio players and the submit form's waveform.  A
second test re-runs the tracker's cell: the widget models in the kernel and in the page do
not grow, a tracker made in another cell leaves a note in the old cell's output, and the
tracker stays dark in JupyterLab's dark theme.  Screenshots go to
``test-artifacts/browser/``.  Waits are on events and page conditions, never on sleeps.

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
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = [pytest.mark.browser, pytest.mark.slow]

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
        # a short folder for the kernels' socket files (a socket path has ~100 bytes at most)
        self.sockets = tempfile.mkdtemp(prefix="suno_nb_lab_")
        settings = home / "lab-settings"
        for name, value in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        self.log_path = home / "lab.log"
        self._ready = threading.Event()
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        }
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
                # kernels on IPC sockets: no TCP port that a test beside it could take first
                "--KernelManager.transport=ipc",
                f"--KernelManager.ip={self.sockets}/kernel",
                "--LabApp.expose_app_in_browser=True",
                f"--LabApp.user_settings_dir={settings}",
                f"--LabApp.workspaces_dir={home / 'lab-workspaces'}",
                # DEBUG logs when the extensions started: the loop had bound the port by then
                "--ServerApp.log_level=DEBUG",
            ],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Lab's output is copied to lab.log by a reader that notes when Lab's extensions
        # started (after its loop bound the port): readiness is an event, not a polling loop
        self._copier = threading.Thread(target=self._copy, name="lab-log", daemon=True)
        self._copier.start()
        self.http = _direct()
        self.http.headers["Authorization"] = f"token {self.token}"

    def _copy(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("wb") as log:
            for line in self.proc.stdout:  # until Lab exits
                log.write(line)
                log.flush()
                if b"jupyterlab | extension was successfully started" in line:
                    self._ready.set()
        self._ready.set()  # Lab exited: wake the waiter, which reports it

    def wait_ready(self, timeout: float = 40.0) -> None:
        if not self._ready.wait(timeout):
            raise AssertionError(f"JupyterLab did not start in {timeout:g} s:\n{self.log()}")
        if self.proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited early:\n{self.log()}")
        assert self.http.get(f"{self.url}/api/status", timeout=10).status_code == 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

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
            self._copier.join(10)  # the pipe closed with Lab
            self.http.close()
            shutil.rmtree(self.sockets, ignore_errors=True)


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


IDLE = (
    "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
    " === 'idle' && ![...document.querySelectorAll('.jp-InputPrompt')]"
    ".some(p => p.textContent.includes('*'))"
)


def _run_all(page, lab: Lab, notebook: Path, last: str, prepare: str | None = None) -> None:
    """Open ``notebook``, Run All, wait for ``last`` (a selector) and for every cell to end.
    ``prepare``: a script to evaluate once the kernel is ready, before Run All."""
    page.goto(f"{lab.url}/lab/tree/{notebook.name}?token={lab.token}&reset")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel; return !!k && k.status === 'idle'; }",
        timeout=45_000,
    )
    if prepare is not None:
        page.evaluate(prepare)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_selector(last, state="attached", timeout=60_000)
    page.wait_for_function(IDLE, timeout=60_000)


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
    page.wait_for_selector(f"tr[data-task-id='{pending}'][data-state='succeeded']")
    row = page.locator(f"tr[data-task-id='{pending}']")
    assert "succeeded" in row.inner_text() and "callback" in row.inner_text()
    assert "2 succeeded" in tracker_box.inner_text()
    _shot(tracker_box, "tracker-after.png")

    # --- the audition (tested in depth by test_audition_plays_switches_seeks_and_rates) -----
    # The new result is followed (nothing is playing, the focus is elsewhere): the player
    # moves from the first task (original + 2 takes) to the one just called back (40-52 s,
    # original + its 1 take), its picker listing both.
    audition_box = page.locator(".snb-audition").last
    page.wait_for_selector(
        f".snb-audition[data-task='{pending}'][data-section='40,52'] .snb-lane[data-ready='true']",
        timeout=30_000,
    )
    assert audition_box.locator(".snb-lane").count() == 2
    assert audition_box.locator(".snb-lane[data-kind='take']").count() == 1
    assert audition_box.locator("select.snb-picker option").count() == 2

    # --- the form's waveform, drawn in the page from the kernel's peaks -----
    page.wait_for_selector(".snb-submit[data-ready='true']", timeout=30_000)
    width = page.evaluate("() => document.querySelector('.snb-submit .snb-wave').clientWidth")
    assert width >= 300, width

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
    page.evaluate(NEXT_FRAMES)  # laid out and painted after the scroll
    page.screenshot(path=str(ARTIFACTS / "notebook.png"))


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
# The mean of a CSS colour's red, green and blue (0..255): rgb()/rgba() or color(srgb ...).
LUMA = (
    "((c) => { const v = c.match(/[\\d.]+/g).map(Number);"
    " const k = c.startsWith('color(') ? 255 : 1; return (v[0] + v[1] + v[2]) * k / 3; })"
)
# Resolves after two animation frames: what was just changed is laid out and painted.
NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
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
        timeout=30_000,
    )
    page.keyboard.press("2")
    media = page.evaluate(MEDIA_STATE)
    assert page.get_attribute(".snb-audition", "data-active") == "1"
    assert media[0]["paused"] and not media[1]["paused"] and media[2]["paused"]  # exclusive
    # the original stopped where take 1 started; take 1 has played on only since the key
    switched_at, take_now = media[0]["t"], media[1]["t"]
    assert -0.1 <= take_now - switched_at <= 0.1 + 0.25, media
    page.wait_for_function(  # take 1 plays on
        "(t) => document.querySelectorAll('.snb-audition .snb-lane audio.snb-media')[1]"
        ".currentTime > t",
        arg=switched_at + 0.2,
    )
    media = page.evaluate(MEDIA_STATE)
    assert media[1]["error"] is None and not media[1]["paused"]

    # --- a click on a waveform seeks there (and makes that lane the one playing) -----
    wave = root.locator(".snb-lane").nth(2).locator(".snb-wave")
    box = wave.bounding_box()
    assert box is not None
    wave.click(position={"x": box["width"] * 0.75, "y": box["height"] / 2})
    page.wait_for_function(
        "() => document.querySelector('.snb-audition').dataset.active === '2'"
        " && Math.abs(document.querySelectorAll('.snb-audition .snb-lane audio.snb-media')[2]"
        ".currentTime - 45) < 1.5"
    )
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
    page.wait_for_function(  # back into the section ± 3 s of context (20-32 s)
        "() => { const p = parseFloat(document.querySelector('.snb-audition').dataset.position);"
        " return p >= 16.9 && p <= 35.0; }"
    )
    root.locator(".snb-play").click()  # pause
    assert page.get_attribute(".snb-audition", "data-playing") == "false"

    # --- a star click lands in the ledger: rx.frame() in the kernel -----
    take1 = state["takes"][0]
    root.locator(".snb-lane").nth(1).locator(".snb-star[data-stars='4']").click()
    page.wait_for_selector(".snb-lane[data-stars='4']", timeout=30_000)
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
    page.wait_for_function(  # dark, not a white block, once the theme's styles applied
        f"() => {LUMA}(getComputedStyle(document.querySelector('.snb-audition'))"
        ".backgroundColor) < 90"
    )
    _shot(root, "audition-dark.png")

    # --- saved from the browser, the notebook stays small and holds no audio -----
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000
    )
    saved = (lab.root / AUDITION_NOTEBOOK.name).read_text()
    assert len(saved.encode()) < 1_000_000
    assert "audio/mpeg" not in saved and "data:audio" not in saved
    nb = json.loads(saved)
    state = json.dumps(nb["metadata"].get("widgets", {}))
    assert len(state) < 200_000 and "katspaugh" not in state  # no vendored player code either


# --- the tracker: re-runs, a replaced tracker, the dark theme -----------------------------------

TRACKER_SOURCE = "snw.tracker(rx)"
# Widget models opened by the kernel (comm_open to the page) and not closed since: the models
# the page was given and still holds, counted from the kernel connection's public messages
# (installed before Run All, so it counts every model of the notebook).
WATCH_MODELS = """() => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const open = new Set();
  window.snbOpenModels = open;
  kernel.anyMessage.connect((_, { msg, direction }) => {
    if (direction !== "recv") return;
    const type = msg.header.msg_type;
    const widget = type === "comm_open" && msg.content.target_name === "jupyter.widget";
    if (widget) open.add(msg.content.comm_id);
    if (type === "comm_close") open.delete(msg.content.comm_id);
  });
}"""
# Widget comms the kernel has open (the kernel protocol's comm_info request).
KERNEL_COMMS = """async () => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const reply = await kernel.requestCommInfo({ target_name: "jupyter.widget" });
  return Object.keys(reply.content.comms).length;
}"""
KERNEL_MODELS = (
    "import warnings, ipywidgets\n"
    "with warnings.catch_warnings():\n"
    "    warnings.simplefilter('ignore', DeprecationWarning)\n"
    "    print(len(ipywidgets.Widget.widgets))"
)
# Run the code cell at index i (as Shift+Enter would, without moving on); resolves when done.
RUN_CELL = """async (i) => {
  const app = window.jupyterapp, nb = app.shell.currentWidget.content;
  nb.activeCellIndex = i;
  await app.commands.execute("notebook:run-cell");
}"""
ADD_CELL = """async (source) => {
  const app = window.jupyterapp, nb = app.shell.currentWidget.content;
  nb.activeCellIndex = nb.widgets.length - 1;
  await app.commands.execute("notebook:insert-cell-below");
  nb.activeCell.model.sharedModel.setSource(source);
  return nb.activeCellIndex;
}"""
CELL = "document.querySelectorAll('.jp-Notebook .jp-Cell')"
# The colour of an element's text, and of what is behind it (the nearest non-transparent
# background among its ancestors).
COLOURS = """(el) => {
  let bg = el;
  const clear = ["transparent", "rgba(0, 0, 0, 0)"];
  while (bg && clear.includes(getComputedStyle(bg).backgroundColor)) bg = bg.parentElement;
  return { fg: getComputedStyle(el).color, bg: bg ? getComputedStyle(bg).backgroundColor : "" };
}"""


def _luma(page, colour: str) -> float:
    return float(page.evaluate(f"(c) => {LUMA}(c)", colour))


def _models(page) -> dict[str, int]:
    kernel = int(page.evaluate(KERNEL_EXEC, KERNEL_MODELS).strip())
    return {
        "kernel": kernel,
        "kernel_comms": int(page.evaluate(KERNEL_COMMS)),
        "page": int(page.evaluate("() => window.snbOpenModels.size")),
    }


def test_tracker_reruns_leave_no_models_behind_and_a_replaced_one_says_so(lab, page):
    _run_all(page, lab, NOTEBOOK, ".snb-audition .snb-lane", prepare=WATCH_MODELS)
    index = page.evaluate(
        "(src) => window.jupyterapp.shell.currentWidget.content.widgets"
        ".findIndex(c => c.model.sharedModel.getSource().trim() === src)",
        TRACKER_SOURCE,
    )
    assert index > 0
    tracker_cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    tracker_cell.locator("table.suno-nb-tracker").wait_for()

    # --- re-run the tracker's cell: the models in the kernel and the page do not grow -----
    before = _models(page)
    counts = []
    for _ in range(10):
        page.evaluate(RUN_CELL, index)
        page.wait_for_function(IDLE)
        tracker_cell.locator("table.suno-nb-tracker").wait_for()
        counts.append(_models(page))
    kernel_counts = [c["kernel"] for c in counts]
    assert kernel_counts == [before["kernel"]] * 10, (before, counts)
    assert [c["kernel_comms"] for c in counts] == [before["kernel_comms"]] * 10, counts
    # the page holds as many models as the kernel: none left over from the old trackers
    assert [c["page"] for c in counts] == [before["page"]] * 10, counts
    assert before["page"] == before["kernel_comms"], before
    assert tracker_cell.locator("table.suno-nb-tracker").count() == 1
    (ARTIFACTS / "tracker-models.json").write_text(json.dumps({"before": before, "after": counts}))

    # --- a tracker in another cell: the old cell's output says it was replaced -----------
    added = page.evaluate(ADD_CELL, TRACKER_SOURCE)
    page.evaluate(RUN_CELL, added)
    page.wait_for_function(IDLE)
    new_cell = page.locator(".jp-Notebook .jp-Cell").nth(added)
    new_cell.locator("table.suno-nb-tracker").wait_for()
    note = tracker_cell.locator(".widget-html", has_text="replaced by a newer tracker")
    note.wait_for()
    assert tracker_cell.locator("table.suno-nb-tracker").count() == 0
    _shot(tracker_cell, "tracker-replaced.png")

    # --- the dark theme: rows, dividers, notes and the stopped warning stay dark ----------
    page.evaluate(KERNEL_EXEC, "rx.stop()")
    new_cell.locator(".widget-toggle-button", has_text="pending").click()
    warning = new_cell.locator(".widget-html", has_text="receiver is stopped")
    warning.wait_for()
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
    page.wait_for_function(
        f"() => {LUMA}(getComputedStyle(document.querySelector('.jp-Notebook')).backgroundColor)"
        " < 90"
    )
    new_cell.locator(".widget-toggle-button", has_text="all").click()
    first_cell = new_cell.locator("table.suno-nb-tracker tbody td").first
    first_cell.wait_for()
    divider = first_cell.evaluate("el => getComputedStyle(el).borderBottomColor")
    assert _luma(page, divider) < 110, divider  # not a light line on a dark page
    row = first_cell.evaluate(COLOURS)
    assert _luma(page, row["fg"]) > 150 and _luma(page, row["bg"]) < 90, row
    for box in (
        warning.locator("div").first,
        note.locator("div").first,
    ):
        colours = box.evaluate(COLOURS)
        assert _luma(page, colours["fg"]) > 150, colours  # light text ...
        assert _luma(page, colours["bg"]) < 90, colours  # ... on a dark note, not a light one
    page.evaluate(NEXT_FRAMES)
    _shot(new_cell, "tracker-dark.png")
    _shot(tracker_cell, "tracker-replaced-dark.png")
