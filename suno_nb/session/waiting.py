"""``rx.wait``: block until a task has a final result, and fail fast on an id nobody knows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import NotFoundError, ReceiverError, SunoNbError, UnknownTaskError, WaitTimeout

if TYPE_CHECKING:
    from .config import TaskResult
    from .receiver import Receiver

LOOKUP_TIMEOUT_S = 5.0  # one record-info request for a task this receiver never recorded


def wait(
    rx: Receiver,
    task_id: str,
    timeout: float,
    progress: bool | None,
    raise_on_failure: bool,
) -> TaskResult:
    """See :meth:`Receiver.wait`."""
    if rx.feed.on_thread():
        raise ReceiverError(
            "rx.wait() cannot run in a handler or widget callback: it would wait for "
            "itself. React to the event instead."
        )
    from ..progress import WaitBar

    deadline = time.monotonic() + timeout
    if rx.result(task_id) is None and rx.store.task(task_id) is None:
        _check_known(rx, task_id)
    with WaitBar(task_id, progress) as bar:
        while True:
            seen = rx.feed.seq
            result = rx.result(task_id)
            if result is not None:
                bar.done(f"{result.state} via {result.source}")
                return result.raise_for_failure() if raise_on_failure else result
            task = rx.store.task(task_id)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = (task or {}).get("service_status") or (task or {}).get("state")
                raise WaitTimeout(task_id, timeout, state, recorded=task is not None)
            if not rx.running:
                raise ReceiverError(f"the receiver stopped while waiting for {task_id}")
            bar.show((task or {}).get("service_status") or "waiting")
            rx.feed.wait(seen, min(remaining, bar.refresh))


def _check_known(rx: Receiver, task_id: str) -> None:
    """A task this receiver never recorded: ask the service once (when a client is known).

    Unknown there too → :class:`UnknownTaskError` at once (a mistyped id used to block for
    the whole timeout).  Known there, or no client to ask, or the question failed → wait as
    usual: its callback may still come (it was submitted elsewhere with this ``rx.url``)."""
    if rx.fetch is None:
        return
    try:
        # the bare question (not rx.lookup, which keeps the tracks as an original's)
        rx.fetch(task_id, LOOKUP_TIMEOUT_S)
    except NotFoundError:
        raise UnknownTaskError(
            f"task {task_id!r} is unknown: this receiver never recorded it (it was not "
            "submitted with receiver=rx and no callback for it came) and the service does not "
            "know it either. Check the id: rx.tasks() lists the tasks this receiver knows."
        ) from None
    except SunoNbError:
        return
