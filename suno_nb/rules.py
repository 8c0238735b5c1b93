"""The replace-section rules, written once for the client, the widgets and the sandbox.

From the API reference and the seeds: ``infill_start_s < infill_end_s``, both >= 0,
rounded to 2 decimals; the section is 6-60 s long; it covers at most 50 % of the
original; it does not run past the original's end; the required strings are non-empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import SectionValidationError

MIN_SECTION_S = 6.0
MAX_SECTION_S = 60.0
MAX_SECTION_FRACTION = 0.5
REQUIRED_TEXT_FIELDS = ("task_id", "audio_id", "prompt", "tags", "title")
# The hosted service rejects very long prompts (code 413); these limits are the generous
# ones documented across the API family.
MAX_TEXT_LENGTH = {
    "prompt": 5000,
    "tags": 1000,
    "title": 100,
    "negative_tags": 1000,
    "full_lyrics": 5000,
}


@dataclass(frozen=True)
class Section:
    """A validated section, in seconds rounded to 2 decimals."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return round(self.end - self.start, 2)


def _number(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SectionValidationError(
            field, f"must be a number of seconds, got {value!r}", value=value
        )
    if not math.isfinite(value):
        raise SectionValidationError(field, f"must be finite, got {value!r}", value=value)
    return round(float(value), 2)


def validate_section(start: object, end: object, duration: float | None = None) -> Section:
    """Check a section against every rule; return it rounded to 2 decimals.

    ``duration`` is the original track's length in seconds when known; without it the
    50 % and end-of-track rules cannot be checked (the service still checks them).
    Raises :class:`SectionValidationError` naming the field and the limit.
    """
    s = _number("infill_start_s", start)
    e = _number("infill_end_s", end)
    if s < 0:
        raise SectionValidationError(
            "infill_start_s", f"must be >= 0 s, got {s:g}", limit=0, value=s
        )
    if e < 0:
        raise SectionValidationError("infill_end_s", f"must be >= 0 s, got {e:g}", limit=0, value=e)
    if s >= e:
        raise SectionValidationError(
            "infill_end_s",
            f"must be greater than infill_start_s ({s:g} s), got {e:g} s",
            limit=s,
            value=e,
        )
    length = round(e - s, 2)
    if length < MIN_SECTION_S:
        raise SectionValidationError(
            "infill_end_s",
            f"section is {length:g} s long; it must be at least "
            f"{MIN_SECTION_S:g} s (infill_end_s - infill_start_s >= {MIN_SECTION_S:g})",
            limit=MIN_SECTION_S,
            value=length,
        )
    if length > MAX_SECTION_S:
        raise SectionValidationError(
            "infill_end_s",
            f"section is {length:g} s long; it must be at most "
            f"{MAX_SECTION_S:g} s (infill_end_s - infill_start_s <= {MAX_SECTION_S:g})",
            limit=MAX_SECTION_S,
            value=length,
        )
    if duration is not None:
        d = float(duration)
        if e > round(d, 2):
            raise SectionValidationError(
                "infill_end_s",
                f"{e:g} s is past the end of the original ({d:g} s)",
                limit=round(d, 2),
                value=e,
            )
        max_len = round(d * MAX_SECTION_FRACTION, 2)
        if length > max_len:
            raise SectionValidationError(
                "infill_end_s",
                f"section is {length:g} s long; it may cover at most 50 % of "
                f"the original's {d:g} s, i.e. {max_len:g} s",
                limit=max_len,
                value=length,
            )
    return Section(s, e)


def validate_text(field: str, value: object, *, required: bool) -> str | None:
    """Check one string argument; ``None``/empty is allowed only when not required."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise SectionValidationError(
                field, "is required and must be a non-empty string", limit="non-empty", value=value
            )
        return None
    if not isinstance(value, str):
        raise SectionValidationError(
            field, f"must be a string, got {type(value).__name__}", value=value
        )
    limit = MAX_TEXT_LENGTH.get(field)
    if limit is not None and len(value) > limit:
        raise SectionValidationError(
            field,
            f"is {len(value)} characters long; the limit is {limit}",
            limit=limit,
            value=len(value),
        )
    return value
