"""Secrets where notebook users keep them, and re-runs that pick up a newly set token.

Real pyngrok drives the fake agent (tests/fake_ngrok) with ``FAKE_NGROK_REQUIRE_TOKEN=1``, so
a tunnel opens only if the token really reached the agent.  Colab's secret store is the
``colab`` fixture of tests/test_credentials.py (a stand-in ``google.colab.userdata``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
from pathlib import Path

import psutil
import pytest
import requests

import suno_nb.session as session
from suno_nb import tunnel
from suno_nb.tunnel import agent

from .conftest import post, seed_bytes
from .frontend import shown as display_data
from .test_credentials import colab  # noqa: F401  (the fixture)

FAKE = Path(__file__).resolve().parent / "fake_ngrok" / "fake_ngrok.py"
TOKEN = "2fakeCOLABauthtoken_Lp93xQz7_4kRmWv"
OTHER = "2fakeOTHERauthtoken_Tt55aBc1_8yYuIo"
HMAC = "colab-hmac-key-9f8e7d6c5b4a"


@pytest.fixture
def agent_paths(tmp_path, monkeypatch):
    """The fake agent (token required), an ngrok config without a token, no env secrets."""
    spec = importlib.util.spec_from_file_location("fake_ngrok_for_secrets", FAKE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("NGROK_AUTHTOKEN", "SUNO_WEBHOOK_HMAC_KEY", "FAKE_NGROK_FAIL", "FAKE_NGROK_HANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FAKE_NGROK_REQUIRE_TOKEN", "1")
    monkeypatch.setenv("SUNO_NB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.chdir(tmp_path)  # no .env file on the way up
    config = tmp_path / "ngrok.yml"
    config.write_text('version: "3"\n')
    paths = {"ngrok_path": module.install(tmp_path / "bin"), "ngrok_config_path": str(config)}
    yield paths
    session.stop_receiver()
    tunnel.close_all()


def _shown(rx) -> str:
    """Everything a notebook could display or save about the receiver."""
    texts = [
        repr(rx),
        display_data(rx)["text/html"],
        repr(rx.config),
        str(dataclasses.asdict(rx.config)),
        repr(rx.tunnel) if rx.tunnel is not None else "",
        rx.deliveries().to_string(),
        rx.tasks().to_string(),
    ]
    if hasattr(rx, "log"):  # rx.log() comes with the "manners" work
        texts.append(rx.log("DEBUG").to_string())
    return "\n".join(texts)


def _gone(pid: int) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).wait(30)
    return not agent.alive(pid)


def _agent_cmdline(rx) -> list[str]:
    return psutil.Process(rx.tunnel.agent_pid).cmdline()


def test_colab_secret_opens_the_tunnel_and_is_never_shown(agent_paths, colab, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    colab["NGROK_AUTHTOKEN"] = TOKEN
    rx = session.start_receiver("c.sqlite3", poll=False, **agent_paths)
    assert rx.mode == "ngrok"
    assert TOKEN in _agent_cmdline(rx)  # it reached the agent (which requires one)
    reply = post(rx.url, seed_bytes("seed_success.json"))
    assert reply.status_code == 200
    assert rx.frame().iloc[0]["title"] == "Relaxing Piano"
    shown = _shown(rx) + caplog.text
    assert TOKEN not in shown
    assert rx.config.authtoken is not None and rx.config.authtoken.source == "colab"


def test_argument_and_environment_come_before_colab(agent_paths, colab, monkeypatch):  # noqa: F811
    colab["NGROK_AUTHTOKEN"] = OTHER
    monkeypatch.setenv("NGROK_AUTHTOKEN", TOKEN)
    rx = session.start_receiver("o.sqlite3", poll=False, **agent_paths)
    assert TOKEN in _agent_cmdline(rx) and OTHER not in _agent_cmdline(rx)
    session.stop_receiver()
    rx = session.start_receiver("o.sqlite3", poll=False, authtoken=OTHER, **agent_paths)
    assert OTHER in _agent_cmdline(rx)


def test_a_missing_colab_secret_is_not_an_error(agent_paths, colab):  # noqa: F811
    rx = session.start_receiver("m.sqlite3", poll=False, **agent_paths)
    assert rx.mode == "local" and "tunnel='cloudflared'" in rx.tunnel_note


def test_webhook_hmac_key_from_colab(agent_paths, colab, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    colab["SUNO_WEBHOOK_HMAC_KEY"] = HMAC
    rx = session.start_receiver("h.sqlite3", tunnel=None, poll=False)
    assert rx.signed
    reply = post(rx.url, seed_bytes("seed_success.json"))  # unsigned: refused, and said why
    assert 400 <= reply.status_code < 500
    assert HMAC not in repr(rx) + display_data(rx)["text/html"] + caplog.text + repr(rx.config)


def test_rerun_after_setting_the_token_opens_the_tunnel_on_the_same_receiver(
    agent_paths, monkeypatch
):
    """Issue 13: the hint says "set NGROK_AUTHTOKEN and run the cell again" — that works."""
    rx = session.start_receiver("r.sqlite3", poll=False, **agent_paths)
    assert rx.mode == "local"
    port, local_url = rx.port, rx.local_url

    monkeypatch.setenv("NGROK_AUTHTOKEN", TOKEN)  # e.g. %env NGROK_AUTHTOKEN=... in a cell
    again = session.start_receiver("r.sqlite3", poll=False, **agent_paths)
    assert again is rx and rx.mode == "ngrok"
    assert rx.port == port and rx.local_url == local_url  # same port, same callback path
    assert rx.url.endswith(local_url.split(str(port), 1)[1])
    assert post(rx.url, seed_bytes("seed_success.json")).status_code == 200
    pid = rx.tunnel.agent_pid

    third = session.start_receiver("r.sqlite3", poll=False, **agent_paths)  # plain re-run
    assert third is rx and rx.tunnel.agent_pid == pid
    endpoints = requests.get(f"{rx.tunnel.api_url}/api/endpoints", timeout=5).json()
    assert len(endpoints["endpoints"]) == 1

    monkeypatch.setenv("NGROK_AUTHTOKEN", OTHER)  # a new token: a new agent with it
    fourth = session.start_receiver("r.sqlite3", poll=False, **agent_paths)
    assert fourth is rx and rx.port == port
    assert OTHER in _agent_cmdline(rx)
    assert _gone(pid)

    monkeypatch.delenv("NGROK_AUTHTOKEN")  # and without one: local again, agent ended
    pid = rx.tunnel.agent_pid
    fifth = session.start_receiver("r.sqlite3", poll=False, **agent_paths)
    assert fifth is rx and rx.mode == "local" and rx.port == port
    assert _gone(pid)


def test_authtoken_lookup_order(tmp_path, monkeypatch, colab):  # noqa: F811
    """argument → environment → .env → Colab → ngrok's config file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    config = tmp_path / "ngrok.yml"
    config.write_text('version: "3"\nagent:\n    authtoken: from-config-1234\n')

    def resolve(*args, **kwargs):
        return tunnel.resolve_authtoken(*args, **kwargs).value

    assert resolve(config_path=str(config)) == "from-config-1234"
    colab["NGROK_AUTHTOKEN"] = "from-colab-1234"
    assert resolve(config_path=str(config)) == "from-colab-1234"
    (tmp_path / ".env").write_text("NGROK_AUTHTOKEN=from-dotenv-1234\n")
    assert resolve(config_path=str(config)) == "from-dotenv-1234"
    monkeypatch.setenv("NGROK_AUTHTOKEN", "from-env-1234")
    assert resolve(config_path=str(config)) == "from-env-1234"
    assert resolve(" from-arg-1234 ", config_path=str(config)) == "from-arg-1234"
