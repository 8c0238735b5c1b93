"""How to run a tunnel agent, where its records live, and where the ngrok authtoken comes from."""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..credentials import Secret, as_secret, find_secret
from ..paths import user_dir

log = logging.getLogger("suno_nb.tunnel")

__all__ = [
    "AUTHTOKEN_ENV",
    "NGROK_PATH_ENV",
    "STATE_DIR_ENV",
    "TunnelSettings",
    "default_state_dir",
    "resolve_authtoken",
]

STATE_DIR_ENV = "SUNO_NB_STATE_DIR"
AUTHTOKEN_ENV = "NGROK_AUTHTOKEN"
NGROK_PATH_ENV = "PYNGROK_NGROK_PATH"
DEFAULT_START_TIMEOUT = 15.0


def default_state_dir() -> Path:
    """Where agents' pid records live: ``$SUNO_NB_STATE_DIR``, else the user state folder."""
    return user_dir("state", STATE_DIR_ENV)


@dataclass(repr=False)
class TunnelSettings:
    """How to run a tunnel agent.  Every field may be left ``None``.

    - ``authtoken``: the ngrok authtoken (see :func:`resolve_authtoken`); hidden in ``repr``.
    - ``ngrok_path``: the ngrok agent binary; else ``$PYNGROK_NGROK_PATH``, else pyngrok's
      default (which pyngrok downloads on first use when the machine is online).
    - ``config_path``: ngrok's config file; else ngrok's default.
    - ``region``: ngrok region (``us``, ``eu``, ...); else the agent picks the nearest.
    - ``start_timeout``: seconds the agent gets to come up (``start_receiver(tunnel_timeout=)``).
    - ``state_dir``: folder for the agent's pid record; else :func:`default_state_dir`, read
      when the tunnel opens.
    - ``cloudflared_path``: the cloudflared binary for quick tunnels; else ``cloudflared`` on
      ``PATH``.
    """

    authtoken: Secret | str | None = None
    ngrok_path: str | None = None
    config_path: str | None = None
    region: str | None = None
    start_timeout: float = DEFAULT_START_TIMEOUT
    state_dir: str | os.PathLike[str] | None = None
    cloudflared_path: str | None = None

    def __post_init__(self) -> None:
        self.authtoken = as_secret(AUTHTOKEN_ENV, self.authtoken)
        if not self.start_timeout or self.start_timeout <= 0:
            raise ValueError(f"start_timeout must be > 0 seconds, got {self.start_timeout!r}")

    def __repr__(self) -> str:
        token = "'***'" if self.authtoken else "None"
        return (
            f"TunnelSettings(authtoken={token}, ngrok_path={self.ngrok_path!r}, "
            f"config_path={self.config_path!r}, region={self.region!r}, "
            f"start_timeout={self.start_timeout!r}, state_dir={self.state_dir!r}, "
            f"cloudflared_path={self.cloudflared_path!r})"
        )

    __str__ = __repr__

    @property
    def token(self) -> str | None:
        """The authtoken's value, for the agent only."""
        return self.authtoken.text if isinstance(self.authtoken, Secret) else self.authtoken

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


def resolve_authtoken(
    explicit: str | None = None, *, config_path: str | None = None
) -> Secret | None:
    """The ngrok authtoken to use, or ``None`` when there is none.

    In order: ``explicit``; ``NGROK_AUTHTOKEN`` as set when this is called (or in a ``.env``
    file); Colab's secret store (``google.colab.userdata``, where it imports; a missing
    secret is not an error); ``authtoken`` (v2) or ``agent.authtoken`` (v3) in ngrok's config
    file — ``config_path`` if given, else pyngrok's default config path (plus ngrok's legacy
    ``~/.ngrok2/ngrok.yml``).
    """
    secret = find_secret(AUTHTOKEN_ENV, (explicit or "").strip() or None)
    if secret is not None and secret.text.strip():
        log.debug("authtoken taken from %s", secret.source)
        return Secret(AUTHTOKEN_ENV, secret.text.strip(), secret.source)
    if config_path:
        candidates = [Path(config_path).expanduser()]
    else:
        candidates = [_default_config_path(), Path.home() / ".ngrok2" / "ngrok.yml"]
    for path in candidates:
        token = _token_from_config(path)
        if token:
            log.debug("authtoken taken from the ngrok config file %s", path)
            return Secret(AUTHTOKEN_ENV, token, "ngrok config")
    return None


def _default_config_path() -> Path:
    """ngrok's own config file: pyngrok's default where pyngrok is installed (the ``ngrok``
    extra), else where the ngrok agent keeps it (https://ngrok.com/docs/agent/config/)."""
    try:
        from pyngrok import conf
    except ImportError:
        if sys.platform == "darwin":
            return Path.home() / "Library" / "Application Support" / "ngrok" / "ngrok.yml"
        base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(base) / "ngrok" / "ngrok.yml"
    return Path(conf.DEFAULT_NGROK_CONFIG_PATH)


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
