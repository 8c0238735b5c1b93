"""Strict JSON decoding for bodies from the wire: only :class:`PayloadError` ever escapes."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ..errors import PayloadError

MAX_DEPTH = 32  # far deeper than any documented body; bounds the work per request
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # SQLite's integers; anything beyond is refused

# Decoded text can hold a surrogate only through a ``\uD800``-``\uDFFF`` escape (the UTF-8
# decoder refuses encoded ones).  This finds every such escape, and some that are not (an
# escaped backslash before ``ud8..``): a hit only means "look closer".
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_json(body: bytes) -> Any:
    """Decode UTF-8 JSON strictly; raise :class:`PayloadError` with a reason for bad bytes.

    Beyond the JSON grammar this refuses what cannot be stored faithfully or costs too much:
    integers beyond the signed 64-bit range (SQLite's; a 5000-digit integer is refused by
    its length before any conversion), numbers that overflow a float (``1e400``), the
    non-standard ``NaN``/``Infinity`` literals, nesting deeper than :data:`MAX_DEPTH`, and
    strings holding a lone UTF-16 surrogate (``"\\ud800"``): those are rejected (400), not
    replaced with U+FFFD, because the stored raw body must mean what the parsed rows say.
    Nothing but PayloadError ever escapes.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not valid UTF-8 (byte {exc.start})") from None
    try:
        doc = _DECODER.decode(text)
    except PayloadError:
        raise
    except json.JSONDecodeError as exc:
        raise PayloadError(
            f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise PayloadError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        raise PayloadError(f"body is not acceptable JSON: {type(exc).__name__}") from None
    # The walk over every value is needed only when the text could hold what it looks for:
    # a document cannot nest deeper than it has brackets, nor hold a lone surrogate without
    # a surrogate escape.  A callback body has a handful of brackets and no such escape.
    if text.count("{") + text.count("[") > MAX_DEPTH or _SURROGATE_ESCAPE.search(text):
        _check_values(doc)
    return doc


def _short(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _parse_int(text: str) -> int:
    # Length first: int() of thousands of digits is slow (and limited) in CPython.
    if len(text.lstrip("-")) > len(str(INT_MAX)):
        raise PayloadError(f"integer {_short(text)} is out of range (beyond +/-2**63)")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise PayloadError(f"integer {text} is out of range (beyond +/-2**63)")
    return value


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise PayloadError(f"number {_short(text)} is out of range (overflows a float)")
    return value


def _parse_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
)


def _check_values(doc: Any) -> None:
    """Nesting depth and lone surrogates, in one pass over the decoded document."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "body")]
    while stack:
        obj, depth, where = stack.pop()
        if isinstance(obj, str):
            _check_text(obj, where)
            continue
        if not isinstance(obj, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise PayloadError(f"JSON nested deeper than {MAX_DEPTH} levels")
        if isinstance(obj, dict):
            for key, value in obj.items():
                _check_text(key, f"a key of {where}")
                stack.append((value, depth + 1, f"{where}.{_short(key)}"))
        else:
            stack.extend((value, depth + 1, f"{where}[{i}]") for i, value in enumerate(obj))


def _check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PayloadError(
            f"{where} holds a lone UTF-16 surrogate (\\u{ord(text[exc.start]):04x}),"
            " which is not valid Unicode"
        ) from None
