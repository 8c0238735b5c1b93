"""The Receiver handle and ``start_receiver()``: one receiver per process.

``start_receiver()`` wires the store, the HTTP server thread, the dispatcher, the optional
ngrok tunnel and the polling fallback.  Calling it again (a re-run cell) returns the running
receiver when the arguments are the same, or stops it and starts a new one when they differ:
never a second server thread, never "address already in use".
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ReceiverError
from ..receiver import MAX_BODY
from ..server import Limits
from ..store import DEFAULT_PATH
from .config import (
    HMAC_ENV,
    LOCAL_ONLY_HINT,
    MASK,
    TOKEN_META_KEY,
    TUNNEL_FIELDS,
    TUNNEL_MODES,
    ReceiverConfig,
    TaskResult,
    _fingerprint,
    _loopback_only,
)
from .handle import Receiver

log = logging.getLogger("suno_nb.session")

__all__ = [
    "HMAC_ENV",
    "LOCAL_ONLY_HINT",
    "MASK",
    "TOKEN_META_KEY",
    "TUNNEL_FIELDS",
    "TUNNEL_MODES",
    "Receiver",
    "ReceiverConfig",
    "TaskResult",
    "current_receiver",
    "start_receiver",
    "stop_receiver",
]

# --- module state: one receiver per process -------------------------------------------------

_CURRENT: Receiver | None = None
_LOCK = threading.RLock()


def current_receiver() -> Receiver | None:
    """The running receiver of this process, if any."""
    rx = _CURRENT
    return rx if rx is not None and rx.running else None


def start_receiver(
    store: str | os.PathLike[str] = DEFAULT_PATH,
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    hmac_key: str | bytes | None = None,
    allow_ips: Iterable[str] | None = None,
    tunnel: str | None = "auto",
    authtoken: str | None = None,
    ngrok_path: str | None = None,
    ngrok_config_path: str | None = None,
    region: str | None = None,
    tunnel_timeout: float = 15.0,
    cloudflared_path: str | None = None,
    poll: bool = True,
    poll_interval: float = 30.0,
    poll_grace: float | None = None,
    client: Any = None,
    max_body: int = MAX_BODY,
    socket_timeout: float = 15.0,
    signature_tolerance: float = 300.0,
    max_connections: int = Limits.max_connections,
) -> Receiver:
    """Start (or return the running) callback receiver for this notebook.

    - ``store``: SQLite file (default ``suno_callbacks.sqlite3`` here) or ``":memory:"``.
    - ``hmac_key``: verify webhook signatures (default: ``SUNO_WEBHOOK_HMAC_KEY`` from the
      environment, a ``.env`` file or Colab's secrets, read at each call).
    - ``allow_ips``: accept callbacks only from these addresses/networks.
    - ``tunnel``: ``"auto"`` opens ngrok when an authtoken is available (``authtoken``, else
      ``NGROK_AUTHTOKEN`` from the environment, a ``.env`` file or Colab's secrets, else
      ngrok's config file — read at each call) and stays local otherwise; ``"ngrok"``
      requires it; ``"cloudflared"`` opens a Cloudflare quick tunnel (no account; needs the
      ``cloudflared`` program on PATH or ``cloudflared_path``; a new random URL each start,
      no uptime guarantee); ``None`` never opens one.  ``tunnel_timeout``: seconds the
      tunnel agent gets to come up.
    - ``poll``: run the polling fallback (record-info every ``poll_interval`` s for tasks
      whose callback has not come, after ``poll_grace`` s); ``client`` is used to poll.
    - Limits of the HTTP server: ``max_body`` bytes per body (413), ``socket_timeout`` s for
      the whole request, headers and body (408), ``max_connections`` open at once (past it
      the oldest stalled or idle connection is closed to make room).

    Re-running with the same arguments (and the same secrets found) returns the running
    receiver; when only the tunnel's arguments or the authtoken changed (say
    ``NGROK_AUTHTOKEN`` was set since), the running receiver keeps its port, store and
    callback URL path and only its tunnel is replaced; other changes replace it cleanly.
    """
    global _CURRENT
    from ..credentials import find_secret

    if hmac_key is None:
        found = find_secret(HMAC_ENV)
        hmac_key = found.value if found is not None else None
    token = None
    if tunnel in ("auto", "ngrok"):
        from ..tunnel import resolve_authtoken

        token = resolve_authtoken(authtoken, config_path=ngrok_config_path)
    store_path = str(store) if str(store) == ":memory:" else str(Path(store).resolve())
    config = ReceiverConfig(
        store=store_path,
        host=_loopback_only(host),
        port=port,
        hmac_key=hmac_key,
        allow_ips=tuple(allow_ips) if allow_ips is not None else None,
        tunnel=tunnel,
        authtoken=authtoken,
        authtoken_sha256=_fingerprint(token),
        ngrok_path=ngrok_path,
        ngrok_config_path=ngrok_config_path,
        region=region,
        tunnel_timeout=tunnel_timeout,
        cloudflared_path=cloudflared_path,
        poll=poll,
        poll_interval=poll_interval,
        poll_grace=poll_grace,
        max_body=max_body,
        socket_timeout=socket_timeout,
        signature_tolerance=signature_tolerance,
        max_connections=max_connections,
    )
    with _LOCK:
        old = _CURRENT
        if old is not None and old.running and old.config.same_but_tunnel(config):
            if old.config != config or old._tunnel_missing():
                log.info("start_receiver: new tunnel for the receiver on port %d", old.port)
                try:
                    old._retunnel(config, token)
                except BaseException:
                    old.stop()
                    _CURRENT = None
                    raise
            else:
                log.info("start_receiver: reusing the running receiver on port %d", old.port)
            if client is not None:
                old.use_client(client)
            return old
        if old is not None:
            old.stop()
            _CURRENT = None
        try:
            rx = Receiver(config, client=client)
        except OSError as exc:
            raise ReceiverError(f"could not start the receiver on {host}:{port}: {exc}") from exc
        try:
            rx._open_tunnel(token)
            rx._start_poller()
        except BaseException:
            rx.stop()
            raise
        _CURRENT = rx
        from .. import client as _client

        _client.set_default_receiver(rx)
        return rx


def stop_receiver() -> None:
    """Stop the running receiver, if any (port freed, tunnel closed).  Idempotent."""
    global _CURRENT
    with _LOCK:
        rx, _CURRENT = _CURRENT, None
    if rx is not None:
        rx.stop()


atexit.register(stop_receiver)
