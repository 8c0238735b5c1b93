"""The soak at CI scale: nothing acknowledged is lost, whatever the callbacks go through.

``benchmarks/bench_soak.py`` runs the same checks on 10,000 callbacks.  Both sides are counted
independently: the Sandbox's delivery log says which attempts were answered 200, the store file
(read after the receiver stopped) says what was kept.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import suno_nb.session as session
from suno_nb import Faults, Sandbox, SunoClient, tunnel
from suno_nb.contract import get_provider
from suno_nb.store import Store

from .conftest import wait_until

# The soaks send bursts far past the 20 requests per 10 s a key may send: their subject is
# the receiver under load, so neither the client nor the sandbox enforces the rate here.
UNLIMITED = dataclasses.replace(get_provider(), rate_limit=None)

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # CI runs them, one at a time

FAKE = Path(__file__).resolve().parent / "fake_ngrok" / "fake_ngrok.py"
TOKEN = "fake-token"
SONG_S = 120.0
TRACKS = 2  # the Sandbox's tracks_per_task


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def ngrok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake agent's paths; every agent is ended at teardown (SUNO_NB_STATE_DIR is tmp)."""
    spec = importlib.util.spec_from_file_location("fake_ngrok_for_soak", FAKE)
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    config = tmp_path / "ngrok.yml"
    config.write_text("version: 3\n")
    for knob in ("FAKE_NGROK_FAIL", "FAKE_NGROK_HANG", "FAKE_NGROK_REQUIRE_TOKEN"):
        monkeypatch.delenv(knob, raising=False)
    yield {"ngrok_path": fake.install(tmp_path / "bin"), "ngrok_config_path": str(config)}
    session.stop_receiver()
    tunnel.close_all()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _attempts(sb: Sandbox, task_ids: list[str]) -> pd.DataFrame:
    log = sb.delivery_frame()
    return log[log["task_id"].isin(set(task_ids))]


def _store(path: Path) -> dict[str, Any]:
    """Tasks, callback rows answered 200, accepted rows and tracks, per task, from the file."""
    store = Store(path)
    try:
        tasks = {r["task_id"]: dict(r) for r in store.query("SELECT * FROM tasks")}
        deliveries = store.query("SELECT task_id, source, status, verdict FROM deliveries")
        tracks = store.query("SELECT task_id, track_id FROM tracks")
    finally:
        store.close()
    return {
        "tasks": tasks,
        "stored": Counter(
            d["task_id"] for d in deliveries if d["source"] == "callback" and d["status"] == 200
        ),
        "accepted": Counter(d["task_id"] for d in deliveries if d["verdict"] == "accepted"),
        "tracks": Counter(t["task_id"] for t in tracks),
        "track_keys": [(t["task_id"], t["track_id"]) for t in tracks],
    }


def _lost(log: pd.DataFrame, rows: dict[str, Any]) -> int:
    """Attempts answered 200 with no stored callback row of their task to match them."""
    acked = Counter(log.loc[log["status"] == 200, "task_id"])
    return sum(max(0, n - rows["stored"].get(t, 0)) for t, n in acked.items())


def _settle(sb: Sandbox, rx: Any, task_ids: list[str], timeout: float = 120.0) -> None:
    """Until every task has its final result, the Sandbox has nothing scheduled (copies and
    retries included) and the receiver has committed all it got (``timeout``: anti-hang)."""
    for task_id in task_ids:
        rx.wait(task_id, timeout=timeout, progress=False)
    assert sb.wait_idle(timeout), f"the sandbox still had work after {timeout} s"
    assert rx.flush(timeout)


def _submit(client: SunoClient, song: Any, n: int) -> str:
    job = client.replace_section(
        task_id=song.task_id,
        audio_id=song.audio_id,
        prompt=f"soak {n}",
        tags="soak",
        title=f"S{n}",
        full_lyrics="[Verse] la la la\n[Chorus] new words",
        infill_start_s=10.0,
        infill_end_s=20.0,
        original_duration=SONG_S,
    )
    return job.task_id


# --- the tunnel dropped mid-burst --------------------------------------------------------------


def test_tunnel_dropped_mid_burst_loses_nothing_and_polling_recovers_the_rest(ngrok, tmp_path):
    path = tmp_path / "tunnel.sqlite3"
    with Sandbox(delay=0.3, retry_backoff=0.3, callback_timeout=2.0, rate_limit=False) as sb:
        rx = session.start_receiver(
            path,
            tunnel="ngrok",
            authtoken=TOKEN,
            poll_interval=0.5,
            poll_grace=2.0,
            **ngrok,
        )
        client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx, provider=UNLIMITED)
        assert rx.mode == "ngrok" and rx.url.startswith(rx.public_url) and rx.url != rx.local_url
        pid, public = rx.tunnel.agent_pid, rx.public_url
        song = sb.create_song(duration=SONG_S)
        results: list[str] = []
        through = threading.Event()  # five results came through the tunnel: then it drops

        @rx.on_callback
        def count(event: Any) -> None:
            results.append(event.task_id)
            if len(results) >= 5:
                through.set()

        task_ids = []
        for n in range(36):  # results fan out over 0.3-2.05 s after each submission
            sb.inject(Faults(duplicates=1 if n % 4 == 0 else 0, extra_delay=n * 0.05))
            task_ids.append(_submit(client, song, n))
        assert through.wait(60), "no callback came through the tunnel"
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)  # the tunnel drops mid-burst: the public URL is dead
        _settle(sb, rx, task_ids)
        log = _attempts(sb, task_ids)
    session.stop_receiver()
    tunnel.close_all()
    rows = _store(path)

    assert log["url"].str.startswith(public).all()  # every callback went through the tunnel
    lost = _lost(log, rows)
    assert lost == 0  # zero acknowledged callbacks lost
    tasks = {t: rows["tasks"][t] for t in task_ids}
    assert all(r["state"] == "succeeded" for r in tasks.values())
    sources = Counter(r["source"] for r in tasks.values())
    assert sources["callback"] > 0 and sources["poll"] > 0  # before the drop / after it
    after = log[log["sent_at"].map(lambda t: t.timestamp()) > killed_at]
    assert len(after) > 0 and after["status"].isna().sum() > 0  # the outage really happened
    assert (after["status"] == 200).sum() == 0
    # No duplicate rows whatever arrived twice (copies, a callback beside a poll answer).
    assert all(rows["tracks"][t] == TRACKS and rows["accepted"][t] == 1 for t in task_ids)
    assert len(rows["track_keys"]) == len(set(rows["track_keys"]))
    assert wait_until(lambda: not _alive(pid))  # no agent outlives the test
    assert tunnel.open_tunnels() == []


# --- 300 callbacks with duplicates and every failure ---------------------------------------------


def _mix(cycle: int) -> list[Faults]:
    """25 tasks: 16 plain, 3 duplicated (1-2 extra copies), one per error code (the 500
    also duplicated; body form alternating by cycle), one dropped (a 408 every other cycle)."""
    form = "error" if cycle % 2 == 0 else "null"
    mix = [Faults()] * 16 + [Faults(duplicates=1)] * 2 + [Faults(duplicates=2)]
    mix += [
        Faults(error_code=code, error_form=form, duplicates=1 if code == 500 else 0)
        for code in (400, 408, 500, 501, 531)
    ]
    mix += [Faults(drop=True, error_code=408 if cycle % 2 else None)]
    return [mix[(i * 7) % 25] for i in range(25)]  # spread every kind over the burst


def test_300_callbacks_with_duplicates_and_failures_end_as_planned(tmp_path):
    plan = [f for cycle in range(11) for f in _mix(cycle)][:260]
    copies = sum(0 if f.drop else 1 + f.duplicates for f in plan)
    assert copies >= 300
    path = tmp_path / "mixed.sqlite3"
    with Sandbox(delay=0.2, callback_timeout=5.0, credits=1e6, rate_limit=False) as sb:
        song = sb.create_song(duration=SONG_S)
        rx = session.start_receiver(path, tunnel=None, poll_interval=0.5, poll_grace=3.0)
        for f in plan:
            sb.inject(f, count=1)
        numbers = iter(range(len(plan)))
        lock = threading.Lock()
        errors: list[BaseException] = []

        def submit() -> None:  # four submitters, each with its own client
            with SunoClient(
                base_url=sb.url, api_key=sb.api_key, receiver=rx, provider=UNLIMITED
            ) as client:
                while True:
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    try:
                        _submit(client, song, n)
                    except Exception as exc:
                        errors.append(exc)

        threads = [threading.Thread(target=submit) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        # The Sandbox hands out injected faults in the order it creates tasks.
        task_ids = [t["task_id"] for t in sb.tasks() if t["type"] == "REPLACE_SECTION"]
        _settle(sb, rx, task_ids)
        log = _attempts(sb, task_ids)
    session.stop_receiver()
    rows = _store(path)

    assert len(task_ids) == len(plan)
    assert len(log) == copies and (log["status"] == 200).all()  # receiver up: no retries
    lost = _lost(log, rows)
    assert lost == 0
    per_task = Counter(log["task_id"])
    for task_id, f in zip(task_ids, plan, strict=True):
        row = rows["tasks"][task_id]
        expected = "failed" if f.error_code else "succeeded"
        assert row["state"] == expected, (task_id, f, row)
        assert row["code"] == (f.error_code or 200)
        assert per_task[task_id] == (0 if f.drop else 1 + f.duplicates)
        assert rows["stored"][task_id] == per_task[task_id]  # every copy kept as a row
        if f.drop:
            assert row["source"] == "poll"  # only the poller could know
        assert rows["accepted"][task_id] == 1  # one result decides; the rest are duplicates
        assert rows["tracks"][task_id] == (TRACKS if expected == "succeeded" else 0)
    assert len(rows["track_keys"]) == len(set(rows["track_keys"]))
    states = Counter(r["state"] for r in rows["tasks"].values() if r["task_id"] in set(task_ids))
    assert states == Counter("failed" if f.error_code else "succeeded" for f in plan)
