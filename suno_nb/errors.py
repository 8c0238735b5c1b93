"""One error root for the package; subclasses carry the data a caller needs.

Messages are written for a notebook user: one paragraph that says what went wrong and
what to do.  No message ever contains a secret (API key, ngrok authtoken, HMAC key).
"""

from __future__ import annotations

from typing import Any


class SunoNbError(Exception):
    """Root of every error raised by suno_nb."""


class SunoNbWarning(UserWarning):
    """Something the user should know about in their cell, though nothing failed (for
    example: a task was submitted but the receiver could not record it).  Only ever issued
    on the thread that runs the user's cells; worker threads log instead."""


# --- input validation -------------------------------------------------------------------


class SectionValidationError(SunoNbError, ValueError):
    """A replace-section argument breaks one of the service's rules.

    ``field`` is the snake_case argument name, ``limit`` the rule's limit (a number or a
    short phrase) and ``value`` the offending value.  Raised before any request is sent.
    """

    def __init__(self, field: str, message: str, *, limit: Any = None, value: Any = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.limit = limit
        self.value = value


class MasterError(SunoNbError, ValueError):
    """The picks cannot make one master (``rx.master()``): nothing picked, sections that
    overlap, takes of different originals, or a pick that is not a replace-section take.
    The message names the tasks and sections involved."""


class PayloadError(SunoNbError, ValueError):
    """A callback or record-info body does not have the documented shape."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SignatureError(SunoNbError):
    """A webhook signature check failed; ``reason`` says which check."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- storage / receiver -----------------------------------------------------------------


class MissingExtraError(SunoNbError, ImportError):
    """A feature needs an optional package: the message names the extra that brings it."""

    def __init__(self, message: str, *, extra: str) -> None:
        super().__init__(message)
        self.extra = extra


class StoreError(SunoNbError):
    """The SQLite store could not be opened, migrated or written."""


class ReceiverError(SunoNbError):
    """The callback receiver could not start or is not running."""


class WaitTimeout(SunoNbError, TimeoutError):
    """``Receiver.wait`` ran out of time before the task reached a final state."""

    def __init__(self, task_id: str, timeout: float, state: str | None, *, recorded: bool = True):
        if recorded:
            hint = (
                f"(last state: {state or 'unknown'}). The service may still deliver it: call "
                "wait() again, or check rx.tasks() and rx.deliveries()."
            )
        else:
            hint = (
                "and this receiver has never heard of it (not submitted with receiver=rx, no "
                "callback came). Check the id against rx.tasks(); give the receiver a client "
                "(start_receiver(client=...)) so that it can ask the service."
            )
        super().__init__(f"task {task_id!r} has no final result after {timeout:g} s {hint}")
        self.task_id = task_id
        self.timeout = timeout
        self.state = state


class UnknownTaskError(ReceiverError, KeyError):
    """``Receiver.wait`` on a task id that neither this receiver nor the service knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TaskFailedError(SunoNbError):
    """A task ended in a failure state; ``code`` and ``message`` are the service's."""

    def __init__(self, task_id: str, code: int | None, message: str | None):
        super().__init__(f"task {task_id!r} failed (code {code}): {message}")
        self.task_id = task_id
        self.code = code
        self.message = message


class AudioError(SunoNbError):
    """A file could not be fetched (HTTP error status) or decoded."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None):
        super().__init__(message)
        self.url = url
        self.status = status


# --- tunnel -----------------------------------------------------------------------------


class TunnelError(SunoNbError):
    """The public tunnel could not be opened or kept."""


class NgrokAuthtokenMissing(TunnelError):
    """No ngrok authtoken (ERR_NGROK_4018)."""


class NgrokAuthtokenRejected(TunnelError):
    """ngrok rejected the authtoken: mistyped, reset or revoked (ERR_NGROK_105/106/107)."""


class NgrokSessionLimit(TunnelError):
    """The account's agent-session limit is reached (ERR_NGROK_108; free plan: 3 agents)."""


class NgrokEndpointLimit(TunnelError):
    """The account's endpoint limit is reached (ERR_NGROK_324; free plan: 3 endpoints)."""


class NgrokEndpointOnline(TunnelError):
    """The endpoint's URL is already online elsewhere (ERR_NGROK_334): another agent (often
    another kernel) serves the same dev domain."""


class NgrokBinaryUnavailable(TunnelError):
    """The ngrok agent binary is missing and cannot be downloaded."""


class NgrokStartTimeout(TunnelError):
    """The ngrok agent did not come up in time."""


class CloudflaredUnavailable(TunnelError):
    """No ``cloudflared`` program to run a quick tunnel (none on PATH, or not runnable)."""


class CloudflaredNoNetwork(TunnelError):
    """cloudflared could not reach Cloudflare to create the quick tunnel."""


class CloudflaredStartTimeout(TunnelError):
    """cloudflared did not report a ready quick tunnel in time."""


# --- the API ----------------------------------------------------------------------------


class ApiError(SunoNbError):
    """The service answered with a non-200 ``code``; ``message`` is its ``msg``."""

    def __init__(self, code: int | None, message: str, *, endpoint: str = "", meaning: str = ""):
        where = f" from {endpoint}" if endpoint else ""
        what = f" ({meaning})" if meaning else ""
        # code None: raised before the service was asked (e.g. no key), so no "API error".
        text = message if code is None else f"Suno API error {code}{what}{where}: {message}"
        super().__init__(text)
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.meaning = meaning


class AuthError(ApiError):
    """401: the API key is missing or wrong."""


class InsufficientCreditsError(ApiError):
    """Too few credits: 402 on replace-section, 429 on the other endpoints."""


class RateLimitError(ApiError):
    """Too many requests: 429 on replace-section, 405/430 on the other endpoints.

    ``retry_after`` is the wait (seconds) the service asked for, when it said.
    """

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        endpoint: str = "",
        meaning: str = "",
        retry_after: float | None = None,
    ):
        super().__init__(code, message, endpoint=endpoint, meaning=meaning)
        self.retry_after = retry_after


class KeyLimitError(ApiError):
    """433 on kie.ai's task API: this sub-key's own usage limit is reached (the account may
    still have credits): raise the key's limit on the dashboard or use another key."""


class ApiValidationError(ApiError):
    """The service rejected the parameters: 422 on replace-section, 400/413 elsewhere."""


class ConflictError(ApiError):
    """409: the request conflicts with the task's state (e.g. already being processed)."""


class ResourceUnavailableError(ApiError):
    """451: the service could not fetch a resource the request names (e.g. ``uploadUrl``)."""


class NotFoundError(ApiError):
    """404: unknown task or route."""


class MaintenanceError(ApiError):
    """455: the service is under maintenance."""


class ServerError(ApiError):
    """5xx: the service failed."""


class GenerationFailedError(ApiError):
    """A code documented only for failed tasks (408, 501, 505, ...) came in a reply."""


# The contract's code kinds (suno_nb.contract.KINDS) -> the exception raised for them.
KIND_ERRORS: dict[str, type[ApiError]] = {
    "validation": ApiValidationError,
    "auth": AuthError,
    "credits": InsufficientCreditsError,
    "not_found": NotFoundError,
    "rate_limit": RateLimitError,
    "key_limit": KeyLimitError,
    "conflict": ConflictError,
    "resource": ResourceUnavailableError,
    "maintenance": MaintenanceError,
    "server": ServerError,
    "failure": GenerationFailedError,
}


class NetworkError(SunoNbError):
    """The request did not get an answer (connection refused, DNS, timeout)."""

    def __init__(self, message: str, *, may_have_reached: bool = False):
        super().__init__(message)
        self.may_have_reached = may_have_reached
