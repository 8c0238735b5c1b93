"""kie.ai's tables: its task API (``"kie.ai"``) and its old routes (``"kie.ai-legacy"``).

kie.ai moved its Suno endpoints to its task API: ``POST /api/v1/jobs/createTask`` with
``{"model": "ai-music-api/replace-section", "callBackUrl": ..., "input": {snake_case}}``
answers ``data.taskId``; ``GET /api/v1/jobs/recordInfo?taskId=`` answers ``data.state``
(waiting | queuing | generating | success | fail), ``data.resultJson`` (a JSON string) and
``failCode``/``failMsg``.  The old routes (the family's, camelCase) are documented under its
"old-model" pages and stay available as their own profile.
"""

from __future__ import annotations

from .base import CodeInfo, Provider, RateLimit, SectionRules
from .sunoapi import (
    API_FIELDS,
    CAMEL,
    CODES,
    CURRENT_MODELS,
    DEFAULT_MODEL,
    DEPRECATED_MODELS,
    GENERATE_REQUIRED,
    MAX_CHARS,
    MEDIA_REQUIRED,
    REPLACE_CODES,
    REPLACE_PAGE,
    REPLACE_REQUIRED,
    ROUTES,
    WEIGHTS_PAGE,
    replace_fields,
)

DOCS = "https://docs.kie.ai"
TASK_PAGE = f"{DOCS}/suno-api/replace-section"  # OpenAPI: POST /api/v1/jobs/createTask
DETAIL_PAGE = f"{DOCS}/market/common/get-task-detail"  # recordInfo: states, codes
OLD = f"{DOCS}/old-model/suno-api"
CREDITS_PAGE = f"{DOCS}/common-api/get-account-credits"
WEBHOOK_PAGE = f"{DOCS}/common-api/webhook-verification"

# recordInfo's ``state`` values (get-task-detail): the first three mean "keep polling".
TASK_STATES_PENDING = ("waiting", "queuing", "generating")
TASK_STATE_SUCCESS = "success"
TASK_STATE_FAIL = "fail"
TASK_STATES = (*TASK_STATES_PENDING, TASK_STATE_SUCCESS, TASK_STATE_FAIL)
# Its webhook example names the completion callback so.
TASK_CALLBACK_TYPE = "task_completed"

# The task API's table (get-task-detail lists 200, 401, 402, 404, 422, 429, 455, 500, 501,
# 505; the reference adds 433 for a sub-key over its own limit): on kie.ai 402 is credits
# and 429 a rate limit (about 20 requests per 10 s per key).
TASK_CODES = {
    200: CodeInfo("success", "ok"),
    401: CodeInfo("unauthorized: missing or wrong API key", "auth"),
    402: CodeInfo("insufficient credits", "credits"),
    404: CodeInfo("not found", "not_found"),
    422: CodeInfo("validation error", "validation"),
    429: CodeInfo("rate limited: too many requests", "rate_limit"),
    433: CodeInfo(
        "this sub-key's usage limit is reached: raise it on kie.ai's dashboard or use another key",
        "key_limit",
    ),
    455: CodeInfo("service under maintenance", "maintenance"),
    500: CodeInfo("server error", "server", "both"),
    501: CodeInfo("generation failed", "failure", "failure"),
    505: CodeInfo("feature disabled", "failure", "failure"),
}

# Inside ``input`` every field is snake_case: the Python argument's own name.
SNAKE = {name: name for name in (*API_FIELDS, *CAMEL)}

_SECTION_NOTE = "kie.ai's pages (older revision) state 6-60 s and at most 50 %."

_KIE_RATE_LIMIT = RateLimit(
    requests=20, per_s=10.0, per_task_poll_per_s=3.0, code=429, source="https://docs.kie.ai/"
)

KIE_AI = Provider(
    name="kie.ai",
    base_url="https://api.kie.ai",
    routes={
        "replace-section": "/api/v1/jobs/createTask",
        "record-info": "/api/v1/jobs/recordInfo",
        "credits": "/api/v1/chat/credit",
    },
    section=SectionRules(min_s=6.0, max_s=60.0, max_fraction=0.5, decimals=2, source=TASK_PAGE),
    required={
        "replace-section": (
            "prompt",
            "tags",
            "title",
            "infill_start_s",
            "infill_end_s",
            "full_lyrics",
        ),
        "record-info": ("taskId",),
        "credits": (),
    },
    codes={
        "replace-section": TASK_CODES,
        "record-info": TASK_CODES,
        "credits": TASK_CODES,
        "callback": CODES["callback"],
    },
    signs_webhooks=True,
    sources={
        "replace-section": TASK_PAGE,
        "section": TASK_PAGE,
        "models": REPLACE_PAGE,
        "fields": TASK_PAGE,
        "fields.decimals": WEIGHTS_PAGE,
        "task_api": TASK_PAGE,
        "codes.replace-section": TASK_PAGE,  # 402 credits, 429 rate limit, 433 sub-key
        "codes.record-info": DETAIL_PAGE,  # 200 401 402 404 422 429 455 500 501 505
        "codes.generic": DETAIL_PAGE,
        "rate_limit": DETAIL_PAGE,
        "generate": f"{OLD}/generate-music",
        "record-info": DETAIL_PAGE,
        "callbacks.replace-section": DETAIL_PAGE,
        "credits": CREDITS_PAGE,
        "signs_webhooks": WEBHOOK_PAGE,
    },
    notes={
        "section": _SECTION_NOTE,
        "task_api": (
            "createTask with model 'ai-music-api/replace-section' and snake_case input; "
            "full_lyrics is always required; the page names the original by task_id + "
            "audio_id only (no upload mode)."
        ),
        "generate": (
            "suno_nb does not cover generate on kie.ai's task API: use the provider "
            "'kie.ai-legacy' (its old-model pages) to create originals."
        ),
        "resultJson": (
            "recordInfo's resultJson is a JSON string; its track list is read from "
            "sunoData/data/tracks (either spelling), else from resultUrls."
        ),
        "rate_limit": "about 20 requests per 10 s per key; beyond it the answer is 429.",
    },
    current_models=CURRENT_MODELS,
    deprecated_models=DEPRECATED_MODELS,
    default_model=DEFAULT_MODEL,
    max_chars=MAX_CHARS,
    fields=replace_fields(SNAKE, TASK_PAGE),
    api_fields={**SNAKE, "callback_url": "callBackUrl"},
    api="task",
    task_models={"replace-section": "ai-music-api/replace-section"},
    upload_mode=False,
    # 20 new requests per 10 s per key (HTTP 429 beyond it), docs.kie.ai's getting-started
    # page; record-info <= 3 queries/s per task: https://docs.kie.ai/suno-api/get-music-details
    rate_limit=_KIE_RATE_LIMIT,
)

KIE_AI_LEGACY = Provider(
    name="kie.ai-legacy",
    base_url="https://api.kie.ai",
    routes={**ROUTES, "credits": "/api/v1/chat/credit"},
    section=SectionRules(
        min_s=6.0, max_s=60.0, max_fraction=0.5, decimals=2, source=f"{OLD}/replace-section"
    ),
    required={
        # The old page lists fullLyrics as optional (its example request still sends it).
        "replace-section": REPLACE_REQUIRED,
        "generate": GENERATE_REQUIRED,
        "record-info": ("taskId",),
        "credits": (),
        **MEDIA_REQUIRED,
    },
    codes={**CODES, "replace-section": REPLACE_CODES},
    signs_webhooks=True,
    sources={
        "replace-section": f"{OLD}/replace-section",
        "section": f"{OLD}/replace-section",
        "models": REPLACE_PAGE,
        "fields": REPLACE_PAGE,
        "fields.decimals": WEIGHTS_PAGE,
        "codes.replace-section": REPLACE_PAGE,
        "codes.generic": f"{OLD}/get-music-details",
        "generate": f"{OLD}/generate-music",
        "callbacks.generate": f"{OLD}/generate-music-callbacks",
        "callbacks.replace-section": f"{OLD}/replace-section-callbacks",
        "record-info": f"{OLD}/get-music-details",
        "credits": CREDITS_PAGE,
        "timestamped-lyrics": f"{DOCS}/suno-api/get-timestamped-lyrics",
        "signs_webhooks": WEBHOOK_PAGE,
        "wav": f"{DOCS}/cn/suno-api/convert-to-wav",
        "wav-info": f"{DOCS}/suno-api/get-wav-details",
        "callbacks.wav": f"{DOCS}/suno-api/convert-to-wav-callbacks",
        "callbacks.wav.snake": "https://dog-test.kie.ai/cn/suno-api/convert-to-wav-callbacks-cn",
        "recovery": f"{DOCS}/old-model/cn/suno-api/recovery-audio",
    },
    notes={
        "recovery": (
            "kie.ai's old-model pages list Recovery Audio (POST); its request and callback "
            "are taken to be docs.sunoapi.org's (same family)."
        ),
        "required.replace-section": (
            "kie.ai's old replace-section page lists fullLyrics under optional parameters, "
            "while docs.sunoapi.org requires it."
        ),
        "section": _SECTION_NOTE,
        "fields": (
            "the optional fields are taken to be docs.sunoapi.org's (same family); the "
            "old-model page was not checked for them."
        ),
        "legacy": (
            "kie.ai's old routes (camelCase bodies under /api/v1/generate/...), documented "
            "under its old-model pages; its current Suno API is the task API ('kie.ai')."
        ),
    },
    current_models=CURRENT_MODELS,
    deprecated_models=DEPRECATED_MODELS,
    default_model=DEFAULT_MODEL,
    max_chars=MAX_CHARS,
    fields=replace_fields(CAMEL, REPLACE_PAGE),
    api_fields=API_FIELDS,
    rate_limit=_KIE_RATE_LIMIT,
)
