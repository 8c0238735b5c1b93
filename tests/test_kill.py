"""SIGKILL mid-burst: every callback that was acknowledged is in the store afterwards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from suno_nb.store import Store

from .conftest import seed_bytes

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # CI runs them, one at a time

ROOT = Path(__file__).resolve().parent.parent


def _body(n: int) -> bytes:
    doc = json.loads(seed_bytes("seed_success.json"))
    doc["data"]["task_id"] = f"kill-{n:05d}"
    doc["data"]["data"][0]["id"] = f"kill-track-{n:05d}"
    return json.dumps(doc).encode()


def start_child(store: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.httpchild", str(store), *extra],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = child.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), child.stderr.read()
    return child, url


@pytest.mark.parametrize("run", [1, 2, 3])
def test_sigkill_mid_burst_loses_no_acknowledged_callback(tmp_path, run):
    store = tmp_path / f"kill{run}.sqlite3"
    child, url = start_child(store)
    acked: list[str] = []
    lock = threading.Lock()
    counter = iter(range(1_000_000))
    stop = threading.Event()
    enough = threading.Event()  # set by the senders once 100 * run callbacks were acknowledged

    def sender() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                with lock:
                    n = next(counter)
                try:
                    r = s.post(
                        url,
                        data=_body(n),
                        headers={"Content-Type": "application/json"},
                        timeout=5,
                    )
                except requests.RequestException:
                    return  # the receiver is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(f"kill-{n:05d}")
                        if len(acked) >= 100 * run:
                            enough.set()

    threads = [threading.Thread(target=sender) for _ in range(6)]
    for t in threads:
        t.start()
    assert enough.wait(120), f"only {len(acked)} callbacks acknowledged"
    os.kill(child.pid, signal.SIGKILL)  # mid-burst: requests are in flight
    child.wait(30)
    stop.set()
    for t in threads:
        t.join(30)
    with lock:
        acknowledged = set(acked)
    assert len(acknowledged) >= 100 * run
    reopened = Store(store)
    try:
        stored = {r["task_id"] for r in reopened.query("SELECT task_id FROM tracks")}
    finally:
        reopened.close()
    assert acknowledged - stored == set()  # 0 acknowledged callbacks missing
