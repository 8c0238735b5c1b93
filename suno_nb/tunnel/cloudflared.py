"""Cloudflare quick tunnels: a public ``https://<words>.trycloudflare.com`` URL, no account.

``open_quick_tunnel(port, settings)`` runs::

    cloudflared tunnel --url http://127.0.0.1:PORT --metrics 127.0.0.1:M --no-autoupdate

in its own session (an interrupted cell does not kill it) and reads the URL from the metrics
server's ``/quicktunnel`` (``{"hostname": ...}``), or from the banner cloudflared prints on
stderr, then waits for ``/ready``.  The program is ``settings.cloudflared_path`` or
``cloudflared`` on PATH; it is never downloaded here.

Limits, honestly: quick tunnels have no uptime guarantee, and every start gets a new random
URL, so tasks submitted with an earlier URL cannot call back after a restart (the polling
fallback still fetches their results).  A re-run in the same kernel reuses the running
tunnel; ``close()`` ends the agent by its pid; an orphan of a dead kernel is ended through
its pid record (see :mod:`.agent`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from typing import Any
from urllib.error import URLError
from urllib.request import ProxyHandler, build_opener

from . import agent as _agent
from .errors import (
    cloudflared_exited,
    cloudflared_missing,
    cloudflared_timeout,
    cloudflared_unrunnable,
    scrub,
)
from .settings import TunnelSettings

log = logging.getLogger("suno_nb.tunnel")

RECORD_PREFIX = "cloudflared-agent-"
_URL = re.compile(r"https://[a-z0-9][a-z0-9-]*\.trycloudflare\.com")
_ERROR_LINE = re.compile(r"\b(ERR|FTL)\b|^(failed|error)", re.IGNORECASE)
_HTTP = build_opener(ProxyHandler({}))  # loopback metrics: never through a proxy

_lock = threading.RLock()
_open: dict[tuple[str, int], QuickTunnel] = {}  # (program, port) -> open tunnel


class QuickTunnel(_agent.AgentTunnel):
    """A running cloudflared quick tunnel from ``public_url`` to ``upstream``.

    ``metrics_url`` is the agent's local metrics server (``/quicktunnel``, ``/ready``,
    ``/metrics``); ``lines`` the last lines it printed (secret-free: it is given none).
    """

    kind = "cloudflared"

    def __init__(
        self,
        *,
        proc: subprocess.Popen,
        program: str,
        metrics_url: str,
        lines: deque[str],
        **common: Any,
    ) -> None:
        super().__init__(agent_pid=proc.pid, **common)
        self.metrics_url = metrics_url
        self.program = program
        self.lines = lines
        self._proc = proc

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran or the agent exited."""
        return self._closed or self._proc.poll() is not None

    def close(self) -> None:
        """End the agent (by its pid) and forget its record.  Idempotent."""
        with _lock:
            if self._closed:
                return
            self._closed = True
            if _open.get((self.program, self.port)) is self:
                del _open[(self.program, self.port)]
            if self._proc.poll() is None:
                log.info("ending cloudflared (pid %d)", self._proc.pid)
                _agent.terminate([self._proc.pid])
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._proc.wait(timeout=1.0)  # reap it
            _agent.remove_record(self._state_dir, RECORD_PREFIX, self.agent_pid)
            log.info("quick tunnel closed: %s", self.public_url)


def open_tunnels() -> list[QuickTunnel]:
    with _lock:
        return list(_open.values())


def find_program(explicit: str | None) -> str:
    """The cloudflared program to run; never downloads one.

    ``explicit`` (must exist), else ``cloudflared`` on PATH, else the binary pycloudflared
    already downloaded (when that optional package is installed), else
    :class:`~suno_nb.errors.CloudflaredUnavailable` saying how to get one.
    """
    if explicit:
        if not os.path.exists(explicit):
            raise cloudflared_missing(explicit)
        return str(explicit)
    found = shutil.which("cloudflared") or _pycloudflared_binary()
    if not found:
        raise cloudflared_missing(None)
    return found


def _pycloudflared_binary() -> str | None:
    """pycloudflared's binary if it is already on disk (its ``download()`` is never called)."""
    try:
        from pycloudflared.util import get_info

        path = str(get_info().executable)
    except Exception:  # not installed, unsupported platform, another layout
        return None
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def open_quick_tunnel(
    port: int, settings: TunnelSettings, *, host: str = "127.0.0.1"
) -> QuickTunnel:
    """Open (or reuse) a quick tunnel to ``http://<host>:<port>``.

    Raises :class:`~suno_nb.errors.CloudflaredUnavailable` (no program),
    :class:`~suno_nb.errors.CloudflaredNoNetwork` (Cloudflare unreachable),
    :class:`~suno_nb.errors.CloudflaredStartTimeout`, or :class:`~suno_nb.errors.TunnelError`.
    """
    program = find_program(settings.cloudflared_path)
    state_dir = settings.resolved_state_dir()
    upstream = f"http://{host}:{port}"
    with _lock:
        existing = _open.get((program, port))
        if existing is not None:
            if not existing.closed:
                log.info("reusing quick tunnel %s -> port %d", existing.public_url, port)
                return existing
            existing.close()
        own = {t.agent_pid for t in _open.values() if not t.closed and t.agent_pid is not None}
        _agent.reap_leftovers(state_dir, RECORD_PREFIX, own)
        metrics = f"127.0.0.1:{_free_port()}"
        args = [program, "tunnel", "--url", upstream, "--metrics", metrics, "--no-autoupdate"]
        lines: deque[str] = deque(maxlen=200)
        banner: dict[str, str] = {}
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a cell interrupt (SIGINT to our group) misses it
            )
        except OSError as exc:
            raise cloudflared_unrunnable(program, str(exc)) from None
        try:  # from here on, any failure or interrupt ends the agent again
            # Recorded at once: should this kernel die while it starts, the next start ends it.
            _agent.write_record(state_dir, RECORD_PREFIX, proc.pid, program=program, ports=[port])
            threading.Thread(
                target=_pump,
                args=(proc, lines, banner),
                name=f"suno_nb-cloudflared-{proc.pid}",
                daemon=True,
            ).start()
            public_url = _wait_ready(proc, f"http://{metrics}", banner, lines, settings)
            # Again, now that it runs: the first record may have caught the child between
            # fork and exec (our own command line), which would never match it later.
            _agent.write_record(state_dir, RECORD_PREFIX, proc.pid, program=program, ports=[port])
        except BaseException:
            _agent.terminate([proc.pid], wait=1.0)
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
            _agent.remove_record(state_dir, RECORD_PREFIX, proc.pid)
            raise
        tunnel = QuickTunnel(
            public_url=public_url,
            port=port,
            upstream=upstream,
            proc=proc,
            program=program,
            metrics_url=f"http://{metrics}",
            state_dir=state_dir,
            lines=lines,
        )
        _open[(program, port)] = tunnel
        log.info("quick tunnel open: %s -> %s (pid %d)", public_url, upstream, proc.pid)
        return tunnel


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pump(proc: subprocess.Popen, lines: deque[str], banner: dict[str, str]) -> None:
    """Read cloudflared's stderr to its end (a full pipe would stall it); note the URL."""
    assert proc.stderr is not None
    with contextlib.suppress(OSError, ValueError), proc.stderr:
        for raw in proc.stderr:
            line = scrub(raw.decode("utf-8", "replace").rstrip())
            lines.append(line)
            log.debug("cloudflared: %s", line)
            match = _URL.search(line)
            if match and "url" not in banner:
                banner["url"] = match.group(0)


def _get_json(url: str) -> tuple[int, dict]:
    try:
        with _HTTP.open(url, timeout=2.0) as reply:
            return reply.status, json.loads(reply.read() or b"{}")
    except URLError as exc:
        status = getattr(exc, "code", 0) or 0  # an HTTPError (e.g. /ready's 503) has one
        with contextlib.suppress(Exception):
            exc.close()  # type: ignore[attr-defined]
        return status, {}
    except (OSError, ValueError):
        return 0, {}


def _last_error(lines: deque[str]) -> str:
    for line in reversed(lines):
        if _ERROR_LINE.search(line):
            return line
    return ""


def _wait_ready(
    proc: subprocess.Popen,
    metrics: str,
    banner: dict[str, str],
    lines: deque[str],
    settings: TunnelSettings,
) -> str:
    """The public URL once cloudflared reports it and a connection is ready."""
    deadline = time.monotonic() + settings.start_timeout
    public_url = None
    while time.monotonic() < deadline:
        status = proc.poll()
        if status is not None:
            time.sleep(0.1)  # let the reader take the last lines
            raise cloudflared_exited(status, _last_error(lines))
        if public_url is None:
            code, data = _get_json(f"{metrics}/quicktunnel")
            hostname = str(data.get("hostname") or "") if code == 200 else ""
            if hostname:
                public_url = f"https://{hostname}"
            elif "url" in banner:
                public_url = banner["url"]
        if public_url is not None and _get_json(f"{metrics}/ready")[0] == 200:
            return public_url
        time.sleep(0.1)
    raise cloudflared_timeout(settings.start_timeout, _last_error(lines))


__all__ = ["QuickTunnel", "find_program", "open_quick_tunnel", "open_tunnels"]
