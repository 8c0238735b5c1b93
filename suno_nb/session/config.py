"""The receiver's options, spelled once: ``start_receiver(**options)`` builds one frozen
:class:`ReceiverConfig`, and the server's :class:`~suno_nb.server.Limits` take the same
names.  Also :class:`TaskResult`, what ``rx.result()``/``rx.wait()`` return."""

from __future__ import annotations

import dataclasses
import html
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..credentials import Secret, as_secret, find_secret
from ..errors import TaskFailedError
from ..server import Limits
from .archiving import archive_default

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    import pandas as pd

TOKEN_META_KEY = "callback_token"
HMAC_ENV = "SUNO_WEBHOOK_HMAC_KEY"
TUNNEL_MODES = ("auto", "ngrok", "cloudflared")
_LIMITS = Limits()


@dataclass(frozen=True)
class ReceiverConfig:
    """Every option of :func:`~suno_nb.start_receiver` (the same names), resolved.

    Secrets (``hmac_key``, ``authtoken``) are :class:`~suno_nb.credentials.Secret`\\ s: their
    repr shows where they came from, never their value.  Two configs are equal when every
    option (and every secret's value) is, which is how a re-run cell knows whether it may
    keep the running receiver.
    """

    store: str
    #: loopback only: the public side is the tunnel
    host: str = "127.0.0.1"
    port: int = 0
    #: verify webhook signatures (default: ``SUNO_WEBHOOK_HMAC_KEY`` from the environment,
    #: a ``.env`` file or Colab's secrets)
    hmac_key: Secret | None = None
    signature_tolerance: float = 300.0
    #: accept callbacks only from these addresses/networks
    allow_ips: tuple[str, ...] | None = None
    #: "auto" (ngrok when an authtoken is found, else local), "ngrok", "cloudflared", None
    tunnel: str | None = "auto"
    #: the ngrok authtoken found at call time (argument, NGROK_AUTHTOKEN, .env, Colab, or
    #: ngrok's config file)
    authtoken: Secret | None = None
    ngrok_path: str | None = None
    ngrok_config_path: str | None = None
    region: str | None = None
    tunnel_timeout: float = 15.0
    cloudflared_path: str | None = None
    #: the polling fallback: record-info every ``poll_interval`` s after ``poll_grace`` s,
    #: each request given at most ``poll_timeout`` s
    poll: bool = True
    poll_interval: float = 30.0
    poll_grace: float | None = None
    poll_timeout: float = 10.0
    #: archive each take's audio on arrival into ``<store>.audio/`` (default on, unless
    #: ``$SUNO_NB_ARCHIVE`` is 0/off); at most ``archive_max_mb`` MB, then nothing new
    archive: bool = True
    archive_max_mb: float = 2048.0
    # The HTTP server's limits (see suno_nb.server.Limits, same names).
    max_body: int = _LIMITS.max_body
    max_header_bytes: int = _LIMITS.max_header_bytes
    request_timeout: float = _LIMITS.request_timeout
    keepalive: float = _LIMITS.keepalive
    max_connections: int = _LIMITS.max_connections

    def __post_init__(self) -> None:
        if self.tunnel is not None and self.tunnel not in TUNNEL_MODES:
            raise ValueError(f"tunnel={self.tunnel!r}: use 'auto', 'ngrok', 'cloudflared' or None")
        _loopback_only(self.host)
        for name in (
            "signature_tolerance",
            "tunnel_timeout",
            "poll_interval",
            "poll_timeout",
            "request_timeout",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 s, got {getattr(self, name)!r}")
        if not isinstance(self.archive, bool):
            raise ValueError(f"archive must be True or False, got {self.archive!r}")
        mb = self.archive_max_mb
        if isinstance(mb, bool) or not (isinstance(mb, (int, float)) and mb > 0):
            raise ValueError(
                f"archive_max_mb must be > 0 MB, got {self.archive_max_mb!r} "
                "(archive=False turns archiving off)"
            )
        for name in ("max_body", "max_header_bytes", "max_connections"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

    @classmethod
    def build(cls, store: str, options: dict[str, Any]) -> ReceiverConfig:
        """The config for ``start_receiver(store, **options)``: unknown options refused by
        name, secrets found (argument → environment → ``.env`` → Colab)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"store"}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(
                f"start_receiver() got unknown option(s) {', '.join(map(repr, unknown))}; "
                f"the options are: {', '.join(sorted(names))}"
            )
        values = dict(options)
        if values.get("archive") is None:
            values["archive"] = archive_default()
        hmac_key = values.get("hmac_key")
        found = as_secret(HMAC_ENV, hmac_key) if hmac_key is not None else find_secret(HMAC_ENV)
        values["hmac_key"] = found
        if values.get("allow_ips") is not None:
            values["allow_ips"] = tuple(values["allow_ips"])
        if values.get("tunnel", "auto") in ("auto", "ngrok"):
            from ..tunnel import resolve_authtoken

            explicit = values.get("authtoken")
            values["authtoken"] = resolve_authtoken(
                explicit.text if isinstance(explicit, Secret) else explicit,
                config_path=values.get("ngrok_config_path"),
            )
        else:
            values["authtoken"] = as_secret("NGROK_AUTHTOKEN", values.get("authtoken"))
        return cls(store=store, **values)

    @property
    def limits(self) -> Limits:
        """The HTTP server's limits."""
        return Limits(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Limits)})

    def changes(self, other: ReceiverConfig) -> list[str]:
        """What differs in ``other``, for a message: ``"name: old -> new"``, or only the
        name for a secret (its value is never shown)."""
        out = []
        for f in dataclasses.fields(self):
            old, new = getattr(self, f.name), getattr(other, f.name)
            if old == new:
                continue
            secret = isinstance(old, Secret) or isinstance(new, Secret)
            out.append(f.name if secret else f"{f.name}: {old!r} -> {new!r}")
        return out

    def same_but_tunnel(self, other: ReceiverConfig) -> bool:
        """True when ``other`` differs from this config in its tunnel options at most."""
        return dataclasses.replace(self, **{f: getattr(other, f) for f in TUNNEL_FIELDS}) == other


# Options a re-run may change on the running receiver: only its tunnel is replaced, so the
# port, the store and the callback URL's path stay the same.
TUNNEL_FIELDS = (
    "tunnel",
    "authtoken",
    "ngrok_path",
    "ngrok_config_path",
    "region",
    "tunnel_timeout",
    "cloudflared_path",
)


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


@dataclass(frozen=True)
class TaskResult:
    """A task's final state and its tracks (the rows of ``rx.frame()`` for the task)."""

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
