"""Batches that run unattended: many replacements, resumable, throttled and budgeted.

>>> problems = snb.preview_batch(client, jobs)            # sends nothing
>>> b = snb.run_batch(client, jobs, receiver=rx, name="night-1", max_credits=200)
>>> b.wait(); b.summary(); b.results().groupby("tags_job")["duration"].mean()

``jobs``: a DataFrame (or a list of dicts), one row per request, columns named like the
keyword arguments of ``client.replace_section`` — or of ``client.replace_lines``, chosen by a
``kind`` column (``"section"``/``"lines"``) or by the columns present.

Every row gets a key (a hash of the batch name and its normalized parameters) stored in the
receiver's store before its request is sent; running the same ``run_batch`` again skips the
rows already sent and keeps waiting for them.  A request that may have reached the service
without an answer is ``uncertain`` and never resent unless ``resubmit_uncertain=True``; its
callback, when it comes, is recognised by the prompt, title and tags it echoes.

Floors: beside ``receiver``/``poller`` (5): it uses the client and the store, and meets the
receiver only as the object passed in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import ReceiverError, WaitTimeout
from ..progress import bar as progress_bar
from . import ledger
from .jobs import Job, Problem, check, make_jobs
from .run import Budget, Outcome, send_rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["STATES", "Batch", "preview_batch", "run_batch"]

STATES = ("queued", "submitted", "uncertain", "succeeded", "failed", "skipped", "over_budget")
_FINAL = {"succeeded", "failed", "skipped", "over_budget"}


def _problems_frame(problems: list[Problem]) -> pd.DataFrame:
    import pandas as pd

    cols = ["row", "key", "kind", "field", "rule", "message"]
    return pd.DataFrame([[getattr(p, c) for c in cols] for p in problems], columns=cols)


def preview_batch(client: Any, jobs: Any, *, name: str = "batch") -> pd.DataFrame:
    """The problems of every row, one line each (``row``, ``key``, ``kind``, ``field``,
    ``rule``, ``message``), found by the client's own checks; sends nothing.  An empty
    frame means every row passes what can be checked without a request (the 50 % rule
    needs ``original_duration`` in the row)."""
    found: list[Problem] = []
    for job in make_jobs(name, jobs):
        found += check(client, job)
    return _problems_frame(found)


def _shown_state(r: dict[str, Any]) -> str:
    state = r["state"]
    if state == ledger.SUBMITTED:
        task = r.get("task_state")
        if task == "succeeded":
            return "succeeded"
        if task in ("failed", "unknown", "expired"):
            return "failed"
        return "submitted"
    if state == ledger.REJECTED:
        return "failed"
    if state == ledger.SENDING:
        return "submitted"  # out right now (a dead run's is uncertain at the next start)
    return str(state)


class Batch:
    """A batch's rows in the receiver's store: :meth:`frame`, :meth:`wait`,
    :meth:`summary`, :meth:`results`.  Made by :func:`run_batch`."""

    def __init__(self, name: str, client: Any, rx: Any, jobs: list[Job]) -> None:
        self.name = name
        self.client = client
        self.rx = rx
        self.jobs = jobs
        self.last_run: Outcome | None = None
        self.budget: Budget | None = None

    # --- reading ------------------------------------------------------------------------

    @property
    def keys(self) -> list[str]:
        """The keys of this batch's rows, in job order."""
        return [j.key for j in self.jobs]

    def _rows(self, *, adopt: bool = True) -> list[dict[str, Any]]:
        if adopt:  # a write: never from a repr
            ledger.adopt(self.rx.store, self.name, self.client.provider, self.rx, self.keys)
        return ledger.rows(self.rx.store, self.name, self.keys)

    def frame(self) -> pd.DataFrame:
        """One row per job: ``row``, ``key``, ``kind``, ``state`` (one of :data:`STATES`),
        ``task_id``, ``error``, ``takes`` (result tracks so far), ``sends``."""
        import pandas as pd

        out = []
        for r in self._rows():
            state = _shown_state(r)
            error = r["error"] if state != "failed" or r["state"] == ledger.REJECTED else None
            if state == "failed" and error is None:
                error = r["task_error"]
            out.append([r["row"], r["key"], r["kind"], state, r["task_id"], error, r["takes"]])
            out[-1].append(r["sends"])
        cols = ["row", "key", "kind", "state", "task_id", "error", "takes", "sends"]
        df = pd.DataFrame(out, columns=cols)
        df["takes"] = df["takes"].astype("int64")
        df["sends"] = df["sends"].astype("int64")
        return df

    def task_ids(self) -> list[str]:
        """The tasks of this batch's rows (submitted or adopted)."""
        rows = ledger.rows(self.rx.store, self.name, self.keys)
        return [r["task_id"] for r in rows if r["task_id"]]

    def summary(self) -> dict[str, Any]:
        """How many rows are in each state, credits spent (when a budget was kept), and why
        the last run stopped early (``stopped``, or None)."""
        counts = self.frame()["state"].value_counts()
        out: dict[str, Any] = {s: int(counts.get(s, 0)) for s in STATES}
        out["rows"] = len(self.jobs)
        if self.budget is not None and self.budget.max_credits is not None:
            out["credits_spent"] = self.budget.estimate
            out["price"] = self.budget.price
        out["stopped"] = self.last_run.stopped if self.last_run else None
        return out

    def results(self) -> pd.DataFrame:
        """``rx.frame()`` (one row per result track) of this batch's tasks, joined with the
        job parameters (``row``, ``key``, ``kind``, then each parameter; a name the frame
        already has gets the suffix ``_job``: ``tags_job``; ``task_id_job`` is the original's)."""
        import pandas as pd

        rows = ledger.rows(self.rx.store, self.name, self.keys)
        own = ("task_id", "row", "key", "kind")
        params = pd.DataFrame(
            [
                {k if k not in own else f"{k}_job": v for k, v in r["params"].items()}
                | {"task_id": r["task_id"], "row": r["row"], "key": r["key"], "kind": r["kind"]}
                for r in rows
                if r["task_id"]
            ]
        )
        tracks = self.rx.frame()
        if params.empty:
            return tracks.iloc[0:0]
        mine = tracks[tracks["task_id"].isin(params["task_id"])]
        return mine.merge(params, on="task_id", how="left", suffixes=("", "_job"))

    # --- waiting ------------------------------------------------------------------------

    def wait(
        self, timeout: float = 3600.0, *, uncertain: bool = False, progress: bool = True
    ) -> Batch:
        """Block until every submitted row has its result (callback or poll), updating a
        results bar.  ``uncertain=True`` also waits for uncertain rows to be adopted by
        their callbacks (until ``timeout``, then returns).  Raises :class:`WaitTimeout`
        when submitted rows are still open after ``timeout`` seconds."""
        feed = self.rx.feed
        if feed.on_thread():
            raise ReceiverError("batch.wait() cannot run in a handler: it would wait for itself")
        deadline = time.monotonic() + timeout
        first = self.frame()
        total = int((first["state"].isin(["submitted", "succeeded", "failed"])).sum())
        with progress_bar(
            total=total, desc=f"{self.name}: results", unit="task", disable=not progress
        ) as bar:
            while True:
                seen = feed.seq
                df = self.frame()
                done = int(df["state"].isin(["succeeded", "failed"]).sum())
                open_ = int((df["state"] == "submitted").sum())
                waiting = open_ + (int((df["state"] == "uncertain").sum()) if uncertain else 0)
                bar.total = max(bar.total or 0, done + open_)
                bar.update(done - bar.n)
                if waiting == 0:
                    return self
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if open_ == 0:
                        return self
                    raise WaitTimeout(f"batch {self.name}", timeout, f"{open_} open")
                if not self.rx.running:
                    raise ReceiverError(f"the receiver stopped while batch {self.name} waited")
                feed.wait(seen, min(remaining, 5.0))

    def __repr__(self) -> str:
        try:
            seen = [_shown_state(r) for r in self._rows(adopt=False)]
        except Exception as exc:  # a closed store: still a repr
            return f"Batch({self.name!r}, rows={len(self.jobs)}, unreadable: {type(exc).__name__})"
        counts = ", ".join(f"{k}={seen.count(k)}" for k in STATES if seen.count(k))
        return f"Batch({self.name!r}, rows={len(self.jobs)}, {counts or 'empty'})"


def run_batch(
    client: Any,
    jobs: Any,
    *,
    receiver: Any,
    name: str = "batch",
    max_credits: float | None = None,
    skip_invalid: bool = False,
    resubmit_uncertain: bool = False,
    progress: bool = True,
) -> Batch:
    """Check every row (as :func:`preview_batch`), then send the rows not sent yet; returns
    the :class:`Batch` (call ``.wait()`` for the results).

    Refuses to start (``ValueError`` listing the problems) on any invalid row unless
    ``skip_invalid`` (those rows are ``skipped``).  ``name`` keys the rows: the same name and
    rows, run again (after an interruption, a restart), sends only what was not sent.
    ``max_credits``: stop before a request that would spend more than this in this run, by
    the price measured from ``client.credits()``; the rows left are ``over_budget`` (a
    later run with a larger budget sends them).  A 402 (no credits) stops the run and
    leaves the rest ``queued``.  ``resubmit_uncertain``: send ``uncertain`` rows again (each
    may then exist twice at the service).  ``progress``: a ``tqdm.auto`` bar.
    """
    if receiver is None or not hasattr(receiver, "store"):
        raise ValueError("receiver: run_batch needs the receiver (rx) whose store keeps the rows")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: a non-empty text naming the batch, got {name!r}")
    if max_credits is not None and not max_credits >= 0:
        raise ValueError(f"max_credits: a number >= 0 (credits), got {max_credits!r}")
    made = make_jobs(name, jobs)
    problems = [p for job in made for p in check(client, job)]
    if problems and not skip_invalid:
        lines = "\n".join(f"  row {p.row}: {p.message}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(
            f"{len({p.row for p in problems})} invalid row(s); nothing was sent "
            f"(preview_batch shows them all; skip_invalid=True sends the rest):\n{lines}{more}"
        )
    store = receiver.store
    ledger.ensure(store, name, made, {p.key for p in problems})
    receiver.use_client(client)  # rows sent by an earlier run are polled too
    batch = Batch(name, client, receiver, made)
    rows = batch._rows()
    sendable = {ledger.QUEUED} | ({ledger.UNCERTAIN} if resubmit_uncertain else set())
    todo = [r for r in rows if r["state"] in sendable]
    budget = Budget(max_credits, client.credits)
    batch.budget = budget
    if todo:
        budget.begin()
    with progress_bar(
        total=len(todo), desc=f"{name}: submitting", unit="row", disable=not progress
    ) as bar:
        batch.last_run = send_rows(client, receiver, store, todo, budget, bar)
    budget.measure()
    if batch.last_run.stopped:
        from ..client_errors import tell_user

        tell_user(f"batch {name!r}: {batch.last_run.stopped}")
    return batch
