"""The public HTTPS tunnel to the receiver: one ngrok agent per kernel, one endpoint per port.

This is the only module of the package that imports pyngrok, and it does so inside functions,
so ``import suno_nb`` stays light.

- :func:`open_tunnel` starts (or reuses) the ngrok agent through pyngrok and opens an endpoint
  whose upstream is ``http://<host>:<port>``; a re-run reuses the endpoint already pointing at
  that port instead of adding a second one.
- The agent runs in its own process session (``start_new_session=True``), so interrupting a
  notebook cell (SIGINT to the kernel's process group) does not kill it.
- The agent's pid is recorded in a small JSON file under the state directory
  (``SUNO_NB_STATE_DIR``, else ``~/.cache/suno_nb``).  An agent left behind by a kernel that
  died is ended by that pid on the next start, after checking that the pid still runs the
  recorded ngrok program; nothing is ever killed by name.
- pyngrok's exceptions are turned into one-paragraph :class:`~suno_nb.errors.TunnelError`
  subclasses that say what to do.  The authtoken never appears in a message, a repr or a log
  line (pyngrok's loggers get a redacting filter, since the agent echoes its command line in
  some errors).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import (
    NgrokAuthtokenMissing,
    NgrokBinaryUnavailable,
    NgrokEndpointLimit,
    NgrokSessionLimit,
    NgrokStartTimeout,
    TunnelError,
)

log = logging.getLogger("suno_nb.tunnel")

__all__ = [
    "STATE_DIR_ENV",
    "Tunnel",
    "TunnelSettings",
    "close_all",
    "default_state_dir",
    "open_tunnel",
    "open_tunnels",
    "resolve_authtoken",
]

STATE_DIR_ENV = "SUNO_NB_STATE_DIR"
AUTHTOKEN_ENV = "NGROK_AUTHTOKEN"
NGROK_PATH_ENV = "PYNGROK_NGROK_PATH"
AUTHTOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"
AGENTS_URL = "https://dashboard.ngrok.com/agents"
ENDPOINTS_URL = "https://dashboard.ngrok.com/endpoints"
DOWNLOAD_URL = "https://ngrok.com/download"
RECORD_PREFIX = "ngrok-agent-"

_WATCHDOG_GRACE = 1.0  # s past start_timeout before a silent agent is killed
_TERM_WAIT = 3.0  # s a leftover agent gets to exit after SIGTERM before SIGKILL
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""}
_PYNGROK_LOGGERS = (
    "pyngrok",
    "pyngrok.process",
    "pyngrok.process.ngrok",
    "pyngrok.ngrok",
    "pyngrok.installer",
    "pyngrok.conf",
    "pyngrok.agent",
    "suno_nb.tunnel",
)

_lock = threading.RLock()
_open: dict[tuple[str, int], Tunnel] = {}  # (ngrok_path, port) -> open tunnel
_started: dict[str, int] = {}  # ngrok_path -> pid of the agent this module started
_secrets: set[str] = set()
_hooks_installed = False


# --- secrets --------------------------------------------------------------------------------

_TOKEN_PATTERNS = (
    re.compile(r"(--authtoken[=\s]+)([^\s\"')]+)"),
    re.compile(r"(authtoken[\"']?\s*[:=]\s*[\"']?)(?!https?://)([^\s\"',}]+)", re.IGNORECASE),
)


def _scrub(text: str) -> str:
    """Remove every known authtoken (and anything after ``--authtoken``) from ``text``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class _Redactor(logging.Filter):
    """Rewrites a record whose text holds an authtoken; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            clean = _scrub(message)
        except Exception:  # a broken format string is not ours to fix
            return True
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _remember_secret(token: str | None) -> None:
    if token and len(token) >= 4:
        _secrets.add(token)


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    redactor = _Redactor()
    for name in _PYNGROK_LOGGERS:
        logging.getLogger(name).addFilter(redactor)
    atexit.register(_close_at_exit)
    _hooks_installed = True


# --- settings -------------------------------------------------------------------------------


def default_state_dir() -> Path:
    """Where pid records live: ``$SUNO_NB_STATE_DIR``, else a ``suno_nb`` user cache folder."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "suno_nb"


@dataclass(repr=False)
class TunnelSettings:
    """How to run the ngrok agent.  Every field may be left ``None``.

    - ``authtoken``: passed to the agent (see :func:`resolve_authtoken`); hidden in ``repr``.
    - ``ngrok_path``: the agent binary; else ``$PYNGROK_NGROK_PATH``, else pyngrok's default
      (which pyngrok downloads on first use when the machine is online).
    - ``config_path``: ngrok's config file; else ngrok's default.
    - ``region``: ngrok region (``us``, ``eu``, ...); else the agent picks the nearest.
    - ``start_timeout``: seconds the agent gets to come up.
    - ``state_dir``: folder for the agent's pid record; else :func:`default_state_dir`, read
      when the tunnel opens.
    """

    authtoken: str | None = None
    ngrok_path: str | None = None
    config_path: str | None = None
    region: str | None = None
    start_timeout: float = 15.0
    state_dir: str | os.PathLike[str] | None = None

    def __post_init__(self) -> None:
        if not self.start_timeout or self.start_timeout <= 0:
            raise ValueError(f"start_timeout must be > 0 seconds, got {self.start_timeout!r}")

    def __repr__(self) -> str:
        token = "'***'" if self.authtoken else "None"
        return (
            f"TunnelSettings(authtoken={token}, ngrok_path={self.ngrok_path!r}, "
            f"config_path={self.config_path!r}, region={self.region!r}, "
            f"start_timeout={self.start_timeout!r}, state_dir={self.state_dir!r})"
        )

    def resolved_state_dir(self) -> Path:
        """``state_dir`` or :func:`default_state_dir` (read now)."""
        return Path(self.state_dir).expanduser() if self.state_dir else default_state_dir()

    def resolved_ngrok_path(self) -> str:
        """``ngrok_path``, else ``$PYNGROK_NGROK_PATH``, else pyngrok's default path."""
        if self.ngrok_path:
            return str(self.ngrok_path)
        if os.environ.get(NGROK_PATH_ENV):
            return os.environ[NGROK_PATH_ENV]
        from pyngrok import conf

        return conf.DEFAULT_NGROK_PATH


def resolve_authtoken(explicit: str | None = None, *, config_path: str | None = None) -> str | None:
    """The ngrok authtoken to use, or ``None`` when there is none.

    In order: ``explicit``; ``NGROK_AUTHTOKEN`` as set when this is called; ``authtoken``
    (v2) or ``agent.authtoken`` (v3) in ngrok's config file — ``config_path`` if given, else
    pyngrok's default config path (plus ngrok's legacy ``~/.ngrok2/ngrok.yml``).
    """
    if explicit and explicit.strip():
        return explicit.strip()
    env = os.environ.get(AUTHTOKEN_ENV, "").strip()
    if env:
        log.debug("authtoken taken from %s", AUTHTOKEN_ENV)
        return env
    if config_path:
        candidates = [Path(config_path).expanduser()]
    else:
        from pyngrok import conf

        candidates = [Path(conf.DEFAULT_NGROK_CONFIG_PATH), Path.home() / ".ngrok2" / "ngrok.yml"]
    for path in candidates:
        token = _token_from_config(path)
        if token:
            log.debug("authtoken taken from the ngrok config file %s", path)
            return token
    return None


def _token_from_config(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception:  # a broken file: fall back to a line match
        match = re.search(r"^\s*authtoken:\s*[\"']?([^\"'\s#]+)", text, re.MULTILINE)
        return match.group(1) if match else None
    if not isinstance(data, dict):
        return None
    agent = data.get("agent")
    token = agent.get("authtoken") if isinstance(agent, dict) else None
    token = token or data.get("authtoken")
    return (str(token).strip() or None) if token else None


# --- the tunnel -----------------------------------------------------------------------------


class Tunnel:
    """An open ngrok endpoint forwarding ``public_url`` to ``upstream`` (the receiver).

    ``agent_pid`` is the agent's process id, ``api_url`` its local API (request inspection:
    ``GET {api_url}/api/requests/http``) and ``name`` the endpoint's name in the agent.
    """

    def __init__(
        self,
        *,
        public_url: str,
        port: int,
        upstream: str,
        name: str | None,
        agent_pid: int | None,
        api_url: str | None,
        ngrok_path: str,
        pyngrok_config: Any,
        state_dir: Path,
    ) -> None:
        self.public_url = public_url
        self.port = port
        self.upstream = upstream
        self.name = name
        self.agent_pid = agent_pid
        self.api_url = api_url
        self.ngrok_path = ngrok_path
        self._config = pyngrok_config
        self._state_dir = state_dir
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the agent was found gone)."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"agent pid {self.agent_pid}"
        return f"<Tunnel {self.public_url} -> {self.upstream} ({state})>"

    def close(self) -> None:
        """Disconnect the endpoint and end the agent if this module started it.  Idempotent.

        The agent stays up while another open :class:`Tunnel` of this process still uses it.
        """
        self._close(disconnect=True)

    def _close(self, *, disconnect: bool) -> None:
        with _lock:
            if self._closed:
                return
            self._closed = True
            key = (self.ngrok_path, self.port)
            if _open.get(key) is self:
                del _open[key]
            from pyngrok import ngrok
            from pyngrok.exception import PyngrokError

            running = self.agent_pid is not None and _managed_pid(self.ngrok_path) == self.agent_pid
            if running and disconnect:
                try:
                    ngrok.disconnect(self.public_url, self._config)
                except (PyngrokError, OSError) as exc:
                    log.warning("could not disconnect %s: %s", self.public_url, _scrub(str(exc)))
            siblings = [t for t in _open.values() if t.agent_pid == self.agent_pid]
            ours = _started.get(self.ngrok_path) == self.agent_pid
            if siblings:
                _write_record(self._state_dir, self.agent_pid, self.ngrok_path, siblings)
            elif ours:
                if running:
                    log.info("ending the ngrok agent (pid %s)", self.agent_pid)
                    _kill_agent(self._config)
                _started.pop(self.ngrok_path, None)
                _remove_record(self._state_dir, self.agent_pid)
            log.info("tunnel closed: %s", self.public_url)


def open_tunnels() -> list[Tunnel]:
    """The tunnels this process has open."""
    with _lock:
        return list(_open.values())


def close_all() -> None:
    """Close every tunnel this process opened (the atexit hook calls this too)."""
    for tunnel in open_tunnels():
        tunnel.close()


def _close_at_exit() -> None:
    for tunnel in open_tunnels():
        with contextlib.suppress(Exception):
            tunnel._close(disconnect=False)  # killing the agent ends its endpoints


def open_tunnel(port: int, settings: TunnelSettings, *, host: str = "localhost") -> Tunnel:
    """Open (or reuse) a public endpoint forwarding to ``http://<host>:<port>``.

    Starts the ngrok agent unless this process already runs one for the same ``ngrok_path``;
    first ends any agent recorded in the state directory whose owning process is gone.  If
    the agent already has an endpoint whose upstream is this port, that endpoint is reused
    (the same :class:`Tunnel` object when this module opened it).

    Raises :class:`~suno_nb.errors.NgrokAuthtokenMissing`,
    :class:`~suno_nb.errors.NgrokSessionLimit`, :class:`~suno_nb.errors.NgrokEndpointLimit`,
    :class:`~suno_nb.errors.NgrokBinaryUnavailable`,
    :class:`~suno_nb.errors.NgrokStartTimeout`, or :class:`~suno_nb.errors.TunnelError`.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")
    try:
        from pyngrok import ngrok
        from pyngrok.conf import PyngrokConfig
    except ImportError:
        raise TunnelError(
            "The tunnel needs the pyngrok package, which is not installed: run "
            "`pip install pyngrok` and try again."
        ) from None
    _remember_secret(settings.authtoken)
    _install_hooks()
    path = settings.resolved_ngrok_path()
    state_dir = settings.resolved_state_dir()
    config = PyngrokConfig(
        ngrok_path=path,
        config_path=settings.config_path,
        auth_token=settings.authtoken,
        region=settings.region,
        start_new_session=True,
        startup_timeout=settings.start_timeout,  # type: ignore[arg-type]  # float works
    )
    _remember_secret(config.auth_token)  # pyngrok may have read NGROK_AUTHTOKEN itself
    upstream = f"http://{host}:{port}"
    with _lock:
        existing = _open.get((path, port))
        own_pid = _managed_pid(path)
        if existing is not None:
            if own_pid is not None and own_pid == existing.agent_pid and _listed(existing):
                log.info("reusing tunnel %s -> port %d", existing.public_url, port)
                return existing
            existing._closed = True
            del _open[(path, port)]
        foreign = _reap_leftovers(state_dir, _managed_pids())
        started_now = own_pid is None
        agent = _start_agent(config, settings, path, foreign, fresh=started_now)
        pid = agent.proc.pid
        if started_now:
            _started[path] = pid
            _write_record(state_dir, pid, path, [])
        error: TunnelError | None = None
        try:
            endpoint = _find_endpoint(ngrok.get_tunnels(config), port)
            if endpoint is not None:
                log.info("reusing the agent's endpoint %s -> port %d", endpoint.public_url, port)
            else:
                endpoint = ngrok.connect(
                    upstream,
                    name=f"suno-nb-{port}-{uuid.uuid4().hex[:8]}",
                    pyngrok_config=config,
                )
        except Exception as exc:
            error = _translate(exc, settings, path, foreign=foreign)
        if error is not None:
            if started_now:
                with contextlib.suppress(Exception):
                    _kill_agent(config)
                _started.pop(path, None)
                _remove_record(state_dir, pid)
            raise error
        tunnel = Tunnel(
            public_url=str(endpoint.public_url),
            port=port,
            upstream=(endpoint.upstream or {}).get("url") or upstream,
            name=endpoint.name,
            agent_pid=pid,
            api_url=agent.api_url,
            ngrok_path=path,
            pyngrok_config=config,
            state_dir=state_dir,
        )
        _open[(path, port)] = tunnel
        if _started.get(path) == pid:
            siblings = [t for t in _open.values() if t.agent_pid == pid]
            _write_record(state_dir, pid, path, siblings)
        log.info("tunnel open: %s -> %s (agent pid %d)", tunnel.public_url, tunnel.upstream, pid)
        return tunnel


# --- pyngrok plumbing -----------------------------------------------------------------------


def _managed_pid(ngrok_path: str) -> int | None:
    """Pid of the live agent pyngrok runs in this process for ``ngrok_path``, if any."""
    from pyngrok import process

    if not process.is_process_running(ngrok_path):
        return None
    current = getattr(process, "_current_processes", {}).get(ngrok_path)
    return None if current is None else current.proc.pid


def _kill_agent(config: Any) -> None:
    """End the agent pyngrok runs for ``config`` and close its output pipe."""
    from pyngrok import ngrok, process

    current = getattr(process, "_current_processes", {}).get(config.ngrok_path)
    ngrok.kill(config)
    if current is not None and current.proc.stdout is not None:
        with contextlib.suppress(OSError):
            current.proc.stdout.close()


def _managed_pids() -> set[int]:
    """Pids of every agent pyngrok runs in this process."""
    from pyngrok import process

    current = dict(getattr(process, "_current_processes", {}))
    return {agent.proc.pid for agent in current.values() if agent.proc.poll() is None}


def _listed(tunnel: Tunnel) -> bool:
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


def _start_agent(
    config: Any, settings: TunnelSettings, path: str, foreign: list[dict], *, fresh: bool
) -> Any:
    """Start (or get) the agent; a watchdog ends one that stays silent past the timeout.

    pyngrok reads the agent's stdout line by line and checks its own timeout only between
    lines, so an agent that prints nothing would block it forever.  pyngrok also stops
    reading as soon as the agent has exited, which can leave the agent's error line unread in
    the pipe; that rest is read here so the error can still be named.  An interrupt (the
    user stopping the cell) during a ``fresh`` start ends the half-started agent too.
    """
    from pyngrok import ngrok, process

    done = threading.Event()
    timed_out = threading.Event()
    limit = settings.start_timeout + _WATCHDOG_GRACE
    starting: dict[str, Any] = {}  # the NgrokProcess being started, once seen

    def registered() -> Any:
        return getattr(process, "_current_processes", {}).get(path)

    def on_line(_line: Any) -> None:  # pyngrok calls this for each line it reads
        if "agent" not in starting:
            current = registered()
            if current is not None:
                starting["agent"] = current

    def watch() -> None:
        seen: Any = None
        since = 0.0
        while not done.wait(0.05):
            current = registered()
            if current is None:
                seen = None
                continue
            starting.setdefault("agent", current)
            if current is not seen:
                seen, since = current, time.monotonic()
            elif time.monotonic() - since > limit and not done.is_set():
                timed_out.set()
                with contextlib.suppress(OSError):
                    current.proc.kill()
                return

    config.log_event_callback = on_line
    watchdog = threading.Thread(target=watch, name="suno_nb-ngrok-watchdog", daemon=True)
    watchdog.start()
    began = time.monotonic()
    error: TunnelError | None = None
    try:
        agent = ngrok.get_ngrok_process(config)
    except Exception as exc:
        slow = timed_out.is_set() or time.monotonic() - began >= settings.start_timeout
        late = _drain(starting.get("agent")) if fresh else []
        error = _translate(exc, settings, path, timed_out=slow, foreign=foreign, late=late)
    except BaseException:
        if fresh:
            with contextlib.suppress(Exception):
                _kill_agent(config)
        raise
    finally:
        done.set()
        config.log_event_callback = None
    if error is not None:
        raise error
    if timed_out.is_set():  # killed just as it came up: treat as the timeout it was
        with contextlib.suppress(Exception):
            _kill_agent(config)
        raise _timeout_error(settings, path, "")
    return agent


def _drain(agent: Any) -> list[str]:
    """Errors the failed agent printed that pyngrok did not read; closes its stdout."""
    stream = getattr(getattr(agent, "proc", None), "stdout", None)
    if stream is None:
        return []
    if agent.proc.poll() is None:
        with contextlib.suppress(OSError):
            agent.proc.kill()
    rest: list[str] = []

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            rest.append(stream.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(1.0)  # EOF comes at once from a dead agent; never hang on a stray writer
    if not reader.is_alive():
        with contextlib.suppress(OSError, ValueError):
            stream.close()
    from pyngrok.log import NgrokLog

    errors = []
    for line in "".join(rest).splitlines():
        entry = NgrokLog(line)
        if entry.line:
            log.debug("ngrok agent (unread by pyngrok): %s", _scrub(entry.line))
        if entry.lvl in ("ERROR", "CRITICAL") and entry.err:
            errors.append(entry.err)
    return errors


# --- errors ---------------------------------------------------------------------------------

_CODE = re.compile(r"ERR_NGROK_\d+")


def _error_text(exc: BaseException, late: list[str]) -> str:
    """The agent's own words about the failure, one line, scrubbed and shortened."""
    text = getattr(exc, "ngrok_error", None) or (late[0] if late else "")
    body = getattr(exc, "body", None)
    if not text and body:
        try:
            data = json.loads(body)
            text = (data.get("details") or {}).get("err") or data.get("msg") or body
        except (ValueError, AttributeError):
            text = body
    if not text:
        logs = getattr(exc, "ngrok_logs", None) or []
        errs = [entry.err for entry in logs if getattr(entry, "err", None) not in (None, "nil")]
        text = errs[-1] if errs else str(exc)
    text = text.replace("\\r", " ").replace("\\n", " ")
    text = " ".join(_scrub(text).split()).rstrip(". ")
    return text if len(text) <= 300 else text[:297] + "..."


def _error_code(exc: BaseException, late: list[str]) -> str | None:
    texts = [
        getattr(exc, "ngrok_error_code", None),
        getattr(exc, "ngrok_error", None),
        getattr(exc, "body", None),
        str(exc),
        *late,
    ]
    texts += [getattr(entry, "err", None) for entry in getattr(exc, "ngrok_logs", None) or []]
    for text in texts:
        match = _CODE.search(text) if isinstance(text, str) else None
        if match:
            return match.group(0)
    return None


def _timeout_error(settings: TunnelSettings, path: str, said: str) -> NgrokStartTimeout:
    detail = f" (its last error: {said})" if said else ""
    return NgrokStartTimeout(
        f"The ngrok agent ({path}) did not come up within {settings.start_timeout:g} s{detail}. "
        "This usually means it cannot reach the ngrok service: check the internet connection "
        "and any proxy or firewall (the agent connects to connect.ngrok-agent.com:443), then "
        "run the cell again; on a slow network allow more time with a larger "
        "TunnelSettings.start_timeout."
    )


def _translate(
    exc: BaseException,
    settings: TunnelSettings,
    path: str,
    *,
    timed_out: bool = False,
    foreign: list[dict] | None = None,
    late: list[str] | None = None,
) -> TunnelError:
    """One actionable error for a pyngrok/OS failure; no secret, no pyngrok traceback.

    ``late`` holds agent errors read after pyngrok gave up on the agent.
    """
    from pyngrok.exception import PyngrokNgrokInstallError

    said = _error_text(exc, late or [])
    code = _error_code(exc, late or [])
    if isinstance(exc, PyngrokNgrokInstallError) or (
        isinstance(exc, OSError) and not os.path.exists(path)
    ):
        return NgrokBinaryUnavailable(
            f"The ngrok agent program is not at {path} and could not be downloaded ({said}). "
            f"Install ngrok ({DOWNLOAD_URL}, or your package manager), then point to it with "
            f"start_receiver(ngrok_path=...) or the {NGROK_PATH_ENV} environment variable; "
            "pyngrok downloads it by itself on first use only when this machine can reach "
            "the internet."
        )
    if isinstance(exc, OSError):
        return NgrokBinaryUnavailable(
            f"The ngrok agent program at {path} could not be run ({_scrub(str(exc))}). Check "
            "that it is the ngrok binary for this system and is executable (chmod +x), or "
            f"point start_receiver(ngrok_path=...) / {NGROK_PATH_ENV} at a working one."
        )
    if code == "ERR_NGROK_4018":
        return NgrokAuthtokenMissing(
            "ngrok needs an authtoken to open a public tunnel (ERR_NGROK_4018). Get yours "
            f"(a free account is enough) at {AUTHTOKEN_URL}, then pass it with "
            "start_receiver(authtoken=...), or set the NGROK_AUTHTOKEN environment variable "
            "(read each time start_receiver runs), or save it once with "
            "`ngrok config add-authtoken <token>`."
        )
    if code in ("ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107"):
        return NgrokAuthtokenMissing(
            f"ngrok rejected the authtoken ({code}): it is mistyped, reset or revoked. Copy "
            f"the current one from {AUTHTOKEN_URL} and pass it with start_receiver("
            "authtoken=...), the NGROK_AUTHTOKEN environment variable, or "
            "`ngrok config add-authtoken <token>`."
        )
    if code == "ERR_NGROK_108":
        holders = "".join(
            f" suno_nb recorded ngrok agent pid {rec.get('agent_pid')} started by process "
            f"{rec.get('owner_pid')}, which is still running — call stop_receiver() there or "
            "shut that kernel down."
            for rec in foreign or []
        )
        return NgrokSessionLimit(
            "Another ngrok agent is already online for this ngrok account (ERR_NGROK_108); "
            "the free plan allows one agent session at a time." + holders + " Stop the other "
            "agent (another notebook kernel: stop_receiver() or shut it down; an `ngrok` "
            f"command in a terminal; or end the session at {AGENTS_URL}), then run the cell "
            "again."
        )
    if code == "ERR_NGROK_324":
        return NgrokEndpointLimit(
            "ngrok refused to open another endpoint: this account's endpoint limit is reached "
            f"(ERR_NGROK_324). Close endpoints you no longer need (stop_receiver() in other "
            f"kernels, other ngrok agents, or see {ENDPOINTS_URL}) or upgrade the ngrok plan, "
            "then run the cell again."
        )
    if timed_out:
        return _timeout_error(settings, path, said)
    where = f" ({code}, see https://ngrok.com/docs/errors/{code.lower()}/)" if code else ""
    return TunnelError(
        f"The ngrok agent could not open the tunnel{where}: {said}. Check the ngrok config "
        f"file ({settings.config_path or 'ngrok default'}) and the agent's messages in the "
        "'pyngrok' log, then run the cell again."
    )


# --- pid records and leftover agents --------------------------------------------------------


def _record_path(state_dir: Path, pid: int) -> Path:
    return state_dir / f"{RECORD_PREFIX}{pid}.json"


def _write_record(state_dir: Path, pid: int | None, path: str, tunnels: list[Tunnel]) -> None:
    if pid is None:
        return
    record = {
        "agent_pid": pid,
        "agent_started": _start_time(pid),
        "ngrok_path": path,
        "owner_pid": os.getpid(),
        "owner_started": _start_time(os.getpid()),
        "ports": sorted({t.port for t in tunnels}),
        "written_at": time.time(),
    }
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = _record_path(state_dir, pid)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        log.warning("could not record the ngrok agent's pid in %s: %s", state_dir, exc)


def _remove_record(state_dir: Path, pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(OSError):
            _record_path(state_dir, pid).unlink()


def _reap_leftovers(state_dir: Path, own_pids: set[int]) -> list[dict]:
    """End agents recorded by processes that are gone; return records of live other owners.

    An agent is ended only by its recorded pid, and only when that pid still runs the
    recorded ngrok program (and started when recorded), so a reused pid is never killed.
    """
    if os.name != "posix":
        return []
    foreign: list[dict] = []
    try:
        files = sorted(state_dir.glob(f"{RECORD_PREFIX}*.json"))
    except OSError:
        return []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
            pid = int(record["agent_pid"])
            path = str(record["ngrok_path"])
        except (OSError, ValueError, KeyError, TypeError):
            log.debug("ignoring unreadable pid record %s", file)
            with contextlib.suppress(OSError):
                file.unlink()
            continue
        if pid in own_pids:
            continue
        if not _pid_alive(pid) or not _same_process(pid, record.get("agent_started")):
            with contextlib.suppress(OSError):
                file.unlink()
            continue
        owner = record.get("owner_pid")
        if (
            isinstance(owner, int)
            and owner != os.getpid()
            and _pid_alive(owner)
            and _same_process(owner, record.get("owner_started"))
        ):
            log.info("ngrok agent pid %d belongs to running process %d; leaving it", pid, owner)
            foreign.append(record)
            continue
        if not _is_agent(pid, path):
            log.warning("pid %d no longer runs %s; forgetting its record", pid, path)
            with contextlib.suppress(OSError):
                file.unlink()
            continue
        log.warning("ending the ngrok agent left behind by a previous kernel (pid %d)", pid)
        _terminate(pid)
        with contextlib.suppress(OSError):
            file.unlink()
    return foreign


def _proc_stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()  # fields from 3 (state) on


def _start_time(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def _same_process(pid: int, recorded_start: Any) -> bool:
    """False only when both start times are known and differ (the pid was reused)."""
    if not isinstance(recorded_start, int):
        return True
    now = _start_time(pid)
    return now is None or now == recorded_start


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        raw = b""
    except OSError:
        return None
    if raw:
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    if Path("/proc/self").exists():
        return None
    try:  # no /proc (macOS, BSD): ask ps
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split() if out else None


def _is_agent(pid: int, ngrok_path: str) -> bool:
    """Does ``pid`` run ``<ngrok_path> start ...``?"""
    args = _cmdline(pid)
    if not args:
        return False
    real = os.path.realpath(ngrok_path)
    names = {ngrok_path, real}
    return "start" in args and any(arg in names or os.path.realpath(arg) == real for arg in args)


def _terminate(pid: int) -> None:
    """SIGTERM ``pid``, then SIGKILL if it has not gone after a few seconds."""
    for sig, wait in ((signal.SIGTERM, _TERM_WAIT), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        except OSError as exc:
            log.warning("could not end ngrok agent pid %d: %s", pid, exc)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it happens to be our child
            if not _pid_alive(pid):
                return
            time.sleep(0.05)
