"""``snb.doctor()`` and ``start_receiver()`` in faked hosted-notebook environments."""

from __future__ import annotations

import socket

import pytest

import suno_nb as snb
import suno_nb.session as session
from suno_nb import Sandbox, SunoClient

PLACE_VARS = (
    "CODESPACES",
    "CODESPACE_NAME",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN",
    "KAGGLE_KERNEL_RUN_TYPE",
    "COLAB_RELEASE_TAG",
    "BINDER_LAUNCH_HOST",
    "BINDER_REPO_URL",
    "JUPYTERHUB_API_URL",
    "VSCODE_PID",
    "VSCODE_CWD",
    "TERM_PROGRAM",
    "NGROK_AUTHTOKEN",
)


@pytest.fixture
def place(monkeypatch, tmp_path):
    """Start from a plain machine (no hosted-notebook variable, no ngrok token anywhere)."""
    for name in PLACE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env file with a token on the way up
    monkeypatch.setenv("HOME", str(tmp_path))  # no ngrok config file with a token

    def set_place(**env: str) -> None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)

    return set_place


CODESPACE = {
    "CODESPACES": "true",
    "CODESPACE_NAME": "octocat-literate-space-parakeet-mld5",
    "GITHUB_CODESPACES_PORT_FORWARDING_DOMAIN": "app.github.dev",
}


@pytest.mark.parametrize(
    ("env", "name", "plan", "advice"),
    [
        ({}, "local", "stay local", "tunnel='cloudflared'"),
        ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, "kaggle", "polling", "callbacks cannot"),
        ({"COLAB_RELEASE_TAG": "release-colab_20261201"}, "colab", "stay local", "terms"),
        (CODESPACE, "codespaces", "forwarded port", "gh codespace ports visibility"),
        ({"BINDER_LAUNCH_HOST": "https://mybinder.org/"}, "binder", "stay local", "7844"),
        ({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api"}, "jupyterhub", "stay local", "login"),
        ({"VSCODE_PID": "4242"}, "vscode", "stay local", "tunnel='cloudflared'"),
    ],
)
def test_doctor_names_the_place_the_plan_and_the_advice(place, env, name, plan, advice):
    place(**env)
    report = snb.doctor(probe_ports=False)
    assert report.place.name == name
    assert plan in report.plan
    assert advice in str(report)
    assert "not checked" in str(report)  # nothing was probed


def test_doctor_with_a_token_plans_ngrok_and_never_shows_it(place):
    place(COLAB_RELEASE_TAG="release-colab_20261201", NGROK_AUTHTOKEN="2abc_SECRETtoken123456")
    report = snb.doctor(probe_ports=False)
    assert report.ngrok_token and "ngrok tunnel" in report.plan
    assert "SECRETtoken" not in str(report) + repr(report) + report._repr_html_()


def test_doctor_probes_the_ports_it_is_given_and_says_which_are_blocked(place):
    with socket.socket() as listening, socket.socket() as gone:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        gone.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        targets = {
            "open": ("127.0.0.1", listening.getsockname()[1]),
            "shut": ("127.0.0.1", gone.getsockname()[1]),
        }
        report = snb.doctor(probe_ports=targets, timeout=2.0)
    assert report.reach == {"open": True, "shut": False}
    assert "open: open" in str(report) and "shut: blocked" in str(report)


def test_on_kaggle_the_receiver_stays_local_and_results_come_by_polling(place, tmp_path):
    place(KAGGLE_KERNEL_RUN_TYPE="Interactive", NGROK_AUTHTOKEN="2abc_SECRETtoken123456")
    with Sandbox(delay=0.2) as sb:
        rx = session.start_receiver(tmp_path / "k.sqlite3", poll_interval=0.3, poll_grace=0.3)
        assert rx.mode == "local" and rx.polling_only
        assert "Kaggle does not allow tunnels" in repr(rx)
        client = SunoClient(base_url=sb.url, api_key=sb.api_key, receiver=rx)
        song = sb.create_song(duration=60.0)
        job = client.replace_section(
            task_id=song.task_id,
            audio_id=song.audio_id,
            prompt="p",
            tags="t",
            title="t",
            full_lyrics="[Verse] words",
            infill_start_s=20.0,
            infill_end_s=32.0,
        )
        assert job.callback_url is None  # nothing to call back: no URL was sent
        result = rx.wait(job.task_id, timeout=60, progress=False)
        assert result.ok and result.source == "poll"
    session.stop_receiver()


def test_on_codespaces_the_forwarded_port_is_the_public_url(place, tmp_path):
    place(**CODESPACE)
    rx = session.start_receiver(tmp_path / "c.sqlite3", poll=False)
    try:
        base = f"https://octocat-literate-space-parakeet-mld5-{rx.port}.app.github.dev"
        assert rx.mode == "codespaces" and rx.public_url == base
        assert rx.url.startswith(base + "/callback/") and rx.url.endswith(rx.local_url[-32:])
        assert f"gh codespace ports visibility {rx.port}:public" in repr(rx)
        assert not rx.polling_only
    finally:
        session.stop_receiver()
    assert not rx.running
