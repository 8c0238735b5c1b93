"""The ngrok tunnel: one agent per kernel through pyngrok, one endpoint per port.

The only module of the package that imports pyngrok (inside functions, so ``import suno_nb``
stays light).  The agent runs in its own session (``start_new_session=True``), so
interrupting a cell does not kill it; a re-run reuses the endpoint already pointing at the
port.  Only pyngrok's public API is used; the agent being started is found with psutil.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import MissingExtraError, TunnelError
from ..extras import need
from . import agent as _agent
from .errors import (
    NgrokFailure,
    clean_text,
    error_code,
    error_text,
    ngrok_error,
    ngrok_timeout,
    remember_secret,
    scrub,
)
from .settings import TunnelSettings

log = logging.getLogger("suno_nb.tunnel")

RECORD_PREFIX = "ngrok-agent-"
_WATCHDOG_GRACE = 1.0  # s past start_timeout before a silent agent is killed
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}

_lock = threading.RLock()
_open: dict[tuple[str, int], NgrokTunnel] = {}  # (ngrok_path, port) -> open tunnel
_started: dict[str, int] = {}  # ngrok_path -> pid of the agent this module started


class NgrokTunnel(_agent.AgentTunnel):
    """An open ngrok endpoint forwarding ``public_url`` to ``upstream`` (the receiver).

    ``agent_pid`` is the agent's process id, ``api_url`` its local API (request inspection:
    ``GET {api_url}/api/requests/http``) and ``name`` the endpoint's name in the agent.
    """

    kind = "ngrok"

    def __init__(
        self,
        *,
        name: str | None,
        api_url: str | None,
        ngrok_path: str,
        pyngrok_config: Any,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.name = name
        self.api_url = api_url
        self.ngrok_path = ngrok_path
        self._config = pyngrok_config

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran or the agent process is gone (killed, crashed)."""
        return self._closed or (self.agent_pid is not None and not _agent.alive(self.agent_pid))

    def close(self) -> None:
        """Disconnect the endpoint and end the agent if this module started it.  Idempotent.

        The agent stays up while another open tunnel of this process still uses it.
        """
        self._close(disconnect=True)

    def _close(self, *, disconnect: bool) -> None:
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _open.get((self.ngrok_path, self.port)) is self:
                del _open[(self.ngrok_path, self.port)]
            from pyngrok import ngrok
            from pyngrok.exception import PyngrokError

            running = self.agent_pid is not None and _managed_pid(self._config) == self.agent_pid
            if running and disconnect:
                try:
                    ngrok.disconnect(self.public_url, self._config)
                except (PyngrokError, OSError) as exc:
                    log.warning("could not disconnect %s: %s", self.public_url, scrub(str(exc)))
            siblings = [t for t in _open.values() if t.agent_pid == self.agent_pid]
            if siblings:
                _record(self._state_dir, self.agent_pid, self.ngrok_path)
            elif _started.get(self.ngrok_path) == self.agent_pid:
                if running:
                    log.info("ending the ngrok agent (pid %s)", self.agent_pid)
                    _kill_agent(self._config)
                _started.pop(self.ngrok_path, None)
                _agent.remove_record(self._state_dir, RECORD_PREFIX, self.agent_pid)
            log.info("tunnel closed: %s", self.public_url)


def open_tunnels() -> list[NgrokTunnel]:
    with _lock:
        return list(_open.values())


def own_agent_pids() -> set[int]:
    """Pids of the ngrok agents this module started and that still run."""
    with _lock:
        return {pid for pid in _started.values() if _agent.alive(pid)}


def _record(state_dir: Path, pid: int | None, path: str) -> None:
    ports = sorted({t.port for t in _open.values() if t.agent_pid == pid})
    _agent.write_record(state_dir, RECORD_PREFIX, pid, program=path, ports=ports)


def open_ngrok(port: int, settings: TunnelSettings, *, host: str = "localhost") -> NgrokTunnel:
    """Open (or reuse) an ngrok endpoint forwarding to ``http://<host>:<port>``.

    Starts the agent unless this process already runs one for the same ``ngrok_path``;
    first ends any orphaned agent recorded in the state folder.  An endpoint already
    pointing at this port is reused.  Failures raise one :class:`TunnelError` subclass.
    """
    try:
        need("pyngrok", extra="ngrok", feature="The ngrok tunnel")
    except MissingExtraError as exc:  # a TunnelError: tunnel="auto" falls back to local
        raise TunnelError(str(exc)) from None
    from pyngrok import ngrok
    from pyngrok.conf import PyngrokConfig

    remember_secret(settings.token)
    path = settings.resolved_ngrok_path()
    state_dir = settings.resolved_state_dir()
    config = PyngrokConfig(
        ngrok_path=path,
        config_path=settings.config_path,
        auth_token=settings.token,
        region=settings.region,
        start_new_session=True,
        startup_timeout=settings.start_timeout,  # type: ignore[arg-type]  # float works
    )
    remember_secret(config.auth_token)  # pyngrok may have read NGROK_AUTHTOKEN itself
    upstream = f"http://{host}:{port}"
    with _lock:
        existing = _open.get((path, port))
        own_pid = _managed_pid(config)
        if existing is not None:
            if own_pid is not None and own_pid == existing.agent_pid and _listed(existing):
                log.info("reusing tunnel %s -> port %d", existing.public_url, port)
                return existing
            existing._closed = True
            del _open[(path, port)]
        foreign = _agent.reap_leftovers(state_dir, RECORD_PREFIX, own_agent_pids())
        started_now = own_pid is None
        proc = _start_agent(config, settings, path, foreign)
        pid = proc.proc.pid
        if started_now:
            _started[path] = pid
            _record(state_dir, pid, path)
        error: TunnelError | None = None
        try:
            endpoint = _find_endpoint(ngrok.get_tunnels(config), port)
            if endpoint is not None:
                log.info("reusing the agent's endpoint %s -> port %d", endpoint.public_url, port)
            else:
                endpoint = ngrok.connect(
                    upstream, name=f"suno-nb-{port}-{uuid.uuid4().hex[:8]}", pyngrok_config=config
                )
        except Exception as exc:
            error = _translate(exc, settings, path, foreign=foreign)
        if error is not None:
            if started_now:
                with contextlib.suppress(Exception):
                    _kill_agent(config)
                _started.pop(path, None)
                _agent.remove_record(state_dir, RECORD_PREFIX, pid)
            raise error
        assert endpoint is not None  # found or connected, else an error was raised
        tunnel = NgrokTunnel(
            public_url=str(endpoint.public_url),
            port=port,
            upstream=(endpoint.upstream or {}).get("url") or upstream,
            name=endpoint.name,
            agent_pid=pid,
            api_url=proc.api_url,
            ngrok_path=path,
            pyngrok_config=config,
            state_dir=state_dir,
        )
        _open[(path, port)] = tunnel
        if _started.get(path) == pid:
            _record(state_dir, pid, path)
        log.info("tunnel open: %s -> %s (agent pid %d)", tunnel.public_url, tunnel.upstream, pid)
        return tunnel


# --- pyngrok plumbing ----------------------------------------------------------------------------


def _starting_agent(path: str) -> Any:
    """The agent pyngrok is starting for ``path`` (a psutil process), or None.

    pyngrok hands out no process object until the agent is up, yet an agent that never
    answers must be ended: it is found as a child of this process running ``path`` (psutil's
    public API; a script agent runs under its interpreter, so the first two arguments count).
    """
    import psutil

    want = os.path.realpath(path)
    for child in psutil.Process().children():
        try:
            args = child.cmdline()[:2]
        except psutil.Error:
            continue
        if any(os.path.realpath(a) == want for a in args if a):
            return child
    return None


def _managed_pid(config: Any) -> int | None:
    """Pid of the live agent pyngrok runs in this process for ``config``, if any."""
    from pyngrok import process

    if not process.is_process_running(config.ngrok_path):
        return None
    return process.get_process(config).proc.pid  # running: returns it, starts nothing


def _kill_agent(config: Any) -> None:
    """End the agent pyngrok runs for ``config`` and close its output pipe."""
    from pyngrok import ngrok, process

    current = process.get_process(config) if process.is_process_running(config.ngrok_path) else None
    before = _monitors()
    ngrok.kill(config)
    if current is not None and current.proc.stdout is not None:
        # pyngrok's log-monitor thread may still be in readline(): closing the pipe under it
        # raises in that thread (a traceback on stderr, i.e. in some cell).  Once the agent
        # has exited, its monitor reads EOF and ends: close the pipe after that (bounded);
        # if it has not ended, the pipe closes with its Popen object instead.
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            current.proc.wait(timeout=5)
        give_up = time.monotonic() + 1.0
        while _monitors() >= before and before and time.monotonic() < give_up:
            time.sleep(0.01)
        if _monitors() < before or not before:
            with contextlib.suppress(OSError):
                current.proc.stdout.close()


def _monitors() -> int:
    """pyngrok's live log-monitor threads (Python names a thread after its target)."""
    return sum(t.name.endswith("(_monitor_process)") for t in threading.enumerate())


def _listed(tunnel: NgrokTunnel) -> bool:
    from pyngrok import ngrok
    from pyngrok.exception import PyngrokError

    try:
        urls = {t.public_url for t in ngrok.get_tunnels(tunnel._config)}
    except (PyngrokError, OSError):
        return False
    return tunnel.public_url in urls


def _find_endpoint(endpoints: list[Any], port: int) -> Any | None:
    for endpoint in endpoints:
        url = (endpoint.upstream or {}).get("url") or (endpoint.config or {}).get("addr")
        if not url:
            continue
        url = str(url)
        if url.isdigit():
            url = f"localhost:{url}"
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            if parts.port == port and (parts.hostname or "") in _LOOPBACK:
                return endpoint
        except ValueError:
            continue
    return None


def _start_agent(config: Any, settings: TunnelSettings, path: str, foreign: list[dict]) -> Any:
    """Start (or get) the agent; a watchdog ends one that stays silent past the timeout.

    pyngrok reads the agent's stdout line by line and checks its own timeout only between
    lines, so an agent that prints nothing would block it forever.  An interrupt (the user
    stopping the cell) during a fresh start ends the half-started agent too.
    """
    from pyngrok import ngrok, process

    fresh = not process.is_process_running(path)
    done = threading.Event()
    timed_out = threading.Event()

    def on_log(entry: Any) -> None:
        # pyngrok's public log hook.  An agent refused by the ngrok service keeps retrying
        # (and pyngrok would wait out the whole start timeout): end it at the first error
        # that carries an ERR_NGROK code, which pyngrok has read, so it is reported at once.
        # Errors without one (no route to the service) may pass: those wait for the timeout.
        coded = "ERR_NGROK_" in str(getattr(entry, "err", "") or "")
        if fresh and not done.is_set() and coded and entry.lvl in ("ERROR", "CRITICAL"):
            agent = _starting_agent(path)
            if agent is not None:
                with contextlib.suppress(Exception):
                    agent.kill()

    config.log_event_callback = on_log
    limit = settings.start_timeout + _WATCHDOG_GRACE

    def watch() -> None:
        if not done.wait(limit):
            timed_out.set()
            agent = _starting_agent(path)
            if agent is not None:
                with contextlib.suppress(Exception):  # gone meanwhile
                    agent.kill()

    watchdog = threading.Thread(target=watch, name="suno_nb-ngrok-watchdog", daemon=True)
    if fresh:
        watchdog.start()
    began = time.monotonic()
    error: TunnelError | None = None
    try:
        agent = ngrok.get_ngrok_process(config)
    except Exception as exc:
        slow = timed_out.is_set() or time.monotonic() - began >= settings.start_timeout
        error = _translate(exc, settings, path, timed_out=slow, foreign=foreign)
    except BaseException:
        if fresh:
            with contextlib.suppress(Exception):
                _kill_agent(config)
            with contextlib.suppress(Exception):  # not registered yet: end it by what we see
                agent = _starting_agent(path)
                if agent is not None:
                    agent.kill()
                    agent.wait(5)  # gone (and reaped) before the interrupt reaches the user
        raise
    finally:
        done.set()
    if error is not None:
        raise error
    if timed_out.is_set():  # killed just as it came up: treat as the timeout it was
        with contextlib.suppress(Exception):
            _kill_agent(config)
        raise ngrok_timeout(path, settings.start_timeout)
    return agent


def _translate(
    exc: BaseException,
    settings: TunnelSettings,
    path: str,
    *,
    timed_out: bool = False,
    foreign: list[dict] | None = None,
    late: list[str] | None = None,
) -> TunnelError:
    """One actionable error for a pyngrok/OS failure; no secret, no pyngrok traceback."""
    from pyngrok.exception import PyngrokNgrokInstallError

    late = late or []
    if isinstance(exc, PyngrokNgrokInstallError) or (
        isinstance(exc, OSError) and not os.path.exists(path)
    ):
        kind = "missing"
    elif isinstance(exc, OSError):
        kind = "unrunnable"
    else:
        kind = "agent"
    said = error_text(exc, late) if kind != "unrunnable" else clean_text(str(exc))
    failure = NgrokFailure(kind, said, error_code(exc, late), timed_out, foreign or [])
    return ngrok_error(
        failure, path=path, timeout=settings.start_timeout, config=settings.config_path
    )
