"""A receiver's callback path is a secret capability (``/callback/<token>``): whatever goes
wrong with a delivery, the token never shows in the sandbox's outputs — the delivery log
and frame, its log records, its repr."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
import requests

from suno_nb.sandbox import Sandbox
from suno_nb.sandbox.delivery import public_url, redact

TOKEN = "S4J1xD4DY1OWdGR4QNzeYtqwPua18MiW"  # as unguessable as a receiver's
QUERY_SECRET = "qs-0123456789abcdef"


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def _submit(sb: Sandbox, url: str) -> str:
    song = sb.create_song(duration=30)
    body = {
        "taskId": song.task_id,
        "audioId": song.audio_id,
        "prompt": "p",
        "tags": "t",
        "title": "T",
        "infillStartS": 10,
        "infillEndS": 20,
        "fullLyrics": "la",
        "callBackUrl": url,
    }
    r = requests.post(
        f"{sb.url}/api/v1/generate/replace-section",
        json=body,
        headers={"Authorization": f"Bearer {sb.api_key}"},
        timeout=30,
    )
    task_id: str = r.json()["data"]["taskId"]
    return task_id


def _everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a handler would print it: message, args, traceback."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


def test_failed_deliveries_never_show_the_callback_token(
    caplog: pytest.LogCaptureFixture, closed_port: int, silent_port: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="suno_nb")
    refused = f"http://127.0.0.1:{closed_port}/callback/{TOKEN}?key={QUERY_SECRET}"
    silent = f"http://127.0.0.1:{silent_port}/callback/{TOKEN}"
    with Sandbox(delay=0.05, retry_backoff=0.05, callback_timeout=0.3, max_attempts=2) as sb:
        refused_id = _submit(sb, refused)
        silent_id = _submit(sb, silent)
        assert sb.wait_idle(60)
        frame = sb.delivery_frame()
        log = sb.delivery_log()
        tasks = sb.tasks()
        shown = repr(sb)
    errors = {e["task_id"]: e["error"] for e in log}
    assert "ConnectionError" in errors[refused_id]  # the failures are the ones we meant
    assert errors[silent_id].startswith("timeout after 0.3 s")
    assert [e["outcome"] for e in log if e["task_id"] == refused_id] == ["retry", "failed"]
    assert len(frame) == 4

    cells = [str(cell) for cell in frame.to_numpy().ravel()]
    for secret in (TOKEN, QUERY_SECRET):
        assert not any(secret in cell for cell in cells), secret
        assert secret not in repr(log) and secret not in repr(tasks) and secret not in shown
        assert secret not in _everything_logged(caplog), secret
    assert caplog.records, "the sandbox logs every attempt"
    assert all(e["url"].endswith("/callback/S4J1…") for e in log)  # shortened, still telling


@pytest.mark.parametrize(
    ("text", "url", "kept"),
    [
        (  # requests' own wording, the URL quoted as sent
            f"Max retries exceeded with url: /callback/{TOKEN}?key={QUERY_SECRET} (refused)",
            f"http://127.0.0.1:9/callback/{TOKEN}?key={QUERY_SECRET}",
            "Max retries exceeded with url: /callback/S4J1…?key=…",
        ),
        (  # percent-encoded in the URL, decoded in the message
            "failed: /hooks/abc+defghijklmnopq",
            "https://rx.example/hooks/abc%2Bdefghijklmnopq",
            "failed: /hooks/abc+…",
        ),
        (  # any 16+ character path segment, even one that is not in the URL given
            "redirected to https://host.example/cb/ZZZZZZZZZZZZZZZZZZZZ now",
            "https://other.example/x",
            "redirected to https://host.example/cb/ZZZZ… now",
        ),
    ],
)
def test_redact_shortens_tokens_and_keeps_the_rest(text: str, url: str, kept: str) -> None:
    out = redact(text, url)
    assert kept in out
    assert "abc%2Bdefghijklmnopq" not in out and "abc+defghijklmnopq" not in out
    assert TOKEN not in out and QUERY_SECRET not in out


def test_public_url_keeps_host_and_short_segments() -> None:
    assert public_url(f"https://rx.example:8443/callback/{TOKEN}?a=b#c") == (
        "https://rx.example:8443/callback/S4J1…"
    )
    assert public_url("http://127.0.0.1:1/hook?token=abc") == "http://127.0.0.1:1/hook"
