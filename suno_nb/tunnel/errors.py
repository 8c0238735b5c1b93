"""Failures of tunnel agents turned into one-paragraph errors that say what to do.

Also the secret scrubber: every authtoken this process handed to an agent is remembered and
replaced by ``***`` in messages and in the agents' log records (the ngrok agent echoes its
command line, ``--authtoken`` included, in some errors; ERR_NGROK_105 quotes the token).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field

from ..errors import (
    CloudflaredNoNetwork,
    CloudflaredStartTimeout,
    CloudflaredUnavailable,
    NgrokAuthtokenMissing,
    NgrokAuthtokenRejected,
    NgrokBinaryUnavailable,
    NgrokEndpointLimit,
    NgrokEndpointOnline,
    NgrokSessionLimit,
    NgrokStartTimeout,
    TunnelError,
)

AUTHTOKEN_URL = "https://dashboard.ngrok.com/get-started/your-authtoken"
AGENTS_URL = "https://dashboard.ngrok.com/agents"
ENDPOINTS_URL = "https://dashboard.ngrok.com/endpoints"
DOWNLOAD_URL = "https://ngrok.com/download"
CLOUDFLARED_URL = (
    "https://developers.cloudflare.com/cloudflare-one/connections/connect-networks/downloads/"
)
CLOUDFLARED_PKG_URL = "https://pkg.cloudflare.com/"
TIMEOUT_ARG = "start_receiver(tunnel_timeout=...)"

# --- secrets ------------------------------------------------------------------------------------

_secrets: set[str] = set()
_TOKEN_PATTERNS = (
    re.compile(r"(--authtoken[=\s]+)([^\s\"')]+)"),
    re.compile(r"(authtoken[\"']?\s*[:=]\s*[\"']?)(?!https?://)([^\s\"',}\\]+)", re.IGNORECASE),
)


def remember_secret(token: str | None) -> None:
    """Scrub ``token`` from every message and agent log line from now on."""
    if token and len(token) >= 4:
        _secrets.add(token)


def scrub(text: str) -> str:
    """Remove every known authtoken (and anything after ``--authtoken``) from ``text``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


class Redactor(logging.Filter):
    """Rewrites a record whose text holds an authtoken; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            clean = scrub(message)
        except Exception:  # a broken format string is not ours to fix
            return True
        if clean != message:
            record.msg, record.args = clean, None
        return True


# --- ngrok ---------------------------------------------------------------------------------------


@dataclass
class NgrokFailure:
    """What went wrong, read off a pyngrok/OS exception by the ngrok module.

    ``kind``: ``"missing"`` (no binary, no download), ``"unrunnable"`` (exists, won't run),
    or ``"agent"`` (the agent or its API said no).  ``said`` is the agent's own words,
    scrubbed; ``code`` the ``ERR_NGROK_<n>`` code if any.
    """

    kind: str
    said: str
    code: str | None = None
    timed_out: bool = False
    foreign: list[dict] = field(default_factory=list)


def clean_text(text: str) -> str:
    """One line, scrubbed, at most 300 characters."""
    text = text.replace("\\r", " ").replace("\\n", " ")
    text = " ".join(scrub(text).split()).rstrip(". ")
    return text if len(text) <= 300 else text[:297] + "..."


_CODE = re.compile(r"ERR_NGROK_\d+")


def error_text(exc: BaseException, late: list[str]) -> str:
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
    return clean_text(text)


def error_code(exc: BaseException, late: list[str]) -> str | None:
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


def ngrok_timeout(path: str, timeout: float, said: str = "") -> NgrokStartTimeout:
    detail = f" (its last error: {said})" if said else ""
    return NgrokStartTimeout(
        f"The ngrok agent ({path}) did not come up within {timeout:g} s{detail}. "
        "This usually means it cannot reach the ngrok service: check the internet connection "
        "and any proxy or firewall (the agent connects to connect.ngrok-agent.com:443), then "
        "run the cell again; on a slow network allow more time with "
        f"{TIMEOUT_ARG} (seconds; TunnelSettings.start_timeout when calling open_tunnel)."
    )


def ngrok_error(failure: NgrokFailure, *, path: str, timeout: float, config: str | None):
    """The one actionable :class:`TunnelError` subclass for ``failure``."""
    said, code = failure.said, failure.code
    if failure.kind == "missing":
        return NgrokBinaryUnavailable(
            f"The ngrok agent program is not at {path} and could not be downloaded ({said}). "
            f"Install ngrok ({DOWNLOAD_URL}, or your package manager), then point to it with "
            "start_receiver(ngrok_path=...) or the PYNGROK_NGROK_PATH environment variable; "
            "pyngrok downloads it by itself on first use only when this machine can reach "
            "the internet. No account at all? start_receiver(tunnel='cloudflared') opens a "
            "Cloudflare quick tunnel instead."
        )
    if failure.kind == "unrunnable":
        return NgrokBinaryUnavailable(
            f"The ngrok agent program at {path} could not be run ({said}). Check that it is "
            "the ngrok binary for this system and is executable (chmod +x), or point "
            "start_receiver(ngrok_path=...) / PYNGROK_NGROK_PATH at a working one."
        )
    if code == "ERR_NGROK_4018":
        return authtoken_missing("ERR_NGROK_4018")
    if code in ("ERR_NGROK_105", "ERR_NGROK_106", "ERR_NGROK_107"):
        return NgrokAuthtokenRejected(
            f"ngrok rejected the authtoken ({code}): it is mistyped, reset or revoked. Copy "
            f"the current one from {AUTHTOKEN_URL} and pass it with "
            "start_receiver(authtoken=...), the NGROK_AUTHTOKEN environment variable or Colab "
            "secret, or `ngrok config add-authtoken <token>`; then run the cell again."
        )
    if code == "ERR_NGROK_108":
        holders = "".join(
            f" suno_nb recorded ngrok agent pid {rec.get('agent_pid')} started by process "
            f"{rec.get('owner_pid')}, which is still running — call stop_receiver() there or "
            "shut that kernel down."
            for rec in failure.foreign
        )
        return NgrokSessionLimit(
            "This ngrok account already has as many agents online as its plan allows "
            "(ERR_NGROK_108; the free plan allows 3 at a time)." + holders + " Stop an agent "
            "you no longer need (another notebook kernel: stop_receiver() or shut it down; an "
            f"`ngrok` command in a terminal; or end the session at {AGENTS_URL}), then run the "
            "cell again."
        )
    if code == "ERR_NGROK_324":
        return NgrokEndpointLimit(
            "ngrok refused to open another endpoint: this account's endpoint limit is reached "
            "(ERR_NGROK_324; the free plan allows 3 online endpoints). Close endpoints you no "
            f"longer need (stop_receiver() in other kernels, other ngrok agents, or see "
            f"{ENDPOINTS_URL}) or upgrade the ngrok plan, then run the cell again."
        )
    if code == "ERR_NGROK_334":
        return NgrokEndpointOnline(
            "ngrok says this URL is already online (ERR_NGROK_334): the free plan's one dev "
            "domain is being served by another agent — usually another notebook kernel that "
            "still runs a receiver. Keep one agent: call stop_receiver() in (or shut down) the "
            f"other kernel, or stop the other `ngrok` ({AGENTS_URL}), then run the cell again. "
            "To serve it from several agents on purpose, ngrok's endpoint pooling "
            "(`--pooling-enabled`) load-balances between them."
        )
    if failure.timed_out:
        return ngrok_timeout(path, timeout, said)
    where = f" ({code}, see https://ngrok.com/docs/errors/{code.lower()}/)" if code else ""
    return TunnelError(
        f"The ngrok agent could not open the tunnel{where}: {said}. Check the ngrok config "
        f"file ({config or 'ngrok default'}) and the agent's messages in the 'pyngrok' log, "
        "then run the cell again."
    )


# --- cloudflared ---------------------------------------------------------------------------------

_HOW_TO_GET = (
    "Get cloudflared from Cloudflare: Debian/Ubuntu packages via their apt repository "
    f"({CLOUDFLARED_PKG_URL}: add it, then `sudo apt-get install cloudflared`), Homebrew "
    "(`brew install cloudflared`), or a single binary from "
    f"{CLOUDFLARED_URL}; or `pip install pycloudflared` and fetch its binary once with "
    "`from pycloudflared.util import download; download()` (found by itself afterwards). "
    "Then put it on PATH or pass start_receiver(tunnel='cloudflared', cloudflared_path=...)."
)


def cloudflared_missing(path: str | None) -> CloudflaredUnavailable:
    where = f"at {path}" if path else "on PATH"
    return CloudflaredUnavailable(
        f"A quick tunnel needs the cloudflared program, and there is none {where}; suno_nb "
        f"never downloads it by itself. {_HOW_TO_GET}"
    )


def cloudflared_unrunnable(path: str, reason: str) -> CloudflaredUnavailable:
    return CloudflaredUnavailable(
        f"The cloudflared program at {path} could not be run ({clean_text(reason)}). Check "
        f"that it is the cloudflared binary for this system and is executable (chmod +x). "
        f"{_HOW_TO_GET}"
    )


_NETWORK_WORDS = (
    "no such host",
    "dial tcp",
    "network is unreachable",
    "connection refused",
    "i/o timeout",
    "temporary failure in name resolution",
    "tls handshake timeout",
)


def cloudflared_exited(status: int | None, said: str) -> TunnelError:
    """cloudflared exited before the tunnel was ready; ``said`` is its last error line."""
    said = clean_text(said) if said else f"exit status {status}"
    if any(word in said.lower() for word in _NETWORK_WORDS):
        return CloudflaredNoNetwork(
            f"cloudflared could not reach Cloudflare to create the quick tunnel ({said}). "
            "Check the internet connection and any proxy or firewall (it needs "
            "api.trycloudflare.com:443 and outbound QUIC/HTTP2 to Cloudflare's edge), then run "
            "the cell again; or use start_receiver(tunnel='ngrok') with an ngrok authtoken."
        )
    return TunnelError(
        f"cloudflared stopped before the quick tunnel was ready ({said}). Run the cell again; "
        "if it keeps failing, run `cloudflared tunnel --url http://127.0.0.1:8000` in a "
        "terminal to see its full output, or use start_receiver(tunnel='ngrok')."
    )


def cloudflared_timeout(timeout: float, said: str = "") -> CloudflaredStartTimeout:
    detail = f" (its last error: {clean_text(said)})" if said else ""
    return CloudflaredStartTimeout(
        f"cloudflared did not report a ready quick tunnel within {timeout:g} s{detail}. It "
        "usually cannot reach Cloudflare: check the internet connection, proxy and firewall, "
        f"then run the cell again; on a slow network allow more time with {TIMEOUT_ARG}."
    )


def authtoken_missing(code: str | None = None) -> NgrokAuthtokenMissing:
    """No authtoken anywhere: what to do (raised before any agent download when known)."""
    said = f" ({code})" if code else ""
    return NgrokAuthtokenMissing(
        f"ngrok needs an authtoken to open a public tunnel{said}. Get yours "
        f"(a free account is enough) at {AUTHTOKEN_URL}, then pass it with "
        "start_receiver(authtoken=...), or set the NGROK_AUTHTOKEN environment variable "
        "or Colab secret (read each time start_receiver runs), or save it once with "
        "`ngrok config add-authtoken <token>`. Without an account: "
        "start_receiver(tunnel='cloudflared')."
    )
