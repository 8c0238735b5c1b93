"""suno_nb.tunnel driven through the real pyngrok against the fake ngrok agent (offline).

Every test gets its own fake ``ngrok`` wrapper, config file and state directory under
``tmp_path``; teardown fails the test if any agent started from that wrapper is still alive.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
import requests

from suno_nb import tunnel
from suno_nb.errors import (
    NgrokAuthtokenMissing,
    NgrokAuthtokenRejected,
    NgrokBinaryUnavailable,
    NgrokEndpointLimit,
    NgrokEndpointOnline,
    NgrokSessionLimit,
    NgrokStartTimeout,
    TunnelError,
)
from suno_nb.tunnel import Tunnel, TunnelSettings, agent, open_tunnel, resolve_authtoken

from .conftest import wait_until

ROOT = Path(__file__).resolve().parents[1]
FAKE = Path(__file__).resolve().parent / "fake_ngrok" / "fake_ngrok.py"
TOKEN = "2fakeSECRETauthtoken_Zq81xKp0_9dWmYt"
CLIENT_IP = "203.0.113.7"
KNOBS = (
    "FAKE_NGROK_FAIL",
    "FAKE_NGROK_HANG",
    "FAKE_NGROK_REQUIRE_TOKEN",
    "FAKE_NGROK_ENDPOINT_LIMIT",
    "FAKE_NGROK_CONNECT_FAIL",
    "FAKE_NGROK_CLIENT_IP",
    "NGROK_AUTHTOKEN",
    "PYNGROK_NGROK_PATH",
)


def _load_fake() -> Any:
    spec = importlib.util.spec_from_file_location("fake_ngrok", FAKE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_ngrok = _load_fake()
NO_HANG = 30.0  # seconds: a call that must return rather than hang (not a speed check)


# --- helpers ----------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] not in "ZX"


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    """True once ``pid`` has ended (a guard against a hang: no speed is checked)."""
    return wait_until(lambda: not _alive(pid), timeout)


def _agents_of(ngrok_path: str) -> list[int]:
    """Live processes whose command line holds this test's (unique) fake ngrok path."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ngrok_path.encode() in args and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _endpoints(api_url: str) -> list[dict]:
    return requests.get(f"{api_url}/api/endpoints", timeout=5).json()["endpoints"]


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text


def _http() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # never through a proxy from the environment
    return session


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """A fake ngrok wrapper, config path and state dir under tmp_path; no agent left after."""
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    state = tmp_path / "state"
    monkeypatch.setenv("SUNO_NB_STATE_DIR", str(state))
    ngrok_path = fake_ngrok.install(tmp_path / "bin")
    ns = SimpleNamespace(
        tmp=tmp_path,
        ngrok_path=ngrok_path,
        config_path=str(tmp_path / "ngrok.yml"),
        state=state,
    )
    yield ns
    tunnel.close_all()
    from pyngrok import process

    process.kill_process(ngrok_path)
    leaked = _agents_of(ngrok_path)
    for pid in leaked:
        os.kill(pid, signal.SIGKILL)
    assert not leaked, f"agent processes left running: {leaked}"


def _settings(env: SimpleNamespace, **overrides: Any) -> TunnelSettings:
    values: dict[str, Any] = {
        "authtoken": TOKEN,
        "ngrok_path": env.ngrok_path,
        "config_path": env.config_path,
        "state_dir": str(env.state),
        "start_timeout": 10.0,
    }
    values.update(overrides)
    return TunnelSettings(**values)


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(  # type: ignore[attr-defined]
            {"method": self.command, "path": self.path, "headers": self.headers, "body": body}
        )
        answer = json.dumps({"code": 200, "msg": "success"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


@pytest.fixture
def upstream() -> Iterator[SimpleNamespace]:
    """A loopback HTTP server standing in for the receiver; records what reaches it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield SimpleNamespace(port=server.server_address[1], seen=server.seen)  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _post_through(url: str, upstream: SimpleNamespace, body: bytes) -> dict:
    before = len(upstream.seen)
    response = _http().post(
        url + "/callback/abc?x=1",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json() == {"code": 200, "msg": "success"}
    assert len(upstream.seen) == before + 1
    return upstream.seen[-1]


# --- happy path -------------------------------------------------------------------------------


def test_open_forward_reuse_close(env, upstream, caplog):
    caplog.set_level(logging.DEBUG)
    settings = _settings(env)
    tun = open_tunnel(upstream.port, settings)

    assert tun.public_url.startswith("http://127.0.0.1:")
    assert tun.port == upstream.port
    assert tun.upstream == f"http://localhost:{upstream.port}"
    pid = tun.agent_pid
    assert pid is not None and _alive(pid)
    assert os.getsid(pid) == pid  # own session: a SIGINT to the kernel's group misses it

    body = json.dumps({"code": 200, "data": {"task_id": "t1", "title": "Über ♪"}}).encode()
    seen = _post_through(tun.public_url, upstream, body)
    assert seen["method"] == "POST"
    assert seen["path"] == "/callback/abc?x=1"
    assert seen["body"] == body
    assert seen["headers"]["X-Forwarded-For"] == CLIENT_IP
    assert seen["headers"]["X-Forwarded-Proto"] == "https"

    record = json.loads((env.state / f"ngrok-agent-{pid}.json").read_text())
    assert record["agent_pid"] == pid
    assert record["ports"] == [upstream.port]
    assert record["owner_pid"] == os.getpid()
    assert TOKEN not in json.dumps(record)

    again = open_tunnel(upstream.port, settings)  # a re-run cell
    assert again is tun
    assert len(_endpoints(tun.api_url)) == 1
    assert tunnel.open_tunnels() == [tun]

    _no_secret(repr(settings), str(settings), repr(tun), caplog.text)
    assert "authtoken='***'" in repr(settings)

    tun.close()
    assert tun.closed
    assert _wait_gone(pid)
    assert not list(env.state.glob("ngrok-agent-*.json"))
    with pytest.raises(requests.ConnectionError):
        _endpoints(tun.api_url)
    tun.close()  # idempotent
    assert tunnel.open_tunnels() == []


def test_reuses_endpoint_already_on_the_agent(env, upstream):
    """An endpoint for the port that this module did not open (a lost handle: opened by
    pyngrok directly, or before the module state was reset) is adopted."""
    from pyngrok import ngrok
    from pyngrok.conf import PyngrokConfig

    settings = _settings(env)
    other = open_tunnel(_closed_port(), settings)  # this module's agent, another port
    config = PyngrokConfig(
        ngrok_path=env.ngrok_path,
        config_path=env.config_path,
        auth_token=TOKEN,
        start_new_session=True,
    )
    lost = ngrok.connect(f"http://localhost:{upstream.port}", pyngrok_config=config)

    adopted = open_tunnel(upstream.port, settings)
    assert adopted.public_url == lost.public_url
    assert adopted.agent_pid == other.agent_pid
    urls = sorted(e["public_url"] for e in _endpoints(adopted.api_url))
    assert urls == sorted([other.public_url, lost.public_url])  # no second one for our port
    other.close()
    adopted.close()
    assert _wait_gone(adopted.agent_pid)


def test_two_ports_share_one_agent(env, upstream):
    settings = _settings(env)
    one = open_tunnel(upstream.port, settings)
    two = open_tunnel(_closed_port(), settings, host="127.0.0.1")
    assert one.agent_pid == two.agent_pid
    assert len(_endpoints(one.api_url)) == 2
    assert two.upstream.startswith("http://127.0.0.1:")

    one.close()  # the other tunnel still needs the agent
    assert _alive(two.agent_pid)
    assert [e["public_url"] for e in _endpoints(two.api_url)] == [two.public_url]
    record = json.loads((env.state / f"ngrok-agent-{two.agent_pid}.json").read_text())
    assert record["ports"] == [two.port]
    two.close()
    assert _wait_gone(two.agent_pid)


# --- interrupted cell, dead kernel, leftover agent ----------------------------------------------

CHILD = """
import json, sys, time
from suno_nb.tunnel import TunnelSettings, open_tunnel

port, ngrok_path, config_path, state_dir, mode = sys.argv[1:6]
settings = TunnelSettings(
    ngrok_path=ngrok_path, config_path=config_path, state_dir=state_dir, start_timeout=10
)
t = open_tunnel(int(port), settings)
ready = json.dumps({"url": t.public_url, "pid": t.agent_pid})
if mode == "exit":
    print(ready, flush=True)
    sys.exit(0)
while True:  # like an IPython kernel: an interrupt ends the cell, not the process
    try:
        if ready:
            print(ready, flush=True)
            ready = None
        time.sleep(3600)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def _spawn_child(env: SimpleNamespace, port: int, mode: str) -> SimpleNamespace:
    script = env.tmp / "kernel.py"
    script.write_text(CHILD)
    child_env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [str(port), env.ngrok_path, env.config_path, str(env.state), mode]
    with (env.tmp / "kernel.stderr").open("wb") as errors:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=child_env,
            start_new_session=True,  # its own process group, like a kernel
        )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()

    def readline(timeout: float = 15.0) -> str:
        try:
            return lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                "child said nothing; stderr:\n" + (env.tmp / "kernel.stderr").read_text()
            ) from None

    return SimpleNamespace(proc=proc, readline=readline)


@pytest.mark.slow  # interrupts and kills: a kill test
def test_interrupted_cell_agent_survives_and_leftover_is_reaped(env, upstream, monkeypatch):
    child = _spawn_child(env, upstream.port, "sleep")
    try:
        info = json.loads(child.readline())
        old_pid, url = info["pid"], info["url"]
        assert os.getpgid(old_pid) != os.getpgid(child.proc.pid)

        os.killpg(child.proc.pid, signal.SIGINT)  # the notebook's "interrupt kernel"
        assert child.readline() == "interrupted"
        assert child.proc.poll() is None
        assert _alive(old_pid)
        body = b'{"code": 200, "msg": "All generated successfully."}'
        assert _post_through(url, upstream, body)["body"] == body

        # Another kernel still owns that agent: it is left alone, and the session-limit
        # error names it.
        monkeypatch.setenv("FAKE_NGROK_FAIL", "108")
        with pytest.raises(NgrokSessionLimit) as caught:
            open_tunnel(upstream.port, _settings(env))
        assert str(old_pid) in str(caught.value)
        assert str(child.proc.pid) in str(caught.value)
        assert _alive(old_pid)
        monkeypatch.delenv("FAKE_NGROK_FAIL")
    finally:
        child.proc.kill()  # the kernel dies without cleaning up
        child.proc.wait()
    assert _alive(old_pid)  # the agent outlived its kernel
    assert (env.state / f"ngrok-agent-{old_pid}.json").exists()

    fresh = open_tunnel(upstream.port, _settings(env))
    assert not _alive(old_pid)  # ended by its recorded pid before ours started (and waited for)
    assert fresh.agent_pid != old_pid
    assert not (env.state / f"ngrok-agent-{old_pid}.json").exists()
    assert (env.state / f"ngrok-agent-{fresh.agent_pid}.json").exists()
    body = b'{"code": 200}'
    assert _post_through(fresh.public_url, upstream, body)["body"] == body
    fresh.close()
    assert _wait_gone(fresh.agent_pid)


def test_atexit_ends_the_agent(env, upstream):
    child = _spawn_child(env, upstream.port, "exit")
    pid = json.loads(child.readline())["pid"]
    assert child.proc.wait(timeout=30) == 0
    assert _wait_gone(pid)
    assert not list(env.state.glob("ngrok-agent-*.json"))


def test_reused_pid_is_never_killed(env, upstream):
    """A record whose pid now belongs to another program is dropped, the program spared."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    gone_owner.wait()
    try:
        env.state.mkdir(parents=True)
        record = {
            "agent_pid": bystander.pid,
            "agent_started": None,
            "ngrok_path": env.ngrok_path,
            "owner_pid": gone_owner.pid,
            "owner_started": None,
            "ports": [upstream.port],
        }
        (env.state / f"ngrok-agent-{bystander.pid}.json").write_text(json.dumps(record))
        tun = open_tunnel(upstream.port, _settings(env))
        assert bystander.poll() is None
        assert not (env.state / f"ngrok-agent-{bystander.pid}.json").exists()
        tun.close()
    finally:
        bystander.kill()
        bystander.wait()


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind", "phrases"),
    [
        (
            "4018",
            NgrokAuthtokenMissing,
            [
                "ERR_NGROK_4018",
                "dashboard.ngrok.com/get-started/your-authtoken",
                "start_receiver(authtoken=...)",
                "NGROK_AUTHTOKEN",
                "ngrok config add-authtoken",
            ],
        ),
        *[
            (
                code,
                NgrokAuthtokenRejected,
                [f"ERR_NGROK_{code}", "rejected", "your-authtoken", "NGROK_AUTHTOKEN"],
            )
            for code in ("105", "106", "107")
        ],
        (
            "108",
            NgrokSessionLimit,
            ["ERR_NGROK_108", "dashboard.ngrok.com/agents", "free plan allows 3"],
        ),
        ("324", NgrokEndpointLimit, ["ERR_NGROK_324", "stop_receiver()", "3 online endpoints"]),
        ("999", TunnelError, ["ERR_NGROK_999", "ngrok.com/docs/errors/err_ngrok_999"]),
    ],
)
def test_agent_start_errors(env, upstream, caplog, monkeypatch, code, kind, phrases):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_NGROK_FAIL", code)
    settings = _settings(env)
    with pytest.raises(TunnelError) as caught:
        open_tunnel(upstream.port, settings)
    err = caught.value
    assert type(err) is kind
    for phrase in phrases:
        assert phrase in str(err)
    assert err.__cause__ is None and err.__context__ is None  # no pyngrok traceback
    assert "--authtoken ***" in caplog.text  # the agent did echo it; the log got it scrubbed
    _no_secret(str(err), repr(err), repr(settings), caplog.text)
    assert not list(env.state.glob("ngrok-agent-*.json"))
    assert not _agents_of(env.ngrok_path)


def test_authtoken_required_and_read_from_config(env, upstream, monkeypatch):
    monkeypatch.setenv("FAKE_NGROK_REQUIRE_TOKEN", "1")
    with pytest.raises(NgrokAuthtokenMissing):
        open_tunnel(upstream.port, _settings(env, authtoken=None))

    Path(env.config_path).write_text(f'version: "3"\nagent:\n    authtoken: {TOKEN}\n')
    token = _value(resolve_authtoken(config_path=env.config_path))
    assert token == TOKEN
    tun = open_tunnel(upstream.port, _settings(env, authtoken=None))  # the agent reads it
    tun.close()


def test_endpoint_limit_from_the_agent_api(env, upstream, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_NGROK_ENDPOINT_LIMIT", "1")
    settings = _settings(env)
    first = open_tunnel(upstream.port, settings)
    with pytest.raises(NgrokEndpointLimit) as caught:
        open_tunnel(_closed_port(), settings)
    assert "ERR_NGROK_324" in str(caught.value)
    _no_secret(str(caught.value), caplog.text)
    assert _alive(first.agent_pid)  # the working tunnel is untouched
    body = b"{}"
    assert _post_through(first.public_url, upstream, body)["body"] == body
    first.close()


@pytest.mark.parametrize(
    ("code", "kind", "phrases"),
    [
        (
            "334",
            NgrokEndpointOnline,
            ["ERR_NGROK_334", "already online", "stop_receiver()", "pooling", "one agent"],
        ),
        ("324", NgrokEndpointLimit, ["ERR_NGROK_324", "3 online endpoints"]),
    ],
)
def test_endpoint_errors_from_the_agent_api(
    env, upstream, caplog, monkeypatch, code, kind, phrases
):
    """The agent starts, but opening the endpoint fails (e.g. a second kernel, same domain)."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_NGROK_CONNECT_FAIL", code)
    with pytest.raises(TunnelError) as caught:
        open_tunnel(upstream.port, _settings(env))
    assert type(caught.value) is kind
    for phrase in phrases:
        assert phrase in str(caught.value)
    _no_secret(str(caught.value), caplog.text)
    assert not _agents_of(env.ngrok_path)  # the agent started for it is ended again
    assert not list(env.state.glob("ngrok-agent-*.json"))


def test_binary_missing_and_not_downloadable(env, upstream, caplog, monkeypatch):
    from pyngrok import installer

    caplog.set_level(logging.DEBUG)
    dead = f"http://127.0.0.1:{_closed_port()}/ngrok-v3-stable-linux-amd64.tgz"
    asked: list[str] = []  # each download attempt asks for the URL
    monkeypatch.setattr(
        installer, "get_ngrok_cdn_url", lambda *args, **kwargs: asked.append(dead) or dead
    )
    missing = str(env.tmp / "nowhere" / "ngrok")
    with pytest.raises(NgrokBinaryUnavailable) as caught:
        open_tunnel(upstream.port, _settings(env, ngrok_path=missing))
    assert asked == [dead]  # one download attempt, nothing tries it again
    message = str(caught.value)
    for phrase in (missing, "PYNGROK_NGROK_PATH", "ngrok_path=", "ngrok.com/download"):
        assert phrase in message
    _no_secret(message, caplog.text)


def test_binary_not_executable(env, upstream):
    plain = env.tmp / "plain" / "ngrok"
    plain.parent.mkdir()
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    with pytest.raises(NgrokBinaryUnavailable) as caught:
        open_tunnel(upstream.port, _settings(env, ngrok_path=str(plain)))
    assert "chmod +x" in str(caught.value)


@pytest.mark.parametrize("hang", ["1", "offline"])
def test_start_timeout(env, upstream, caplog, monkeypatch, hang):
    """A silent agent (pyngrok alone would block forever) and one that cannot connect."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_NGROK_HANG", hang)
    began = time.monotonic()
    with pytest.raises(NgrokStartTimeout) as caught:
        open_tunnel(upstream.port, _settings(env, start_timeout=1.0))
    assert time.monotonic() - began < NO_HANG  # anti-hang guard, not a speed check
    message = str(caught.value)
    assert "1 s" in message and "start_timeout" in message
    if hang == "offline":
        assert "no such host" in message  # the agent's own last error is passed on
    _no_secret(message, caplog.text)
    assert not _agents_of(env.ngrok_path)
    assert not list(env.state.glob("ngrok-agent-*.json"))


def test_interrupt_during_start_leaves_no_agent(env, upstream, monkeypatch):
    """The user stops the cell while the agent is still starting."""
    monkeypatch.setenv("FAKE_NGROK_HANG", "1")
    stop = threading.Event()

    def interrupt_once_it_runs() -> None:  # the agent process exists: it is starting
        started = wait_until(lambda: stop.is_set() or bool(_agents_of(env.ngrok_path)), 60)
        if started and not stop.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=interrupt_once_it_runs, daemon=True)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            open_tunnel(upstream.port, _settings(env, start_timeout=120.0))
    finally:
        stop.set()
        watcher.join(30)
    assert not _agents_of(env.ngrok_path)
    assert not list(env.state.glob("ngrok-agent-*.json"))
    monkeypatch.delenv("FAKE_NGROK_HANG")
    tun = open_tunnel(upstream.port, _settings(env))  # and the next run works
    tun.close()


# --- settings and authtoken lookup ------------------------------------------------------------


def _value(secret):
    return None if secret is None else secret.value


def test_resolve_authtoken_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env file on the way up (one would come before Colab)
    config = tmp_path / "ngrok.yml"
    config.write_text('version: "3"\nagent:\n    authtoken: from-config-v3\n')
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)

    assert _value(resolve_authtoken(config_path=str(config))) == "from-config-v3"
    monkeypatch.setenv("NGROK_AUTHTOKEN", "from-env")  # set after import: read at call time
    assert _value(resolve_authtoken(config_path=str(config))) == "from-env"
    assert _value(resolve_authtoken("explicit", config_path=str(config))) == "explicit"
    monkeypatch.setenv("NGROK_AUTHTOKEN", "")
    assert _value(resolve_authtoken("  ", config_path=str(config))) == "from-config-v3"

    legacy = tmp_path / "v2.yml"
    legacy.write_text("authtoken: from-config-v2\nregion: eu\n")
    assert _value(resolve_authtoken(config_path=str(legacy))) == "from-config-v2"
    assert resolve_authtoken(config_path=str(tmp_path / "absent.yml")) is None
    empty = tmp_path / "empty.yml"
    empty.write_text('version: "3"\n')
    assert resolve_authtoken(config_path=str(empty)) is None


def test_settings_defaults_and_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("SUNO_NB_STATE_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(tmp_path / "bin" / "ngrok"))
    settings = TunnelSettings(authtoken=TOKEN)
    assert settings.resolved_state_dir() == tmp_path / "s"
    assert settings.resolved_ngrok_path() == str(tmp_path / "bin" / "ngrok")
    _no_secret(repr(settings), str(settings))
    assert "authtoken=None" in repr(TunnelSettings())
    with pytest.raises(ValueError):
        TunnelSettings(start_timeout=0)
    with pytest.raises(ValueError):
        open_tunnel(0, settings)
    monkeypatch.delenv("SUNO_NB_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    if sys.platform.startswith("linux"):  # platformdirs' user state folder
        assert tunnel.default_state_dir() == tmp_path / "state" / "suno_nb"
    fake = Tunnel(
        public_url="https://x.ngrok-free.app",
        port=1,
        upstream="http://localhost:1",
        name="n",
        agent_pid=None,
        api_url=None,
        ngrok_path="p",
        pyngrok_config=None,
        state_dir=tmp_path,
    )
    assert repr(fake) == "<Tunnel https://x.ngrok-free.app -> http://localhost:1 (agent pid None)>"


def test_fake_agent_side_commands(tmp_path):
    """``--version`` and ``config add-authtoken`` as pyngrok calls them."""
    from pyngrok import ngrok
    from pyngrok.conf import PyngrokConfig

    path = fake_ngrok.install(tmp_path / "bin")
    config_path = str(tmp_path / "ngrok.yml")
    config = PyngrokConfig(ngrok_path=path, config_path=config_path)
    assert ngrok.get_version(config)[0] == "3.20.0"
    ngrok.set_auth_token(TOKEN, config)
    assert _value(resolve_authtoken(config_path=config_path)) == TOKEN


# --- agent records and pid checks through psutil, with real child processes --------------------

SLEEPER = "import time; print('up', flush=True); time.sleep(60)"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A real child process standing in for an orphaned agent, once it runs Python (before
    its exec its command line reads empty: a loaded machine showed that window)."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    yield proc
    proc.kill()
    proc.wait()
    proc.stdout.close()


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def _orphan_record(state: Path, pid: int, **changes: Any) -> Path:
    """Record ``pid`` as an agent whose owner (a kernel) is gone; apply ``changes``."""
    agent.write_record(state, "test-agent-", pid, program=sys.executable)
    path = state / f"test-agent-{pid}.json"
    record = json.loads(path.read_text())
    record.update({"owner_pid": _dead_pid(), **changes})
    path.write_text(json.dumps(record))
    return path


def test_orphan_whose_identity_matches_is_ended(tmp_path, sleeper):
    path = _orphan_record(tmp_path, sleeper.pid)
    record = json.loads(path.read_text())
    assert record["agent_created"] == pytest.approx(psutil.Process(sleeper.pid).create_time())
    assert record["agent_cmdline_sha256"] == agent.cmdline_digest([sys.executable, "-c", SLEEPER])
    assert agent.matches(sleeper.pid, record["agent_created"], record["agent_cmdline_sha256"])

    assert agent.reap_leftovers(tmp_path, "test-agent-", set()) == []
    assert sleeper.wait(timeout=30) is not None  # ended (SIGTERM through psutil)
    assert not path.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"agent_created": None},  # unknown: never a kill
        {"agent_cmdline_sha256": None},
        {"agent_cmdline_sha256": "0" * 64},  # the pid now runs another program
    ],
)
def test_orphan_record_that_does_not_match_is_forgotten_and_the_process_spared(
    tmp_path, sleeper, changes
):
    path = _orphan_record(tmp_path, sleeper.pid, **changes)
    assert agent.reap_leftovers(tmp_path, "test-agent-", set()) == []
    # A kill would have been waited for (terminate() returns once what it signals has
    # ended, as the matching-orphan test shows): the process would be gone by now.
    assert sleeper.poll() is None
    assert not path.exists()


def test_mismatching_create_time_means_a_reused_pid(tmp_path, sleeper):
    created = psutil.Process(sleeper.pid).create_time()
    path = _orphan_record(tmp_path, sleeper.pid, agent_created=created - 30)
    agent.reap_leftovers(tmp_path, "test-agent-", set())
    assert sleeper.poll() is None and not path.exists()  # a kill would have been waited for


def test_agent_of_a_live_owner_is_left_alone_and_reported(tmp_path, sleeper):
    owner = subprocess.Popen([sys.executable, "-c", SLEEPER])
    try:
        path = _orphan_record(
            tmp_path,
            sleeper.pid,
            owner_pid=owner.pid,
            owner_created=psutil.Process(owner.pid).create_time(),
        )
        foreign = agent.reap_leftovers(tmp_path, "test-agent-", set())
        assert [r["agent_pid"] for r in foreign] == [sleeper.pid]
        assert sleeper.poll() is None and path.exists()
        assert agent.reap_leftovers(tmp_path, "test-agent-", {sleeper.pid}) == []  # our own
    finally:
        owner.kill()
        owner.wait()


def test_alive_and_terminate(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    assert wait_until(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE)
    assert not agent.alive(zombie.pid)  # exited, not yet reaped
    zombie.wait()
    assert not agent.alive(zombie.pid) and not agent.alive(None)
    # A process that shrugs SIGTERM off: terminate() ends it with SIGKILL after the wait.
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; "
            "signal.signal(signal.SIGTERM, lambda *_: print('term', flush=True)); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert stubborn.stdout.readline() == "ready\n"  # its SIGTERM handler is in place
    assert agent.terminate([stubborn.pid], wait=0.5) == []  # SIGKILL after the wait
    assert stubborn.stdout.readline() == "term\n"  # SIGTERM came, and it lived on after it
    assert stubborn.stdout.readline() == ""  # then it ended (SIGKILL: nothing else was sent)
    assert not agent.alive(stubborn.pid)  # psutil reaped our child
    stubborn.wait(timeout=30)
    stubborn.stdout.close()

    # A process that takes its time to end on SIGTERM (until the test lets it): terminate()
    # waits for it within ``wait`` instead of killing it.
    graceful = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "def leave(*_):\n"
            "    print('term', flush=True); sys.stdin.readline(); print('bye', flush=True)\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, leave); print('ready', flush=True); time.sleep(60)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert graceful.stdout.readline() == "ready\n"
    left: list[list[int]] = []
    ending = threading.Thread(target=lambda: left.append(agent.terminate([graceful.pid], wait=60)))
    ending.start()
    assert graceful.stdout.readline() == "term\n"  # handling SIGTERM; terminate() waits
    graceful.stdin.write("go\n")
    graceful.stdin.flush()
    ending.join(60)
    assert left == [[]]
    assert graceful.stdout.readline() == "bye\n"  # it ended by itself: no SIGKILL cut it short
    assert not agent.alive(graceful.pid)
    graceful.wait(timeout=30)
    graceful.stdin.close()
    graceful.stdout.close()
