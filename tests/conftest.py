"""Shared fixtures: real receivers on 127.0.0.1:0, seed bodies, clean module state."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests

import suno_nb.session as session

# The browser test's notebook has no saved outputs; it is not an nbval subject.
collect_ignore_glob = ["browser/*.ipynb"]

# A shell without job control starts a background job (`bash .ci/run &`, nohup) with SIGINT
# ignored, and every child inherits that: the tests that press Ctrl-C on a child process
# would see nothing happen.  Restore Python's Ctrl-C handling here (exec resets a handler,
# not an ignore, so children get the default again).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

DATA = Path(__file__).parent / "data"
SEED_FILES = ("seed_success.json", "seed_failure_error.json", "seed_failure_null.json")
JSON = {"Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test sees the user's keys, tokens, ngrok config or working directory."""
    for var in (
        "SUNO_API_KEY",
        "SUNO_API_BASE_URL",
        "NGROK_AUTHTOKEN",
        "SUNO_WEBHOOK_HMAC_KEY",
        "PYNGROK_NGROK_PATH",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SUNO_NB_STATE_DIR", str(tmp_path / "state"))
    # Archiving on arrival is on by default, but seed bodies carry the hosted service's URLs:
    # archiving them would leave loopback.  tests/test_archive.py turns it on (and unsets this).
    monkeypatch.setenv("SUNO_NB_ARCHIVE", "0")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    yield
    session.stop_receiver()


def pytest_collection_modifyitems(items):
    """The notebooks under nbval are slow (a kernel each): out of the fast lane."""
    for item in items:
        if item.nodeid.startswith("notebooks/"):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config):
    """Keep caches and agent records of this run (nbval kernels included) out of HOME."""
    scratch = Path(tempfile.mkdtemp(prefix="suno_nb_tests_"))
    os.environ.setdefault("SUNO_NB_CACHE_DIR", str(scratch / "cache"))
    os.environ.setdefault("SUNO_NB_STATE_DIR", str(scratch / "state"))


def wait_until(predicate, timeout: float = 30.0) -> bool:
    """Wait (without sleeping the whole time away) until ``predicate()`` is truthy; False
    if ``timeout`` seconds pass first.  For conditions no event announces."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.02)
    return True


def seed_bytes(name: str) -> bytes:
    """A seed callback body, byte for byte."""
    return (DATA / name).read_bytes()


@pytest.fixture
def seeds() -> dict[str, bytes]:
    return {name: seed_bytes(name) for name in (*SEED_FILES, "seed_success_zh.json")}


@pytest.fixture
def rx(tmp_path):
    """A running local receiver on a fresh store file (no tunnel, no poller)."""
    receiver = session.start_receiver(
        tmp_path / "rx.sqlite3", tunnel=None, poll=False, request_timeout=2.0
    )
    yield receiver
    session.stop_receiver()


def post(
    url: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    session_: requests.Session | None = None,
) -> requests.Response:
    """POST raw bytes as the service would (JSON content type unless overridden)."""
    sender = session_ or requests
    return sender.post(url, data=body, headers={**JSON, **(headers or {})}, timeout=10)


@pytest.fixture
def no_proxy(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return os.environ["NO_PROXY"]
