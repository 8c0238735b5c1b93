"""Sending a batch's queued rows: one at a time, through the client (and so through the
shared throttle of its host and key), within a credit budget.

What stops the loop, leaving the rest ``queued``: no credits (402), the rate limit still
refusing after the client's resends, maintenance, a service that cannot be reached.  What
does not: a row the service refuses (``rejected``, with the reason) or one whose request
may have reached it without an answer (``uncertain``: never resent automatically).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import client_lyrics
from ..errors import (
    ApiError,
    AuthError,
    InsufficientCreditsError,
    KeyLimitError,
    MaintenanceError,
    NetworkError,
    RateLimitError,
    ServerError,
    SunoNbError,
)
from . import ledger

log = logging.getLogger("suno_nb.batch")

MEASURE_EVERY = 10  # re-read the balance after this many requests (each read is a request)


@dataclass
class Budget:
    """``max_credits`` for this run, against the balance the service reports: the price of
    a request is measured from the balance's change, never assumed."""

    max_credits: float | None
    credits: Callable[[], float]
    start: float | None = None
    spent: float = 0.0  # measured at the last reading
    since: int = 0  # requests accepted since that reading
    price: float | None = None  # measured per request
    readings: list[float] = field(default_factory=list)

    def begin(self) -> None:
        if self.max_credits is not None:
            self.start = self.credits()
            self.readings.append(self.start)

    def allows_one_more(self) -> bool:
        """False when the next request would (by the measured price) exceed the budget."""
        if self.max_credits is None:
            return True
        if self.price is None:  # nothing measured yet: the first request finds the price
            return self.since == 0 and self.spent < self.max_credits
        return self.spent + self.price * (self.since + 1) <= self.max_credits + 1e-9

    def accepted(self) -> None:
        if self.max_credits is None:
            return
        self.since += 1
        if self.price is None or self.since >= MEASURE_EVERY:
            self.measure()

    def measure(self) -> None:
        if self.max_credits is None or self.start is None or self.since == 0:
            return
        balance = self.credits()
        self.readings.append(balance)
        spent = max(0.0, self.start - balance)
        per = (spent - self.spent) / self.since
        if per > 0:
            self.price = per
        self.spent, self.since = spent, 0

    @property
    def estimate(self) -> float:
        return self.spent + (self.price or 0.0) * self.since


@dataclass
class Outcome:
    """What one run of the loop did."""

    sent: int = 0
    uncertain: int = 0
    rejected: int = 0
    stopped: str | None = None  # why the loop stopped early (a message for the user)
    over_budget: int = 0


_TRANSPORT = ("requests.", "urllib3.", "http.client", "socket", "ssl")


def _in_transport(exc: BaseException) -> bool:
    """Was ``exc`` raised while an HTTP request was being sent or answered?"""
    return any(
        str(frame.f_globals.get("__name__", "")).startswith(_TRANSPORT)
        for frame, _line in traceback.walk_tb(exc.__traceback__)
    )


def _send(client: Any, rx: Any, job: dict[str, Any]) -> Any:
    params = dict(job["params"])
    if job["kind"] == "lines":
        return client_lyrics.replace_lines(client, receiver=rx, **params)
    return client.replace_section(receiver=rx, **params)


def send_rows(
    client: Any,
    rx: Any,
    store: Any,
    todo: list[dict[str, Any]],
    budget: Budget,
    bar: Any,
) -> Outcome:
    """Send ``todo`` (ledger rows) in order; every state change is stored as it happens."""
    out = Outcome()
    for i, job in enumerate(todo):
        if not budget.allows_one_more():
            left = todo[i:]
            for r in left:
                ledger.set_state(store, r["key"], ledger.OVER_BUDGET)
            out.over_budget = len(left)
            out.stopped = (
                f"stopped before a request that would exceed max_credits={budget.max_credits:g}"
                f" (spent {budget.estimate:g}, {budget.price or 0:g} per request): "
                f"{len(left)} row(s) left over_budget; raise max_credits and run again"
            )
            break
        ledger.set_state(store, job["key"], ledger.SENDING, sent=True)
        try:
            result = _send(client, rx, job)
        except InsufficientCreditsError as exc:
            ledger.set_state(store, job["key"], ledger.QUEUED, error=str(exc))
            out.stopped = (
                f"the account has no credits left for this request ({exc}): the batch "
                f"stopped, {len(todo) - i} row(s) left queued; top up and run the same cell "
                "again"
            )
            break
        except (RateLimitError, MaintenanceError, AuthError, KeyLimitError) as exc:
            # Every following row would be refused the same way.
            ledger.set_state(store, job["key"], ledger.QUEUED, error=str(exc))
            out.stopped = f"the service refused ({exc}): {len(todo) - i} row(s) left queued"
            break
        except (NetworkError, ServerError) as exc:
            # A server error answered to a POST may still have made a task (the client
            # never resends one either); a network error may have, after sending.
            if isinstance(exc, ServerError) or exc.may_have_reached:
                ledger.set_state(store, job["key"], ledger.UNCERTAIN, error=str(exc))
                out.uncertain += 1
                bar.update(1)
                budget.accepted()  # it may have been charged: count it until measured
                continue
            ledger.set_state(store, job["key"], ledger.QUEUED, error=str(exc))
            out.stopped = f"could not reach the service ({exc}): {len(todo) - i} row(s) queued"
            break
        except (ApiError, SunoNbError, ValueError) as exc:
            # The service (or a check that needed a lookup) refused this row: the next may pass.
            ledger.set_state(store, job["key"], ledger.REJECTED, error=str(exc))
            out.rejected += 1
            bar.update(1)
            continue
        except BaseException as exc:
            # An interrupt (KeyboardInterrupt) while the request was out may have let it
            # reach the service: uncertain.  One while waiting for the throttle (or
            # checking) sent nothing: queued again.
            out_now = _in_transport(exc)
            state = ledger.UNCERTAIN if out_now else ledger.QUEUED
            why = f"interrupted ({type(exc).__name__})" + (
                " while its request was out" if out_now else ""
            )
            ledger.set_state(store, job["key"], state, error=why)
            raise
        ledger.set_state(store, job["key"], ledger.SUBMITTED, task_id=result.task_id, error=None)
        out.sent += 1
        bar.update(1)
        budget.accepted()
    if out.stopped:
        log.warning("batch: %s", out.stopped)
    return out
