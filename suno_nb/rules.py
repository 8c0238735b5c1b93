"""The replace-section rules, applied from the provider's contract table.

Every limit comes from :mod:`suno_nb.contract` (a :class:`~suno_nb.contract.SectionRules`
and the provider's ``max_chars``); this module only applies them, for the client, the
widgets and the sandbox alike: ``0 <= infill_start_s < infill_end_s``, rounded to the
provider's decimals; the section at least ``min_s`` (and at most ``max_s`` where a maximum
is documented) long; at most ``max_fraction`` of the original; not past its end; required
strings non-empty and within their length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from .contract import API_FIELDS, Provider, SectionRules, get_provider
from .errors import SectionValidationError

_DEFAULT = get_provider()


@dataclass(frozen=True)
class Section:
    """A validated section, in seconds rounded to the provider's decimals."""

    start: float
    end: float

    @property
    def length(self) -> float:
        return round(self.end - self.start, 2)


def _number(field: str, value: object, decimals: int) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SectionValidationError(
            field, f"must be a number of seconds, got {value!r}", value=value
        )
    if not math.isfinite(value):
        raise SectionValidationError(field, f"must be finite, got {value!r}", value=value)
    return round(float(value), decimals)


def validate_section(
    start: object,
    end: object,
    duration: float | None = None,
    *,
    section: SectionRules | None = None,
) -> Section:
    """Check a section against the rules; return it rounded to the rules' decimals.

    ``section`` is a provider's :class:`SectionRules` (None: the default provider's).
    ``duration`` is the original's length in seconds when known; without it the share and
    end-of-track rules cannot be checked (the service still checks them).
    Raises :class:`SectionValidationError` naming the field and the limit.
    """
    rules = section if section is not None else _DEFAULT.section
    nd = rules.decimals
    s = _number("infill_start_s", start, nd)
    e = _number("infill_end_s", end, nd)
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
    length = round(e - s, nd)
    if length < rules.min_s:
        raise SectionValidationError(
            "infill_end_s",
            f"section is {length:g} s long; it must be at least {rules.min_s:g} s "
            f"(infill_end_s - infill_start_s >= {rules.min_s:g}; source: {rules.source})",
            limit=rules.min_s,
            value=length,
        )
    if rules.max_s is not None and length > rules.max_s:
        raise SectionValidationError(
            "infill_end_s",
            f"section is {length:g} s long; it must be at most {rules.max_s:g} s "
            f"(infill_end_s - infill_start_s <= {rules.max_s:g}; source: {rules.source})",
            limit=rules.max_s,
            value=length,
        )
    if duration is not None:
        d = float(duration)
        if e > round(d, nd):
            raise SectionValidationError(
                "infill_end_s",
                f"{e:g} s is past the end of the original ({d:g} s)",
                limit=round(d, nd),
                value=e,
            )
        max_len = round(d * rules.max_fraction, nd)
        if length > max_len:
            raise SectionValidationError(
                "infill_end_s",
                f"section is {length:g} s long; it may cover at most "
                f"{rules.max_fraction:.0%} of the original's {d:g} s, i.e. {max_len:g} s",
                limit=max_len,
                value=length,
            )
    return Section(s, e)


def validate_text(
    field: str,
    value: object,
    *,
    required: bool,
    provider: Provider | None = None,
    limit_key: str | None = None,
) -> str | None:
    """Check one string argument; ``None``/empty is allowed only when not required.

    Its length limit is the provider's ``max_chars[limit_key or field]`` (if any).
    """
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
    limit = (provider or _DEFAULT).max_chars.get(limit_key or field)
    if limit is not None and len(value) > limit:
        raise SectionValidationError(
            field,
            f"is {len(value)} characters long; the limit is {limit}",
            limit=limit,
            value=len(value),
        )
    return value


def required_by(provider: Provider, endpoint: str, field: str) -> bool:
    """Does ``provider`` require the snake_case argument ``field`` on ``endpoint``?"""
    return provider.requires(endpoint, API_FIELDS.get(field, field))


def missing_required(field: str, provider: Provider, endpoint: str) -> SectionValidationError:
    """The error for a required argument left out, naming it and the docs page."""
    source = provider.sources.get(endpoint, provider.name)
    api = API_FIELDS.get(field, field)
    return SectionValidationError(
        field,
        f"is required by {provider.name} on {endpoint} (request field {api}; {source})",
        limit="required",
        value=None,
    )


def check_url(field: str, url: object) -> str | None:
    """An optional http(s) URL argument, stripped (None when not given)."""
    text = validate_text(field, url, required=False)
    if text is None:
        return None
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SectionValidationError(field, "must be an http(s) URL", limit="http(s) URL")
    return text.strip()


def pick_model(model: object, provider: Provider) -> str:
    """``model`` if the provider offers it, else an error listing the models."""
    if not isinstance(model, str) or model not in provider.models:
        raise SectionValidationError(
            "model",
            f"must be one of {', '.join(provider.models)} on {provider.name}, got {model!r}",
            limit=provider.models,
            value=model,
        )
    return model


def replace_mode(
    task_id: object, audio_id: object, upload_url: object, model: object, provider: Provider
) -> dict[str, str]:
    """The request fields naming the original, for exactly one of the two modes:
    ``taskId`` + ``audioId`` (a track the service made) or ``uploadUrl`` + ``model``."""
    mode1 = task_id is not None or audio_id is not None
    mode2 = upload_url is not None or model is not None
    if mode1 and mode2:
        raise SectionValidationError(
            "upload_url" if upload_url is not None else "model",
            "give either task_id + audio_id (a track the service made) or upload_url + "
            "model (your own audio), not both",
            limit="exactly one mode",
        )
    if mode2:
        url = check_url("upload_url", upload_url)
        if url is None:
            raise SectionValidationError(
                "upload_url", "is required with model= (your own audio)", limit="required"
            )
        return {"uploadUrl": url, "model": pick_model(model, provider)}
    if not mode1:
        raise SectionValidationError(
            "task_id",
            "name the original: task_id + audio_id (a track the service made) or "
            "upload_url + model (your own audio)",
            limit="exactly one mode",
        )
    ids = {}
    for field, value in (("task_id", task_id), ("audio_id", audio_id)):
        text = validate_text(field, value, required=True, provider=provider)
        ids[API_FIELDS[field]] = text or ""
    return ids


def original_duration_s(value: object) -> float | None:
    """``original_duration`` as seconds (None when not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SectionValidationError(
            "original_duration", f"must be a number of seconds, got {value!r}", value=value
        )
    return float(value)
