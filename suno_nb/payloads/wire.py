"""Wire-level readers shared by the callback, record-info and task-API parsers: one track
object (either spelling) and a task id."""

from __future__ import annotations

from typing import Any

from ..errors import PayloadError
from ..rows import TRACK_WIRE, Track

# Every key of a track object that maps to a Track field; the rest goes to ``extra``.
_KNOWN_KEYS = {
    False: frozenset(snake for _, snake, _ in TRACK_WIRE) | {"id"},
    True: frozenset(camel for _, _, camel in TRACK_WIRE) | {"id"},
}


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise PayloadError(f"{where}.{key} must be a string, got {type(value).__name__}")


def _number(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        # Numeric strings are tolerated: some providers send "198.44".
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise PayloadError(f"{where}.{key} must be a number, got {type(value).__name__}")
    return float(value)


def track_from(obj: Any, where: str, *, camel: bool) -> Track:
    """A track object (``camel``: record-info's spelling, else the callbacks') as a
    :class:`Track`; unknown keys go to ``extra``."""
    if not isinstance(obj, dict):
        raise PayloadError(f"{where} must be an object, got {type(obj).__name__}")
    track_id = obj.get("id")
    if not isinstance(track_id, str) or not track_id:
        raise PayloadError(f"{where}.id must be a non-empty string")
    values: dict[str, Any] = {}
    for name, snake, camel_key in TRACK_WIRE:
        key = camel_key if camel else snake
        if name == "duration":
            values[name] = _number(obj, key, where)
        else:
            values[name] = _opt_str(obj, key, where)
    known = _KNOWN_KEYS[camel]
    return Track(id=track_id, **values, extra={k: v for k, v in obj.items() if k not in known})


def checked_task_id(value: Any, where: str) -> str:
    """``value`` if it is a usable task id (non-empty string, at most 200 characters)."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError(f"{where} must be a non-empty string")
    if len(value) > 200:
        raise PayloadError(f"{where} is longer than 200 characters")
    return value


def error_fields(data: dict[str, Any]) -> tuple[int | None, str | None]:
    """A details answer's ``errorCode`` (an int, or digits in a string) and ``errorMessage``;
    None for what is missing or of another type."""
    code = data.get("errorCode")
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    message = data.get("errorMessage")
    return code, message if isinstance(message, str) else None
