"""The Receiver's tunnel: open, close, replace (ngrok or a Cloudflare quick tunnel)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import SunoNbError, TunnelError

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    pass


from .config import LOCAL_ONLY_HINT, TUNNEL_MODES, ReceiverConfig

log = logging.getLogger("suno_nb.session")


class TunnelMixin:
    """Tunnel handling for :class:`Receiver`."""

    # --- addresses ----------------------------------------------------------------------

    @property
    def local_url(self) -> str:
        """The loopback callback URL (reachable from this machine only)."""
        return f"http://{self.config.host}:{self._server.port}{self._server.path}"

    @property
    def public_url(self) -> str | None:
        """The tunnel's public base URL, or None when local-only."""
        return None if self._tunnel is None else self._tunnel.public_url

    @property
    def url(self) -> str:
        """The URL to give the API as ``callBackUrl``: public when tunnelled, else local."""
        if self._tunnel is not None:
            return self._tunnel.public_url.rstrip("/") + self._server.path
        return self.local_url

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def mode(self) -> str:
        """``"ngrok"`` or ``"cloudflared"`` while that tunnel is open, else ``"local"``."""
        return self._tunnel.kind if self._tunnel is not None else "local"

    @property
    def running(self) -> bool:
        return not self._stopped and self._server.running

    @property
    def signed(self) -> bool:
        """True when callbacks must carry a valid webhook signature (``hmac_key`` set)."""
        return self._processor.signed

    # --- tunnel -------------------------------------------------------------------------

    def _open_tunnel(self, authtoken: str | None = None) -> None:
        """Open the tunnel ``config.tunnel`` asks for; ``authtoken`` as resolved by the caller.

        ``"auto"`` opens ngrok when there is a token and stays local (with the hint) when
        there is none or ngrok fails; ``"ngrok"`` and ``"cloudflared"`` raise the tunnel's
        actionable error instead.
        """
        self._authtoken = authtoken  # kept off the config; only the tunnel and log scrub use it
        mode = self.config.tunnel
        if mode is None:
            self.tunnel_note = "tunnel disabled (tunnel=None)"
            return
        if mode not in TUNNEL_MODES:
            raise ValueError(f"tunnel={mode!r}: use 'auto', 'ngrok', 'cloudflared' or None")
        from .. import tunnel as _tunnel

        settings = _tunnel.TunnelSettings(
            authtoken=authtoken,
            ngrok_path=self.config.ngrok_path,
            config_path=self.config.ngrok_config_path,
            region=self.config.region,
            start_timeout=self.config.tunnel_timeout,
            cloudflared_path=self.config.cloudflared_path,
        )
        if mode == "cloudflared":
            self._tunnel = _tunnel.open_quick_tunnel(
                self._server.port, settings, host=self.config.host
            )
            self.tunnel_note = None
            log.info("quick tunnel open: %s", self._tunnel.public_url)
            return
        if authtoken is None and mode == "auto":
            self.tunnel_note = LOCAL_ONLY_HINT
            log.warning(LOCAL_ONLY_HINT)
            return
        try:
            self._tunnel = _tunnel.open_tunnel(self._server.port, settings, host=self.config.host)
        except TunnelError as exc:
            if mode == "ngrok":
                raise
            self.tunnel_note = f"{exc} {LOCAL_ONLY_HINT}"
            log.warning("tunnel unavailable, receiver is local-only: %s", exc)
            return
        self.tunnel_note = None
        log.info("tunnel open: %s", self._tunnel.public_url)

    def _close_tunnel(self) -> None:
        """Close the open tunnel, if any (a re-run replacing it, or one whose agent died)."""
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None:
            try:
                tunnel.close()
            except SunoNbError:
                log.exception("closing the tunnel failed")

    def _tunnel_missing(self) -> bool:
        """The config asks for a tunnel (with a token, for ngrok) but none is open: it failed
        earlier (say, no ngrok program yet) or its agent died.  A re-run tries again."""
        wanted = self.config.tunnel == "cloudflared" or (
            self.config.tunnel in ("auto", "ngrok") and self.config.authtoken_sha256 is not None
        )
        return wanted and (self._tunnel is None or self._tunnel.closed)

    def _retunnel(self, config: ReceiverConfig, authtoken: str | None) -> None:
        """Keep this receiver (port, store, callback path) and replace only its tunnel."""
        self._close_tunnel()
        self.config = config
        self._open_tunnel(authtoken)
