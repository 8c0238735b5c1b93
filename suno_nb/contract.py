"""The service's contract as data: one table per provider, every fact with its source.

Routes, the replace-section rules (section length, share of the original, decimals),
required request fields and the code tables of each endpoint live here and nowhere else:
the client's pre-validation and error mapping, :mod:`suno_nb.rules`, the sandbox and the
widgets all read a :class:`Provider`.  When a provider changes its docs, one edit here
follows them.

>>> from suno_nb.contract import get_provider
>>> get_provider("kie.ai").routes["credits"]
'/api/v1/chat/credit'

A user with another host passes their own provider, usually a copy of a built-in one::

    import dataclasses
    mine = dataclasses.replace(get_provider(), name="my-proxy", base_url="https://proxy.example")

Floors: bottom floor beside ``errors``; it imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "API_FIELDS",
    "DEFAULT_PROVIDER",
    "ENDPOINTS",
    "KINDS",
    "MODELS",
    "PROVIDERS",
    "CodeInfo",
    "Provider",
    "SectionRules",
    "get_provider",
]

# The endpoints a provider table describes (keys of ``routes``, ``required``, ``codes``).
ENDPOINTS = ("replace-section", "generate", "record-info", "credits", "callback")

# What a code means to a caller; the client maps each kind to one exception type.
KINDS = (
    "ok",
    "validation",  # the request's parameters were refused (400, 413, 422)
    "auth",  # 401
    "credits",  # not enough credits (402 on replace-section, 429 elsewhere)
    "not_found",  # 404
    "rate_limit",  # too many requests (429 on replace-section, 405/430 elsewhere)
    "conflict",  # 409
    "resource",  # 451: a resource (image, audio) named in the request could not be fetched
    "maintenance",  # 455
    "server",  # 500 and other 5xx
    "failure",  # only in failed tasks/callbacks: generation failed, timed out, ...
)

# Models that upload mode (uploadUrl + model) and /generate accept, newest last.
MODELS = ("V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5", "V5_5")

_SUNOAPI_DOCS = "https://docs.sunoapi.org/suno-api"

# Python argument (snake_case) -> request field (the API's camelCase), for messages that
# must name the field either way.
API_FIELDS = {
    "task_id": "taskId",
    "audio_id": "audioId",
    "upload_url": "uploadUrl",
    "infill_start_s": "infillStartS",
    "infill_end_s": "infillEndS",
    "negative_tags": "negativeTags",
    "full_lyrics": "fullLyrics",
    "callback_url": "callBackUrl",
    "custom_mode": "customMode",
}

# Longest strings the family accepts (the service answers 413 beyond them), per field.
_MAX_CHARS = {
    "prompt": 5000,
    "tags": 1000,
    "style": 1000,
    "title": 100,
    "negative_tags": 1000,
    "full_lyrics": 5000,
    "prompt_non_custom": 500,  # /generate's prompt when customMode is false
}
_KIE_DOCS = "https://docs.kie.ai/suno-api"


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


def _frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Provider:
    """Everything suno_nb assumes about one host of the API.

    ``routes`` (endpoint -> path), ``section`` (replace-section rules), ``required``
    (endpoint -> required request fields, API spelling), ``codes`` (endpoint -> code ->
    :class:`CodeInfo`), ``signs_webhooks`` (callbacks carry ``X-Webhook-Signature``),
    ``sources`` (fact -> docs URL), ``notes`` (where pages disagree), ``models``.
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
    notes: Mapping[str, str] = field(default_factory=lambda: _frozen({}))
    models: tuple[str, ...] = MODELS
    max_chars: Mapping[str, int] = field(default_factory=lambda: _frozen(_MAX_CHARS))

    def __post_init__(self) -> None:
        for name in ("routes", "required", "sources", "notes", "max_chars"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "codes", _frozen({k: _frozen(v) for k, v in self.codes.items()}))
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        missing = [
            e
            for e in ("replace-section", "generate", "record-info", "credits")
            if e not in self.routes
        ]
        if missing:
            raise ValueError(f"provider {self.name!r} has no route for {', '.join(missing)}")

    def code(self, endpoint: str, code: int) -> CodeInfo | None:
        """The documented meaning of ``code`` on ``endpoint`` (None when undocumented)."""
        return self.codes.get(endpoint, {}).get(code)

    def requires(self, endpoint: str, api_field: str) -> bool:
        """Does ``endpoint`` require ``api_field`` (API spelling, e.g. ``fullLyrics``)?"""
        return api_field in self.required.get(endpoint, ())

    def __repr__(self) -> str:
        rules = self.section.describe()
        return f"Provider({self.name!r}, base_url={self.base_url!r}, section={rules!r})"


# --- code tables -----------------------------------------------------------------------------

# Replace-section's own table (docs.sunoapi.org/suno-api/replace-section): 402 is credits and
# 429 is a rate limit here, unlike the generic table below.
_REPLACE_CODES = {
    200: CodeInfo("success", "ok"),
    401: CodeInfo("unauthorized: missing or wrong API key", "auth"),
    402: CodeInfo("insufficient credits", "credits"),
    404: CodeInfo("not found", "not_found"),
    409: CodeInfo("conflict", "conflict"),
    422: CodeInfo("validation error", "validation"),
    429: CodeInfo("rate limited: too many requests", "rate_limit"),
    451: CodeInfo("could not fetch a resource named in the request", "resource"),
    455: CodeInfo("service under maintenance", "maintenance"),
    500: CodeInfo("server error", "server", "both"),
    408: CodeInfo("upstream timeout: no result for more than 10 minutes", "failure", "failure"),
    501: CodeInfo("generation failed", "failure", "failure"),
    505: CodeInfo("feature disabled", "failure", "failure"),
}

# The generic table of the other endpoints of the family (record-info, credits, generate).
_GENERIC_CODES = {
    200: CodeInfo("success", "ok"),
    400: CodeInfo("bad parameters", "validation"),
    401: CodeInfo("unauthorized: missing or wrong API key", "auth"),
    404: CodeInfo("not found", "not_found"),
    405: CodeInfo("rate limit exceeded", "rate_limit"),
    413: CodeInfo("prompt or parameter too long", "validation"),
    429: CodeInfo("insufficient credits", "credits"),
    430: CodeInfo("calls too frequent", "rate_limit"),
    455: CodeInfo("service under maintenance", "maintenance"),
    500: CodeInfo("server error", "server"),
}

# Codes in callbacks (seeds; generate-music-callbacks adds 413 and 531's refund note).
_CALLBACK_CODES = {
    200: CodeInfo("success", "ok"),
    400: CodeInfo("validation error (e.g. copyrighted lyrics)", "failure", "failure"),
    408: CodeInfo("timeout", "failure", "failure"),
    413: CodeInfo("uploaded audio matches an existing work", "failure", "failure"),
    500: CodeInfo("server error", "failure", "failure"),
    501: CodeInfo("audio generation failed", "failure", "failure"),
    531: CodeInfo("generation failed, credits refunded", "failure", "failure"),
}

_CODES = {
    "replace-section": _REPLACE_CODES,
    "generate": _GENERIC_CODES,
    "record-info": _GENERIC_CODES,
    "credits": _GENERIC_CODES,
    "callback": _CALLBACK_CODES,
    "timestamped-lyrics": _GENERIC_CODES,  # the page lists the generic codes
}

_ROUTES = {
    "replace-section": "/api/v1/generate/replace-section",
    "generate": "/api/v1/generate",
    "record-info": "/api/v1/generate/record-info",
    "credits": "/api/v1/generate/credit",
    # {taskId, audioId} -> data.alignedWords[{word, success, startS, endS, palign}], ...
    "timestamped-lyrics": "/api/v1/generate/get-timestamped-lyrics",
}

_REPLACE_REQUIRED = ("prompt", "tags", "title", "infillStartS", "infillEndS")

SUNOAPI_ORG = Provider(
    name="sunoapi.org",
    base_url="https://api.sunoapi.org",
    routes=_ROUTES,
    section=SectionRules(
        min_s=10.0,
        max_s=None,
        max_fraction=0.5,
        decimals=2,
        source=f"{_SUNOAPI_DOCS}/replace-section",
    ),
    required={
        "replace-section": (*_REPLACE_REQUIRED, "fullLyrics"),
        "generate": ("callBackUrl", "customMode", "instrumental", "model"),
        "record-info": ("taskId",),
        "credits": (),
    },
    codes=_CODES,
    signs_webhooks=False,
    sources={
        "replace-section": f"{_SUNOAPI_DOCS}/replace-section",
        "section": f"{_SUNOAPI_DOCS}/replace-section",
        "codes.replace-section": f"{_SUNOAPI_DOCS}/replace-section",
        "codes.generic": f"{_SUNOAPI_DOCS}/get-music-generation-details",
        "generate": f"{_SUNOAPI_DOCS}/generate-music",
        "callbacks.generate": f"{_SUNOAPI_DOCS}/generate-music-callbacks",
        "callbacks.replace-section": f"{_SUNOAPI_DOCS}/replace-section-callbacks",
        "record-info": f"{_SUNOAPI_DOCS}/get-music-generation-details",
        "credits": f"{_SUNOAPI_DOCS}/get-remaining-credits",
        "timestamped-lyrics": f"{_SUNOAPI_DOCS}/get-timestamped-lyrics",
        "signs_webhooks": "no signature scheme is documented on docs.sunoapi.org",
    },
    notes={
        "section": (
            "The current English page: at least 10 s, at most 50 % of the original, no "
            "maximum length; the Chinese page and older pages say 6-60 s."
        ),
    },
)

KIE_AI = Provider(
    name="kie.ai",
    base_url="https://api.kie.ai",
    routes={**_ROUTES, "credits": "/api/v1/chat/credit"},
    section=SectionRules(
        min_s=6.0,
        max_s=60.0,
        max_fraction=0.5,
        decimals=2,
        source=f"{_KIE_DOCS}/replace-section",
    ),
    required={
        # kie.ai's page lists fullLyrics as optional (its example request still sends it).
        "replace-section": _REPLACE_REQUIRED,
        "generate": ("callBackUrl", "customMode", "instrumental", "model"),
        "record-info": ("taskId",),
        "credits": (),
    },
    codes=_CODES,
    signs_webhooks=True,
    sources={
        "replace-section": f"{_KIE_DOCS}/replace-section",
        "section": f"{_KIE_DOCS}/replace-section",
        "codes.replace-section": f"{_SUNOAPI_DOCS}/replace-section",
        "codes.generic": f"{_KIE_DOCS}/get-music-details",
        "generate": f"{_KIE_DOCS}/generate-music",
        "callbacks.generate": f"{_KIE_DOCS}/generate-music-callbacks",
        "callbacks.replace-section": f"{_KIE_DOCS}/replace-section-callbacks",
        "record-info": f"{_KIE_DOCS}/get-music-details",
        "credits": "https://docs.kie.ai/common-api/get-account-credits",
        "timestamped-lyrics": f"{_KIE_DOCS}/get-timestamped-lyrics",
        "signs_webhooks": "https://docs.kie.ai/common-api/webhook-verification",
    },
    notes={
        "required.replace-section": (
            "kie.ai's replace-section page lists fullLyrics under optional parameters, "
            "while docs.sunoapi.org requires it."
        ),
        "section": "kie.ai's page (older revision) states 6-60 s and at most 50 %.",
        "jobs": (
            "kie.ai's newest models use POST /api/v1/jobs/createTask with snake_case "
            "fields: a different API, not covered here."
        ),
    },
)

PROVIDERS: dict[str, Provider] = {p.name: p for p in (SUNOAPI_ORG, KIE_AI)}
DEFAULT_PROVIDER = SUNOAPI_ORG.name


def get_provider(p: str | Provider | None = None) -> Provider:
    """The provider named ``p`` (None: the default, ``"sunoapi.org"``), or ``p`` itself."""
    if p is None:
        return PROVIDERS[DEFAULT_PROVIDER]
    if isinstance(p, Provider):
        return p
    if isinstance(p, str) and p.strip().lower() in PROVIDERS:
        return PROVIDERS[p.strip().lower()]
    raise ValueError(
        f"provider must be one of {', '.join(map(repr, PROVIDERS))} or a "
        f"suno_nb.contract.Provider, got {p!r}"
    )
