"""ReceiverConfig: what decides whether a re-run may reuse the running receiver; its
secrets concealed; small helpers shared by the session room."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import TaskFailedError
from ..receiver import MAX_BODY
from ..server import Limits

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    import pandas as pd

log = logging.getLogger("suno_nb.session")


TOKEN_META_KEY = "callback_token"
HMAC_ENV = "SUNO_WEBHOOK_HMAC_KEY"

LOCAL_ONLY_HINT = (
    "Local-only receiver: the hosted Suno API cannot reach a 127.0.0.1 URL, so its callbacks "
    "will not arrive here (the polling fallback still fetches results, and the local Sandbox "
    "works as is). Two ways to a public URL: without any account, install cloudflared and "
    "call start_receiver(tunnel='cloudflared') (a Cloudflare quick tunnel, new random URL "
    "each run); or get an ngrok authtoken at "
    "https://dashboard.ngrok.com/get-started/your-authtoken, set NGROK_AUTHTOKEN (environment, "
    ".env file or Colab secret) or pass start_receiver(authtoken=...), and run the cell again."
)
TUNNEL_MODES = ("auto", "ngrok", "cloudflared")
# ReceiverConfig fields a re-run may change on the running receiver: only its tunnel is
# replaced, so the port, the store and the callback URL's path stay the same.
TUNNEL_FIELDS = (
    "tunnel",
    "authtoken",
    "authtoken_sha256",
    "ngrok_path",
    "ngrok_config_path",
    "region",
    "tunnel_timeout",
    "cloudflared_path",
)


def _fingerprint(secret: str | None) -> str | None:
    """A secret's sha256 (hex): lets a re-run notice a new token without keeping it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest() if secret else None


MASK = "…"


class _SecretStr(str):
    """A secret that works as its string, but whose repr and deep copies (so
    ``dataclasses.asdict``) show only a mask."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(MASK)

    def __deepcopy__(self, memo: dict) -> str:
        return MASK

    def __reduce__(self) -> tuple:
        return (str, (MASK,))


class _SecretBytes(bytes):
    """:class:`_SecretStr` for a key given as bytes."""

    def __repr__(self) -> str:
        return repr(MASK)

    def __deepcopy__(self, memo: dict) -> str:
        return MASK

    def __reduce__(self) -> tuple:
        return (str, (MASK,))


def _conceal(value: str | bytes | None) -> str | bytes | None:
    if isinstance(value, str):
        return value if isinstance(value, _SecretStr) else _SecretStr(value)
    if isinstance(value, bytes):
        return value if isinstance(value, _SecretBytes) else _SecretBytes(value)
    return value


@dataclass(frozen=True)
class ReceiverConfig:
    """Everything that decides whether a re-run may reuse the running receiver.

    ``hmac_key`` and ``authtoken`` are kept as concealed strings: they work as usual, but
    ``repr(config)`` and ``dataclasses.asdict(config)`` show only a mask.
    """

    store: str
    host: str = "127.0.0.1"
    port: int = 0
    hmac_key: str | bytes | None = field(default=None, repr=False)
    allow_ips: tuple[str, ...] | None = None
    tunnel: str | None = "auto"
    authtoken: str | None = field(default=None, repr=False)
    authtoken_sha256: str | None = None  # the token found at call time (any source), hashed
    ngrok_path: str | None = None
    ngrok_config_path: str | None = None
    region: str | None = None
    tunnel_timeout: float = 15.0
    cloudflared_path: str | None = None
    poll: bool = True
    poll_interval: float = 30.0
    poll_grace: float | None = None
    max_body: int = MAX_BODY
    socket_timeout: float = 15.0  # the whole-request deadline (headers + body), seconds
    signature_tolerance: float = 300.0
    max_connections: int = Limits.max_connections
    max_header_bytes: int = Limits.max_header_bytes
    keepalive: float = Limits.keepalive

    def __post_init__(self) -> None:
        object.__setattr__(self, "hmac_key", _conceal(self.hmac_key))
        object.__setattr__(self, "authtoken", _conceal(self.authtoken))

    @property
    def limits(self) -> Limits:
        """The HTTP server's limits."""
        return Limits(
            max_connections=self.max_connections,
            max_header_bytes=self.max_header_bytes,
            max_body=self.max_body,
            request_timeout=self.socket_timeout,
            keepalive=self.keepalive,
        )

    def same_but_tunnel(self, other: ReceiverConfig) -> bool:
        """True when ``other`` differs from this config in its tunnel fields at most."""
        return dataclasses.replace(self, **{f: getattr(other, f) for f in TUNNEL_FIELDS}) == other


@dataclass(frozen=True)
class TaskResult:
    """A task's final state and its tracks, however they arrived."""

    task_id: str
    state: str
    code: int | None
    msg: str | None
    error: str | None
    source: str | None
    tracks: pd.DataFrame = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    def raise_for_failure(self) -> TaskResult:
        """Raise :class:`TaskFailedError` unless the task succeeded (failed, or given up as
        unknown/expired: ``error`` then holds the reason); return self otherwise."""
        if not self.ok:
            raise TaskFailedError(self.task_id, self.code, self.error or self.msg)
        return self

    def __repr__(self) -> str:
        if self.ok:
            detail = f"{len(self.tracks)} track(s)"
        elif self.code is None and self.error:
            detail = self.error  # given up by the poller: the reason
        else:
            detail = f"code {self.code}: {self.msg}"
        return f"TaskResult({self.task_id!r}, {self.state}, {detail}, via {self.source})"

    def _repr_html_(self) -> str:
        head = html.escape(repr(self))
        cols = ["track_id", "title", "duration", "audio_url", "received_at", "source"]
        table = self.tracks[cols].to_html(index=False) if len(self.tracks) else ""
        return f"<div><b>{head}</b>{table}</div>"


def _loopback_only(host: str) -> str:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(
            f"host={host!r}: the receiver binds loopback only (127.0.0.1); "
            "use the tunnel to reach it from outside"
        )
    return host


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
