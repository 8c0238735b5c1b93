"""``start_receiver()``: one receiver per process, safe to re-run.

Calling it again (a re-run cell) returns the running receiver when the options are the same;
when only the tunnel's options (or the authtoken found) changed, the running receiver keeps
its port, store and callback URL path and only its tunnel is replaced; other changes stop it
and start a new one, with a :class:`~suno_nb.SunoNbWarning` naming what changed: never a
second server thread, never "address already in use".
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from ..errors import ReceiverError, SunoNbWarning
from ..store import DEFAULT_PATH
from .config import ReceiverConfig, TaskResult
from .receiver import Receiver
from .tunnels import LOCAL_ONLY_HINT

log = logging.getLogger("suno_nb.session")

__all__ = [
    "LOCAL_ONLY_HINT",
    "Receiver",
    "ReceiverConfig",
    "TaskResult",
    "current_receiver",
    "start_receiver",
    "stop_receiver",
]

_CURRENT: Receiver | None = None
_LOCK = threading.RLock()


def current_receiver() -> Receiver | None:
    """The running receiver of this process, if any."""
    rx = _CURRENT
    return rx if rx is not None and rx.running else None


def start_receiver(
    store: str | os.PathLike[str] = DEFAULT_PATH, *, client: Any = None, **options: Any
) -> Receiver:
    """Start (or return the running) callback receiver for this notebook.

    ``store``: the SQLite file (default ``suno_callbacks.sqlite3`` here) or ``":memory:"``.
    ``client``: a :class:`~suno_nb.SunoClient` the polling fallback may use (a client that
    submits with ``receiver=rx`` hands itself over anyway).  ``options`` are the fields of
    :class:`~suno_nb.session.ReceiverConfig`, among them:

    - ``tunnel``: ``"auto"`` (default) opens ngrok when an authtoken is available
      (``authtoken=``, else ``NGROK_AUTHTOKEN`` from the environment, a ``.env`` file or
      Colab's secrets, else ngrok's config file — read at each call) and stays local
      otherwise; ``"ngrok"`` requires it; ``"cloudflared"`` opens a Cloudflare quick tunnel
      (no account; the ``cloudflared`` program on PATH or ``cloudflared_path=``); ``None``
      never opens one.  ``tunnel_timeout``: seconds the agent gets to come up.
    - ``hmac_key``: verify webhook signatures (default ``SUNO_WEBHOOK_HMAC_KEY``, found like
      the authtoken); ``signature_tolerance`` seconds.  ``allow_ips``: an IP allow-list.
    - ``poll``, ``poll_interval``, ``poll_grace``, ``poll_timeout`` (seconds one
      record-info request may take): the polling fallback.
    - ``archive`` (default True, or ``$SUNO_NB_ARCHIVE=0`` for False): copy each take's
      audio on arrival into ``<store>.audio/`` (the service keeps files 14 days);
      ``archive_max_mb`` caps that folder (then nothing new is archived, and ``rx.log()``
      says so).  ``rx.frame()`` shows ``expires_at`` and ``audio_state``.
    - the HTTP server's limits: ``max_body``, ``max_header_bytes``, ``request_timeout``
      (the whole request), ``keepalive``, ``max_connections``.
    """
    global _CURRENT
    path = str(store) if str(store) == ":memory:" else str(Path(store).resolve())
    config = ReceiverConfig.build(path, options)
    with _LOCK:
        old = _CURRENT
        if old is not None and old.running and old.config.same_but_tunnel(config):
            if old.config != config or old.tunnel_missing():
                log.info("start_receiver: new tunnel for the receiver on port %d", old.port)
                try:
                    old.retunnel(config)
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
            if old.running:
                # A re-run with other options replaces the receiver: say so, and what changed.
                warnings.warn(
                    f"start_receiver: the options changed ({'; '.join(old.config.changes(config))})"
                    f", so the receiver on port {old.port} was stopped and a new one started",
                    SunoNbWarning,
                    stacklevel=2,
                )
            old.stop()
            _CURRENT = None
        try:
            rx = Receiver(config, client=client)
        except OSError as exc:
            raise ReceiverError(
                f"could not start the receiver on {config.host}:{config.port}: {exc}"
            ) from exc
        try:
            rx.open_tunnel()
        except BaseException:
            rx.stop()
            raise
        _CURRENT = rx
        return rx


def stop_receiver() -> None:
    """Stop the running receiver, if any (port freed, tunnel closed).  Idempotent."""
    global _CURRENT
    with _LOCK:
        rx, _CURRENT = _CURRENT, None
    if rx is not None:
        rx.stop()


atexit.register(stop_receiver)
