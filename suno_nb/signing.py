"""Webhook signatures: sign() and verify() side by side, pure, no I/O.

Per the reference: ``X-Webhook-Timestamp`` is Unix seconds and ``X-Webhook-Signature`` is
``base64(HMAC-SHA256(key, task_id + "." + timestamp))``.  The signature does not cover the
body: it proves origin and freshness, not the body.  What a receiver does about that (the
store remembers which body each signature first came with) is in docs/architecture.md,
"Signatures that do not cover the body".  The sandbox signs, the receiver verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping

from .errors import SignatureError

TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"
DEFAULT_TOLERANCE_S = 300
# A canonical Unix time in seconds: ASCII digits only, no leading zero (so one number has one
# spelling: "0" + ts is not a second way to send ts), no sign, "_", spaces or other scripts'
# digits that int() would take, at most 11 digits (year 5138).
_TIMESTAMP = re.compile(r"0|[1-9][0-9]{0,10}")


def _key_bytes(key: str | bytes) -> bytes:
    return key.encode("utf-8") if isinstance(key, str) else key


def sign(key: str | bytes, task_id: str, timestamp: int) -> str:
    """Return the base64 signature of ``task_id + "." + timestamp``."""
    message = f"{task_id}.{int(timestamp)}".encode()
    digest = hmac.new(_key_bytes(key), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_headers(
    key: str | bytes, task_id: str, timestamp: int | None = None
) -> dict[str, str]:
    """The two headers a signed callback carries."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(key, task_id, ts)}


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]``, the name compared case-insensitively."""
    # Header names are case-insensitive on the wire; a plain dict's lookup is not.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def single(headers: Mapping[str, str], name: str) -> str | None:
    """The one value of header ``name``: a header sent twice arrives joined with ", "; the
    same value twice counts once, two different values are refused (SignatureError)."""
    raw = header(headers, name)
    if raw is None:
        return None
    values = {part.strip() for part in raw.split(",")}
    if len(values) > 1:
        raise SignatureError(f"{name} was sent more than once with different values")
    return values.pop()


def verify(
    key: str | bytes,
    headers: Mapping[str, str],
    task_id: str,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a callback's signature headers; return the timestamp.

    Raises :class:`SignatureError` whose ``reason`` names the failed check: a missing
    header, a malformed timestamp, a timestamp outside ``tolerance`` seconds, or a
    signature that does not match (wrong key, or a body whose task_id was changed).
    """
    raw_ts = single(headers, TIMESTAMP_HEADER)
    raw_sig = single(headers, SIGNATURE_HEADER)
    if raw_ts is None:
        raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
    if raw_sig is None:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is not a Unix time in seconds written plainly (digits only, "
            "no leading zero)"
        )
    ts = int(raw_ts)
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {abs(current - ts):.0f} s away from now; the tolerance "
            f"is {tolerance:g} s (stale or replayed callback, or a skewed clock)"
        )
    try:
        expected = sign(key, task_id, ts)
    except UnicodeEncodeError:  # a lone surrogate: no sender could have signed it
        raise SignatureError("task_id cannot be encoded as UTF-8") from None
    if not hmac.compare_digest(expected.encode("ascii"), raw_sig.encode("ascii", "replace")):
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match HMAC-SHA256(task_id.timestamp) for this "
            "key (wrong key, or the body's task_id differs from the one signed)"
        )
    return ts
