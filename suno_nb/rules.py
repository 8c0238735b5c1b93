"""The replace-section rules, applied from the provider's contract table.

Every limit comes from :mod:`suno_nb.contract` (a :class:`~suno_nb.contract.SectionRules`
and the provider's ``max_chars``); this module only applies them, for the client, the
widgets and the sandbox alike: ``0 <= infill_start_s < infill_end_s``, rounded to the
provider's decimals; the section at least ``min_s`` (and at most ``max_s`` where a maximum
is documented) long; at most ``max_fraction`` of the original; not past its end; required
strings non-empty and within their length; the optional fields (``lyrics``,
``vocal_gender``, the weights, ``variety``, the persona) within their :class:`FieldSpec`;
the model one the provider accepts (a deprecated one with a :class:`SunoNbWarning`).
:func:`request_body` spells a request the provider's way (camelCase for the family's
routes, ``{"model", "callBackUrl", "input": {snake_case}}`` for kie.ai's task API).
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .contract import FieldSpec, Provider, SectionRules, get_provider
from .errors import SectionValidationError, SunoNbWarning

log = logging.getLogger("suno_nb.rules")

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
    return provider.requires(endpoint, provider.api_name(field))


def missing_required(field: str, provider: Provider, endpoint: str) -> SectionValidationError:
    """The error for a required argument left out, naming it and the docs page."""
    source = provider.sources.get(endpoint, provider.name)
    api = provider.api_name(field)
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


def pick_model(model: object, provider: Provider, *, stacklevel: int = 3) -> str:
    """``model`` if the provider accepts it, else an error listing the models.

    A deprecated model is accepted with a :class:`SunoNbWarning` naming the current
    default (shown in the cell when called from the notebook's thread, logged otherwise;
    ``stacklevel`` points the warning at the user's line).
    """
    if not isinstance(model, str) or model not in provider.models:
        old = ", ".join(provider.deprecated_models)
        raise SectionValidationError(
            "model",
            f"must be one of {', '.join(provider.current_models)} on {provider.name} "
            f"(default {provider.default_model}; deprecated but accepted: {old}), got {model!r}",
            limit=provider.models,
            value=model,
        )
    if model in provider.deprecated_models:
        message = (
            f"model {model!r} is deprecated on {provider.name} (kept only for backward "
            f"compatibility); the current default is {provider.default_model!r} "
            f"(current: {', '.join(provider.current_models)}; "
            f"{provider.sources.get('models', provider.name)})"
        )
        log.warning("%s", message)
        if threading.current_thread() is threading.main_thread():
            warnings.warn(message, SunoNbWarning, stacklevel=stacklevel)
    return model


def _option_error(spec: FieldSpec, what: str, value: object) -> SectionValidationError:
    return SectionValidationError(
        spec.name,
        f"must be {spec.describe()} (request field {spec.api}; {spec.source}), {what}",
        limit=spec.describe(),
        value=value,
    )


def check_option(spec: FieldSpec, value: object) -> Any:
    """One optional field's value checked against its :class:`FieldSpec`; the error names
    the Python argument, the request field and the limit."""
    got = f"got {value!r}"
    if spec.kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise _option_error(spec, got if not isinstance(value, str) else "got ''", value)
        if spec.max_chars is not None and len(value) > spec.max_chars:
            raise _option_error(spec, f"got {len(value)} characters", len(value))
        return value
    if spec.kind == "choice":
        if not isinstance(value, str) or value not in spec.choices:
            raise _option_error(spec, got, value)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _option_error(spec, got, value)
    if not math.isfinite(value):
        raise _option_error(spec, got, value)
    if spec.kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
        raise _option_error(spec, got, value)
    lo, hi = spec.minimum, spec.maximum
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _option_error(spec, got, value)
    if spec.kind == "int":
        return int(value)
    if spec.decimals is not None:
        scaled = float(value) * 10**spec.decimals
        if abs(scaled - round(scaled)) > 1e-6:
            raise _option_error(spec, got, value)
        return round(float(value), spec.decimals)
    return float(value)


def check_options(provider: Provider, **values: object) -> dict[str, Any]:
    """The given (not None) optional fields of ``values`` (Python names), checked against
    ``provider.fields``; a name the provider does not know is refused."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        spec = provider.fields.get(name)
        if spec is None:
            raise SectionValidationError(
                name,
                f"is not a field {provider.name} documents for replace-section "
                f"(known: {', '.join(provider.fields)})",
                limit=tuple(provider.fields),
                value=value,
            )
        out[name] = check_option(spec, value)
    return out


def recorded_params(body: dict[str, Any], provider: Provider) -> dict[str, Any]:
    """What a submission records of its request: the body without the callback URL (the
    receiver's capability token), also inside the task API's ``input``."""
    callback = provider.api_name("callback_url")
    params = {k: v for k, v in body.items() if k != callback}
    if isinstance(params.get("input"), dict):
        params["input"] = {k: v for k, v in params["input"].items() if k != callback}
    return params


def request_body(
    provider: Provider, endpoint: str, args: dict[str, Any], callback_url: str | None
) -> dict[str, Any]:
    """The JSON body of ``endpoint`` from ``args`` (Python names, None left out), spelled
    the provider's way: camelCase fields for the family's routes; on kie.ai's task API
    ``{"model": <task model>, "callBackUrl"?, "input": {snake_case fields}}``."""
    fields = {provider.api_name(k): v for k, v in args.items() if v is not None}
    if provider.api != "task":
        if callback_url is not None:
            fields[provider.api_name("callback_url")] = callback_url
        return fields
    task_model = provider.task_models.get(endpoint)
    if task_model is None:
        raise ValueError(f"{provider.name} has no task model for {endpoint!r} in its contract")
    body: dict[str, Any] = {"model": task_model}
    if callback_url is not None:
        body[provider.api_name("callback_url")] = callback_url
    body["input"] = fields
    return body


def replace_mode(
    task_id: object,
    audio_id: object,
    upload_url: object,
    model: object,
    provider: Provider,
    *,
    stacklevel: int = 4,
) -> dict[str, str]:
    """The arguments naming the original (Python names), for exactly one of the two modes:
    ``task_id`` + ``audio_id`` (a track the service made) or ``upload_url`` + ``model``
    (``stacklevel``: of a deprecated model's warning, counted from ``pick_model``)."""
    mode1 = task_id is not None or audio_id is not None
    mode2 = upload_url is not None or model is not None
    if mode1 and mode2:
        raise SectionValidationError(
            "upload_url" if upload_url is not None else "model",
            "give either task_id + audio_id (a track the service made) or upload_url + "
            "model (your own audio), not both",
            limit="exactly one mode",
        )
    if mode2 and not provider.upload_mode:
        raise SectionValidationError(
            "upload_url" if upload_url is not None else "model",
            f"{provider.name} takes no upload mode on replace-section (its page names the "
            "original by task_id + audio_id only; "
            f"{provider.sources.get('replace-section', provider.name)})",
            limit="task_id + audio_id",
        )
    if mode2:
        url = check_url("upload_url", upload_url)
        if url is None:
            raise SectionValidationError(
                "upload_url", "is required with model= (your own audio)", limit="required"
            )
        return {"upload_url": url, "model": pick_model(model, provider, stacklevel=stacklevel)}
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
        ids[field] = text or ""
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
