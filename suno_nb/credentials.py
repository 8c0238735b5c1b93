"""Where notebook users keep their secrets, looked up in one order.

``find_secret("SUNO_API_KEY", api_key)`` tries, in order: the explicit argument, the process
environment, a ``.env`` file (the nearest one from the working directory upwards, read with
python-dotenv and never copied into ``os.environ``), and Colab's secret store
(``google.colab.userdata``, only where it imports; a missing or unshared secret is not an
error).  The result says where the value came from, so reprs can name the source without
ever showing the value.

Floors: bottom floor beside ``errors``; it imports nothing from the package.
"""

from __future__ import annotations

import hashlib
import hmac
import os

__all__ = ["SOURCES", "Secret", "as_secret", "find_secret"]

SOURCES = ("argument", "environment", ".env", "colab")


class Secret:
    """A secret (API key, authtoken, HMAC key) and where it was found: the one way suno_nb
    holds secrets.  Its repr, str, copies and pickles never show the value; ``.value`` does.
    Two secrets are equal when their values are (compared in constant time), so a config
    holding one can tell a changed token from the same one without keeping it visible."""

    __slots__ = ("_value", "name", "source")

    def __init__(self, name: str, value: str | bytes, source: str = "argument") -> None:
        self.name = name
        self.source = source
        self._value = value

    @property
    def value(self) -> str | bytes:
        """The secret itself: pass it where it is used, never into a message."""
        return self._value

    @property
    def text(self) -> str:
        """The value as text (a bytes key decoded as UTF-8)."""
        v = self._value
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else v

    @property
    def fingerprint(self) -> str:
        """sha256 of the value (hex): lets a re-run notice a new token."""
        raw = self._value if isinstance(self._value, bytes) else self._value.encode("utf-8")
        return hashlib.sha256(raw).hexdigest()

    def __repr__(self) -> str:
        return f"Secret({self.name}, from {self.source})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self.fingerprint, other.fingerprint)

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: dict) -> Secret:
        return self  # immutable; and dataclasses.asdict() must not reach the value

    def __reduce__(self) -> tuple:
        raise TypeError("a Secret is never pickled")


def as_secret(name: str, value: str | bytes | Secret | None) -> Secret | None:
    """``value`` as a :class:`Secret` (None and empty stay None)."""
    if value is None or isinstance(value, Secret):
        return value
    return Secret(name, value) if value else None


def _from_env_file(name: str) -> str | None:
    try:
        from dotenv import dotenv_values, find_dotenv
    except ImportError:  # pragma: no cover - a core dependency
        return None
    path = find_dotenv(usecwd=True)
    if not path:
        return None
    try:
        value = dotenv_values(path).get(name)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return value or None


def _from_colab(name: str) -> str | None:
    try:
        from google.colab import userdata
    except ImportError:
        return None
    try:
        value = userdata.get(name)
    except Exception:  # SecretNotFoundError, NotebookAccessError, ...: not an error here
        return None
    return str(value) if value else None


def find_secret(name: str, explicit: str | None = None, *, env_file: bool = True) -> Secret | None:
    """The secret ``name`` from the first place that has it, or None.

    Order: ``explicit`` → ``os.environ[name]`` → ``.env`` (when ``env_file``) → Colab's
    ``userdata``.  Empty values count as missing.
    """
    if explicit:
        return Secret(name, str(explicit), "argument")
    value = os.environ.get(name)
    if value:
        return Secret(name, value, "environment")
    if env_file:
        value = _from_env_file(name)
        if value:
            return Secret(name, value, ".env")
    value = _from_colab(name)
    if value:
        return Secret(name, value, "colab")
    return None
