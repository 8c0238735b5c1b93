"""The example notebooks: clean as saved, and safe to run again.

nbval compares each saved notebook's outputs with a fresh run, cell by cell (see
``tests/nbval_sanitize.cfg`` for the command). These tests cover the rest:

- a saved notebook has no error output, no secret-looking string, no stderr, and is small;
- "restart kernel and run all" twice in a row in one folder, so the second run reuses the
  store file the first one left, and both runs show the same outputs;
- running the ``start_receiver()`` cell a second time leaves one receiver on the same port,
  and the notebook still passes;
- notebook 02's hosted branch runs with keys set, against a sandbox posing as the hosted API
  and a fake ngrok agent, and no key ends up in its outputs.

Each run executes a copy of the notebook with nbclient, in a temporary folder, on this
Python's kernel. conftest.py clears the keys and tokens from the environment.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import secrets
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from suno_nb.sandbox import Sandbox
from suno_nb.store import Store
from suno_nb.tutorials import run_notebook

from .conftest import wait_until

pytestmark = pytest.mark.slow  # run by CI, not in the fast lane (pytest -m 'not slow')

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
SANITIZE_FILE = Path(__file__).with_name("nbval_sanitize.cfg")
NOTEBOOKS = (
    "01_quickstart.ipynb",
    "02_hosted_api.ipynb",
    "03_batch_and_analysis.ipynb",
    "04_reliability_and_security.ipynb",
)
MAX_BYTES = 1_000_000
SECRET_PATTERNS = {
    "API key": re.compile(r"sk-[A-Za-z0-9_-]{8,}"),
    "Bearer token": re.compile(r"Bearer\s+\S{8,}"),
    "callback path token": re.compile(r"/callback/[A-Za-z0-9_-]{16,}"),
    "ngrok authtoken": re.compile(r"[0-9A-Za-z]{20,}_[0-9A-Za-z]{20,}"),
}
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"
# Output types nbval does not compare either: pictures, and widget views (random model ids).
UNCOMPARED = {"image/png", "image/jpeg", "application/vnd.jupyter.widget-view+json"}
CELL_TIMEOUT = 120  # seconds per cell
FAKE_NGROK = Path(__file__).resolve().parent / "fake_ngrok" / "fake_ngrok.py"

RECEIVER_PROBE = "_rx_first, _port_first = rx, rx.port"
RECEIVER_CHECK = """\
import threading

import suno_nb

_names = sorted(t.name for t in threading.enumerate() if t.name.startswith("suno_nb-"))
assert rx is _rx_first and rx.port == _port_first, (rx.port, _port_first)
assert suno_nb.current_receiver() is rx
assert [n for n in _names if n.startswith("suno_nb-receiver-")] == [
    f"suno_nb-receiver-{rx.port}"
], _names
assert _names.count("suno_nb-dispatch") == 1, _names  # the poller runs on it
assert _names.count("suno_nb-store-writer") == 1, _names
"""
ALL_STOPPED = """\
import threading

import suno_nb

suno_nb.stop_receiver()  # what each notebook's last words say to run when done (idempotent)
_names = [t.name for t in threading.enumerate()]
assert suno_nb.current_receiver() is None
assert not [n for n in _names if n.startswith(("suno_nb-receiver-", "suno_nb-poller"))], _names
"""


@pytest.fixture(autouse=True)
def _home_exists():
    """conftest.py points HOME at a folder it does not create; kernels write there (IPython's
    profile, the audio cache)."""
    Path(os.environ["HOME"]).mkdir(parents=True, exist_ok=True)


# --- helpers ---------------------------------------------------------------------------------


def read(name: str) -> Any:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def execute(nb: Any, cwd: Path) -> Any:
    """Run ``nb`` top to bottom in a fresh kernel whose working directory is ``cwd``, the
    way ``python -m suno_nb quickstart`` does (its kernel on IPC sockets: no TCP port that a
    test running beside it could take first).

    Raises ``CellExecutionError`` (with the cell's traceback) when a cell fails.
    """
    return run_notebook(nb, cwd, timeout=CELL_TIMEOUT)


def code_cells(nb: Any) -> list[Any]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def sanitizer() -> list[tuple[re.Pattern[str], str]]:
    """The (regex, replacement) pairs of nbval_sanitize.cfg, parsed the way nbval does."""
    text = SANITIZE_FILE.read_text(encoding="utf-8")
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)
    assert pairs, f"no regex/replace pairs in {SANITIZE_FILE}"
    return [(re.compile(regex), replace) for regex, replace in pairs]


def comparable(cell: Any, patterns: list[tuple[re.Pattern[str], str]]) -> list[Any]:
    """A code cell's outputs as nbval compares them: sanitized, pictures and widget ids
    left out, streams merged by name."""

    def clean(value: Any) -> Any:
        if isinstance(value, list):
            value = "".join(value)
        if isinstance(value, str):
            for regex, replace in patterns:
                value = regex.sub(replace, value)
        return value

    streams: dict[str, str] = {}
    shown: list[Any] = []
    for output in cell.outputs:
        if output.output_type == "stream":
            streams[output.name] = streams.get(output.name, "") + clean(output.text)
        elif output.output_type == "error":
            shown.append(("error", output.ename, clean(output.evalue)))
        else:
            data = {k: clean(v) for k, v in output.get("data", {}).items() if k not in UNCOMPARED}
            shown.append(data)
    return [*sorted(streams.items()), *shown]


def assert_same_outputs(first: Any, second: Any, name: str) -> None:
    """Every compared cell shows the same (sanitized) outputs in both runs."""
    patterns = sanitizer()
    cells = list(zip(code_cells(first), code_cells(second), strict=True))
    for i, (a, b) in enumerate(cells, start=1):
        assert a.source == b.source
        if IGNORE_MARKER in a.source:
            continue
        got, want = comparable(b, patterns), comparable(a, patterns)
        assert got == want, f"{name}, code cell {i} ({a.source.splitlines()[0]!r}) differs"


def problems(nb: Any) -> list[str]:
    """Error outputs and stderr text (a warning from a background thread, say) in ``nb``."""
    found = []
    for i, cell in enumerate(code_cells(nb), start=1):
        for output in cell.outputs:
            if output.output_type == "error":
                found.append(f"code cell {i}: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr":
                found.append(f"code cell {i} wrote to stderr: {output.text[:300]!r}")
    return found


def with_receiver_cell_twice(nb: Any) -> Any:
    """A copy of ``nb`` that runs its first ``start_receiver(`` cell twice, then checks that
    the second run reused the receiver; and checks at the end that everything stopped."""
    nb = copy.deepcopy(nb)
    index = next(
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and "start_receiver(" in cell.source
    )
    again = new_code_cell(nb.cells[index].source)
    nb.cells[index + 1 : index + 1] = [
        new_code_cell(RECEIVER_PROBE),
        again,
        new_code_cell(RECEIVER_CHECK),
    ]
    nb.cells.append(new_code_cell(ALL_STOPPED))
    return nb


def printed(*cells: Any) -> str:
    """Everything ``cells`` showed as text."""
    parts = []
    for cell in cells:
        for output in cell.outputs:
            if output.output_type == "stream":
                parts.append(output.text)
            elif "data" in output:
                parts.append(str(output.data.get("text/plain", "")))
    return "\n".join(parts)


# --- the saved notebooks -------------------------------------------------------------------------


def test_the_notebook_folder_has_the_four_tutorials_and_an_index():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == list(NOTEBOOKS)
    index = (NOTEBOOK_DIR / "README.md").read_text(encoding="utf-8")
    for name in NOTEBOOKS:
        assert name in index, f"notebooks/README.md does not mention {name}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_saved_notebook_is_clean(name):
    path = NOTEBOOK_DIR / name
    raw = path.read_text(encoding="utf-8")
    assert path.stat().st_size < MAX_BYTES, f"{name} is {path.stat().st_size} bytes"
    for label, pattern in SECRET_PATTERNS.items():
        hits = pattern.findall(raw)
        assert not hits, f"{name} contains a {label}-like string: {hits[:3]}"
    nb = nbformat.reads(raw, as_version=4)
    nbformat.validate(nb)
    assert not problems(nb)
    # Widget state (the audition's waveform PNG, say) bloats the file and plays nothing.
    assert "widgets" not in nb.metadata, "save without widget state: see notebooks/README.md"
    # Saved from one clean run, top to bottom: execution counts 1, 2, 3, ...
    counts = [cell.execution_count for cell in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), counts
    # nbval ignores few cells, each for a stated reason (the comment on the next line).
    ignored = [c for c in code_cells(nb) if IGNORE_MARKER in c.source]
    assert len(ignored) <= 2, f"{len(ignored)} cells of {name} are ignored by nbval"


# --- running them --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_restart_and_run_all_twice_in_the_same_folder(name, tmp_path):
    """The second run reuses the store file of the first and shows the same outputs; in
    both, running the ``start_receiver`` cell twice keeps one receiver (checked by cells
    added after it), and the notebook's last words stop everything."""
    first = execute(with_receiver_cell_twice(read(name)), tmp_path)
    assert not problems(first), problems(first)
    stores = sorted(p.name for p in tmp_path.glob("*.sqlite3"))
    assert len(stores) == 1, stores
    if name == "01_quickstart.ipynb":  # python -m suno_nb quickstart reads this file
        assert stores == ["suno_callbacks.sqlite3"]

    second = execute(with_receiver_cell_twice(read(name)), tmp_path)
    assert not problems(second), problems(second)
    assert sorted(p.name for p in tmp_path.glob("*.sqlite3")) == stores
    assert_same_outputs(first, second, name)


# --- notebook 02 with keys -----------------------------------------------------------------------


def load_fake_ngrok() -> Any:
    spec = importlib.util.spec_from_file_location("fake_ngrok", FAKE_NGROK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def hosted_env(monkeypatch, tmp_path):
    """Keys in the environment; "the hosted API" is a sandbox, ngrok a local fake agent."""
    sb = Sandbox(delay=1.0, retry_backoff=0.2).start()
    try:
        song = sb.create_song(duration=120, title="Hosted Original", tags="indie pop")
        authtoken = f"2{secrets.token_hex(13)}_{secrets.token_hex(12)}"  # ngrok's shape
        ngrok_path = load_fake_ngrok().install(tmp_path / "bin")
        for name, value in {
            "SUNO_API_KEY": sb.api_key,
            "SUNO_API_BASE_URL": sb.url,
            "NGROK_AUTHTOKEN": authtoken,
            "PYNGROK_NGROK_PATH": ngrok_path,
            "SUNO_ORIGINAL_TASK_ID": song.task_id,
            "SUNO_ORIGINAL_AUDIO_ID": song.audio_id,
        }.items():
            monkeypatch.setenv(name, value)
        yield {"api_key": sb.api_key, "authtoken": authtoken, "ngrok_path": ngrok_path}
    finally:
        sb.stop()


def _agents(ngrok_path: str) -> list[int]:
    """Pids of live processes started from ``ngrok_path``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if ngrok_path.encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def test_hosted_branch_uses_the_keys_and_the_tunnel_and_shows_no_secret(hosted_env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    nb = execute(read("02_hosted_api.ipynb"), work)
    assert not problems(nb), problems(nb)
    text = printed(*code_cells(nb))
    for line in (
        "Using the hosted Suno API",
        "mode: ngrok",
        "API key in the outputs: False",
        "ngrok authtoken in the outputs: False",
        "callback path token in the outputs: False",
    ):
        assert line in text
    (deliveries,) = [c for c in code_cells(nb) if c.source.startswith("deliveries = ")]
    assert "True" in printed(deliveries)  # via_tunnel: the callback came through ngrok

    store = Store(work / "02_hosted_api.sqlite3")
    try:
        token = store.get_meta("callback_token")
    finally:
        store.close()
    saved = nbformat.writes(nb)
    for label, value in [
        ("API key", hosted_env["api_key"]),
        ("ngrok authtoken", hosted_env["authtoken"]),
        ("callback token", token),
    ]:
        assert value and value not in saved, f"the {label} is in the executed notebook"
    for label, pattern in SECRET_PATTERNS.items():
        assert not pattern.findall(saved), label

    gone = wait_until(lambda: not _agents(hosted_env["ngrok_path"]))
    assert gone, "the ngrok agent outlived the kernel"
