"""Soak: 10,000 Sandbox callbacks with duplicates and failures, a receiver restart and a
dropped tunnel mid-burst.  The pass criterion is **zero acknowledged callbacks lost**.

Three scenarios of ~10,000 callback deliveries each (8,771 tasks), each against a fresh
:class:`~suno_nb.sandbox.Sandbox` and a fresh store file, everything on 127.0.0.1 in this one
process (the Sandbox's loop and two workers, the receiver, its poller and the submitting
threads share the interpreter and the machine's cores).  Tasks are submitted through
:class:`~suno_nb.SunoClient` from 4 threads (one client each, ``receiver=rx`` per call, so the
restarted receiver records what follows the restart); each takes the next entry of a
fixed fault mix (:func:`fault_mix`): 70 % plain successes, successes sent twice or three times
(``duplicates=1..2``), each error code 400/408/500/501/531 (both failure body forms, the 500
also duplicated) and dropped callbacks (``drop=True``) that only the poller can recover.  The
sender follows the seeds' policy: 10 s timeout, 3 attempts, backoff 1 s then 2 s.

``mixed``
    The mix as is, the receiver up throughout.
``restart``
    Completions spread over a further 0-3 s, and the receiver stopped (the kernel dies) when
    half the tasks are submitted, then started again on the same port and store file after
    3.5 s, longer than the sender's whole retry window.  Submitting pauses while it is down,
    as a dead kernel submits nothing.
``tunnel``
    The receiver behind an ngrok tunnel (the real pyngrok driving the fake agent of
    ``tests/fake_ngrok``), callbacks sent to the public URL, and the agent process killed
    (SIGKILL) once half the tasks have a result.  The public URL stays dead and submitting
    goes on: retries fail, and the poller recovers the rest.

Every count comes from two independent sides: the Sandbox's delivery log (each attempt with
the HTTP status it got) and the store file, read after the receiver is stopped.  *lost* is the
number of attempts answered 200 that no stored callback row of their task accounts for
(``sum over tasks of max(0, acked - stored)``); it must be 0.  Each task's final state is also
checked against the Sandbox's own record of it (status and error code), and the store must hold
exactly one accepted delivery per task and no duplicate track rows.

Run with ``python -m benchmarks.run --only soak`` (about 3 minutes; ``--quick``: 1,000
callbacks per scenario, about 30 s).  While it runs, the Sandbox's delivery log cap
(``sandbox.delivery.MAX_LOG``, the last 10,000 attempts) is raised so every attempt is counted.

Floor: zero acknowledged callbacks lost, every task in its planned state, in every scenario.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import suno_nb.session as session
from suno_nb import Faults, Sandbox, SunoClient
from suno_nb.sandbox import delivery as _delivery
from suno_nb.store import Store

from .common import ROOT, fast_limit, floor, summarize_ms, table, unthrottled

FAKE_NGROK = ROOT / "tests" / "fake_ngrok" / "fake_ngrok.py"
FAKE_TOKEN = "fake-token"  # the fake agent accepts anything; nothing leaves the machine
SONG_S = 120.0
TRACKS_PER_TASK = 2
TERMINAL = ("succeeded", "failed")


# --- the fault mix ---------------------------------------------------------------------------


def fault_mix(cycle: int) -> list[Faults]:
    """One 50-task cycle of the mix; ``cycle`` alternates the failure body form.

    35 plain successes (70 %), 5 with one duplicate, 2 with two, one task per error code
    400/408/500/501/531 (the 500 one also duplicated), 2 dropped successes and 1 dropped 408
    failure: 57 callback deliveries per 50 tasks, 3 tasks left to the poller.
    """
    form = "error" if cycle % 2 == 0 else "null"
    mix = [Faults()] * 35
    mix += [Faults(duplicates=1)] * 5 + [Faults(duplicates=2)] * 2
    mix += [
        Faults(error_code=code, error_form=form, duplicates=1 if code == 500 else 0)
        for code in (400, 408, 500, 501, 531)
    ]
    mix += [Faults(drop=True)] * 2 + [Faults(drop=True, error_code=408)]
    # Interleave so that every stretch of the burst sees every kind.
    order = [(i * 37) % 50 for i in range(50)]
    assert sorted(order) == list(range(50))
    return [mix[i] for i in order]


def plan(tasks: int, spread_s: float = 0.0) -> list[Faults]:
    """Faults for ``tasks`` tasks in submission order; ``spread_s`` adds ``extra_delay``
    cycling over 0..spread_s so completions fan out in time."""
    out: list[Faults] = []
    for cycle in itertools.count():
        for f in fault_mix(cycle):
            if len(out) == tasks:
                return out
            if spread_s:
                f = dataclasses.replace(f, extra_delay=round((len(out) % 31) / 30 * spread_s, 3))
            out.append(f)
    return out


def deliveries_planned(faults: list[Faults]) -> int:
    """Callback deliveries (copies, before retries) the plan makes the Sandbox send."""
    return sum(0 if f.drop else 1 + f.duplicates for f in faults)


def tasks_for_callbacks(callbacks: int) -> int:
    """The fewest tasks whose plan sends at least ``callbacks`` callback deliveries."""
    n = int(callbacks / 57 * 50)
    while deliveries_planned(plan(n)) < callbacks:
        n += 1
    return n


# --- submitting --------------------------------------------------------------------------------


class Submitter:
    """Submit replace-section tasks from ``threads`` threads, each with its own client.

    Faults are queued in the Sandbox in plan order (``sb.inject``) and taken by tasks in the
    order the Sandbox receives them, so the mix holds whatever the interleaving of threads;
    each task's actual outcome is read back from the Sandbox afterwards.  :meth:`pause`
    waits for submissions in flight to finish, so none straddles a receiver restart.
    """

    def __init__(self, sb: Sandbox, rx: Any, song: Any, faults: list[Faults], threads: int) -> None:
        self.sb = sb
        self.rx = rx  # replaced by run_restart while submitting is paused
        self.song = song
        self.total = len(faults)
        for f in faults:
            sb.inject(f, count=1)
        self.task_ids: list[str] = []
        self.errors: list[str] = []
        self.clients: list[SunoClient] = []
        self._next = itertools.count()
        self._cond = threading.Condition()
        self._paused = False
        self._inflight = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"soak-submit-{i}", daemon=True)
            for i in range(threads)
        ]
        self.started = time.monotonic()
        self.finished: float | None = None

    def start(self) -> Submitter:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    @property
    def submitted(self) -> int:
        with self._cond:
            return len(self.task_ids)

    def pause(self) -> None:
        """Stop starting submissions and wait until none is in flight."""
        with self._cond:
            self._paused = True
            self._cond.wait_for(lambda: self._inflight == 0, timeout=30)

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.finished = time.monotonic()

    def _run(self) -> None:
        # Not closed here: the receiver's poller goes on with the client that submitted last.
        client = SunoClient(base_url=self.sb.url, api_key=self.sb.api_key)
        with self._cond:
            self.clients.append(client)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with self._cond:
                self._cond.wait_for(lambda: not self._paused, timeout=60)
                n = next(self._next)
                if n >= self.total:
                    return
                self._inflight += 1
            try:
                job = client.replace_section(
                    task_id=self.song.task_id,
                    audio_id=self.song.audio_id,
                    prompt=f"soak {n}",
                    tags="soak",
                    title=f"S{n}",
                    full_lyrics="[Verse] la la la\n[Chorus] new words",
                    infill_start_s=10.0,
                    infill_end_s=20.0,
                    original_duration=SONG_S,
                    receiver=self.rx,
                )
                with self._cond:
                    self.task_ids.append(job.task_id)
            except Exception as exc:  # counted and reported, never hidden
                with self._cond:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._inflight -= 1
                    self._cond.notify_all()

    def close(self) -> None:
        """Close the threads' clients (after the receiver stopped polling with them)."""
        for client in self.clients:
            client.close()


# --- counting ------------------------------------------------------------------------------------


def _pending(rx: Any) -> int:
    return int(rx.store.query("SELECT count(*) AS n FROM tasks WHERE state = 'pending'")[0]["n"])


def _terminal(rx: Any) -> int:
    return int(rx.store.query("SELECT count(*) AS n FROM tasks WHERE state != 'pending'")[0]["n"])


def wait_settled(sb: Sandbox, rx: Any, timeout: float) -> bool:
    """Until the Sandbox has nothing scheduled and the store has no pending task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sb.wait_idle(0.2) and _pending(rx) == 0:
            return True
        time.sleep(0.1)
    return False


def count(sb: Sandbox, store_path: Path, task_ids: list[str]) -> dict[str, Any]:
    """Both sides' counts for ``task_ids``: the Sandbox's delivery log and the store file."""
    ids = set(task_ids)
    log = sb.delivery_frame()
    log = log[log["task_id"].isin(ids)]
    ok = log["status"] == 200
    acked_per_task = Counter(log.loc[ok, "task_id"])
    truth: dict[str, tuple[str, int | None]] = {}
    for tid in task_ids:
        info = sb.record_info(tid)
        truth[tid] = (
            "succeeded" if info["status"] == "SUCCESS" else "failed",
            info["errorCode"],
        )
    store = Store(store_path)
    try:
        tasks = {
            r["task_id"]: dict(r)
            for r in store.query("SELECT task_id, state, code, source FROM tasks")
            if r["task_id"] in ids
        }
        stored_per_task = Counter(
            r["task_id"]
            for r in store.query(
                "SELECT task_id FROM deliveries WHERE source = 'callback' AND status = 200"
            )
        )
        accepted_per_task = Counter(
            r["task_id"]
            for r in store.query("SELECT task_id FROM deliveries WHERE verdict = 'accepted'")
        )
        tracks_per_task = Counter(r["task_id"] for r in store.query("SELECT task_id FROM tracks"))
        poll_rows = int(
            store.query("SELECT count(*) AS n FROM deliveries WHERE source = 'poll'")[0]["n"]
        )
    finally:
        store.close()
    stored_per_task = Counter({t: n for t, n in stored_per_task.items() if t in ids})
    lost = sum(max(0, n - stored_per_task.get(t, 0)) for t, n in acked_per_task.items())
    unacked = sum(max(0, n - acked_per_task.get(t, 0)) for t, n in stored_per_task.items())
    tried = set(log["task_id"])
    via_poll = {t for t, r in tasks.items() if r["source"] == "poll"}
    wrong = 0
    for tid, (state, code) in truth.items():
        row = tasks.get(tid)
        if row is None or row["state"] != state or (state == "failed" and row["code"] != code):
            wrong += 1
    bad_rows = sum(
        1
        for tid, (state, _) in truth.items()
        if tracks_per_task.get(tid, 0) != (TRACKS_PER_TASK if state == "succeeded" else 0)
        or accepted_per_task.get(tid, 0) != 1
    )
    elapsed = log.loc[ok, "elapsed_s"].to_numpy(dtype="float64")
    return {
        "tasks": len(task_ids),
        "sent": len(log),  # every callback attempt, retries included
        "copies": int((log["attempt"] == 1).sum()),  # deliveries started (duplicates count)
        "acknowledged": int(ok.sum()),
        "no_answer": int(log["status"].isna().sum()),  # refused, reset or timed out
        "non_200": int((log["status"].notna() & ~ok).sum()),
        "acked_on_retry": int((ok & (log["attempt"] > 1)).sum()),
        "gave_up": int((log["outcome"] == "failed").sum()),  # copies whose 3 attempts failed
        "stored": int(sum(stored_per_task.values())),  # callback rows answered 200
        "stored_not_acked": int(unacked),  # stored, but the 200 never reached the sender
        "lost": int(lost),
        "lost_tasks": sum(
            1 for t in acked_per_task if tasks.get(t, {}).get("state") not in TERMINAL
        ),
        "succeeded": sum(1 for r in tasks.values() if r["state"] == "succeeded"),
        "failed": sum(1 for r in tasks.values() if r["state"] == "failed"),
        "pending": sum(1 for r in tasks.values() if r["state"] not in TERMINAL),
        "missing": len(ids - set(tasks)),
        "wrong_state": wrong,
        "bad_rows": bad_rows,
        "via_poll": len(via_poll),
        "dropped_via_poll": len(via_poll - tried),  # planned drops: no callback ever sent
        "rescued_by_poll": sum(1 for t in via_poll & tried if not acked_per_task.get(t)),
        "poll_rows": poll_rows,
        "ack_ms": summarize_ms(elapsed),
    }


# --- scenarios -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _sandbox(delay: float) -> Iterator[Sandbox]:
    """The sandbox of a scenario, with the documented rate limit lifted on both sides."""
    with (
        Sandbox(
            delay=delay,
            credits=1e9,
            retry_backoff=1.0,  # the seeds' policy: 3 attempts, 1 s then 2 s apart, 10 s timeout
            callback_timeout=10.0,
            max_attempts=3,
            tracks_per_task=TRACKS_PER_TASK,
            rate_limit=fast_limit(),
        ) as sb,
        unthrottled(sb),
    ):
        yield sb


def _finish(
    name: str,
    sb: Sandbox,
    rx: Any,
    sub: Submitter,
    path: Path,
    started: tuple[float, float],
    timeout: float,
) -> dict[str, Any]:
    """Wait for the burst to settle, stop the receiver, count."""
    sub.join(timeout)
    settled = wait_settled(sb, rx, timeout)
    wall = time.monotonic() - started[0]
    cpu = time.process_time() - started[1]
    submit_s = (sub.finished or time.monotonic()) - sub.started
    session.stop_receiver()
    sub.close()
    out = count(sb, path, sub.task_ids)
    out.update(
        scenario=name,
        planned=sub.total,
        submit_errors=len(sub.errors),
        first_submit_error=sub.errors[0] if sub.errors else None,
        settled=settled,
        wall_s=wall,
        submit_s=submit_s,
        tasks_per_s=out["tasks"] / wall if wall else float("nan"),
        acked_per_s=out["acknowledged"] / wall if wall else float("nan"),
        cpu_cores=cpu / wall if wall else float("nan"),  # this process: all but the agent
    )
    return out


def run_mixed(
    workdir: Path, *, callbacks: int, threads: int, timeout: float = 240.0
) -> dict[str, Any]:
    """Scenario ``mixed``: about ``callbacks`` deliveries, the full fault mix, no outage."""
    faults = plan(tasks_for_callbacks(callbacks))
    path = workdir / "mixed.sqlite3"
    with _sandbox(delay=0.3) as sb:
        song = sb.create_song(duration=SONG_S)
        poller_client = SunoClient(base_url=sb.url, api_key=sb.api_key)
        rx = session.start_receiver(
            path,
            tunnel=None,
            client=poller_client,
            poll_interval=1.0,
            poll_grace=5.0,
            archive=False,
        )
        started = _clock()
        sub = Submitter(sb, rx, song, faults, threads).start()
        out = _finish("mixed", sb, rx, sub, path, started, timeout)
        poller_client.close()
    return out


def run_restart(
    workdir: Path,
    *,
    callbacks: int,
    threads: int,
    outage_s: float = 3.5,
    timeout: float = 180.0,
) -> dict[str, Any]:
    """Scenario ``restart``: the receiver down for ``outage_s`` mid-burst, same port and file."""
    tasks = tasks_for_callbacks(callbacks)
    faults = plan(tasks, spread_s=3.0)
    path = workdir / "restart.sqlite3"
    with _sandbox(delay=0.3) as sb:
        song = sb.create_song(duration=SONG_S)
        poller_client = SunoClient(base_url=sb.url, api_key=sb.api_key)
        kwargs: dict[str, Any] = dict(
            tunnel=None, client=poller_client, poll_interval=1.0, poll_grace=6.0, archive=False
        )
        rx = session.start_receiver(path, **kwargs)
        port = rx.port
        started = _clock()
        sub = Submitter(sb, rx, song, faults, threads).start()
        _wait_for(lambda: sub.submitted >= tasks // 2, 120)
        sub.pause()
        down_at = time.time()
        session.stop_receiver()  # the kernel dies mid-burst
        time.sleep(outage_s)
        rx = sub.rx = session.start_receiver(path, port=port, **kwargs)
        up_at = time.time()
        sub.resume()
        out = _finish("restart", sb, rx, sub, path, started, timeout)
        poller_client.close()
    out.update(_outage_counts(sb, sub.task_ids, down_at, up_at), outage_s=up_at - down_at)
    return out


def run_tunnel(
    workdir: Path, *, callbacks: int, threads: int, timeout: float = 180.0
) -> dict[str, Any]:
    """Scenario ``tunnel``: callbacks through the fake ngrok agent, killed mid-burst."""
    from suno_nb import tunnel

    tasks = tasks_for_callbacks(callbacks)
    faults = plan(tasks)
    path = workdir / "tunnel.sqlite3"
    spec = importlib.util.spec_from_file_location("fake_ngrok_for_soak", FAKE_NGROK)
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    ngrok_path = fake.install(workdir / "bin")
    config = workdir / "ngrok.yml"
    config.write_text("version: 3\n")
    saved_state = os.environ.get("SUNO_NB_STATE_DIR")
    os.environ["SUNO_NB_STATE_DIR"] = str(workdir / "state")  # agent pid records stay here
    agent_pid = None
    try:
        with _sandbox(delay=0.3) as sb:
            song = sb.create_song(duration=SONG_S)
            poller_client = SunoClient(base_url=sb.url, api_key=sb.api_key)
            rx = session.start_receiver(
                path,
                tunnel="ngrok",
                authtoken=FAKE_TOKEN,
                ngrok_path=ngrok_path,
                ngrok_config_path=str(config),
                client=poller_client,
                poll_interval=1.0,
                poll_grace=5.0,
                archive=False,  # the soak counts callbacks; downloading takes is not its work
            )
            assert rx.mode == "ngrok" and rx.url != rx.local_url
            agent_pid = rx.tunnel.agent_pid
            started = _clock()
            sub = Submitter(sb, rx, song, faults, threads).start()
            _wait_for(lambda: _terminal(rx) >= tasks // 2, 120)
            down_at = time.time()
            os.kill(agent_pid, signal.SIGKILL)  # the tunnel drops; the public URL is dead
            out = _finish("tunnel", sb, rx, sub, path, started, timeout)
            poller_client.close()
        out.update(_outage_counts(sb, sub.task_ids, down_at, None))
    finally:
        session.stop_receiver()
        tunnel.close_all()
        if saved_state is None:
            os.environ.pop("SUNO_NB_STATE_DIR", None)
        else:
            os.environ["SUNO_NB_STATE_DIR"] = saved_state
    out["agent_gone"] = agent_pid is not None and not _pid_alive(agent_pid)
    return out


def _outage_counts(
    sb: Sandbox, task_ids: list[str], down_at: float, up_at: float | None
) -> dict[str, Any]:
    """Attempts sent while the receiver (or tunnel) was down, and how they ended."""
    log = sb.delivery_frame()
    log = log[log["task_id"].isin(set(task_ids))]
    sent = log["sent_at"].map(lambda t: t.timestamp())
    during = (sent >= down_at) & ((sent < up_at) if up_at is not None else True)
    window = log[during]
    return {
        "attempts_in_outage": len(window),
        "not_200_in_outage": int((window["status"] != 200).sum()),
    }


def _clock() -> tuple[float, float]:
    return time.monotonic(), time.process_time()


def _wait_for(cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("soak: the burst did not progress in time")
        time.sleep(0.02)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


# --- entry point ---------------------------------------------------------------------------------

COLUMNS = (
    ("scenario", "scenario"),
    ("tasks", "tasks"),
    ("copies", "callbacks"),
    ("sent", "attempts sent"),
    ("acknowledged", "acked (200)"),
    ("stored", "stored"),
    ("lost", "**lost**"),
    ("no_answer", "attempts without answer"),
    ("acked_on_retry", "acked on a retry"),
    ("via_poll", "tasks via poll"),
    ("rescued_by_poll", "of which after failed callbacks"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("wall_s", "wall s"),
    ("acked_per_s", "acks/s"),
    ("tasks_per_s", "tasks/s"),
)


def run(*, quick: bool = False) -> dict[str, Any]:
    """The three scenarios; prints tables and returns the numbers (``passed``: zero lost)."""
    workdir = Path(tempfile.mkdtemp(prefix="suno-soak-", dir=ROOT / "benchmarks"))
    saved_cap = _delivery.MAX_LOG
    _delivery.MAX_LOG = 1_000_000  # count every attempt, not only the last 10,000
    sizes = {"callbacks": 1_000 if quick else 10_000, "threads": 4}
    results: dict[str, Any] = {"settings": sizes}
    scenarios: dict[str, dict[str, Any]] = {}
    try:
        scenarios["mixed"] = run_mixed(workdir, **sizes)
        scenarios["restart"] = run_restart(workdir, **sizes)
        scenarios["tunnel"] = run_tunnel(workdir, **sizes)
    finally:
        _delivery.MAX_LOG = saved_cap
        session.stop_receiver()
        shutil.rmtree(workdir, ignore_errors=True)
    results.update(scenarios)
    print("### soak: callbacks with duplicates, failures, a restart and a dropped tunnel\n")
    print(
        table(
            [label for _, label in COLUMNS],
            [[r[k] for k, _ in COLUMNS] for r in scenarios.values()],
        )
    )
    details = [
        [
            name,
            r["stored_not_acked"],
            r["non_200"],
            r["gave_up"],
            r.get("attempts_in_outage", "—"),
            r.get("not_200_in_outage", "—"),
            r["dropped_via_poll"],
            r["ack_ms"]["p50"],
            r["ack_ms"]["p99"],
            r["cpu_cores"],
            r["submit_errors"],
            r["wrong_state"],
            r["bad_rows"],
            r["pending"],
        ]
        for name, r in scenarios.items()
    ]
    print()
    print(
        table(
            [
                "scenario",
                "stored, 200 not received",
                "non-200 answers",
                "copies given up",
                "attempts in outage",
                "of which not 200",
                "planned drops via poll",
                "ack p50 ms",
                "ack p99 ms",
                "CPU cores used",
                "submit errors",
                "wrong state",
                "dup/missing rows",
                "still pending",
            ],
            details,
        )
    )
    bad = [
        name
        for name, r in scenarios.items()
        if r["lost"]
        or r["lost_tasks"]
        or r["wrong_state"]
        or r["bad_rows"]
        or r["pending"]
        or r["missing"]
        or r["submit_errors"]
        or not r["settled"]
        or r.get("agent_gone") is False
    ]
    results["passed"] = not bad
    lost = sum(r["lost"] for r in scenarios.values())
    acked = sum(r["acknowledged"] for r in scenarios.values())
    results["floors"] = [
        floor(
            "soak: acknowledged callbacks lost (3 scenarios with faults)",
            f"{lost} of {acked:,} acked" + (f"; checks failed in {', '.join(bad)}" if bad else ""),
            "0, every task as planned",
            not bad,
        )
    ]
    print()
    return results
