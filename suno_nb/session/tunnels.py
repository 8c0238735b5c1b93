"""Which tunnel a receiver opens for its config, and the hint when it stays local."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import SunoNbError, TunnelError
from .config import ReceiverConfig

log = logging.getLogger("suno_nb.session")

LOCAL_ONLY_HINT = (
    "Local-only receiver: the hosted Suno API cannot reach a 127.0.0.1 URL, so its callbacks "
    "will not arrive here (the polling fallback still fetches results, and the local Sandbox "
    "works as is). Two ways to a public URL: without any account, install cloudflared and "
    "call start_receiver(tunnel='cloudflared') (a Cloudflare quick tunnel, new random URL "
    "each run); or get an ngrok authtoken at "
    "https://dashboard.ngrok.com/get-started/your-authtoken, set NGROK_AUTHTOKEN (environment, "
    ".env file or Colab secret) or pass start_receiver(authtoken=...), and run the cell again."
)


def open_for(config: ReceiverConfig, port: int) -> tuple[Any, str | None]:
    """Open the tunnel ``config.tunnel`` asks for: (the tunnel or None, a note for the user).

    ``"auto"`` opens ngrok when there is an authtoken and stays local (with the hint) when
    there is none or ngrok fails; ``"ngrok"`` and ``"cloudflared"`` raise the tunnel's
    actionable error instead; ``None`` never opens one.
    """
    mode = config.tunnel
    if mode is None:
        return None, "tunnel disabled (tunnel=None)"
    from .. import tunnel as _tunnel

    settings = _tunnel.TunnelSettings(
        authtoken=config.authtoken,
        ngrok_path=config.ngrok_path,
        config_path=config.ngrok_config_path,
        region=config.region,
        start_timeout=config.tunnel_timeout,
        cloudflared_path=config.cloudflared_path,
    )
    if mode == "cloudflared":
        tunnel = _tunnel.open_quick_tunnel(port, settings, host=config.host)
        log.info("quick tunnel open: %s", tunnel.public_url)
        return tunnel, None
    if mode == "auto":
        hosted = _hosted_choice(port)
        if hosted is not None:
            return hosted
    if config.authtoken is None and mode == "auto":
        log.warning(LOCAL_ONLY_HINT)
        return None, LOCAL_ONLY_HINT
    if config.authtoken is None:  # tunnel="ngrok": say so before any agent download
        from ..tunnel.errors import authtoken_missing

        raise authtoken_missing()
    try:
        tunnel = _tunnel.open_tunnel(port, settings, host=config.host)
    except TunnelError as exc:
        if mode == "ngrok":
            raise
        log.warning("tunnel unavailable, receiver is local-only: %s", exc)
        return None, f"{exc} {LOCAL_ONLY_HINT}"
    log.info("tunnel open: %s", tunnel.public_url)
    return tunnel, None


def _hosted_choice(port: int) -> tuple[Any, str] | None:
    """Where the environment decides for ``tunnel="auto"`` (:func:`suno_nb.doctor`): on
    Kaggle no tunnel (not allowed there), on Codespaces the forwarded port; else None."""
    from ..tunnel.where import ForwardedPort, detect

    place = detect()
    if place.name == "kaggle":
        note = (
            "Kaggle does not allow tunnels, so the hosted API's callbacks cannot reach this "
            "kernel: results come by polling (record-info)."
        )
        log.warning(note)
        return None, note
    url = place.forwarded_url(port)
    if url is not None:
        note = (
            f"GitHub Codespaces forwards port {port} as {url}; the service can reach it once "
            f"it is public: {place.publish_command(port)}"
        )
        log.warning(note)
        return ForwardedPort(url, port), note
    return None


def polling_only(config: ReceiverConfig, tunnel: Any) -> bool:
    """True where no public URL is possible and ``tunnel="auto"`` (Kaggle): the client then
    sends no callback URL and the receiver's poller fetches the results."""
    from ..tunnel.where import detect

    return config.tunnel == "auto" and tunnel is None and detect().name == "kaggle"


def wanted_but_missing(config: ReceiverConfig, tunnel: Any) -> bool:
    """The config asks for a tunnel (with a token, for ngrok) but none is open: it failed
    earlier (say, no ngrok program yet) or its agent died.  A re-run tries again."""
    wanted = config.tunnel == "cloudflared" or (
        config.tunnel in ("auto", "ngrok") and config.authtoken is not None
    )
    return wanted and (tunnel is None or tunnel.closed)


def close(tunnel: Any) -> None:
    if tunnel is not None:
        try:
            tunnel.close()
        except SunoNbError:
            log.exception("closing the tunnel failed")
