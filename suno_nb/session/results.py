"""The Receiver's tables, ratings and results: DataFrames, rx.result(), rx.wait()."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from ..errors import WaitTimeout
from ..store import TERMINAL_STATES

if TYPE_CHECKING:  # pandas loads on first use: `import suno_nb` stays light
    import pandas as pd


from .config import TaskResult, _in_notebook

log = logging.getLogger("suno_nb.session")


class ResultsMixin:
    """Tables, ratings and waiting for results, for :class:`Receiver`."""

    # --- tables ---------------------------------------------------------------------------

    def session_tasks(self, *, history: bool = False) -> list[dict[str, Any]]:
        """This session's task rows, oldest first, read by key: tasks submitted or first seen
        since :attr:`started_at` plus any still open (however old).  ``history=True``: every
        task in the store.  The widgets' default scope."""
        return self.store.tasks_since(0.0 if history else self.started_at, include_open=True)

    def frame(self) -> pd.DataFrame:
        """One row per result track, typed columns (see :mod:`suno_nb.frame`)."""
        from .. import frame as _frame

        return _frame.frame(self.store)

    def tasks(self) -> pd.DataFrame:
        """One row per task, pending, succeeded or failed."""
        from .. import frame as _frame

        return _frame.tasks(self.store)

    def deliveries(self) -> pd.DataFrame:
        """Every delivery received, including rejected ones with the reason."""
        from .. import frame as _frame

        return _frame.deliveries(self.store)

    def download(
        self, dest: str | os.PathLike[str], *, progress: bool = True, session: Any = None
    ) -> pd.DataFrame:
        """Archive every result track's audio and cover into ``dest/<task_id>/``.

        Files already there are skipped, so a second call downloads nothing.  Results on
        the hosted service expire after 14 days: download what you want to keep.
        """
        from ..audio import download_results

        return download_results(self.frame(), dest, session=session, progress=progress)

    # --- ratings (the ledger) ------------------------------------------------------------

    def rate(
        self, track_id: str, stars: int, note: str | None = None, *, task_id: str | None = None
    ) -> None:
        """Give a result track 1..5 ``stars`` and an optional ``note``; shows in
        :meth:`frame` (``rating``, ``note``) and survives restarts (it is in the store).

        ``task_id`` is needed only when the track id occurs in several tasks.
        """
        self.store.rate(track_id, stars, note, task_id=task_id)

    def pick(self, track_id: str, *, task_id: str | None = None) -> None:
        """Mark a result track as the take to keep (``picked`` in :meth:`frame`); one pick
        per task, so picking another take of the task replaces it."""
        self.store.pick(track_id, task_id=task_id)

    def result(self, task_id: str) -> TaskResult | None:
        """The task's final result, or None while it is open or not in the store.

        A task the poller gave up on (``unknown`` to the service, or ``expired``) is final
        too; its ``error`` says why.
        """
        task = self.store.task(task_id)
        if task is None or task["state"] not in TERMINAL_STATES:
            return None
        return TaskResult(
            task_id,
            task["state"],
            task["code"],
            task["msg"],
            task["error"] or task.get("reason"),
            task["source"],
            _tracks_frame(task, self.store.tracks_of(task_id)),  # by key, not the whole table
        )

    def wait(
        self,
        task_id: str,
        timeout: float = 600.0,
        *,
        progress: bool | None = None,
        raise_on_failure: bool = False,
    ) -> TaskResult:
        """Block until ``task_id`` has a final result (callback or poll) and return it.

        Shows a progress bar in notebooks (``progress=None``: only there).  Raises
        :class:`WaitTimeout` after ``timeout`` seconds; with ``raise_on_failure`` a failed
        task raises :class:`TaskFailedError` instead of being returned.
        """
        show = _in_notebook() if progress is None else progress
        deadline = time.monotonic() + timeout
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=None,
                desc=f"waiting for {task_id[:12]}",
                unit="s",
                bar_format="{desc}: {elapsed} {postfix}",
            )
        try:
            seen = self.store.version
            while True:
                result = self.result(task_id)
                if result is not None:
                    if bar is not None:
                        bar.set_postfix_str(f"{result.state} via {result.source}")
                    return result.raise_for_failure() if raise_on_failure else result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    task = self.store.task(task_id)
                    state = None
                    if task is not None:
                        state = task["service_status"] or task["state"]
                    raise WaitTimeout(task_id, timeout, state)
                if bar is not None:
                    task = self.store.task(task_id)
                    status = (task or {}).get("service_status") or "waiting"
                    bar.set_postfix_str(status)
                    bar.update(0)
                seen = self.store.wait_for_change(seen, min(remaining, 0.5))
        finally:
            if bar is not None:
                bar.close()


def _tracks_frame(task: dict[str, Any], tracks: list[dict[str, Any]]) -> pd.DataFrame:
    """One task's tracks with the columns and dtypes of :func:`suno_nb.frame.frame`."""
    import pandas as pd

    from ..frame import FRAME_COLUMNS

    submitted = task.get("submitted_at")
    rows = [
        {
            **{c: tr.get(c) for c in FRAME_COLUMNS},
            "callback_type": task.get("callback_type"),
            "code": task.get("code"),
            "msg": task.get("msg"),
            "created_at": tr.get("create_time"),
            "parent_task_id": task.get("parent_task_id"),
            "audio_id": task.get("audio_id"),
            "infill_start_s": task.get("infill_start_s"),
            "infill_end_s": task.get("infill_end_s"),
            "submitted_at": submitted,
            "latency_s": None if submitted is None else tr["received_at"] - submitted,
        }
        for tr in tracks
    ]
    df = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    df["code"] = df["code"].astype("Int64")
    for col in ("duration", "infill_start_s", "infill_end_s", "latency_s"):
        df[col] = df[col].astype("float64")
    df["created_at"] = pd.to_datetime(df["created_at"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    for col in ("received_at", "submitted_at"):
        df[col] = pd.to_datetime(df[col].astype("float64"), unit="s", utc=True)
    return df
