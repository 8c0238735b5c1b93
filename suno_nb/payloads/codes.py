"""The callback status-code table (English and Chinese), the callback stages and the
record-info statuses, as data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..contract import get_provider


@dataclass(frozen=True)
class CodeInfo:
    """One row of the callback status-code table."""

    code: int
    meaning: str
    meaning_zh: str
    success: bool
    retryable: bool


# The seeds' words for each callback code, English (000) and the Chinese page's own (002),
# and whether a retry may help: (meaning, meaning_zh, retryable).  Which codes exist and
# which mean success is the contract's callback table (one place); a code listed here
# that the contract does not document fails at import.
_WORDS: dict[int, tuple[str, str, bool]] = {
    200: ("Success - Task completed successfully", "成功 - 请求已成功处理", False),
    400: ("Validation error - Parameter validation failed", "验证错误 - 参数验证失败", False),
    408: ("Timeout - Request timeout", "超出限制 - 超时", True),
    500: (
        "Server error - Unexpected error occurred",
        "服务器错误 - 处理请求时发生意外错误",
        True,
    ),
    501: ("Audio generation failed", "音频生成失败", True),
    531: (
        "Server error - Generation failed, credits refunded",
        "服务器错误 - 抱歉,由于问题生成失败。您的积分已退还。请重试",
        True,
    ),
}
_CONTRACT = get_provider().codes["callback"]

CALLBACK_CODES: dict[int, CodeInfo] = {
    code: CodeInfo(code, en, zh, _CONTRACT[code].kind == "ok", retryable)
    for code, (en, zh, retryable) in _WORDS.items()
}

# Callback stages (``data.callbackType``).  Generation callbacks come in stages: ``text``
# (lyrics ready), ``first`` (first track ready), then ``complete`` or ``error``; one provider
# names the failure stage ``failed``.  A stage nobody documented is still accepted and stored.
INTERIM_STAGES = ("text", "first")
FINAL_STAGES = ("complete", "error", "failed")
CALLBACK_TYPES = (*INTERIM_STAGES, *FINAL_STAGES)
MAX_STAGE = 32  # characters

# record-info ``status`` values.
PENDING_STATUSES = ("PENDING", "TEXT_SUCCESS", "FIRST_SUCCESS")
SUCCESS_STATUS = "SUCCESS"
FAILED_STATUSES = (
    "CREATE_TASK_FAILED",
    "GENERATE_AUDIO_FAILED",
    "CALLBACK_EXCEPTION",
    "SENSITIVE_WORD_ERROR",
)
RECORD_STATUSES = (*PENDING_STATUSES, SUCCESS_STATUS, *FAILED_STATUSES)
STAGE_OF_STATUS = {"TEXT_SUCCESS": "text", "FIRST_SUCCESS": "first"}  # non-final stages


def code_table() -> list[dict[str, Any]]:
    """The status-code table as records (``pandas.DataFrame(code_table())`` shows it)."""
    return [
        {
            "code": c.code,
            "meaning": c.meaning,
            "meaning_zh": c.meaning_zh,
            "success": c.success,
            "retryable": c.retryable,
        }
        for c in CALLBACK_CODES.values()
    ]
