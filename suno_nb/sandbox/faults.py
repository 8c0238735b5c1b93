"""Fault injection for the sandbox: what goes wrong with a task and its callback.

A :class:`Faults` value applies to the whole sandbox (``Sandbox(faults=...)`` or
``sb.default_faults``), to the next N submitted tasks (``sb.inject(faults, count=N)``) or
to one task (``sb.set_task_faults(task_id, faults)``).  The most specific one wins whole;
they are not merged.  A receiver that is down needs no fault: give a ``callBackUrl`` that
nobody answers and the retries show in ``sb.delivery_log()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..payloads import CALLBACK_CODES, FAILED_STATUSES

ERROR_CODES = (400, 408, 500, 501, 531)
ERROR_FORMS = ("error", "null")
FAILURE_STAGES = ("error", "failed")  # callbackType of a failure; "failed": one provider's name
# Bounds of the audio faults.  A mastered song peaks near 0.89 of full scale and a take is
# clipped to +/-1, so a louder rest of the song is hard-clipped: at +6 dB about 5 % of its
# samples clip and analysis still reads ~+5.5 dB; at +12 dB it reads ~+8.8.  Quieter is
# harmless; -40 dB is already near silence.
MIN_OUTSIDE_GAIN_DB, MAX_OUTSIDE_GAIN_DB = -40.0, 6.0
# analysis.MAX_SHIFT_S: a larger offset is mis-measured.  It is far below the shortest
# section (6 s), so a shifted take still overlaps its section and never shifts out of the song.
MAX_SHIFT_MS = 500.0


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
    - ``failure_stage``: the failure callback's ``data.callbackType``: ``"error"`` (the
      seeds) or ``"failed"`` (the name one provider uses for the failure stage).

    The request itself:

    - ``reply_code``: the submit is refused with this code (any code of the endpoint's
      table, e.g. 402, 409, 422, 429, 451, 455, 500 on replace-section); no task is made and
      no credit spent.  ``error_message`` overrides the message.
    - ``drop_connection``: replace-section accepts the request (the task is created and
      charged, its callback comes) but the HTTP answer never arrives: the connection closes
      after the status line and headers, so the client cannot know the task id.

    Delivery of the callback:

    - ``drop``: no callback at all; record-info still reaches its final status, so only
      polling finds the result.
    - ``duplicates``: this many extra copies of the callback (each with its own retries).
    - ``wrong_signature``: sign with a wrong key, so the receiver's verification fails.
    - ``callback_delay``: seconds between the result being ready (record-info final) and
      the first callback attempt: a late callback that polling may beat.

    Timing of the task:

    - ``extra_delay``: seconds added to the sandbox's ``delay`` before the result exists.

    Audio of a replace-section take (see ``takes.replace_section``):

    - ``outside_gain_db``: the rest of the song (outside the section) comes back this many
      dB louder (negative: quieter); -40 to +6 dB, since more than +6 dB would hard-clip
      the rest of the song and the measured gain would fall short of the one asked for.
    - ``shift_ms``: the whole take is shifted this many ms later (negative: earlier; same
      length, silence fills the gap); at most 500 ms either way: the largest offset
      ``analysis.measure`` searches, and far less than the shortest section (6 s), so the
      take is never shifted off its section, let alone out of the song.
    - ``hard_seams``: True cuts the section in without its crossfades.

    Recovery Audio (``POST /api/v1/suno/recovery``):

    - ``recovery_error``: every track fails to recover with this ``error`` (the docs name
      e.g. ``"feed_failed"``, ``"clip_error"``, ``"no_audio_id_mappings"``): each track
      ``status: "failed"``, task-level code 500.  A WAV conversion with ``error_code``
      fails with that code (400, 500 or 501; others as 500).
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
    outside_gain_db: float = 0.0
    shift_ms: float = 0.0
    hard_seams: bool = False
    failure_stage: str = "error"  # last, so that no existing field changes position
    recovery_error: str | None = None
    drop_connection: bool = False

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
        if self.failure_stage not in FAILURE_STAGES:
            raise ValueError(
                f"failure_stage must be 'error' or 'failed', got {self.failure_stage!r}"
            )
        if self.record_status is not None and self.record_status not in FAILED_STATUSES:
            raise ValueError(
                f"record_status must be one of {', '.join(FAILED_STATUSES)}, "
                f"got {self.record_status!r}"
            )
        if not isinstance(self.drop_connection, bool):
            raise ValueError(f"drop_connection must be a bool, got {self.drop_connection!r}")
        if isinstance(self.duplicates, bool) or not isinstance(self.duplicates, int):
            raise ValueError(f"duplicates must be an int, got {self.duplicates!r}")
        if self.duplicates < 0:
            raise ValueError(f"duplicates must be >= 0, got {self.duplicates}")
        for name in ("extra_delay", "callback_delay"):
            value = getattr(self, name)
            # NaN passes a "< 0" test and would make a timer that never fires.
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0 s, got {value!r}")
        if self.recovery_error is not None and (
            not isinstance(self.recovery_error, str)
            or not self.recovery_error.strip()
            or len(self.recovery_error) > 200
        ):
            raise ValueError(
                "recovery_error must be a non-empty string of at most 200 characters, "
                f"got {self.recovery_error!r}"
            )
        self._check_audio()

    def _check_audio(self) -> None:
        """The audio faults: finite numbers within what rendering and analysis handle."""
        for name, unit, lo, hi, why in (
            ("outside_gain_db", "dB", MIN_OUTSIDE_GAIN_DB, MAX_OUTSIDE_GAIN_DB, "louder clips"),
            ("shift_ms", "ms", -MAX_SHIFT_MS, MAX_SHIFT_MS, "the offsets analysis can measure"),
        ):
            value = getattr(self, name)
            # bool is an int, but True dB is surely a mistake; NaN/inf would break rendering.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of {unit}, got {value!r}")
            if not math.isfinite(value) or not lo <= value <= hi:
                raise ValueError(
                    f"{name} must be a finite number from {lo:+g} to {hi:+g} {unit} ({why}), "
                    f"got {value!r}"
                )
        if not isinstance(self.hard_seams, bool):
            raise ValueError(f"hard_seams must be a bool, got {self.hard_seams!r}")

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
