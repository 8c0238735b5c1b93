"""The service's contract as data: one table per provider, every fact with its source.

Routes, the replace-section rules (section length, share of the original, decimals),
models (current, deprecated, default), the optional fields with their limits, required
request fields and the code tables of each endpoint live here and nowhere else: the
client's pre-validation and error mapping, :mod:`suno_nb.rules`, the sandbox and the
widgets all read a :class:`Provider`.  When a provider changes its docs, one edit here
follows them.  The tables: :mod:`.sunoapi` (sunoapi.org, the default) and :mod:`.kie`
(kie.ai's task API, and its old routes as ``"kie.ai-legacy"``); their shapes: :mod:`.base`.

>>> from suno_nb.contract import get_provider
>>> get_provider("kie.ai").routes["credits"]
'/api/v1/chat/credit'
>>> get_provider().default_model
'V6'

A user with another host passes their own provider, usually a copy of a built-in one::

    import dataclasses
    mine = dataclasses.replace(get_provider(), name="my-proxy", base_url="https://proxy.example")

Floors: bottom floor beside ``errors``; it imports nothing from the package.
"""

from __future__ import annotations

from .base import (
    API_STYLES,
    ENDPOINTS,
    FIELD_KINDS,
    KINDS,
    MEDIA_ENDPOINTS,
    CodeInfo,
    FieldSpec,
    Provider,
    RateLimit,
    SectionRules,
)
from .kie import (
    KIE_AI,
    KIE_AI_LEGACY,
    TASK_CALLBACK_TYPE,
    TASK_STATE_FAIL,
    TASK_STATE_SUCCESS,
    TASK_STATES,
    TASK_STATES_PENDING,
)
from .sunoapi import API_FIELDS, RETENTION_DAYS, RETENTION_SOURCE, SUNOAPI_ORG

__all__ = [
    "API_FIELDS",
    "API_STYLES",
    "DEFAULT_PROVIDER",
    "ENDPOINTS",
    "FIELD_KINDS",
    "KINDS",
    "MEDIA_ENDPOINTS",
    "MODELS",
    "PROVIDERS",
    "RETENTION_DAYS",
    "RETENTION_SOURCE",
    "TASK_CALLBACK_TYPE",
    "TASK_STATES",
    "TASK_STATES_PENDING",
    "TASK_STATE_FAIL",
    "TASK_STATE_SUCCESS",
    "CodeInfo",
    "FieldSpec",
    "Provider",
    "RateLimit",
    "SectionRules",
    "get_provider",
]

# Every model the default provider accepts (deprecated first, the default last).
MODELS = SUNOAPI_ORG.models

PROVIDERS: dict[str, Provider] = {p.name: p for p in (SUNOAPI_ORG, KIE_AI, KIE_AI_LEGACY)}
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
