"""Progress bars (tqdm's, notebook or text) without tqdm's monitor thread.

tqdm starts a monitor thread with its first bar (disabled bars too).  :func:`bar` makes bars
of a subclass whose monitor is off: the setting belongs to that subclass, never to tqdm.
"""

from __future__ import annotations

import math
from typing import Any


def bar(**kwargs: Any) -> Any:
    """A ``tqdm.auto`` bar (``kwargs`` as for tqdm) that starts no monitor thread."""
    from tqdm.auto import tqdm

    return type("SunoNbTqdm", (tqdm,), {"monitor_interval": 0})(**kwargs)


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
            self._bar = bar(
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
