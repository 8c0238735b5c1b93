"""The shapes of the contract: what a provider table is made of.

Pure data classes, no facts: the facts are in :mod:`.sunoapi` and :mod:`.kie`, one table per
provider, each with its sources.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# The endpoints a provider table describes (keys of ``routes``, ``required``, ``codes``).
ENDPOINTS = ("replace-section", "generate", "record-info", "credits", "callback")
# Endpoints only some providers have (a client call without the route names the provider):
# WAV conversion, its details (polling), Recovery Audio, and their callbacks' code tables.
MEDIA_ENDPOINTS = ("wav", "wav-info", "recovery", "wav-callback", "recovery-callback")

# What a code means to a caller; the client maps each kind to one exception type.
KINDS = (
    "ok",
    "validation",  # the request's parameters were refused (400, 413, 422)
    "auth",  # 401
    "credits",  # not enough credits (402 on replace-section, 429 elsewhere)
    "not_found",  # 404
    "rate_limit",  # too many requests (429 on replace-section, 405/430 elsewhere)
    "key_limit",  # kie.ai's task API: the sub-key's own usage limit is reached (433)
    "conflict",  # 409
    "resource",  # 451: a resource (image, audio) named in the request could not be fetched
    "maintenance",  # 455
    "server",  # 500 and other 5xx
    "failure",  # only in failed tasks/callbacks: generation failed, timed out, ...
)

# How a provider's requests are shaped: the family's own routes with camelCase bodies, or
# kie.ai's task API (createTask with {"model", "callBackUrl", "input": {snake_case}}).
API_STYLES = ("legacy", "task")

# The kinds of value an optional request field takes (see FieldSpec).
FIELD_KINDS = ("text", "number", "int", "choice")


def frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    """A read-only copy of ``mapping``."""
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class SectionRules:
    """Replace-section rules: length ``min_s``..``max_s`` (None: no maximum stated), at most
    ``max_fraction`` of the original, times rounded to ``decimals``; ``source`` is the page."""

    min_s: float
    max_s: float | None
    max_fraction: float
    decimals: int
    source: str

    def __post_init__(self) -> None:
        if self.min_s < 0 or (self.max_s is not None and self.max_s < self.min_s):
            raise ValueError(f"section rules need 0 <= min_s <= max_s, got {self}")
        if not 0 < self.max_fraction <= 1:
            raise ValueError(f"max_fraction must be in (0, 1], got {self.max_fraction!r}")
        if self.decimals < 0:
            raise ValueError(f"decimals must be >= 0, got {self.decimals!r}")

    def describe(self) -> str:
        """The rules in one phrase, for messages and widgets."""
        top = f"{self.min_s:g}-{self.max_s:g} s" if self.max_s else f"at least {self.min_s:g} s"
        return f"{top}, at most {self.max_fraction:.0%} of the original"


@dataclass(frozen=True)
class CodeInfo:
    """One documented code: what it means, its ``kind`` (see :data:`KINDS`), and whether it
    comes in a request's reply (``reply``) or only in a failed task (``failure``)."""

    meaning: str
    kind: str
    where: str = "reply"  # "reply" | "failure" | "both"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.where not in ("reply", "failure", "both"):
            raise ValueError(f"where must be reply, failure or both, got {self.where!r}")


@dataclass(frozen=True)
class RateLimit:
    """How fast one API key may call: ``requests`` in any ``per_s`` seconds, and at most
    ``per_task_poll_per_s`` record-info queries a second for one task (None: none stated);
    ``code`` is a refusal's code (also its HTTP status when it is 429); ``source`` is the
    page.  :mod:`suno_nb.throttle` keeps the client under it; the sandbox enforces it."""

    requests: int
    per_s: float
    per_task_poll_per_s: float | None = None
    code: int = 430
    source: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise TypeError(f"requests must be an int, got {self.requests!r}")
        if self.requests < 1 or not self.per_s > 0:
            raise ValueError(f"a rate limit needs requests >= 1 and per_s > 0, got {self}")
        if self.per_task_poll_per_s is not None and not self.per_task_poll_per_s > 0:
            raise ValueError(f"per_task_poll_per_s must be > 0 or None, got {self}")

    def describe(self) -> str:
        """The limit in one phrase, for log lines and status text."""
        text = f"{self.requests} requests per {self.per_s:g} s per API key"
        if self.per_task_poll_per_s is not None:
            text += f", {self.per_task_poll_per_s:g} record-info queries per s per task"
        return text


@dataclass(frozen=True)
class FieldSpec:
    """One optional replace-section field: the Python argument ``name``, its request field
    ``api`` (the provider's spelling), its ``kind`` (see :data:`FIELD_KINDS`) and limits:
    ``minimum``/``maximum`` and ``decimals`` (a multipleOf 10**-decimals) for numbers,
    ``choices`` for a choice, ``max_chars`` for text; ``default`` as documented (None:
    the service decides); ``source`` is the page."""

    name: str
    api: str
    kind: str
    source: str
    minimum: float | None = None
    maximum: float | None = None
    decimals: int | None = None
    choices: tuple[str, ...] = ()
    max_chars: int | None = None
    default: Any = None

    def __post_init__(self) -> None:
        if self.kind not in FIELD_KINDS:
            raise ValueError(f"kind must be one of {FIELD_KINDS}, got {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"field {self.name!r} is a choice without choices")
        lo, hi = self.minimum, self.maximum
        if lo is not None and hi is not None and not (math.isfinite(lo) and lo <= hi):
            raise ValueError(f"field {self.name!r} needs minimum <= maximum, got {lo}, {hi}")

    def describe(self) -> str:
        """The field's limit in one phrase, for messages."""
        if self.kind == "choice":
            return "one of " + ", ".join(map(repr, self.choices))
        if self.kind == "text":
            most = f" of at most {self.max_chars} characters" if self.max_chars else ""
            return f"a non-empty string{most}"
        what = "an integer" if self.kind == "int" else "a number"
        text = f"{what} from {self.minimum:g} to {self.maximum:g}"
        if self.decimals is not None:
            text += f" with at most {self.decimals} decimals"
        return text


@dataclass(frozen=True)
class Provider:
    """Everything suno_nb assumes about one host of the API.

    ``routes`` (endpoint -> path), ``section`` (replace-section rules), ``required``
    (endpoint -> required request fields, API spelling), ``codes`` (endpoint -> code ->
    :class:`CodeInfo`), ``signs_webhooks`` (callbacks carry ``X-Webhook-Signature``),
    ``sources`` (fact -> docs URL), ``notes`` (where pages disagree).

    Models: ``models`` is every model the service accepts (deprecated ones first, the
    default last), ``current_models``/``deprecated_models`` split it, ``default_model`` is
    the documented default.  ``fields``: the optional replace-section fields (Python name
    -> :class:`FieldSpec`).  ``api_fields``: Python argument -> request field for the
    required/mode fields.  ``api``: ``"legacy"`` or ``"task"`` (see :data:`API_STYLES`);
    ``task_models``: endpoint -> the createTask ``model`` on the task API.
    ``upload_mode``: does replace-section take ``uploadUrl`` + ``model``?
    ``rate_limit``: a :class:`RateLimit` (None: no limit known).
    Frozen and :func:`dataclasses.replace` friendly.
    """

    name: str
    base_url: str
    routes: Mapping[str, str]
    section: SectionRules
    required: Mapping[str, tuple[str, ...]]
    codes: Mapping[str, Mapping[int, CodeInfo]]
    signs_webhooks: bool
    sources: Mapping[str, str]
    notes: Mapping[str, str] = field(default_factory=lambda: frozen({}))
    current_models: tuple[str, ...] = ()
    deprecated_models: tuple[str, ...] = ()
    default_model: str = ""
    max_chars: Mapping[str, int] = field(default_factory=lambda: frozen({}))
    fields: Mapping[str, FieldSpec] = field(default_factory=lambda: frozen({}))
    api_fields: Mapping[str, str] = field(default_factory=lambda: frozen({}))
    api: str = "legacy"
    task_models: Mapping[str, str] = field(default_factory=lambda: frozen({}))
    upload_mode: bool = True
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        for name in (
            "routes",
            "required",
            "sources",
            "notes",
            "max_chars",
            "fields",
            "api_fields",
            "task_models",
        ):
            object.__setattr__(self, name, frozen(getattr(self, name)))
        object.__setattr__(self, "codes", frozen({k: frozen(v) for k, v in self.codes.items()}))
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        missing = [e for e in ("replace-section", "record-info", "credits") if e not in self.routes]
        if missing:
            raise ValueError(f"provider {self.name!r} has no route for {', '.join(missing)}")
        if self.api not in API_STYLES:
            raise ValueError(f"api must be one of {API_STYLES}, got {self.api!r}")
        if self.default_model not in self.current_models:
            raise ValueError(
                f"default_model {self.default_model!r} is not one of the current models "
                f"{self.current_models}"
            )

    @property
    def models(self) -> tuple[str, ...]:
        """Every accepted model: the deprecated ones, then the current ones, default last."""
        current = tuple(m for m in self.current_models if m != self.default_model)
        return (*self.deprecated_models, *current, self.default_model)

    def code(self, endpoint: str, code: int) -> CodeInfo | None:
        """The documented meaning of ``code`` on ``endpoint`` (None when undocumented)."""
        return self.codes.get(endpoint, {}).get(code)

    def requires(self, endpoint: str, api_field: str) -> bool:
        """Does ``endpoint`` require ``api_field`` (API spelling, e.g. ``fullLyrics``)?"""
        return api_field in self.required.get(endpoint, ())

    def api_name(self, name: str) -> str:
        """The request field for the Python argument ``name`` in this provider's spelling."""
        spec = self.fields.get(name)
        if spec is not None:
            return spec.api
        return self.api_fields.get(name, name)

    def __repr__(self) -> str:
        rules = self.section.describe()
        return f"Provider({self.name!r}, base_url={self.base_url!r}, section={rules!r})"
