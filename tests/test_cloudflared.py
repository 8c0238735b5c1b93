"""Cloudflare quick tunnels: start_receiver(tunnel="cloudflared") driving tests/fake_cloudflared.

The fake reports a ``*.trycloudflare.com`` hostname (unreachable offline) and also serves the
loopback address of its forwarder at ``/fake/forwarder`` on the metrics server; tests POST
there to go "through the tunnel".  Every test gets its own fake program and state folder;
teardown fails the test if any agent started from that program is still alive.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import requests

import suno_nb.session as session
from suno_nb import tunnel
from suno_nb.errors import (
    CloudflaredNoNetwork,
    CloudflaredStartTimeout,
    CloudflaredUnavailable,
    TunnelError,
)
from suno_nb.tunnel import agent

from .conftest import post, seed_bytes, wait_until

FAKE = Path(__file__).resolve().parent / "fake_cloudflared" / "fake_cloudflared.py"
ROOT = Path(__file__).resolve().parents[1]
KNOBS = (
    "FAKE_CLOUDFLARED_FAIL",
    "FAKE_CLOUDFLARED_HANG",
    "FAKE_CLOUDFLARED_BANNER_ONLY",
    "FAKE_CLOUDFLARED_HOSTNAME",
    "NGROK_AUTHTOKEN",
)
QUICK_URL = re.compile(r"^https://[a-z0-9-]+\.trycloudflare\.com$")
NO_HANG = 30.0  # seconds: a start that must fail rather than hang (not a speed check)


def _fake():
    spec = importlib.util.spec_from_file_location("fake_cloudflared_for_tests", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _agents(program: str) -> list[int]:
    """Live processes running this test's (unique) fake cloudflared program."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if program in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def _forwarder(tun) -> str:
    reply = requests.get(f"{tun.metrics_url}/fake/forwarder", timeout=5)
    return reply.json()["url"]


@pytest.fixture
def cf(tmp_path, monkeypatch):
    """A fake cloudflared program and a state folder; no agent may be left at teardown."""
    for knob in KNOBS:
        monkeypatch.delenv(knob, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = tmp_path / "state"
    monkeypatch.setenv("SUNO_NB_STATE_DIR", str(state))
    program = _fake().install(tmp_path / "bin")
    yield SimpleNamespace(program=program, state=state, tmp=tmp_path)
    session.stop_receiver()
    tunnel.close_all()
    leaked = _agents(program)
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    assert not leaked, f"cloudflared processes left running: {leaked}"


def _start(cf, name: str = "q.sqlite3", **kwargs):
    kwargs.setdefault("cloudflared_path", cf.program)
    return session.start_receiver(cf.tmp / name, tunnel="cloudflared", poll=False, **kwargs)


def test_public_url_is_the_reported_one_and_a_post_through_it_is_stored(cf, caplog):
    caplog.set_level(logging.DEBUG)
    rx = _start(cf)
    tun = rx.tunnel
    assert rx.mode == "cloudflared"
    assert QUICK_URL.match(rx.public_url)
    reported = requests.get(f"{tun.metrics_url}/quicktunnel", timeout=5).json()["hostname"]
    assert rx.public_url == f"https://{reported}"
    assert rx.url == rx.public_url + rx.local_url.split(str(rx.port), 1)[1]
    assert os.getsid(tun.agent_pid) == tun.agent_pid  # own session: survives cell interrupts

    through = _forwarder(tun) + rx.url[len(rx.public_url) :]
    reply = post(through, seed_bytes("seed_success.json"))
    assert reply.status_code == 200 and reply.json() == {"code": 200, "msg": "success"}
    assert rx.frame().iloc[0]["title"] == "Relaxing Piano"
    delivery = rx.deliveries().iloc[0]
    assert bool(delivery["via_tunnel"]) and delivery["remote_addr"] == "198.51.100.77"
    assert "mode=cloudflared" in repr(rx)
    record = json.loads((cf.state / f"cloudflared-agent-{tun.agent_pid}.json").read_text())
    assert record["agent_pid"] == tun.agent_pid and record["owner_pid"] == os.getpid()
    # the record names the running agent (not the child between fork and exec): a later
    # start can end it as an orphan
    assert agent.matches(tun.agent_pid, record["agent_created"], record["agent_cmdline_sha256"])
    assert "trycloudflare.com" in caplog.text  # the banner went to the log, not to stderr


def test_rerun_reuses_one_agent_and_stop_leaves_no_process(cf):
    rx = _start(cf)
    pid, url = rx.tunnel.agent_pid, rx.public_url
    again = _start(cf)
    assert again is rx and rx.public_url == url and rx.tunnel.agent_pid == pid
    assert _agents(cf.program) == [pid]
    port = rx.port
    session.stop_receiver()
    assert _wait_gone(pid)
    assert _agents(cf.program) == []
    assert not list(cf.state.glob("cloudflared-agent-*.json"))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_program_from_path_and_url_from_the_banner(cf, monkeypatch):
    """No cloudflared_path: the one on PATH; no /quicktunnel: the banner's URL."""
    monkeypatch.setenv("PATH", str(Path(cf.program).parent) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("FAKE_CLOUDFLARED_BANNER_ONLY", "1")
    monkeypatch.setenv("FAKE_CLOUDFLARED_HOSTNAME", "quiet-river-maple-orbit.trycloudflare.com")
    rx = _start(cf, cloudflared_path=None)
    assert rx.public_url == "https://quiet-river-maple-orbit.trycloudflare.com"
    assert rx.tunnel.program == cf.program


def test_program_pycloudflared_already_downloaded(cf, monkeypatch):
    """pycloudflared installed and its binary on disk: used; its download() never called."""
    util = types.ModuleType("pycloudflared.util")
    util.get_info = lambda: SimpleNamespace(executable=cf.program)
    util.download = lambda *a, **k: pytest.fail("suno_nb must never download cloudflared")
    package = types.ModuleType("pycloudflared")
    package.util = util
    monkeypatch.setitem(sys.modules, "pycloudflared", package)
    monkeypatch.setitem(sys.modules, "pycloudflared.util", util)
    monkeypatch.setenv("PATH", str(cf.tmp / "empty"))
    rx = _start(cf, cloudflared_path=None)
    assert rx.tunnel.program == cf.program
    session.stop_receiver()
    util.get_info = lambda: SimpleNamespace(executable=str(cf.tmp / "not-downloaded"))
    with pytest.raises(CloudflaredUnavailable, match=r"pycloudflared\.util import download"):
        _start(cf, cloudflared_path=None)


def test_a_dead_agent_is_replaced_on_rerun(cf):
    rx = _start(cf)
    old_pid, old_url = rx.tunnel.agent_pid, rx.public_url
    os.kill(old_pid, signal.SIGKILL)
    assert _wait_gone(old_pid)
    again = _start(cf)
    assert again is rx and rx.tunnel.agent_pid != old_pid
    assert rx.public_url != old_url  # a quick tunnel gets a new random URL per start
    assert _agents(cf.program) == [rx.tunnel.agent_pid]


def test_missing_program_says_how_to_get_it(cf, monkeypatch):
    monkeypatch.setenv("PATH", str(cf.tmp / "empty"))
    with pytest.raises(CloudflaredUnavailable) as caught:
        _start(cf, cloudflared_path=None)
    message = str(caught.value)
    for phrase in ("on PATH", "pycloudflared", "pkg.cloudflare.com", "cloudflared_path=", "apt"):
        assert phrase in message
    assert session.current_receiver() is None
    with pytest.raises(CloudflaredUnavailable, match="nowhere"):
        _start(cf, cloudflared_path=str(cf.tmp / "nowhere" / "cloudflared"))


def test_program_that_cannot_run(cf):
    plain = cf.tmp / "plain" / "cloudflared"
    plain.parent.mkdir()
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    with pytest.raises(CloudflaredUnavailable, match=r"chmod \+x"):
        _start(cf, cloudflared_path=str(plain))


@pytest.mark.parametrize(
    ("knob", "error", "phrases"),
    [
        (
            {"FAKE_CLOUDFLARED_FAIL": "network"},
            CloudflaredNoNetwork,
            ["no such host", "internet connection", "tunnel='ngrok'"],
        ),
        (
            {"FAKE_CLOUDFLARED_HANG": "1"},
            CloudflaredStartTimeout,
            ["within 1 s", "tunnel_timeout"],
        ),
        ({"FAKE_CLOUDFLARED_FAIL": "crash"}, TunnelError, ["the fake was told to crash"]),
    ],
)
def test_failing_agent_gives_one_actionable_error(cf, monkeypatch, knob, error, phrases):
    for key, value in knob.items():
        monkeypatch.setenv(key, value)
    began = time.monotonic()
    with pytest.raises(TunnelError) as caught:
        _start(cf, tunnel_timeout=1.0)
    assert type(caught.value) is error
    assert time.monotonic() - began < NO_HANG  # anti-hang guard, not a speed check
    for phrase in phrases:
        assert phrase in str(caught.value)
    assert caught.value.__cause__ is None
    assert session.current_receiver() is None
    assert _agents(cf.program) == []
    assert not list(cf.state.glob("cloudflared-agent-*.json"))


def test_interrupt_during_start_leaves_no_agent(cf, monkeypatch):
    """The user stops the cell while cloudflared is still coming up."""
    monkeypatch.setenv("FAKE_CLOUDFLARED_HANG", "1")
    stop = threading.Event()

    def interrupt_once_it_runs() -> None:  # the agent process exists: it is starting
        started = wait_until(lambda: stop.is_set() or bool(_agents(cf.program)), 60)
        if started and not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_it_runs, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            _start(cf, tunnel_timeout=60.0)
    finally:
        stop.set()
        watcher.join(30)
    assert _agents(cf.program) == []
    assert session.current_receiver() is None
    monkeypatch.delenv("FAKE_CLOUDFLARED_HANG")
    assert _start(cf).mode == "cloudflared"  # and the next run works


KERNEL = textwrap.dedent("""
    import json, signal, sys, time
    import suno_nb.session as session

    signal.signal(signal.SIGINT, lambda *_: print("interrupted", flush=True))
    rx = session.start_receiver(sys.argv[1], tunnel="cloudflared", poll=False,
                                cloudflared_path=sys.argv[2])
    print(json.dumps({"pid": rx.tunnel.agent_pid, "metrics": rx.tunnel.metrics_url}), flush=True)
    while True:
        time.sleep(0.1)
""")


@pytest.mark.slow  # kills a kernel child: a kill test
def test_interrupt_spares_the_agent_and_a_dead_kernels_orphan_is_ended(cf):
    script = cf.tmp / "kernel.py"
    script.write_text(KERNEL)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(script), str(cf.tmp / "k.sqlite3"), cf.program],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        info = json.loads(child.stdout.readline())
        os.killpg(child.pid, signal.SIGINT)  # Jupyter's "interrupt the kernel"
        assert child.stdout.readline().strip() == "interrupted"
        assert psutil.pid_exists(info["pid"]) and child.poll() is None
        assert requests.get(f"{info['metrics']}/ready", timeout=5).status_code == 200
    finally:
        child.kill()  # the kernel dies without cleaning up
        child.wait(30)
    assert psutil.Process(info["pid"]).status() != psutil.STATUS_ZOMBIE  # the orphan lives on
    assert (cf.state / f"cloudflared-agent-{info['pid']}.json").exists()
    rx = _start(cf, name="k2.sqlite3")  # the next start here ends it by its recorded pid
    assert _wait_gone(info["pid"])
    assert _agents(cf.program) == [rx.tunnel.agent_pid]
    assert not (cf.state / f"cloudflared-agent-{info['pid']}.json").exists()
