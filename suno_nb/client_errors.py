"""How the client turns answers and failures into exceptions, per endpoint and provider.

The meaning of a code depends on the endpoint (429 is "rate limited" on replace-section and
"insufficient credits" elsewhere), so the mapping reads the provider's contract table
(:mod:`suno_nb.contract`) and the kind -> exception table in :mod:`suno_nb.errors`.  The
rest describes network failures without quoting anything we do not control (a requests
exception's text can carry URLs and headers).
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .contract import Provider, get_provider
from .errors import (
    KIND_ERRORS,
    ApiError,
    AuthError,
    RateLimitError,
    SectionValidationError,
    ServerError,
    SunoNbWarning,
)

__all__ = [
    "error_for_code",
    "is_loopback",
    "reachable_callback",
    "retry_after_s",
    "tell_user",
    "url_origin",
]

log = logging.getLogger("suno_nb.client")

SNIPPET_CHARS = 200  # how much of a non-JSON body an error message quotes
GENERIC_ENDPOINT = "record-info"  # an endpoint that uses the family's generic table


def error_for_code(
    code: int | None,
    message: str,
    *,
    endpoint: str = "",
    provider: Provider | None = None,
    route: str = GENERIC_ENDPOINT,
    retry_after: float | None = None,
) -> ApiError:
    """The :class:`ApiError` subclass for ``code`` on ``route`` (a contract endpoint name,
    e.g. ``"replace-section"``) of ``provider``, built with the service's message."""
    p = get_provider(provider)
    info = p.code(route, code) if code is not None else None
    if info is None and code is not None:
        info = p.code(GENERIC_ENDPOINT, code)
    cls: type[ApiError]
    if info is not None and info.kind in KIND_ERRORS:
        cls = KIND_ERRORS[info.kind]
    elif code == 403:  # not in the tables, but HTTP's "forbidden": the key is refused
        cls = AuthError
    elif code is not None and 500 <= code <= 599:
        cls = ServerError
    else:
        cls = ApiError
    meaning = info.meaning if info is not None else ""
    if cls is RateLimitError:
        return RateLimitError(
            code, message, endpoint=endpoint, meaning=meaning, retry_after=retry_after
        )
    return cls(code, message, endpoint=endpoint, meaning=meaning)


def retry_after_s(resp: requests.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), or None."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def int_code(value: Any) -> int | None:
    """A JSON ``code`` as an int (numbers and digit strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def snippet(resp: requests.Response) -> str:
    """The start of a body, one line, for an error message."""
    text = resp.content[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    text = " ".join(text.split())
    return text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")


def url_origin(url: str) -> str:
    """scheme://host[:port] of a URL, without credentials, path or query."""
    parts = urlsplit(url)
    if not parts.hostname:
        return "<invalid URL>"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def is_loopback(url: str) -> bool:
    """Is ``url``'s host this machine only (127.0.0.0/8, ::1, localhost)?"""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return (
        host in ("localhost", "::1", "0.0.0.0")
        or host.startswith("127.")
        or host.endswith(".localhost")
    )


def reachable_callback(
    url: str | None, *, base_url: str, provider: str, required: bool
) -> str | None:
    """``url`` as the callback URL to send, after checking the API host can reach it: a
    loopback URL given to a hosted API is refused (its callback could never arrive);
    ``required`` and no URL is refused too.  None when there is none to send."""
    if url is None:
        if required:
            raise SectionValidationError(
                "callback_url",
                f"{provider} requires a callback URL here and this client has "
                "no receiver: pass one (rx = suno_nb.start_receiver(), with a tunnel for "
                "the hosted API; then SunoClient(receiver=rx) or receiver=rx) or pass "
                "callback_url='https://...'",
                limit="required",
            )
        return None
    if is_loopback(url) and not is_loopback(base_url):
        raise SectionValidationError(
            "callback_url",
            f"{url_origin(url)} is a loopback address that {url_origin(base_url)} "
            "cannot reach, so the callback would never arrive. Start the receiver with a "
            "public tunnel: start_receiver(tunnel='cloudflared') (no account) or "
            "start_receiver(tunnel='ngrok') (an ngrok authtoken); or pass a public "
            "callback_url='https://...'",
            limit="a URL reachable from the API host",
            value=url_origin(url),
        )
    return url


def may_have_reached(exc: requests.RequestException) -> bool:
    """Could the service have received the request before this failure?"""
    if isinstance(
        exc,
        (
            requests.ConnectTimeout,
            requests.exceptions.SSLError,
            requests.exceptions.ProxyError,
        ),
    ):
        return False
    if isinstance(exc, requests.ConnectionError):
        inner = exc.args[0] if exc.args else None
        if isinstance(inner, MaxRetryError):
            inner = inner.reason
        # No connection was made: nothing was sent.
        return not isinstance(inner, NewConnectionError)
    # Read timeouts and broken replies happen after the request was sent.
    return isinstance(
        exc,
        (
            requests.ReadTimeout,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
        ),
    )


def network_reason(exc: requests.RequestException, timeout: float) -> str:
    """A short, secret-free description of a requests failure."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"could not connect within {timeout:g} s"
    if isinstance(exc, requests.ReadTimeout):
        return f"no answer within {timeout:g} s (read timeout)"
    root = _os_error(exc)
    if root:
        return f"{type(exc).__name__}: {root}"
    if isinstance(exc, requests.ConnectionError):
        return f"{type(exc).__name__}: the connection failed or was dropped"
    return type(exc).__name__


def _os_error(exc: BaseException) -> str | None:
    """The ``strerror`` of the first OS error behind ``exc`` (e.g. "Connection refused")."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            return str(e.strerror)
        todo.extend(a for a in e.args if isinstance(a, BaseException))
        for nxt in (getattr(e, "reason", None), e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return None


def tell_user(message: str) -> None:
    """Log ``message``, and show it as a :class:`SunoNbWarning` when called on the thread
    that runs the user's cells (a client method's problem that did not stop it).

    A worker thread's warning would print into whichever cell runs then (the submit form
    sends from one), so there it is only logged (``rx.log()``).
    """
    log.warning("%s", message)
    if threading.current_thread() is threading.main_thread():
        # 1 here, 2 the client's helper, 3 the public method, 4 the user's line.
        warnings.warn(message, SunoNbWarning, stacklevel=4)
