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

import os
from dataclasses import dataclass, field

__all__ = ["SOURCES", "Secret", "find_secret"]

SOURCES = ("argument", "environment", ".env", "colab")


@dataclass(frozen=True)
class Secret:
    """A secret and where it was found.  Its repr never shows the value."""

    name: str
    value: str = field(repr=False)
    source: str

    def __repr__(self) -> str:
        return f"Secret({self.name}, from {self.source})"

    __str__ = __repr__


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
        from google.colab import userdata  # type: ignore[import-not-found]
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
