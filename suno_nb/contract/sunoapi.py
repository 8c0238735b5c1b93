"""sunoapi.org's table (the default provider), every fact with its page.

Also the family's code tables (replace-section's own, the generic one, the callbacks'),
which kie.ai's legacy routes share.
"""

from __future__ import annotations

from .base import CodeInfo, FieldSpec, Provider, RateLimit, SectionRules

DOCS = "https://docs.sunoapi.org/suno-api"
REPLACE_PAGE = f"{DOCS}/replace-section"

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
MAX_CHARS = {
    "prompt": 5000,
    "tags": 1000,
    "style": 1000,
    "title": 100,
    "negative_tags": 1000,
    "full_lyrics": 5000,
    "lyrics": 5000,  # the replaced segment's lyrics: "V6 maximum 5000 characters"
    "prompt_non_custom": 500,  # /generate's prompt when customMode is false
}

# Models (replace-section page and its OpenAPI, checked 2026-12-06): V6 is the default;
# the older ones are "kept only for backward compatibility".
CURRENT_MODELS = ("V6", "V6_WILD", "V6_MINI")
DEPRECATED_MODELS = ("V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5", "V5_5")
DEFAULT_MODEL = "V6"

# kie.ai's generate page spells out the 2-decimal rule the OpenAPI writes as multipleOf
# 0.01 ("范围 0–1, 保留两位小数", for all three weights).
WEIGHTS_PAGE = "https://dog-test.kie.ai/cn/suno-api/generate-music-ch"


def replace_fields(spell: dict[str, str], source: str) -> dict[str, FieldSpec]:
    """The optional replace-section fields of the current pages, spelled by ``spell``
    (Python name -> request field).  One list for both providers: only spelling differs."""

    def weight(name: str) -> FieldSpec:
        return FieldSpec(name, spell[name], "number", source, minimum=0, maximum=1, decimals=2)

    specs = [
        FieldSpec(name="lyrics", api=spell["lyrics"], kind="text", source=source, max_chars=5000),
        FieldSpec("vocal_gender", spell["vocal_gender"], "choice", source, choices=("m", "f")),
        weight("style_weight"),
        weight("weirdness_constraint"),
        weight("audio_weight"),
        FieldSpec("variety", spell["variety"], "int", source, minimum=0, maximum=4, default=1),
        FieldSpec("persona_id", spell["persona_id"], "text", source),
        FieldSpec(
            "persona_model",
            spell["persona_model"],
            "choice",
            source,
            choices=("style_persona", "voice_persona"),
            default="style_persona",
        ),
    ]
    return {s.name: s for s in specs}


CAMEL = {
    "lyrics": "lyrics",
    "vocal_gender": "vocalGender",
    "style_weight": "styleWeight",
    "weirdness_constraint": "weirdnessConstraint",
    "audio_weight": "audioWeight",
    "variety": "variety",
    "persona_id": "personaId",
    "persona_model": "personaModel",
}

# --- code tables -----------------------------------------------------------------------------

# Replace-section's own table (docs.sunoapi.org/suno-api/replace-section): 402 is credits and
# 429 is a rate limit here, unlike the generic table below.
REPLACE_CODES = {
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
# 430: sunoapi.org's answer beyond about 20 requests per 10 s per key.
GENERIC_CODES = {
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
CALLBACK_CODES = {
    200: CodeInfo("success", "ok"),
    400: CodeInfo("validation error (e.g. copyrighted lyrics)", "failure", "failure"),
    408: CodeInfo("timeout", "failure", "failure"),
    413: CodeInfo("uploaded audio matches an existing work", "failure", "failure"),
    500: CodeInfo("server error", "failure", "failure"),
    501: CodeInfo("audio generation failed", "failure", "failure"),
    531: CodeInfo("generation failed, credits refunded", "failure", "failure"),
}

# --- WAV conversion and Recovery Audio ----------------------------------------------------

WAV_PAGE = f"{DOCS}/convert-to-wav-format"  # POST /api/v1/wav/generate {taskId, audioId, cb}
WAV_CALLBACK_PAGE = f"{DOCS}/convert-to-wav-format-callbacks"
WAV_INFO_PAGE = f"{DOCS}/get-wav-conversion-details"  # GET /api/v1/wav/record-info?taskId=
WAV_INFO_CN_PAGE = "https://docs.sunoapi.org/cn/suno-api/get-wav-conversion-details"
WAV_CALLBACK_CN_KIE = "https://dog-test.kie.ai/cn/suno-api/convert-to-wav-callbacks-cn"
RECOVERY_PAGE = f"{DOCS}/recovery-audio"  # POST /api/v1/suno/recovery {sunoTaskId, cb}
RECOVERY_INFO_PAGE = f"{DOCS}/get-recovery-audio-details"
RECOVERY_CN_PAGE = "https://docs.sunoapi.org/cn/suno-api/recovery-audio"

# The WAV endpoints answer with the generic table plus 409 "WAV record already exists"
# (the Chinese details page lists 200 400 401 404 405 409 413 429 430 455 500).
WAV_CODES = {**GENERIC_CODES, 409: CodeInfo("conflict: a WAV record already exists", "conflict")}

# WAV callbacks: 200; 400 bad parameters or an unsupported source format; 451 the source
# audio could not be downloaded; 500 server error (sunoapi.org's callbacks page); kie.ai's
# Chinese page adds 501 "WAV conversion failed".
WAV_CALLBACK_CODES = {
    200: CodeInfo("success: WAV conversion completed", "ok"),
    400: CodeInfo("bad parameters or unsupported source audio format", "failure", "failure"),
    451: CodeInfo("the source audio file could not be downloaded", "failure", "failure"),
    500: CodeInfo("server error: try again later", "failure", "failure"),
    501: CodeInfo("WAV conversion failed", "failure", "failure"),
}

# Recovery callbacks: task-level 200 when at least one track was recovered, 500 when every
# track failed; each track says ``status`` success|failed and, when failed, ``error``.
RECOVERY_CALLBACK_CODES = {
    200: CodeInfo("at least one track was recovered", "ok"),
    500: CodeInfo("every track failed to recover", "failure", "failure"),
}

# Recovery's per-track ``error`` values (get-recovery-audio-details), for messages.
RECOVERY_ERRORS = {
    "no_audio_id_mappings": "the track cannot be found for this task",
    "account_missing": "the source account is unavailable",
    "get_tokens_failed": "the service could not authenticate upstream",
    "feed_failed": "the service could not query the track upstream",
    "clip_error": "the upstream track is in an error state",
    "clip_not_complete": "the upstream track is not finished yet",
    "mango_transfer_failed": "the recovered file could not be transferred",
}

CODES = {
    "wav": WAV_CODES,
    "wav-info": WAV_CODES,
    "recovery": GENERIC_CODES,  # the Chinese recovery page lists exactly the generic codes
    "wav-callback": WAV_CALLBACK_CODES,
    "recovery-callback": RECOVERY_CALLBACK_CODES,
    "replace-section": REPLACE_CODES,
    "generate": GENERIC_CODES,
    "record-info": GENERIC_CODES,
    "credits": GENERIC_CODES,
    "callback": CALLBACK_CODES,
    "timestamped-lyrics": GENERIC_CODES,  # the page lists the generic codes
}

ROUTES = {
    "replace-section": "/api/v1/generate/replace-section",
    "generate": "/api/v1/generate",
    "record-info": "/api/v1/generate/record-info",
    "credits": "/api/v1/generate/credit",
    # {taskId, audioId} -> data.alignedWords[{word, success, startS, endS, palign}], ...
    "timestamped-lyrics": "/api/v1/generate/get-timestamped-lyrics",
    # {taskId, audioId, callBackUrl} -> data.taskId; callback data {audioWavUrl, task_id}
    "wav": "/api/v1/wav/generate",
    # ?taskId= -> data {taskId, musicId, successFlag, response.audioWavUrl, errorCode, ...}
    "wav-info": "/api/v1/wav/record-info",
    # {sunoTaskId, callBackUrl} -> data.task_id; callback {code, msg, task_id, data: [...]}
    "recovery": "/api/v1/suno/recovery",
}

# Required request fields of the media endpoints (API spelling).
MEDIA_REQUIRED = {
    "wav": ("taskId", "audioId", "callBackUrl"),
    "wav-info": ("taskId",),
    "recovery": ("sunoTaskId", "callBackUrl"),
}

# "Files are kept 14 days" (the replace-section page): after that a result's URLs are gone.
RETENTION_DAYS = 14
RETENTION_SOURCE = REPLACE_PAGE

REPLACE_REQUIRED = ("prompt", "tags", "title", "infillStartS", "infillEndS")
GENERATE_REQUIRED = ("callBackUrl", "customMode", "instrumental", "model")

SUNOAPI_ORG = Provider(
    name="sunoapi.org",
    base_url="https://api.sunoapi.org",
    routes=ROUTES,
    section=SectionRules(min_s=10.0, max_s=None, max_fraction=0.5, decimals=2, source=REPLACE_PAGE),
    required={
        "replace-section": (*REPLACE_REQUIRED, "fullLyrics"),
        "generate": GENERATE_REQUIRED,
        "record-info": ("taskId",),
        "credits": (),
        **MEDIA_REQUIRED,
    },
    codes=CODES,
    signs_webhooks=False,
    sources={
        "replace-section": REPLACE_PAGE,
        "section": REPLACE_PAGE,
        "models": REPLACE_PAGE,
        "fields": REPLACE_PAGE,
        "fields.decimals": WEIGHTS_PAGE,
        "codes.replace-section": REPLACE_PAGE,
        "codes.generic": f"{DOCS}/get-music-generation-details",
        "rate_limit": f"{DOCS}/get-music-generation-details",
        "generate": f"{DOCS}/generate-music",
        "callbacks.generate": f"{DOCS}/generate-music-callbacks",
        "callbacks.replace-section": f"{DOCS}/replace-section-callbacks",
        "record-info": f"{DOCS}/get-music-generation-details",
        "credits": f"{DOCS}/get-remaining-credits",
        "timestamped-lyrics": f"{DOCS}/get-timestamped-lyrics",
        "signs_webhooks": "no signature scheme is documented on docs.sunoapi.org",
        "wav": WAV_PAGE,
        "wav-info": WAV_INFO_PAGE,
        "codes.wav": WAV_INFO_CN_PAGE,
        "callbacks.wav": WAV_CALLBACK_PAGE,
        "callbacks.wav.snake": WAV_CALLBACK_CN_KIE,
        "recovery": RECOVERY_PAGE,
        "codes.recovery": RECOVERY_CN_PAGE,
        "callbacks.recovery": RECOVERY_CN_PAGE,
        "recovery.errors": RECOVERY_INFO_PAGE,
        "retention": RETENTION_SOURCE,
    },
    notes={
        "section": (
            "The current English page: at least 10 s, at most 50 % of the original, no "
            "maximum length; the Chinese page and older pages say 6-60 s."
        ),
        "models": (
            "V6 (default), V6_WILD, V6_MINI are current; V5_5, V5, V4_5PLUS, V4_5ALL, V4_5 "
            "and V4 are deprecated, kept only for backward compatibility."
        ),
        "fields": (
            "lyrics (the replaced segment's, V6 at most 5000 characters) takes priority "
            "over prompt; the endpoint always runs in custom mode."
        ),
        "rate_limit": "about 20 requests per 10 s per key; beyond it the answer is 430.",
        "callbacks.wav": (
            "sunoapi.org's WAV callback names the URL audioWavUrl; kie.ai's Chinese page "
            "spells it audio_wav_url: both are accepted. WAV files are kept 15 days "
            "(convert-to-wav-format) or 14 days (kie.ai's details page)."
        ),
        "recovery": (
            "sunoTaskId is the original music task's id; the answer's data.task_id is a "
            "recovery task id. The callback's data list follows the original's track order; "
            "recovered links may be .m4a. Its details endpoint (GET "
            "/api/v1/suno/recovery/record-info: 201 running, 200, 500) is documented but "
            "not used: its answer's shape is not shown on the page."
        ),
    },
    current_models=CURRENT_MODELS,
    deprecated_models=DEPRECATED_MODELS,
    default_model=DEFAULT_MODEL,
    max_chars=MAX_CHARS,
    fields=replace_fields(CAMEL, REPLACE_PAGE),
    api_fields=API_FIELDS,
    # "20 requests every 10 seconds" per key; beyond it code 430 "calls too frequent".
    rate_limit=RateLimit(requests=20, per_s=10.0, source="https://docs.sunoapi.org/"),
)
