"""The public tunnel to the receiver: ngrok (with an authtoken) or a Cloudflare quick tunnel.

- :func:`open_tunnel` — ngrok through pyngrok (:mod:`.ngrok`, the package's only pyngrok
  importer, loaded on first use so ``import suno_nb`` stays light): one agent per kernel,
  one endpoint per port, reused on a re-run.
- :func:`open_quick_tunnel` — ``cloudflared tunnel --url ...`` (:mod:`.cloudflared`): no
  account, a new random ``https://….trycloudflare.com`` URL per start, no uptime guarantee.
- Both agents run in their own process session (a cell interrupt does not kill them), are
  recorded by pid, create time and command line in the state folder (:mod:`.agent`, psutil),
  ended by that pid on ``close()``, and an orphan left by a dead kernel is ended on the next
  start.  Nothing is ever found or killed by name.
- Failures raise one actionable :class:`~suno_nb.errors.TunnelError` subclass
  (:mod:`.errors`); authtokens never appear in a message, repr or log line.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from typing import Any

from .errors import Redactor, remember_secret
from .settings import (
    AUTHTOKEN_ENV,
    NGROK_PATH_ENV,
    STATE_DIR_ENV,
    TunnelSettings,
    default_state_dir,
    resolve_authtoken,
)

__all__ = [
    "AUTHTOKEN_ENV",
    "NGROK_PATH_ENV",
    "STATE_DIR_ENV",
    "Tunnel",
    "TunnelSettings",
    "close_all",
    "default_state_dir",
    "open_quick_tunnel",
    "open_tunnel",
    "open_tunnels",
    "resolve_authtoken",
]

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
_hooks = threading.Lock()
_hooks_installed = False


def _install_hooks() -> None:
    """Scrub secrets from pyngrok's and our log records; close tunnels at exit.  Once."""
    global _hooks_installed
    with _hooks:
        if _hooks_installed:
            return
        redactor = Redactor()
        # Logger filters do not apply to records of child loggers: each one gets it.
        for name in _PYNGROK_LOGGERS:
            logging.getLogger(name).addFilter(redactor)
        atexit.register(_close_at_exit)
        _hooks_installed = True


def _check_port(port: Any) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")


def open_tunnel(port: int, settings: TunnelSettings, *, host: str = "localhost") -> Any:
    """Open (or reuse) an ngrok endpoint forwarding to ``http://<host>:<port>``.

    Raises :class:`~suno_nb.errors.NgrokAuthtokenMissing`,
    :class:`~suno_nb.errors.NgrokAuthtokenRejected`, :class:`~suno_nb.errors.NgrokSessionLimit`,
    :class:`~suno_nb.errors.NgrokEndpointLimit`, :class:`~suno_nb.errors.NgrokEndpointOnline`,
    :class:`~suno_nb.errors.NgrokBinaryUnavailable`, :class:`~suno_nb.errors.NgrokStartTimeout`
    or :class:`~suno_nb.errors.TunnelError`.
    """
    _check_port(port)
    remember_secret(settings.token)
    _install_hooks()
    from .ngrok import open_ngrok

    return open_ngrok(port, settings, host=host)


def open_quick_tunnel(port: int, settings: TunnelSettings, *, host: str = "127.0.0.1") -> Any:
    """Open (or reuse) a Cloudflare quick tunnel to ``http://<host>:<port>`` (no account).

    See :mod:`suno_nb.tunnel.cloudflared` for its limits.  Raises
    :class:`~suno_nb.errors.CloudflaredUnavailable`, :class:`~suno_nb.errors.CloudflaredNoNetwork`,
    :class:`~suno_nb.errors.CloudflaredStartTimeout` or :class:`~suno_nb.errors.TunnelError`.
    """
    _check_port(port)
    _install_hooks()
    from .cloudflared import open_quick_tunnel as _open

    return _open(port, settings, host=host)


def open_tunnels() -> list[Any]:
    """The tunnels (ngrok and cloudflared) this process has open."""
    import sys

    found: list[Any] = []
    for name in ("ngrok", "cloudflared"):
        module = sys.modules.get(f"{__name__}.{name}")
        if module is not None:
            found += module.open_tunnels()
    return found


def close_all() -> None:
    """Close every tunnel this process opened (the atexit hook calls this too)."""
    for tunnel in open_tunnels():
        tunnel.close()


def _close_at_exit() -> None:
    for tunnel in open_tunnels():
        with contextlib.suppress(Exception):
            if hasattr(tunnel, "_close"):
                tunnel._close(disconnect=False)  # killing the agent ends its endpoints
            else:
                tunnel.close()


def __getattr__(name: str) -> Any:
    """``Tunnel`` (the ngrok tunnel class) and ``QuickTunnel`` load their modules lazily."""
    if name == "Tunnel":
        from .ngrok import NgrokTunnel

        return NgrokTunnel
    if name == "QuickTunnel":
        from .cloudflared import QuickTunnel

        return QuickTunnel
    raise AttributeError(name)
