"""Fault injection for the sandbox: what goes wrong with a task and its callback.

A :class:`Faults` value applies to the whole sandbox (``Sandbox(faults=...)`` or
``sb.default_faults``), to the next N submitted tasks (``sb.inject(faults, count=N)``) or
to one task (``sb.set_task_faults(task_id, faults)``).  The most specific one wins whole;
they are not merged.  A receiver that is down needs no fault: give a ``callBackUrl`` that
nobody answers and the retries show in ``sb.delivery_log()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..payloads import CALLBACK_CODES, FAILED_STATUSES

ERROR_CODES = (400, 408, 500, 501, 531)
ERROR_FORMS = ("error", "null")


@dataclass(frozen=True)
class Failure:
    """How a failed task looks: callback ``code``/``msg``/``error`` and record-info status."""

    code: int
    msg: str
    error: str
    status: str
    refund: bool


# code -> (callback msg, error text, record-info status).  501 is the seed's own example;
# the others use the seeds' status-code table.  500 maps to CALLBACK_EXCEPTION so that
# every documented failure status can be produced by some code.
_FAILURES: dict[int, tuple[str, str, str]] = {
    400: (
        "Parameter validation failed.",
        "Validation error: parameter validation failed",
        "CREATE_TASK_FAILED",
    ),
    408: ("Request timeout.", "Timeout: the generation took too long", "GENERATE_AUDIO_FAILED"),
    500: (
        "Internal server error.",
        "Server error: an unexpected error occurred",
        "CALLBACK_EXCEPTION",
    ),
    501: (
        "Audio generation failed.",
        "Generation failed due to technical issues",
        "GENERATE_AUDIO_FAILED",
    ),
    531: (
        "Generation failed, credits refunded.",
        "Server error: generation failed, your credits have been refunded; please try again",
        "GENERATE_AUDIO_FAILED",
    ),
}
assert set(_FAILURES) == set(ERROR_CODES) <= set(CALLBACK_CODES)


@dataclass(frozen=True)
class Faults:
    """What should go wrong; the default value (``Faults()``) changes nothing.

    Outcome of the task (at most one of these):

    - ``error_code``: 400, 408, 500, 501 or 531 — the task fails with that code: an error
      callback and a failed record-info (``CREATE_TASK_FAILED`` for 400,
      ``CALLBACK_EXCEPTION`` for 500, ``GENERATE_AUDIO_FAILED`` otherwise; ``errorCode`` /
      ``errorMessage`` set).  531 refunds the task's credits, as its message says.
    - ``sensitive_word``: the task fails with ``SENSITIVE_WORD_ERROR`` (callback code 400).
    - ``record_status``: overrides the failed record-info status (one of
      ``payloads.FAILED_STATUSES``) for either of the above.
    - ``error_message``: overrides the error text (``data.error`` / ``errorMessage``).
    - ``error_form``: ``"error"`` (English seed: ``data.error`` holds the message) or
      ``"null"`` (Chinese seed: ``data.data`` is ``null``).

    The request itself:

    - ``reply_code``: the submit is refused with this code (any code of the endpoint's
      table, e.g. 402, 409, 422, 429, 451, 455, 500 on replace-section); no task is made and
      no credit spent.  ``error_message`` overrides the message.

    Delivery of the callback:

    - ``drop``: no callback at all; record-info still reaches its final status, so only
      polling finds the result.
    - ``duplicates``: this many extra copies of the callback (each with its own retries).
    - ``wrong_signature``: sign with a wrong key, so the receiver's verification fails.
    - ``callback_delay``: seconds between the result being ready (record-info final) and
      the first callback attempt: a late callback that polling may beat.

    Timing of the task:

    - ``extra_delay``: seconds added to the sandbox's ``delay`` before the result exists.
    """

    error_code: int | None = None
    reply_code: int | None = None
    error_form: str = "error"
    error_message: str | None = None
    sensitive_word: bool = False
    record_status: str | None = None
    drop: bool = False
    duplicates: int = 0
    wrong_signature: bool = False
    callback_delay: float = 0.0
    extra_delay: float = 0.0
    # Audio of a replace-section take (see synth.replace_section): the rest of the song comes
    # back this many dB louder; the take is shifted this many ms later; no seam crossfades.
    outside_gain_db: float = 0.0
    shift_ms: float = 0.0
    hard_seams: bool = False

    def __post_init__(self) -> None:
        if self.error_code is not None and self.error_code not in ERROR_CODES:
            raise ValueError(
                f"error_code must be one of {', '.join(map(str, ERROR_CODES))}, "
                f"got {self.error_code!r}"
            )
        if self.reply_code is not None and (
            isinstance(self.reply_code, bool)
            or not isinstance(self.reply_code, int)
            or not 400 <= self.reply_code <= 599
        ):
            raise ValueError(f"reply_code must be a 4xx/5xx code, got {self.reply_code!r}")
        if self.error_form not in ERROR_FORMS:
            raise ValueError(f"error_form must be 'error' or 'null', got {self.error_form!r}")
        if self.record_status is not None and self.record_status not in FAILED_STATUSES:
            raise ValueError(
                f"record_status must be one of {', '.join(FAILED_STATUSES)}, "
                f"got {self.record_status!r}"
            )
        if isinstance(self.duplicates, bool) or not isinstance(self.duplicates, int):
            raise ValueError(f"duplicates must be an int, got {self.duplicates!r}")
        if self.duplicates < 0:
            raise ValueError(f"duplicates must be >= 0, got {self.duplicates}")
        for name in ("extra_delay", "callback_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 s, got {getattr(self, name)!r}")

    @property
    def fails(self) -> bool:
        """True when the task ends in a failure status."""
        return self.error_code is not None or self.sensitive_word or bool(self.record_status)

    def failure(self) -> Failure | None:
        """The failure this produces, or None when the task succeeds."""
        if not self.fails:
            return None
        if self.sensitive_word:
            code, msg = self.error_code or 400, "Sensitive word detected."
            error = "The prompt contains sensitive words; change it and try again"
            status = "SENSITIVE_WORD_ERROR"
        else:
            code = self.error_code or 501
            msg, error, status = _FAILURES[code]
        return Failure(
            code=code,
            msg=msg,
            error=self.error_message or error,
            status=self.record_status or status,
            refund=code == 531,
        )
