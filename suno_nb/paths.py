"""Per-user folders for suno_nb, from platformdirs, each with an environment override.

``user_dir("cache", "SUNO_NB_CACHE_DIR", "audio")`` is the audio cache,
``user_dir("state", "SUNO_NB_STATE_DIR")`` holds the tunnel agents' pid records.  The
override (when set and non-empty) is used as is; otherwise the platform's folder for
``suno_nb`` (``~/.cache/suno_nb``, ``~/.local/state/suno_nb`` on Linux, honouring the XDG
variables; ``~/Library/Caches/suno_nb`` on macOS; ``%LOCALAPPDATA%`` on Windows) plus ``sub``.

Floors: bottom floor beside ``errors``; it imports nothing from the package.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["APP_NAME", "user_dir"]

APP_NAME = "suno_nb"


def user_dir(kind: str, override_env: str | None = None, *sub: str) -> Path:
    """The folder for ``kind`` (``"cache"`` or ``"state"``), read now, not created.

    ``$override_env`` wins when set; else the platformdirs folder for suno_nb joined with
    ``sub``.
    """
    if override_env:
        explicit = os.environ.get(override_env, "").strip()
        if explicit:
            return Path(explicit).expanduser()
    import platformdirs

    if kind == "cache":
        base = platformdirs.user_cache_path(APP_NAME, appauthor=False)
    elif kind == "state":
        base = platformdirs.user_state_path(APP_NAME, appauthor=False)
    else:
        raise ValueError(f"kind must be 'cache' or 'state', got {kind!r}")
    return base.joinpath(*sub)
