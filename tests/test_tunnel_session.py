"""start_receiver() with a tunnel: the real pyngrok driving the fake agent in tests/fake_ngrok."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

import suno_nb.session as session
from suno_nb import tunnel
from suno_nb.errors import (
    NgrokAuthtokenMissing,
    NgrokBinaryUnavailable,
    NgrokSessionLimit,
    NgrokStartTimeout,
)

from .conftest import post, seed_bytes, wait_until
from .frontend import shown

FAKE = Path(__file__).resolve().parent / "fake_ngrok" / "fake_ngrok.py"
TOKEN = "2fakeSESSIONauthtoken_Qw81xKp0_9dWmYt"
ROOT = Path(__file__).resolve().parents[1]
NO_HANG = 30.0  # seconds: a start that must fail rather than hang (not a speed check)


def _fake():
    spec = importlib.util.spec_from_file_location("fake_ngrok_for_session", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ngrok(tmp_path, monkeypatch):
    """Paths for the fake agent; every agent is ended at teardown."""
    path = _fake().install(tmp_path / "bin")
    config = tmp_path / "ngrok.yml"
    config.write_text("version: 3\n")
    for knob in ("FAKE_NGROK_FAIL", "FAKE_NGROK_HANG", "FAKE_NGROK_REQUIRE_TOKEN"):
        monkeypatch.delenv(knob, raising=False)
    yield {"ngrok_path": path, "ngrok_config_path": str(config)}
    session.stop_receiver()
    tunnel.close_all()


def _agent_endpoints(rx) -> list[dict]:
    api = rx.tunnel.api_url
    return requests.get(f"{api}/api/endpoints", timeout=5).json()["endpoints"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ngrok_mode_gives_a_public_url_that_reaches_frame(ngrok, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    rx = session.start_receiver(
        tmp_path / "t.sqlite3", tunnel="ngrok", authtoken=TOKEN, poll=False, **ngrok
    )
    assert rx.mode == "ngrok"
    assert rx.url.startswith(rx.public_url) and "/callback/" in rx.url
    assert rx.url != rx.local_url
    r = post(rx.url, seed_bytes("seed_success.json"))
    assert r.status_code == 200 and r.json() == {"code": 200, "msg": "success"}
    assert rx.frame().iloc[0]["title"] == "Relaxing Piano"
    d = rx.deliveries().iloc[0]
    assert bool(d["via_tunnel"]) and d["remote_addr"] == "203.0.113.7"
    texts = [repr(rx), shown(rx)["text/html"], caplog.text, rx.deliveries().to_string()]
    assert not any(TOKEN in t for t in texts)
    assert "mode=ngrok" in repr(rx)


def test_rerun_reuses_the_single_endpoint_and_stop_ends_the_agent(ngrok, tmp_path):
    path = tmp_path / "r.sqlite3"
    rx = session.start_receiver(path, tunnel="ngrok", authtoken=TOKEN, poll=False, **ngrok)
    again = session.start_receiver(path, tunnel="ngrok", authtoken=TOKEN, poll=False, **ngrok)
    assert again is rx
    endpoints = _agent_endpoints(rx)
    assert len(endpoints) == 1
    pid = rx.tunnel.agent_pid
    public = rx.public_url
    api = rx.tunnel.api_url
    session.stop_receiver()
    assert wait_until(lambda: not _alive(pid))
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{api}/api/endpoints", timeout=2)
    with pytest.raises(requests.ConnectionError):
        requests.post(public, timeout=2)


def test_rerun_after_the_agent_died_opens_a_new_one_on_the_same_receiver(ngrok, tmp_path):
    path = tmp_path / "d.sqlite3"
    rx = session.start_receiver(path, tunnel="ngrok", authtoken=TOKEN, poll=False, **ngrok)
    port, pid = rx.port, rx.tunnel.agent_pid
    os.kill(pid, signal.SIGKILL)  # the agent crashed or was killed from a terminal
    assert wait_until(lambda: rx.tunnel.closed)
    again = session.start_receiver(path, tunnel="ngrok", authtoken=TOKEN, poll=False, **ngrok)
    assert again is rx and rx.port == port and rx.tunnel.agent_pid != pid
    r = post(rx.url, seed_bytes("seed_success.json"))
    assert r.status_code == 200 and r.json() == {"code": 200, "msg": "success"}


def test_allow_list_uses_the_forwarded_address_only_through_the_tunnel(ngrok, tmp_path):
    rx = session.start_receiver(
        tmp_path / "a.sqlite3",
        tunnel="ngrok",
        authtoken=TOKEN,
        poll=False,
        allow_ips=["203.0.113.0/24"],
        **ngrok,
    )
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    # Straight to the local port, without the tunnel: judged by the real peer address.
    r = post(rx.local_url, seed_bytes("seed_success.json"))
    assert r.status_code == 403 and "127.0.0.1" in r.json()["msg"]
    d = rx.deliveries()
    assert list(d["remote_addr"]) == ["203.0.113.7", "127.0.0.1"]
    assert list(d["via_tunnel"]) == [True, False]


def test_a_spoofed_forwarded_header_through_the_tunnel_does_not_pass(ngrok, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_NGROK_CLIENT_IP", "198.51.100.5")  # the caller's real address
    rx = session.start_receiver(
        tmp_path / "s.sqlite3",
        tunnel="ngrok",
        authtoken=TOKEN,
        poll=False,
        allow_ips=["203.0.113.0/24"],
        **ngrok,
    )
    r = post(rx.url, seed_bytes("seed_success.json"), {"X-Forwarded-For": "203.0.113.9"})
    assert r.status_code == 403  # the agent appends the real address; the rightmost wins
    assert rx.deliveries().iloc[0]["remote_addr"] == "198.51.100.5"


def test_auto_without_a_token_is_local_only_with_the_explanation(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file with a token on the way up
    caplog.set_level(logging.WARNING)
    rx = session.start_receiver(
        tmp_path / "l.sqlite3", poll=False, ngrok_config_path=str(tmp_path / "none.yml")
    )
    assert rx.mode == "local" and rx.url == rx.local_url
    assert "cannot reach" in repr(rx) and "NGROK_AUTHTOKEN" in repr(rx)
    assert "tunnel='cloudflared'" in repr(rx)  # both ways to a public URL are named
    assert "authtoken" in shown(rx)["text/html"]
    assert "cannot reach a 127.0.0.1 URL" in caplog.text


def test_ngrok_mode_without_a_token_says_so_before_any_download(tmp_path, monkeypatch):
    """No authtoken anywhere: the missing token is named first; no agent download is tried."""
    import pyngrok.installer

    tried = []
    monkeypatch.setattr(
        pyngrok.installer, "install_ngrok", lambda *a, **k: tried.append(a), raising=True
    )
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file with a token on the way up
    missing = tmp_path / "missing" / "ngrok"
    with pytest.raises(NgrokAuthtokenMissing, match="authtoken") as info:
        session.start_receiver(
            tmp_path / "t.sqlite3",
            tunnel="ngrok",
            poll=False,
            ngrok_path=str(missing),
            ngrok_config_path=str(tmp_path / "none.yml"),
        )
    assert "tunnel='cloudflared'" in str(info.value)
    assert tried == [] and not missing.exists()
    assert session.current_receiver() is None


def test_tunnel_none_never_opens_one(tmp_path, monkeypatch):
    monkeypatch.setenv("NGROK_AUTHTOKEN", TOKEN)
    rx = session.start_receiver(tmp_path / "n.sqlite3", tunnel=None, poll=False)
    assert rx.mode == "local" and "disabled" in repr(rx)
    assert TOKEN not in repr(rx)


@pytest.mark.parametrize(
    "knob, error, words",
    [
        ({"FAKE_NGROK_FAIL": "4018"}, NgrokAuthtokenMissing, "authtoken"),
        ({"FAKE_NGROK_FAIL": "108"}, NgrokSessionLimit, "agent"),
        ({"FAKE_NGROK_HANG": "1"}, NgrokStartTimeout, "start"),
    ],
)
def test_ngrok_mode_errors_are_actionable_and_leave_no_receiver(
    ngrok, tmp_path, monkeypatch, knob, error, words
):
    for k, v in knob.items():
        monkeypatch.setenv(k, v)
    began = time.monotonic()
    with pytest.raises(error) as info:
        session.start_receiver(
            tmp_path / "e.sqlite3",
            tunnel="ngrok",
            authtoken=TOKEN,
            poll=False,
            tunnel_timeout=2.0,  # passed through to the agent's start
            **ngrok,
        )
    assert time.monotonic() - began < NO_HANG  # anti-hang guard, not a speed check
    assert words in str(info.value).lower() and TOKEN not in str(info.value)
    if error is NgrokStartTimeout:
        assert "within 2 s" in str(info.value)
        assert "start_receiver(tunnel_timeout=...)" in str(info.value)
    assert session.current_receiver() is None  # no half-started receiver is left behind


def test_missing_binary_in_auto_mode_falls_back_to_local_with_the_reason(tmp_path, monkeypatch):
    import pyngrok.installer

    monkeypatch.setattr(
        pyngrok.installer,
        "get_ngrok_cdn_url",
        lambda *a, **k: "http://127.0.0.1:9/ngrok.zip",
        raising=False,
    )
    rx = session.start_receiver(
        tmp_path / "b.sqlite3",
        authtoken=TOKEN,
        poll=False,
        ngrok_path=str(tmp_path / "missing" / "ngrok"),
        ngrok_config_path=str(tmp_path / "c.yml"),
    )
    assert rx.mode == "local"
    assert "PYNGROK_NGROK_PATH" in rx.tunnel_note and TOKEN not in repr(rx)
    # ngrok installed since: the same cell run again opens the tunnel on the same receiver
    real = _fake().install(tmp_path / "missing")
    again = session.start_receiver(
        tmp_path / "b.sqlite3",
        authtoken=TOKEN,
        poll=False,
        ngrok_path=real,
        ngrok_config_path=str(tmp_path / "c.yml"),
    )
    assert again is rx and rx.mode == "ngrok" and rx.tunnel_note is None
    session.stop_receiver()
    Path(real).unlink()
    with pytest.raises(NgrokBinaryUnavailable, match="PYNGROK_NGROK_PATH"):
        session.start_receiver(
            tmp_path / "b.sqlite3",
            authtoken=TOKEN,
            poll=False,
            tunnel="ngrok",
            ngrok_path=str(tmp_path / "missing" / "ngrok"),
            ngrok_config_path=str(tmp_path / "c.yml"),
        )


KERNEL = textwrap.dedent("""
    import json, signal, sys, time
    import suno_nb.session as session

    # Like ipykernel: SIGINT interrupts the running cell, never the kernel.
    signal.signal(signal.SIGINT, lambda *_: print("interrupted", flush=True))
    rx = session.start_receiver(sys.argv[1], tunnel="ngrok", authtoken=sys.argv[2], poll=False,
                                ngrok_path=sys.argv[3], ngrok_config_path=sys.argv[4])
    print(json.dumps({"url": rx.url, "pid": rx.tunnel.agent_pid}), flush=True)
    while True:
        time.sleep(0.1)
""")


@pytest.mark.slow  # interrupts a child kernel: a kill test
def test_interrupted_cell_leaves_receiver_and_agent_alive(ngrok, tmp_path):
    script = tmp_path / "kernel.py"
    script.write_text(KERNEL)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(tmp_path / "k.sqlite3"),
            TOKEN,
            ngrok["ngrok_path"],
            ngrok["ngrok_config_path"],
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        info = json.loads(child.stdout.readline())
        os.killpg(child.pid, signal.SIGINT)  # what Jupyter's "interrupt" does
        assert child.stdout.readline().strip() == "interrupted"
        assert _alive(info["pid"]) and child.poll() is None
        r = post(info["url"], seed_bytes("seed_success.json"))  # still served end to end
        assert r.status_code == 200
    finally:
        child.terminate()
        child.wait(30)
    # The next start in this process finds the dead kernel's agent by its recorded pid.
    session.start_receiver(
        tmp_path / "k2.sqlite3", tunnel="ngrok", authtoken=TOKEN, poll=False, **ngrok
    )
    assert wait_until(lambda: not _alive(info["pid"]))
