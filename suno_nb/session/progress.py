"""The progress line ``rx.wait()`` shows in notebooks (tqdm, without its monitor thread)."""

from __future__ import annotations

import math
from typing import Any


def in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"


class WaitBar:
    """A one-line "waiting for <task>: 12 s  status" display; a no-op when not shown.

    ``refresh``: how often the caller should update it (seconds; infinite when hidden).
    """

    def __init__(self, task_id: str, progress: bool | None) -> None:
        show = in_notebook() if progress is None else bool(progress)
        self.refresh = 1.0 if show else math.inf
        self._bar: Any = None
        if show:
            from tqdm.auto import tqdm

            # A subclass, not a global setting: no monitor thread for this bar only.
            bar_class = type("WaitTqdm", (tqdm,), {"monitor_interval": 0})
            self._bar = bar_class(
                total=None,
                desc=f"waiting for {task_id[:12]}",
                unit="s",
                bar_format="{desc}: {elapsed} {postfix}",
            )

    def show(self, status: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(status, refresh=False)
            self._bar.update(0)

    def done(self, status: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(status)

    def __enter__(self) -> WaitBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
