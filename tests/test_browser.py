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

import pytest
import requests

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = Path(__file__).parent / "browser" / "widgets_demo.ipynb"
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


@pytest.fixture
def lab(tmp_path) -> Iterator[Lab]:
    _require_chromium()
    root = tmp_path / "nb"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # never open the original (autosave)
    server = Lab(root, tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            pg = context.new_page()
            pg.set_default_timeout(30_000)
            yield pg
        finally:
            browser.close()


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
    page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}&reset")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session"
        " && w.sessionContext.session.kernel; return !!k && k.status === 'idle'; }",
        timeout=45_000,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    # every cell ran: the last one's audition players are in the page
    page.wait_for_selector(".suno-nb-audition audio", state="attached", timeout=45_000)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'idle' && ![...document.querySelectorAll('.jp-InputPrompt')]"
        ".some(p => p.textContent.includes('*'))"
    )
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.all_inner_texts()

    state = json.loads((lab.root / "browser_state.json").read_text())
    pending, done = state["pending_task_id"], state["done_task_id"]

    # --- the tracker: pending row, then a callback POSTed with no cell running ---------------
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

    # --- the audition: players streaming from the URLs, with media fragments -------------------
    audition_box = page.locator(".widget-vbox", has=page.locator(".suno-nb-audition")).last
    srcs = page.eval_on_selector_all(
        ".suno-nb-audition audio", "els => els.map(e => [e.getAttribute('src'), e.preload])"
    )
    assert len(srcs) == 6, srcs  # original + 2 takes, whole track and section each
    assert all(preload == "none" for _, preload in srcs)
    urls = [state["original"]["audio_url"], *state["takes"]]
    for url in urls:
        assert [url, "none"] in srcs
        assert [f"{url}#t=17.00,35.00", "none"] in srcs
    # one section player really streams: metadata loads from the sandbox, in the browser
    page.evaluate(
        "() => { const a = document.querySelector('.suno-nb-audition audio.suno-nb-section');"
        " a.preload = 'metadata'; a.load(); }"
    )
    duration = page.wait_for_function(
        "() => { const a = document.querySelector('.suno-nb-audition audio.suno-nb-section');"
        " return a.readyState >= 1 && a.duration > 0 ? a.duration : false; }",
        timeout=15_000,
    ).json_value()
    assert abs(duration - 60.0) < 1.0

    # --- waveform pictures decoded (form + audition) ----------------------------------------------
    page.wait_for_function(
        "() => { const imgs = [...document.querySelectorAll('img.widget-image')]"
        ".filter(i => i.getAttribute('src'));"
        " return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        timeout=20_000,
    )
    widths = page.eval_on_selector_all(
        "img.widget-image", "els => els.filter(i => i.getAttribute('src')).map(i => i.naturalWidth)"
    )
    assert len(widths) >= 2 and min(widths) >= 800, widths

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
